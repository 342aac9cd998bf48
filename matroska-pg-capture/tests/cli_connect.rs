//! The `matroska-pg` binary when things go wrong or come from elsewhere: connection errors keep
//! their cause (a wrong password, a missing database), `listen` ends at once on an error that
//! retrying cannot cure, no colour codes on a pipe, libpq's `PG*` variables without a URL, and
//! `migrate` / `stats` on a PgStore schema.
//!
//! Needs `MATROSKA_TEST_POSTGRES_URL`. The wrong-password case needs a server that checks
//! passwords (`./scripts/test`'s private server does); on a `trust` server it says why it cannot
//! be shown, and fails when servers are required (`MATROSKA_TEST_REQUIRE_SERVERS`, `CI`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod capture_support;

use std::process::{Command, Output};

use capture_support::{connect, quote, unique, url};
use matroska_core::store::Store as _;
use matroska_postgres::PgStore;

fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_matroska-pg"));
    for var in [
        "MATROSKA_PG_URL",
        "DATABASE_URL",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
        "PGAPPNAME",
        "PGCONNECT_TIMEOUT",
        "PGSSLMODE",
        "PGSSLROOTCERT",
    ] {
        command.env_remove(var);
    }
    command
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn out(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn err(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The test server's URL with `f` applied to its parsed form, as a key=value string.
fn with(url: &str, f: impl FnOnce(&mut Vec<(&'static str, String)>)) -> String {
    let config: tokio_postgres::Config = url.parse().unwrap();
    let mut parts = parts(&config);
    f(&mut parts);
    parts
        .iter()
        .map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn parts(config: &tokio_postgres::Config) -> Vec<(&'static str, String)> {
    let mut parts = Vec::new();
    if let Some(tokio_postgres::config::Host::Tcp(host)) = config.get_hosts().first() {
        parts.push(("host", host.clone()));
    }
    parts.push((
        "port",
        config
            .get_ports()
            .first()
            .copied()
            .unwrap_or(5432)
            .to_string(),
    ));
    parts.push(("user", config.get_user().unwrap().to_owned()));
    if let Some(db) = config.get_dbname() {
        parts.push(("dbname", db.to_owned()));
    }
    if let Some(password) = config.get_password() {
        parts.push(("password", String::from_utf8_lossy(password).into_owned()));
    }
    parts
}

fn set(parts: &mut Vec<(&'static str, String)>, key: &'static str, value: &str) {
    parts.retain(|(k, _)| *k != key);
    parts.push((key, value.to_owned()));
}

fn required() -> bool {
    ["MATROSKA_TEST_REQUIRE_SERVERS", "CI"]
        .iter()
        .any(|var| std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false"))
}

#[tokio::test]
async fn a_wrong_password_says_so_for_every_command_and_listen_exits() {
    let Some(url) = url() else { return };
    let admin = connect(&url).await;
    let role = unique("mkpg_pw");
    admin
        .batch_execute(&format!("CREATE ROLE {role} LOGIN PASSWORD 'right-one'"))
        .await
        .unwrap();
    let wrong = with(&url, |p| {
        set(p, "user", &role);
        set(p, "password", "wrong-one");
    });
    let list = run(&["list", "--url", &wrong]);
    // On a trust server listen would connect and listen until interrupted: only where it fails.
    let listen = (!list.status.success())
        .then(|| run(&["listen", "--url", &wrong, "--connect-timeout", "600"]));
    admin
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .unwrap();
    if list.status.success() {
        let why = format!(
            "the test server accepts any password for {role} (trust authentication), so a wrong \
             password cannot be shown; use ./scripts/test (its private server checks passwords)"
        );
        assert!(!required(), "{why}");
        eprintln!("note: {why}");
        return;
    }
    for output in [Some(&list), listen.as_ref()].into_iter().flatten() {
        assert!(!output.status.success());
        let text = err(output);
        assert!(
            text.contains("password authentication failed") && text.contains("28P01"),
            "{text}"
        );
        assert!(text.contains("check the password"), "{text}");
        assert!(
            !text.contains("wrong-one"),
            "the password is never printed: {text}"
        );
    }
}

#[tokio::test]
async fn a_missing_database_ends_listen_at_once_with_the_cause() {
    let Some(url) = url() else { return };
    let db = unique("no_such_db");
    let missing = with(&url, |p| set(p, "dbname", &db));
    // A listener retries a server that is down; a database that does not exist will not appear
    // by retrying: the command ends (nextest's timeout would catch a retry loop) with the cause.
    let listen = run(&["listen", "--url", &missing, "--connect-timeout", "600"]);
    assert!(!listen.status.success());
    let text = err(&listen);
    assert!(
        text.contains(&format!("database \"{db}\" does not exist")) && text.contains("3D000"),
        "{text}"
    );
    assert!(text.contains("cannot connect to"), "{text}");
    assert!(text.contains("(from --url)"), "{text}");
}

#[test]
fn a_refused_connection_says_so_without_colour_codes_on_a_pipe() {
    let listen = run(&[
        "listen",
        "--url",
        "postgres://nobody@127.0.0.1:1/none",
        "--connect-timeout",
        "1",
    ]);
    assert!(!listen.status.success());
    let text = err(&listen);
    // The WARN line of the first try and the final error; stderr is a pipe here.
    assert!(text.contains("WARN"), "{text}");
    assert!(!text.contains('\u{1b}'), "colour codes on a pipe: {text:?}");
    let list = run(&["list", "--url", "postgres://nobody@127.0.0.1:1/none"]);
    let text = err(&list);
    assert!(
        text.contains("nobody@127.0.0.1:1/none") && text.to_lowercase().contains("refused"),
        "{text}"
    );
}

#[tokio::test]
async fn libpq_variables_are_used_without_a_url() {
    let Some(url) = url() else { return };
    let config: tokio_postgres::Config = url.parse().unwrap();
    let capture = unique("mkpg_env");
    let env_of = |port: &str| {
        let mut command = bin();
        command.args(["list", "--capture-schema", &capture]);
        for (key, value) in parts(&config) {
            let var = match key {
                "host" => "PGHOST",
                "port" => "PGPORT",
                "user" => "PGUSER",
                "dbname" => "PGDATABASE",
                _ => "PGPASSWORD",
            };
            command.env(var, if key == "port" { port } else { &value });
        }
        command.output().unwrap()
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let ok = env_of(&port);
    assert!(ok.status.success(), "{}", err(&ok));
    assert!(out(&ok).contains("nothing installed"), "{}", out(&ok));
    // The variables are what it connects with: another port fails, and says which.
    let bad = env_of("1");
    assert!(!bad.status.success());
    assert!(
        err(&bad).contains(":1/") && err(&bad).contains("PG* environment variables"),
        "{}",
        err(&bad)
    );
}

#[tokio::test]
async fn migrate_creates_and_upgrades_a_store_schema_and_stats_shows_unknown_counts() {
    let Some(url) = url() else { return };
    let admin = connect(&url).await;
    let schema = unique("mkpg_migrate");
    let first = run(&["migrate", "--url", &url, "--store-schema", &schema]);
    let second = run(&["migrate", "--url", &url, "--store-schema", &schema]);
    let stats = run(&["stats", "--url", &url, "--store-schema", &schema]);
    let exact = run(&["stats", "--url", &url, "--store-schema", &schema, "--exact"]);
    let store = PgStore::builder(&url).schema(&schema).build().unwrap();
    let report = store.migrate().await;
    let lookup = store.get(&matroska_core::Key::new("k").unwrap()).await;
    store.close();
    admin
        .batch_execute(&format!("DROP SCHEMA {} CASCADE", quote(&schema)))
        .await
        .unwrap();

    assert!(first.status.success(), "{}", err(&first));
    assert!(
        out(&first).contains("applied 001_initial"),
        "{}",
        out(&first)
    );
    assert!(second.status.success(), "{}", err(&second));
    assert!(out(&second).contains("is up to date"), "{}", out(&second));
    // The store finds the schema the command made complete and usable.
    assert!(report.unwrap().applied.is_empty());
    assert!(lookup.is_ok(), "{lookup:?}");
    // Tables never analysed have no row estimate: "unknown", not 0; --exact counts.
    assert!(stats.status.success(), "{}", err(&stats));
    let entries = |o: &Output| {
        out(o)
            .lines()
            .find(|l| l.trim_start().starts_with("entries "))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    assert!(entries(&stats).contains("unknown"), "{}", out(&stats));
    assert!(exact.status.success(), "{}", err(&exact));
    let counted = entries(&exact);
    assert!(
        counted.split_whitespace().nth(1) == Some("0"),
        "{}",
        out(&exact)
    );
}

#[tokio::test]
async fn sslmode_in_the_url_or_pgsslmode_connects_over_tls() {
    let Some(url) = url() else { return };
    let admin = connect(&url).await;
    let ssl: String = admin.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    if ssl != "on" {
        assert!(!required(), "the test server has ssl = off");
        eprintln!("note: the test server has ssl = off: TLS cannot be shown");
        return;
    }
    let capture = unique("mkpg_tls");
    let require = with(&url, |p| set(p, "sslmode", "require"));
    let ok = run(&["list", "--url", &require, "--capture-schema", &capture]);
    assert!(ok.status.success(), "{}", err(&ok));
    // PGSSLMODE when the string has none; a root that signed nothing refuses the server.
    let other = std::env::temp_dir().join(format!("{}.pem", unique("other_ca")));
    std::fs::write(&other, OTHER_CA).unwrap();
    let refused = bin()
        .args(["list", "--url", &url, "--capture-schema", &capture])
        .env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", &other)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&other);
    assert!(!refused.status.success());
    assert!(err(&refused).contains("certificate"), "{}", err(&refused));
}

/// A root certificate that signed nothing the server has.
const OTHER_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBjDCCATGgAwIBAgIUVUj7iABy64ne7UQ1dVSwgLtzYu8wCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPbm90IHRoZSB0ZXN0IENBMCAXDTI2MTIwMTIwMTgyM1oYDzIx
MjYxMTA3MjAxODIzWjAaMRgwFgYDVQQDDA9ub3QgdGhlIHRlc3QgQ0EwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAARJtrtX+DEpq5rhg8hx7GF1/VRygSWFPqUoxdj7
GCQ8G70JtgYeJ0NyBInAFxkasxK70cY4PwpEHSm5rLBWCBzqo1MwUTAdBgNVHQ4E
FgQU9yqlP7PDcOWmZfcFhz9XaVItWXswHwYDVR0jBBgwFoAU9yqlP7PDcOWmZfcF
hz9XaVItWXswDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNJADBGAiEA4xWS
Ws3NTUTQa+8GiuWaP5qKx5AMbguL+/OhtiyarAECIQDjoc6sgQyhF8E4ds2d4a/+
GB0Vrm/pAbNL7Q3Z1mbVOA==
-----END CERTIFICATE-----
";
