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
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;

use capture_support::{Env, WAIT, connect, quote, url};

fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_matroska-pg"));
    command
        .env_remove("MATROSKA_PG_URL")
        .env_remove("DATABASE_URL");
    for var in ["PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"] {
        command.env_remove(var);
    }
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

/// The lines of a child's stdout, read on a thread of their own so that a wait can time out.
struct Lines(mpsc::Receiver<std::io::Result<String>>);

impl Lines {
    fn of(child: &mut Child) -> Self {
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self(rx)
    }

    /// The next line, within [`WAIT`].
    fn next(&self, what: &str) -> String {
        match self.0.recv_timeout(WAIT) {
            Ok(line) => line.unwrap(),
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("no {what} within {WAIT:?}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("stdout closed before {what}"),
        }
    }
}

/// Kills the child if the test fails before it exits.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
    for command in [
        "install",
        "uninstall",
        "list",
        "listen",
        "migrate",
        "cleanup",
        "stats",
    ] {
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
    let mut child = KillOnDrop(
        bin()
            .args(["listen", "--channel", &env.channel, "--count", "1"])
            .env("MATROSKA_PG_URL", &url)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let lines = Lines::of(&mut child.0);
    let first = lines.next("the start gap");
    assert!(first.starts_with("gap: started"), "{first}");
    let writer = connect(&url).await;
    writer
        .execute(
            &format!("INSERT INTO {table} VALUES (5, 'news', true, 't')"),
            &[],
        )
        .await
        .unwrap();
    let event = lines.next("the insert's tags");
    assert!(event.starts_with("insert "), "{event}");
    assert!(event.contains("\"Articles\" (from pid"), "{event}");
    assert!(
        event.contains("i:article:5") && event.contains("s:article:category='news&published=true"),
        "{event}"
    );
    assert!(child.0.wait().unwrap().success());

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

/// `matroska-pg list` flags what install could not watch (defect 7): a partition created since
/// install (no triggers: writes made to it directly are not captured), a trigger disabled with
/// `ALTER TABLE ... DISABLE TRIGGER`, and a captured column renamed; a healthy table still reads
/// "4 ok". `--check` makes any of it a failure, for monitoring.
#[tokio::test]
async fn list_flags_a_new_partition_a_disabled_trigger_and_a_renamed_column() {
    let Some(url) = url() else { return };
    let env = Env::new(&url, "cli_health").await;
    let (parts, articles, healthy) = (
        env.table("parts"),
        env.table("articles"),
        env.table("healthy"),
    );
    env.admin
        .batch_execute(&format!(
            "CREATE TABLE {parts} (id bigint, region text, title text) PARTITION BY LIST (region);
             CREATE TABLE {} PARTITION OF {parts} FOR VALUES IN ('eu');
             CREATE TABLE {articles} (id bigint, category text, title text);
             CREATE TABLE {healthy} (id bigint, category text);",
            env.table("parts_eu")
        ))
        .await
        .unwrap();
    let u = Some(url.as_str());
    for (table, scope) in [
        ("parts", "title"),
        ("articles", "category"),
        ("healthy", "category"),
    ] {
        let qualified = format!("{}.{}", quote(&env.app), quote(table));
        let out = run(
            &[
                "install",
                "--table",
                &qualified,
                "--kind",
                table,
                "--id",
                "id",
                "--scope",
                scope,
                "--channel",
                &env.channel,
                "--capture-schema",
                &env.capture,
            ],
            u,
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let list = run(&["list", "--capture-schema", &env.capture, "--check"], u);
    assert!(list.status.success(), "{}{}", stdout(&list), stderr(&list));
    assert!(!stdout(&list).contains("INCOMPLETE"), "{}", stdout(&list));

    let trigger = format!("{}_upd", env.capture);
    env.admin
        .batch_execute(&format!(
            "CREATE TABLE {} PARTITION OF {parts} FOR VALUES IN ('ap');
             ALTER TABLE {parts} DISABLE TRIGGER {trigger};
             ALTER TABLE {articles} RENAME COLUMN category TO cat;",
            env.table("parts_ap"),
            trigger = quote(&trigger),
        ))
        .await
        .unwrap();
    let list = run(&["list", "--capture-schema", &env.capture], u);
    let text = stdout(&list);
    assert!(list.status.success(), "{}", stderr(&list));
    for expected in ["INCOMPLETE", "parts_ap", "disabled", "renamed to \"cat\""] {
        assert!(
            text.contains(expected),
            "no {expected:?} in the list:\n{text}"
        );
    }
    let healthy_line = text.lines().find(|l| l.contains("\"healthy\"")).unwrap();
    assert!(healthy_line.contains("4 ok"), "{text}");
    let check = run(&["list", "--capture-schema", &env.capture, "--check"], u);
    assert!(
        !check.status.success(),
        "--check fails on incomplete capture"
    );
    assert!(stderr(&check).contains("2 table(s)"), "{}", stderr(&check));
    env.finish().await;
}
