//! The change-capture listener against a real server: events sent with plain `pg_notify` (as the
//! triggers will), applied to a MemoryStore, a RedisStore (when `MATROSKA_TEST_REDIS_URL` is set)
//! and a remote PgStore; rollback, broadcast, `pg_terminate_backend`, a half-open connection
//! (through a proxy that stops forwarding), bad payloads, a lagging subscriber, shutdown.
//!
//! Needs `MATROSKA_TEST_POSTGRES_URL` (run `./scripts/test`, which starts private servers). Each
//! test uses its own channel, so they run in parallel.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    clippy::print_stderr
)]

// The store crate's test support (schemas, stores): shared, not copied.
#[path = "../../../matroska-postgres/tests/support/mod.rs"]
mod support;

mod proxy;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use matroska_core::store::{Lookup, Store};
use matroska_core::{Bytes, Key, MemoryStore, Tag};
use matroska_pg_capture::listener::{
    Applied, Event, GapReason, Listener, ListenerConfig, PayloadError, Strategy, Subscription,
    encode_payload,
};
use matroska_postgres::{Credential, credential_fn};
use matroska_testkit::support::eventually;
use support::{Schemas, URL_VAR, connect, schema_name};
use tokio::sync::mpsc;

/// How long any one expected thing may take.
const WAIT: Duration = Duration::from_secs(10);

fn url() -> Option<String> {
    matroska_testkit::server_url(URL_VAR)
}

fn channel(prefix: &str) -> String {
    schema_name(prefix)
}

/// A listener with quick reconnects, on `channel`, watching `article`.
fn listener(url: &str, channel: &str) -> ListenerConfig {
    Listener::builder(url)
        .channel(channel)
        .watch_kinds(["article"])
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(500))
}

fn tag(text: &str) -> Tag {
    Tag::parse(text).unwrap()
}

fn key(text: &str) -> Key {
    Key::new(text).unwrap()
}

async fn put<S: Store + ?Sized>(store: &S, k: &str, tags: &[&str]) {
    let tags: Vec<Tag> = tags.iter().map(|t| tag(t)).collect();
    store
        .put(&key(k), Bytes::from_static(b"v"), &tags, None, None)
        .await
        .unwrap();
}

async fn has<S: Store + ?Sized>(store: &S, k: &str) -> bool {
    matches!(store.get(&key(k)).await.unwrap(), Lookup::Hit(_))
}

/// Sends `tags` on `channel` in a transaction of its own.
async fn notify(client: &tokio_postgres::Client, channel: &str, tags: &[&str]) {
    let tags: Vec<Tag> = tags.iter().map(|t| tag(t)).collect();
    notify_raw(client, channel, &encode_payload(&tags)).await;
}

async fn notify_raw(client: &tokio_postgres::Client, channel: &str, payload: &str) {
    client
        .execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
        .await
        .unwrap();
}

async fn next(subscription: &mut Subscription) -> Event {
    tokio::time::timeout(WAIT, subscription.recv())
        .await
        .expect("no event in time")
        .expect("the listener shut down")
}

fn tags_of(event: &Event) -> Vec<String> {
    match event {
        Event::Tags(batch) => batch.tags().iter().map(ToString::to_string).collect(),
        other => panic!("expected tags, got {other:?}"),
    }
}

fn gap_of(event: Event) -> GapReason {
    match event {
        Event::Gap(gap) => gap.reason().clone(),
        other => panic!("expected a gap, got {other:?}"),
    }
}

/// Collects what an applier reports.
#[derive(Clone)]
struct Probe {
    gaps: mpsc::UnboundedSender<GapReason>,
    applied: mpsc::UnboundedSender<Applied>,
}

fn probe() -> (
    Probe,
    mpsc::UnboundedReceiver<GapReason>,
    mpsc::UnboundedReceiver<Applied>,
) {
    let (gaps, gaps_rx) = mpsc::unbounded_channel();
    let (applied, applied_rx) = mpsc::unbounded_channel();
    (Probe { gaps, applied }, gaps_rx, applied_rx)
}

impl Probe {
    fn attach<S: Store>(
        &self,
        applier: matroska_pg_capture::listener::Applier<S>,
    ) -> matroska_pg_capture::listener::Applier<S> {
        let gaps = self.gaps.clone();
        let applied = self.applied.clone();
        applier
            .on_gap(move |gap| {
                let _ = gaps.send(gap.reason().clone());
            })
            .on_applied(move |a| {
                let _ = applied.send(a.clone());
            })
    }
}

async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no {what} in time"))
        .expect("channel closed")
}

/// Waits for an apply that included `tag`.
async fn applied(rx: &mut mpsc::UnboundedReceiver<Applied>, tag: &str) {
    loop {
        let applied = recv(rx, "apply").await;
        if applied.tags.iter().any(|t| t.as_str() == tag) {
            return;
        }
    }
}

/// Applies to `store` and checks: ids and scopes go, other kinds stay.
async fn applies_to<S: Store + Clone>(url: &str, store: S) {
    let channel = channel("lst_apply");
    let listener = listener(url, &channel).start().unwrap();
    let (probe, mut gaps, mut applies) = probe();
    let _applier = probe
        .attach(listener.applier(store.clone()))
        .spawn()
        .unwrap();
    listener.wait_connected(WAIT).await.unwrap();
    // The start is a gap: the watched kind is invalidated once receiving.
    assert!(matches!(recv(&mut gaps, "gap").await, GapReason::Started));
    applied(&mut applies, "a:article").await;

    put(&store, "article:1", &["i:article:1", "a:article"]).await;
    put(
        &store,
        "news",
        &["s:article:category='news&published=true", "a:article"],
    )
    .await;
    put(&store, "article:2", &["i:article:2", "a:article"]).await;
    put(&store, "author:7", &["i:author:7", "a:author"]).await;
    let writer = connect(url).await;
    notify(
        &writer,
        &channel,
        &["i:article:1", "s:article:category='news&published=true"],
    )
    .await;
    applied(&mut applies, "i:article:1").await;
    assert!(!has(&store, "article:1").await);
    assert!(!has(&store, "news").await);
    assert!(has(&store, "article:2").await);
    assert!(has(&store, "author:7").await);
    // A degraded, kind-wide payload is an ordinary tag.
    notify(&writer, &channel, &["a:author"]).await;
    applied(&mut applies, "a:author").await;
    assert!(!has(&store, "author:7").await);
    assert!(has(&store, "article:2").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_are_applied_to_a_memory_store() {
    let Some(url) = url() else { return };
    applies_to(&url, MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_are_applied_to_a_redis_store() {
    let Some(url) = url() else { return };
    let Some(redis) = matroska_testkit::server_url("MATROSKA_TEST_REDIS_URL") else {
        return;
    };
    let store = matroska_redis::RedisStore::builder(redis.as_str())
        .prefix(schema_name("lst"))
        .build()
        .await
        .unwrap();
    // On a task of its own, so that the namespace is removed even when a check fails.
    let applied = tokio::spawn({
        let store = store.clone();
        async move { applies_to(&url, store).await }
    })
    .await;
    store.remove_namespace().await.unwrap();
    if let Err(failed) = applied {
        std::panic::resume_unwind(failed.into_panic());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_are_applied_to_a_remote_pg_store() {
    let Some(url) = url() else { return };
    let schemas = Schemas::new(&url).await;
    let store = schemas.store("lst").await;
    applies_to(&url, store).await;
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_transaction_sends_nothing() {
    let Some(url) = url() else { return };
    let channel = channel("lst_rollback");
    let listener = listener(&url, &channel).start().unwrap();
    let mut events = listener.subscribe();
    assert!(matches!(
        gap_of(next(&mut events).await),
        GapReason::Started
    ));
    let mut writer = connect(&url).await;
    let tx = writer.transaction().await.unwrap();
    let payload = encode_payload(&[tag("i:article:1")]);
    tx.execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    notify(&writer, &channel, &["i:article:2"]).await;
    // Notifications arrive in commit order: had the rolled-back one been sent, it would be first.
    assert_eq!(tags_of(&next(&mut events).await), ["i:article:2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_consumers_each_get_every_event() {
    let Some(url) = url() else { return };
    let channel = channel("lst_broadcast");
    let listener = listener(&url, &channel).start().unwrap();
    let mut a = listener.subscribe();
    let mut b = listener.subscribe();
    let (one, two) = (MemoryStore::new(), MemoryStore::new());
    let (probe_one, _, mut applied_one) = probe();
    let (probe_two, _, mut applied_two) = probe();
    let _one = probe_one
        .attach(listener.applier(one.clone()))
        .spawn()
        .unwrap();
    let _two = probe_two
        .attach(listener.applier(two.clone()))
        .spawn()
        .unwrap();
    listener.wait_connected(WAIT).await.unwrap();
    for subscription in [&mut a, &mut b] {
        assert!(matches!(
            gap_of(next(subscription).await),
            GapReason::Started
        ));
    }
    applied(&mut applied_one, "a:article").await;
    applied(&mut applied_two, "a:article").await;
    put(&one, "shared", &["i:article:5"]).await;
    put(&two, "shared", &["i:article:5"]).await;

    let writer = connect(&url).await;
    for n in 0..20 {
        notify(&writer, &channel, &[&format!("i:article:{n}")]).await;
    }
    for subscription in [&mut a, &mut b] {
        for n in 0..20 {
            assert_eq!(
                tags_of(&next(subscription).await),
                [format!("i:article:{n}")]
            );
        }
    }
    applied(&mut applied_one, "i:article:19").await;
    applied(&mut applied_two, "i:article:19").await;
    assert!(!has(&one, "shared").await && !has(&two, "shared").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_backend_reconnects_reports_the_gap_and_keeps_applying() {
    let Some(url) = url() else { return };
    let channel = channel("lst_terminate");
    let listener = listener(&url, &channel).start().unwrap();
    let store = MemoryStore::new();
    let (probe, mut gaps, mut applies) = probe();
    let _applier = probe
        .attach(listener.applier(store.clone()))
        .spawn()
        .unwrap();
    listener.wait_connected(WAIT).await.unwrap();
    assert!(matches!(recv(&mut gaps, "gap").await, GapReason::Started));
    let first_pid = listener.status().backend_pid.unwrap();

    put(&store, "article", &["i:article:1", "a:article"]).await;
    put(&store, "author", &["i:author:1", "a:author"]).await;
    let admin = connect(&url).await;
    let killed: i64 = admin
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1) AS t",
            &[&listener.application_name()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        killed, 1,
        "the listener's backend is found by its application_name"
    );

    assert!(matches!(
        recv(&mut gaps, "gap").await,
        GapReason::Disconnected { .. }
    ));
    assert!(matches!(
        recv(&mut gaps, "gap").await,
        GapReason::Reconnected { .. }
    ));
    eventually(WAIT, "the gap invalidated the watched kind", || async {
        !has(&store, "article").await
    })
    .await;
    assert!(has(&store, "author").await, "only the watched kind goes");
    let status = listener.status();
    assert!(status.connected);
    assert_eq!(status.connections, 2);
    assert_ne!(status.backend_pid, Some(first_pid));

    // And it keeps applying.
    put(&store, "later", &["i:article:2"]).await;
    notify(&admin, &channel, &["i:article:2"]).await;
    applied(&mut applies, "i:article:2").await;
    assert!(!has(&store, "later").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_payloads_are_gaps() {
    let Some(url) = url() else { return };
    let channel = channel("lst_payload");
    let listener = listener(&url, &channel).start().unwrap();
    listener.wait_connected(WAIT).await.unwrap();
    let mut events = listener.subscribe();
    assert!(matches!(
        gap_of(next(&mut events).await),
        GapReason::Started
    ));
    let writer = connect(&url).await;

    notify_raw(&writer, &channel, "not json").await;
    assert!(matches!(
        gap_of(next(&mut events).await),
        GapReason::BadPayload {
            error: PayloadError::NotJson(_)
        }
    ));
    notify_raw(&writer, &channel, r#"{"v":2,"tags":["i:article:1"]}"#).await;
    assert!(matches!(
        gap_of(next(&mut events).await),
        GapReason::BadPayload {
            error: PayloadError::UnknownVersion { version: 2 }
        }
    ));
    notify_raw(
        &writer,
        &channel,
        r#"{"v":1,"tags":["i:article:1","bogus"]}"#,
    )
    .await;
    assert_eq!(tags_of(&next(&mut events).await), ["i:article:1"]);
    assert!(matches!(
        gap_of(next(&mut events).await),
        GapReason::BadPayload {
            error: PayloadError::BadTags { count: 1, .. }
        }
    ));
    notify(&writer, &channel, &["i:article:2"]).await;
    assert_eq!(tags_of(&next(&mut events).await), ["i:article:2"]);
    assert_eq!(listener.status().bad_payloads, 3);
    assert!(
        listener.status().connected,
        "a bad payload does not cost the connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_subscriber_gets_a_gap() {
    let Some(url) = url() else { return };
    let channel = channel("lst_lag");
    let listener = listener(&url, &channel).buffer(4).start().unwrap();
    listener.wait_connected(WAIT).await.unwrap();
    let mut slow = listener.subscribe();
    let mut writer = connect(&url).await;
    let tx = writer.transaction().await.unwrap();
    for n in 0..12 {
        let payload = encode_payload(&[tag(&format!("i:article:{n}"))]);
        tx.execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    eventually(WAIT, "all notifications received", || async {
        listener.status().notifications >= 12
    })
    .await;
    assert!(matches!(gap_of(next(&mut slow).await), GapReason::Started));
    assert!(matches!(
        gap_of(next(&mut slow).await),
        GapReason::Lagged { missed: 8 }
    ));
    for n in 8..12 {
        assert_eq!(tags_of(&next(&mut slow).await), [format!("i:article:{n}")]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_channel_name_is_quoted_exactly() {
    let Some(url) = url() else { return };
    let channel = format!("Mixed \"Case\" {}", channel("ch"));
    let listener = listener(&url, &channel).start().unwrap();
    listener.wait_connected(WAIT).await.unwrap();
    let mut events = listener.subscribe();
    assert!(matches!(
        gap_of(next(&mut events).await),
        GapReason::Started
    ));
    let writer = connect(&url).await;
    // What an unquoted LISTEN would have listened to instead.
    notify(&writer, &channel.to_lowercase(), &["i:article:1"]).await;
    notify(&writer, &channel, &["i:article:2"]).await;
    assert_eq!(tags_of(&next(&mut events).await), ["i:article:2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_come_from_the_provider() {
    let Some(url) = url() else { return };
    let calls = Arc::new(AtomicUsize::new(0));
    let provider = {
        let calls = Arc::clone(&calls);
        let password = url
            .parse::<tokio_postgres::Config>()
            .ok()
            .and_then(|c| {
                c.get_password()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
            })
            .unwrap_or_default();
        credential_fn(move || {
            calls.fetch_add(1, Ordering::SeqCst);
            let password = password.clone();
            async move { Ok(Credential::new(password)) }
        })
    };
    let listener = listener(&url, &channel("lst_cred"))
        .credentials(provider)
        .start()
        .unwrap();
    listener.wait_connected(WAIT).await.unwrap();
    assert!(calls.load(Ordering::SeqCst) >= 1);
}

/// A listener made from a store's configuration connects the way the store does, TLS included:
/// with `sslmode=require` in the store's URL, the listener's connection is encrypted too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_from_a_store_config_uses_the_stores_tls() {
    let Some(url) = url() else { return };
    let admin = connect(&url).await;
    let ssl: String = admin.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    if ssl != "on" {
        let required = ["MATROSKA_TEST_REQUIRE_SERVERS", "CI"]
            .iter()
            .any(|var| std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false"));
        assert!(
            !required,
            "the test server has ssl = off: TLS cannot be shown"
        );
        eprintln!("note: the test server has ssl = off: TLS cannot be shown");
        return;
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    let store = matroska_postgres::PgStore::builder(&format!("{url}{separator}sslmode=require"));
    let name = channel("lst_tls");
    let listener = ListenerConfig::from_store_config(&store)
        .channel(&name)
        .application_name(&name)
        .start()
        .unwrap();
    listener.wait_connected(WAIT).await.unwrap();
    let encrypted: bool = admin
        .query_one(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted, "the listener's connection does not use TLS");
    listener.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_subscriptions_appliers_and_the_connection() {
    let Some(url) = url() else { return };
    let listener = listener(&url, &channel("lst_shutdown")).start().unwrap();
    let mut events = listener.subscribe();
    let applier = listener
        .apply(MemoryStore::new(), Strategy::Immediate)
        .unwrap();
    listener.wait_connected(WAIT).await.unwrap();
    let name = listener.application_name().to_owned();
    listener.shutdown().await;
    assert!(!listener.status().running);
    while let Some(event) = tokio::time::timeout(WAIT, events.recv()).await.unwrap() {
        assert!(matches!(event, Event::Gap(_)), "{event:?}");
    }
    eventually(WAIT, "the applier stopped", || async {
        applier.is_finished()
    })
    .await;
    let admin = connect(&url).await;
    eventually(WAIT, "the backend is gone", || async {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        n == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_connected_reports_why_it_cannot_connect() {
    // No server needed: nothing listens on port 1.
    let listener = Listener::builder("postgres://postgres@127.0.0.1:1/postgres")
        .connect_timeout(Duration::from_millis(500))
        .start()
        .unwrap();
    let err = listener
        .wait_connected(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    eventually(WAIT, "the error is recorded", || async {
        listener.status().last_error.is_some()
    })
    .await;
    assert!(!listener.status().connected);
}

/// Review L8 against the server: an applier whose strategy holds tags back (one apply an hour)
/// and whose backlog (at most 3 tags) overflows with free `g:` tags that cannot collapse to a
/// kind, under `GapAction::Nothing`: the store is cleared at once, so no invalidation is lost,
/// and the overflow is reported as a `Backlog` gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_overflow_clears_the_store_instead_of_dropping_tags() {
    let Some(url) = url() else { return };
    let channel = channel("lst_backlog");
    let listener = listener(&url, &channel).start().unwrap();
    let store = MemoryStore::new();
    let (probe, mut gaps, mut applies) = probe();
    let _applier = probe
        .attach(
            listener
                .applier(store.clone())
                .strategy(Strategy::RateLimited {
                    interval: Duration::from_secs(3600),
                })
                .gap_action(matroska_pg_capture::listener::GapAction::Nothing)
                .max_pending_tags(3),
        )
        .spawn()
        .unwrap();
    listener.wait_connected(WAIT).await.unwrap();
    assert!(matches!(recv(&mut gaps, "gap").await, GapReason::Started));
    let writer = connect(&url).await;
    // The leading edge: applied at once; everything after waits for the hour.
    notify(&writer, &channel, &["g:first"]).await;
    applied(&mut applies, "g:first").await;
    let tags: Vec<String> = (0..10).map(|n| format!("g:signal{n}")).collect();
    for (n, tag) in tags.iter().enumerate() {
        put(&store, &format!("free{n}"), &[tag]).await;
    }
    put(&store, "bystander", &["i:author:1"]).await;
    assert!(has(&store, "free0").await && has(&store, "bystander").await);
    let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    notify(&writer, &channel, &refs).await;
    assert!(
        matches!(
            recv(&mut gaps, "backlog gap").await,
            GapReason::Backlog { pending_tags: 10 }
        ),
        "the overflow is reported"
    );
    let cleared = recv(&mut applies, "the clear").await;
    assert!(cleared.cleared, "{cleared:?}");
    for n in 0..10 {
        assert!(!has(&store, &format!("free{n}")).await, "free{n} survived");
    }
    assert!(!has(&store, "bystander").await, "a clear takes everything");
}
