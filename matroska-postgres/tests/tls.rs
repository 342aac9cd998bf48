//! TLS as the connection string says (`sslmode`, `sslrootcert`), through rustls, against the test
//! server: `require` encrypts; `verify-full` accepts the server's certificate with the right root
//! and host and refuses a wrong root or a wrong host name; `verify-ca` checks the root only.
//!
//! The server must have TLS on; the verifying cases need its CA certificate in
//! `MATROSKA_TEST_POSTGRES_CA` (`scripts/with-servers` makes both: a fresh CA and a certificate
//! for 127.0.0.1). Without them these cases say why they cannot run, and fail when servers are
//! required (`MATROSKA_TEST_REQUIRE_SERVERS`, `CI`).
#![cfg(feature = "rustls")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod support;

use std::fmt::Write as _;

use matroska_core::store::Store as _;
use matroska_core::{Error, Key};
use matroska_postgres::PgStore;
use matroska_postgres::tls::{TlsOptions, connector};
use support::{URL_VAR, connect, schema_name};

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

fn required() -> bool {
    ["MATROSKA_TEST_REQUIRE_SERVERS", "CI"]
        .iter()
        .any(|var| std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false"))
}

/// Says why a case cannot run; fails when servers are required.
fn cannot(why: &str) {
    assert!(!required(), "{why}");
    eprintln!("note: {why}");
}

/// The test server's URL for `host`, with `params` as its query.
fn url_with(base: &str, host: &str, params: &str) -> String {
    let config: tokio_postgres::Config = base.parse().unwrap();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap();
    let db = config.get_dbname().unwrap_or(user);
    format!("postgres://{user}@{host}:{port}/{db}?{params}")
}

/// A store on `url` (a new schema): migrates it and reads a key, so it has connected.
async fn store_works(url: &str, app: &str) -> Result<PgStore, Error> {
    let mut config = PgStore::builder(url)
        .schema(schema_name("tls"))
        .pool_size(1)
        .auth_attempts(1);
    app.clone_into(&mut config.application_name);
    let store = config.build()?;
    store.migrate().await?;
    store.get(&Key::new("k").unwrap()).await?;
    Ok(store)
}

/// How many connections named `app` use TLS, and how many there are.
async fn ssl_connections(admin: &tokio_postgres::Client, app: &str) -> (i64, i64) {
    let row = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*)
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
             WHERE a.application_name = $1",
            &[&app],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

async fn drop_schema(admin: &tokio_postgres::Client, store: &PgStore) {
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            store.schema().quoted()
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn sslmode_require_connects_a_store_over_tls() {
    let Some(url) = matroska_testkit::server_url(URL_VAR) else {
        return;
    };
    let admin = connect(&url).await;
    let ssl: String = admin.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    if ssl != "on" {
        return cannot("the test server has ssl = off; use ./scripts/test (its server has TLS)");
    }
    let app = schema_name("tls_require");
    let store = store_works(&url_with(&url, "127.0.0.1", "sslmode=require"), &app)
        .await
        .unwrap();
    let (ssl, all) = ssl_connections(&admin, &app).await;
    assert!(all >= 1 && ssl == all, "{ssl} of {all} connections use TLS");
    drop_schema(&admin, &store).await;
    store.close();

    // The connector alone, for a plain client.
    let (rest, options) =
        TlsOptions::split(&url_with(&url, "127.0.0.1", "sslmode=require")).unwrap();
    let mut config: tokio_postgres::Config = rest.parse().unwrap();
    config.ssl_mode(options.mode.driver_mode());
    let (client, connection) = config.connect(connector(&options).unwrap()).await.unwrap();
    tokio::spawn(connection);
    let on: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(on);
}

#[tokio::test]
async fn verify_full_checks_the_root_and_the_host_and_verify_ca_the_root() {
    let Some(url) = matroska_testkit::server_url(URL_VAR) else {
        return;
    };
    let Ok(ca) = std::env::var("MATROSKA_TEST_POSTGRES_CA") else {
        return cannot(
            "MATROSKA_TEST_POSTGRES_CA is not set, so a certificate cannot be verified; use \
             ./scripts/test (its server has a certificate from a test CA)",
        );
    };
    let admin = connect(&url).await;
    let ca = urlencode(&ca);
    let other = std::env::temp_dir().join(format!("{}.pem", schema_name("other_ca")));
    std::fs::write(&other, OTHER_CA).unwrap();
    let other_ca = urlencode(&other.display().to_string());

    // The right root, the host the certificate is for (IP 127.0.0.1).
    let app = schema_name("tls_full");
    let store = store_works(
        &url_with(
            &url,
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        &app,
    )
    .await
    .unwrap();
    let (ssl, all) = ssl_connections(&admin, &app).await;
    assert!(all >= 1 && ssl == all, "{ssl} of {all} connections use TLS");
    drop_schema(&admin, &store).await;
    store.close();

    // A root that did not sign it.
    let error = store_works(
        &url_with(
            &url,
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={other_ca}"),
        ),
        "tls",
    )
    .await
    .unwrap_err();
    let text = chain(&error);
    assert!(
        text.contains("UnknownIssuer") || text.contains("certificate"),
        "{text}"
    );

    // A name it was not issued for: verify-full refuses, verify-ca accepts.
    let error = store_works(
        &url_with(
            &url,
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        "tls",
    )
    .await
    .unwrap_err();
    let text = chain(&error);
    assert!(text.contains("NotValidForName"), "{text}");
    let store = store_works(
        &url_with(
            &url,
            "localhost",
            &format!("sslmode=verify-ca&sslrootcert={ca}"),
        ),
        "tls",
    )
    .await
    .unwrap();
    drop_schema(&admin, &store).await;
    store.close();
    let _ = std::fs::remove_file(other);
}

#[test]
fn verifying_without_a_root_or_an_unknown_mode_is_a_clear_error() {
    let error = PgStore::builder("postgres://u@h/d?sslmode=verify-full")
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("sslrootcert"), "{error}");
    let error = PgStore::builder("host=h user=u sslmode=verify_full")
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("verify-full"), "{error}");
    let error = PgStore::builder("postgres://u@h/d?sslmode=verify-ca&sslrootcert=/nonexistent.pem")
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("/nonexistent.pem"), "{error}");
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = format!("{error}");
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause} ({cause:?})");
        source = cause.source();
    }
    text
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
