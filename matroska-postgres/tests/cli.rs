//! The `matroska-pg` binary end to end: help, install from flags (dry run first) and from a
//! TOML file, list, listen, stats, cleanup, uninstall, and clear errors with a non-zero exit.
//!
//! Needs `MATROSKA_TEST_POSTGRES_URL` for everything but the help and the usage errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    clippy::print_stderr
)]

mod capture_support;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Output, Stdio};

use capture_support::{Env, connect, quote, url};

fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_matroska-pg"));
    command
        .env_remove("MATROSKA_PG_URL")
        .env_remove("DATABASE_URL");
    command
}

fn run(args: &[&str], url: Option<&str>) -> Output {
    let mut command = bin();
    command.args(args);
    if let Some(url) = url {
        command.env("MATROSKA_PG_URL", url);
    }
    command.output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_and_usage_errors_need_no_server() {
    let help = run(&["--help"], None);
    assert!(help.status.success());
    for command in ["install", "uninstall", "list", "listen", "cleanup", "stats"] {
        assert!(stdout(&help).contains(command), "{}", stdout(&help));
    }
    let install_help = run(&["install", "--help"], None);
    assert!(stdout(&install_help).contains("--dry-run"));
    // No database given: a clear message and a failure.
    let no_url = run(&["list"], None);
    assert!(!no_url.status.success());
    assert!(
        stderr(&no_url).contains("MATROSKA_PG_URL"),
        "{}",
        stderr(&no_url)
    );
    // A 64-byte table name is refused before connecting.
    let long = "t".repeat(64);
    let bad = run(
        &[
            "install",
            "--table",
            &long,
            "--kind",
            "k",
            "--id",
            "id",
            "--dry-run",
        ],
        Some("postgres://nobody@127.0.0.1:1/none"),
    );
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("63"), "{}", stderr(&bad));
}

#[tokio::test]
async fn install_list_listen_stats_cleanup_uninstall() {
    let Some(url) = url() else { return };
    let mut env = Env::new(&url, "cli").await;
    let store = env.store().await;
    let table = env.table("Articles");
    env.admin
        .batch_execute(&format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, category text, published boolean, title text)"
        ))
        .await
        .unwrap();
    let qualified = format!("{}.{}", quote(&env.app), quote("Articles"));
    let flags = [
        "install",
        "--table",
        qualified.as_str(),
        "--kind",
        "article",
        "--id",
        "id",
        "--scope",
        "category,published",
        "--scope",
        "published/title",
        "--channel",
        env.channel.as_str(),
        "--store-schema",
        store.schema().as_str(),
        "--capture-schema",
        env.capture.as_str(),
    ];
    let u = Some(url.as_str());

    // Dry run: the SQL, and nothing changed.
    let mut dry = flags.to_vec();
    dry.push("--dry-run");
    let out = run(&dry, u);
    assert!(out.status.success(), "{}", stderr(&out));
    let sql = stdout(&out);
    assert!(
        sql.starts_with("BEGIN;") && sql.contains("CREATE OR REPLACE TRIGGER"),
        "{sql}"
    );
    let list = run(&["list", "--capture-schema", &env.capture], u);
    assert!(
        stdout(&list).contains("nothing installed"),
        "{}",
        stdout(&list)
    );

    // Install from flags, twice.
    for _ in 0..2 {
        let out = run(&flags, u);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains("installed"), "{}", stdout(&out));
    }
    let list = run(&["list", "--capture-schema", &env.capture, "--json"], u);
    let text = stdout(&list);
    assert!(
        text.contains("\"Articles\"") && text.contains("article") && text.contains("4 ok"),
        "{text}"
    );

    // Listen: one event for one write.
    let mut child = bin()
        .args(["listen", "--channel", &env.channel, "--count", "1"])
        .env("MATROSKA_PG_URL", &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("gap: started"), "{first}");
    let writer = connect(&url).await;
    writer
        .execute(
            &format!("INSERT INTO {table} VALUES (5, 'news', true, 't')"),
            &[],
        )
        .await
        .unwrap();
    let event = lines.next().unwrap().unwrap();
    assert!(event.starts_with("tags (from pid"), "{event}");
    assert!(
        event.contains("i:article:5") && event.contains("s:article:category='news&published=true"),
        "{event}"
    );
    assert!(child.wait().unwrap().success());

    // Stats and cleanup on the store.
    let out = run(
        &[
            "stats",
            "--store-schema",
            store.schema().as_str(),
            "--capture-schema",
            &env.capture,
            "--exact",
        ],
        u,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("stamps") && stdout(&out).contains("4/4 triggers"),
        "{}",
        stdout(&out)
    );
    let out = run(&["cleanup", "--store-schema", store.schema().as_str()], u);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("expired entries removed"),
        "{}",
        stdout(&out)
    );

    // A TOML file, then uninstall (twice: the second is a no-op).
    let file = std::env::temp_dir().join(format!("{}.toml", env.channel));
    std::fs::write(
        &file,
        format!(
            "capture_schema = {:?}\nchannel = {:?}\n[[table]]\nschema = {:?}\nname = \"Articles\"\nkind = \"article\"\nid = \"id\"\n[[table.scope]]\nfields = [\"published\"]\n",
            env.capture, env.channel, env.app
        ),
    )
    .unwrap();
    let out = run(&["install", file.to_str().unwrap()], u);
    std::fs::remove_file(&file).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for expect in ["removed", "was not installed"] {
        let out = run(
            &["uninstall", &qualified, "--capture-schema", &env.capture],
            u,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains(expect), "{}", stdout(&out));
    }
    // Errors: an unknown column, named in the message, and a failure.
    let out = run(
        &[
            "install",
            "--table",
            &qualified,
            "--kind",
            "a",
            "--id",
            "ID",
            "--capture-schema",
            &env.capture,
        ],
        u,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("column \"ID\" not found"),
        "{}",
        stderr(&out)
    );
    store.close();
    env.finish().await;
}
