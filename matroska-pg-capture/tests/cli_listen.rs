//! `matroska-pg listen --json`: one JSON object per event, for an insert, an update, a delete
//! and a truncate of a table with an id, and an insert into a table captured for events only.
//!
//! Needs `MATROSKA_TEST_POSTGRES_URL`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod capture_support;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use capture_support::{Env, WAIT, connect, quote, url};

/// Kills the child if the test fails before it exits.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn matroska_pg() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_matroska-pg"));
    for var in [
        "MATROSKA_PG_URL",
        "DATABASE_URL",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
    ] {
        command.env_remove(var);
    }
    command
}

#[tokio::test]
async fn listen_json_prints_one_object_per_event() {
    let Some(url) = url() else { return };
    let env = Env::new(&url, "cljs").await;
    let articles = env.table("articles");
    let audit = env.table("audit");
    env.admin
        .batch_execute(&format!(
            "CREATE TABLE {articles} (id bigint PRIMARY KEY, title text);
             CREATE TABLE {audit} (who text, what text);"
        ))
        .await
        .unwrap();
    let qualified = |name: &str| format!("{}.{}", quote(&env.app), quote(name));
    for flags in [
        vec![
            "--table",
            &qualified("articles"),
            "--kind",
            "article",
            "--id",
            "id",
        ],
        vec![
            "--table",
            &qualified("audit"),
            "--kind",
            "audit",
            "--events-only",
        ],
    ] {
        let out = matroska_pg()
            .args(["install", "--url", &url, "--channel", &env.channel])
            .args(["--capture-schema", &env.capture])
            .args(&flags)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let mut child = KillOnDrop(
        matroska_pg()
            .args(["listen", "--json", "--count", "5", "--url", &url])
            .args(["--channel", &env.channel])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let next = || -> serde_json::Value {
        let line = rx.recv_timeout(WAIT).expect("a line within WAIT");
        eprintln!("{line}");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    };
    let started = next();
    assert_eq!(started["event"], "gap");
    assert_eq!(started["receiving"], true);

    let writer = connect(&url).await;
    for statement in [
        format!("INSERT INTO {articles} VALUES (5, 'a')"),
        format!("UPDATE {articles} SET title = 'b' WHERE id = 5"),
        format!("DELETE FROM {articles} WHERE id = 5"),
        format!("TRUNCATE {articles}"),
        format!("INSERT INTO {audit} VALUES ('me', 'login')"),
    ] {
        writer.batch_execute(&statement).await.unwrap();
    }
    let expected = [
        ("articles", "insert", vec!["i:article:5", "k:article"]),
        ("articles", "update", vec!["i:article:5", "k:article"]),
        ("articles", "delete", vec!["i:article:5", "k:article"]),
        ("articles", "truncate", vec!["a:article"]),
        ("audit", "insert", vec!["a:audit"]),
    ];
    for (table, op, tags) in expected {
        let event = next();
        assert_eq!(event["event"], "change", "{event}");
        assert_eq!(event["table"], format!("{}.{table}", env.app), "{event}");
        assert_eq!(event["op"], op, "{event}");
        assert_eq!(event["tags"], serde_json::json!(tags), "{event}");
        let sent = event["sent_at_us"].as_u64().unwrap();
        let received = event["received_at_us"].as_u64().unwrap();
        let latency = event["latency_us"].as_u64().unwrap();
        assert_eq!(received.saturating_sub(sent), latency, "{event}");
        assert!(event["sender_pid"].as_i64().unwrap() > 0, "{event}");
    }
    assert!(child.0.wait().unwrap().success());
    env.finish().await;
}
