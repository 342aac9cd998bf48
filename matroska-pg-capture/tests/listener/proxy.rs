//! Through a TCP proxy: a half-open connection (the proxy stops forwarding) caught by the
//! heartbeat, and the gap reported only once `LISTEN` is active (over a slow link).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use matroska_pg_capture::listener::{GapReason, ListenerConfig};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::support::{URL_VAR, connect};
use super::{WAIT, channel, gap_of, next, notify, tags_of, url};

/// A TCP proxy whose connections can be frozen: bytes stop flowing both ways while the sockets
/// stay open, as on a network partition without a reset. New connections work normally. It can
/// also delay everything the client sends (a slow link).
struct Proxy {
    addr: SocketAddr,
    connections: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr, delay_up: Duration) -> Self {
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let connections: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let registry = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = socket.accept().await {
                let Ok(outbound) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let frozen = Arc::new(AtomicBool::new(false));
                registry.lock().push(Arc::clone(&frozen));
                let (in_read, in_write) = inbound.into_split();
                let (out_read, out_write) = outbound.into_split();
                tokio::spawn(pipe(in_read, out_write, Arc::clone(&frozen), delay_up));
                tokio::spawn(pipe(out_read, in_write, frozen, Duration::ZERO));
            }
        });
        Self { addr, connections }
    }

    fn freeze_all(&self) {
        for frozen in self.connections.lock().iter() {
            frozen.store(true, Ordering::SeqCst);
        }
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
    delay: Duration,
) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let Ok(n) = from.read(&mut buffer).await else {
            return;
        };
        if n == 0 {
            return;
        }
        if frozen.load(Ordering::SeqCst) {
            // Swallow everything, keep both sockets open: a half-open connection.
            let _keep = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        tokio::time::sleep(delay).await;
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// Whether servers are required (`MATROSKA_TEST_REQUIRE_SERVERS` or `CI` set, as
/// `matroska_testkit::server_url` reads them): then nothing may skip.
fn servers_required() -> bool {
    ["MATROSKA_TEST_REQUIRE_SERVERS", "CI"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|x| !x.is_empty() && x != "0" && x != "false"))
}

/// A proxy in front of the test server, and a connection config that goes through it; `None`
/// (skipped) when the server is not reached over TCP, unless servers are required: then the
/// test fails, since these tests are the only ones of a half-open connection and of the gap's
/// order.
async fn proxied(url: &str, delay_up: Duration) -> Option<(Proxy, tokio_postgres::Config)> {
    let config: tokio_postgres::Config = url.parse().unwrap();
    let (Some(tokio_postgres::config::Host::Tcp(host)), Some(port)) =
        (config.get_hosts().first(), config.get_ports().first())
    else {
        assert!(
            !servers_required(),
            "{URL_VAR} does not reach the server over TCP, so the proxy tests cannot run, and \
             servers are required (MATROSKA_TEST_REQUIRE_SERVERS or CI is set): give a TCP URL"
        );
        eprintln!("skipped: the test server is not reached over TCP");
        return None;
    };
    let upstream = tokio::net::lookup_host((host.as_str(), *port))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Proxy::start(upstream, delay_up).await;
    let mut through = tokio_postgres::Config::new();
    through
        .host("127.0.0.1")
        .port(proxy.addr.port())
        .user(config.get_user().unwrap_or("postgres"))
        .dbname(config.get_dbname().unwrap_or("postgres"));
    if let Some(password) = config.get_password() {
        through.password(password);
    }
    Some((proxy, through))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_detects_a_half_open_connection() {
    let Some(url) = url() else { return };
    let Some((proxy, through)) = proxied(&url, Duration::ZERO).await else {
        return;
    };
    let channel = channel("lst_halfopen");
    // A heartbeat every second, 2 s to answer: a loaded machine does not time it out by itself.
    let listener = ListenerConfig::new(through)
        .channel(&channel)
        .watch_kinds(["article"])
        .heartbeat(Duration::from_secs(1), Duration::from_secs(2))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .start()
        .unwrap();
    listener.wait_connected(WAIT).await.unwrap();
    let mut events = listener.subscribe();
    assert!(matches!(
        gap_of(next(&mut events).await),
        GapReason::Started
    ));

    // Waits for the disconnect the heartbeat reports, not for a time: should the connection
    // drop for another reason first, the new one is frozen too.
    proxy.freeze_all();
    loop {
        match gap_of(next(&mut events).await) {
            GapReason::Disconnected { error } if error.to_string().contains("heartbeat") => break,
            GapReason::Disconnected { .. } | GapReason::Reconnected { .. } => proxy.freeze_all(),
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        gap_of(next(&mut events).await),
        GapReason::Reconnected { .. }
    ));
    let writer = connect(&url).await;
    notify(&writer, &channel, &["i:article:1"]).await;
    assert_eq!(tags_of(&next(&mut events).await), ["i:article:1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_is_reported_only_once_listen_is_active() {
    // Over a link that delays what the listener sends by 300 ms, a commit made the moment the
    // gap is reported would be lost if the gap came before LISTEN took effect.
    let Some(url) = url() else { return };
    let Some((_proxy, through)) = proxied(&url, Duration::from_millis(300)).await else {
        return;
    };
    let channel = channel("lst_order");
    let listener = ListenerConfig::new(through)
        .channel(&channel)
        .watch_kinds(["article"])
        .connect_timeout(WAIT)
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .start()
        .unwrap();
    let mut events = listener.subscribe();
    let writer = connect(&url).await;
    assert!(matches!(
        gap_of(next(&mut events).await),
        GapReason::Started
    ));
    notify(&writer, &channel, &["i:article:1"]).await;
    assert_eq!(tags_of(&next(&mut events).await), ["i:article:1"]);

    // The same after a reconnection.
    writer
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&listener.application_name()],
        )
        .await
        .unwrap();
    assert!(matches!(
        gap_of(next(&mut events).await),
        GapReason::Disconnected { .. }
    ));
    assert!(matches!(
        gap_of(next(&mut events).await),
        GapReason::Reconnected { .. }
    ));
    notify(&writer, &channel, &["i:article:2"]).await;
    assert_eq!(tags_of(&next(&mut events).await), ["i:article:2"]);
}
