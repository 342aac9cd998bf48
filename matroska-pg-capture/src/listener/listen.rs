//! [`Listener`]: one dedicated connection that `LISTEN`s, reconnects, and broadcasts events.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt as _};
use matroska_core::{Error, Result, Store, Tag};
use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_postgres::Notification;

use super::apply::Applier;
use super::config::{ListenerConfig, Settings};
use super::event::{Event, Gap, GapReason, TagBatch};
use super::payload::parse_payload;
use super::strategy::Strategy;
use matroska_postgres::__private::STORE;

/// A connection that lasted this long resets the reconnection back-off.
pub(super) const STABLE_AFTER: Duration = Duration::from_secs(1);

/// Receives the tags committed transactions send on a channel, on its own PostgreSQL connection,
/// and broadcasts them to every [`Subscription`]; apply them to any store with
/// [`Listener::apply`].
///
/// It connects in the background, `LISTEN`s, checks the connection with a heartbeat, and
/// reconnects with capped, jittered back-off when it is lost. Each time receiving (re)starts it
/// reports a [`Gap`] *after* its `LISTEN` is active, so that invalidating what the gap may have
/// hidden cannot miss a commit. It runs until [`shutdown`](Self::shutdown) or until the last
/// clone of the handle is dropped; subscriptions then end.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use matroska_core::MemoryStore;
/// use matroska_pg_capture::listener::{Listener, Strategy};
///
/// # async fn demo() -> matroska_core::Result<()> {
/// let listener = Listener::builder("postgres://app@localhost/app")
///     .watch_kinds(["article", "author"])
///     .start()?;
/// let local = MemoryStore::new();
/// let _applier = listener.apply(local.clone(), Strategy::Immediate)?;
/// listener.wait_connected(Duration::from_secs(5)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "the listener stops when the last handle is dropped"]
pub struct Listener {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("channel", &self.inner.shared.channel)
            .field("application_name", &self.inner.shared.application_name)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// What a [`Listener`] is doing, from [`Listener::status`].
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> matroska_core::Result<()> {
/// let listener = matroska_pg_capture::listener::Listener::builder("postgres://localhost/db").start()?;
/// let status = listener.status();
/// if !status.connected {
///     eprintln!("not listening: {:?}", status.last_error);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ListenerStatus {
    /// Whether `LISTEN` is active on a live connection.
    pub connected: bool,
    /// The process id of the listener's current backend (`pg_backend_pid()`), while connected.
    pub backend_pid: Option<i32>,
    /// How many connections reached `LISTEN` so far.
    pub connections: u64,
    /// How many notifications arrived on the channel.
    pub notifications: u64,
    /// How many of them could not be read (each reported as a gap).
    pub bad_payloads: u64,
    /// The last connection error, if any.
    pub last_error: Option<Error>,
    /// False once the listener has shut down.
    pub running: bool,
}

/// What the background task and the handles share.
pub(crate) struct Shared {
    /// The task holds the only strong sender, so that subscriptions end when it does.
    pub(super) events: broadcast::WeakSender<Event>,
    /// Connection state; its lock also orders "subscribe" against "connected + gap".
    pub(super) state: watch::Sender<ListenerStatus>,
    pub(super) notifications: AtomicU64,
    pub(super) bad_payloads: AtomicU64,
    pub(super) channel: String,
    pub(super) application_name: String,
    pub(super) kind_tags: Arc<[Tag]>,
}

impl Shared {
    fn new(settings: &Settings, events: &broadcast::Sender<Event>) -> Self {
        Self {
            events: events.downgrade(),
            state: watch::channel(ListenerStatus {
                running: true,
                ..ListenerStatus::default()
            })
            .0,
            notifications: AtomicU64::new(0),
            bad_payloads: AtomicU64::new(0),
            channel: settings.channel.clone(),
            application_name: settings.application_name.clone(),
            kind_tags: Arc::clone(&settings.kind_tags),
        }
    }

    fn subscribe(&self) -> Subscription {
        // Under the state lock: either the subscription sees `connected` and starts with its own
        // gap (it receives everything from now on), or it is subscribed before the connection's
        // gap is sent and receives that one.
        let state = self.state.borrow();
        let Some(sender) = self.events.upgrade() else {
            return Subscription::closed();
        };
        let rx = sender.subscribe();
        let first = state.connected.then(|| Gap::new(GapReason::Started));
        drop(state);
        Subscription { rx, first }
    }

    /// `LISTEN` is active: record it and report the gap that preceded it.
    pub(super) fn connected(&self, sender: &broadcast::Sender<Event>, pid: i32, reason: GapReason) {
        self.state.send_modify(|state| {
            state.connected = true;
            state.backend_pid = Some(pid);
            state.connections += 1;
            let _ = sender.send(Event::Gap(Gap::new(reason)));
        });
    }

    /// The connection ended (or could not be made) with `error`.
    pub(super) fn disconnected(&self, sender: &broadcast::Sender<Event>, error: Error) {
        self.state.send_modify(|state| {
            if state.connected {
                state.connected = false;
                state.backend_pid = None;
                let _ = sender.send(Event::Gap(Gap::new(GapReason::Disconnected {
                    error: error.clone(),
                })));
            }
            state.last_error = Some(error);
        });
    }

    /// One notification: its tags, and a gap if it could not be read entirely.
    pub(super) fn dispatch(&self, sender: &broadcast::Sender<Event>, notification: &Notification) {
        if notification.channel() != self.channel {
            return;
        }
        self.notifications.fetch_add(1, Ordering::Relaxed);
        let parsed = parse_payload(notification.payload());
        // A statement whose tags an earlier one of its transaction sent is still an event.
        if !parsed.tags.is_empty() || parsed.change.is_some() {
            let _ = sender.send(Event::Tags(TagBatch::from_parts(
                parsed.tags,
                parsed.change,
                notification.process_id(),
            )));
        }
        if let Some(error) = parsed.error {
            self.bad_payloads.fetch_add(1, Ordering::Relaxed);
            let payload = notification.payload();
            let shown: String = payload.chars().take(200).collect();
            tracing::warn!(
                channel = %self.channel,
                sender_pid = notification.process_id(),
                payload = %shown,
                %error,
                "matroska-postgres listener: unreadable notification; reporting a gap"
            );
            let _ = sender.send(Event::Gap(Gap::new(GapReason::BadPayload { error })));
        }
    }
}

impl Listener {
    /// Configures a listener on the server at `url` (a URL or key-value connection string); a
    /// string that does not parse is reported by [`ListenerConfig::start`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> matroska_core::Result<()> {
    /// let listener = matroska_pg_capture::listener::Listener::builder("postgres://localhost/db")
    ///     .channel("shop")
    ///     .start()?;
    /// # let _ = listener; Ok(()) }
    /// ```
    pub fn builder(url: &str) -> ListenerConfig {
        ListenerConfig::from_url_deferred(url)
    }

    pub(crate) fn spawn(settings: Settings) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Config("a Listener must be started inside a Tokio runtime".to_owned())
        })?;
        let (sender, _) = broadcast::channel(settings.buffer);
        let shared = Arc::new(Shared::new(&settings, &sender));
        let (stop, stopped) = watch::channel(false);
        let task = runtime.spawn(super::session::run(
            Arc::clone(&shared),
            settings,
            sender,
            stopped,
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                stop,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// A new subscriber: it receives every event from now on (several subscribers each receive
    /// every event; none takes one from another). If the listener is connected, its first event
    /// is a [`GapReason::Started`] gap: what was committed before it subscribed is unknown to it.
    /// A subscriber that falls behind by more than the buffer gets a
    /// [`GapReason::Lagged`] gap instead of the events it missed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(listener: matroska_pg_capture::listener::Listener) {
    /// let mut a = listener.subscribe();
    /// let mut b = listener.subscribe();
    /// let (x, y) = (a.recv().await, b.recv().await); // the same event, twice
    /// # let _ = (x, y); }
    /// ```
    pub fn subscribe(&self) -> Subscription {
        self.inner.shared.subscribe()
    }

    /// The events as a stream (a [`Subscription`]): what `matroska-pg listen` prints, one
    /// [`Display`](std::fmt::Display) line per event.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use futures::StreamExt as _;
    ///
    /// # async fn demo() -> matroska_core::Result<()> {
    /// let listener = matroska_pg_capture::listener::Listener::builder("postgres://localhost/db").start()?;
    /// let mut events = listener.events();
    /// while let Some(event) = events.next().await {
    ///     println!("{event}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn events(&self) -> BoxStream<'static, Event> {
        self.subscribe().into_stream()
    }

    /// Applies events to `store` (a [`MemoryStore`](matroska_core::MemoryStore), a `RedisStore`,
    /// a remote [`PgStore`](matroska_postgres::PgStore), an `Arc<dyn Store>`) with `strategy`, on a
    /// background task, invalidating the kinds this listener watches after every gap. For more
    /// options use [`applier`](Self::applier).
    ///
    /// # Errors
    ///
    /// As [`Applier::spawn`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(listener: matroska_pg_capture::listener::Listener) -> matroska_core::Result<()> {
    /// use matroska_pg_capture::listener::Strategy;
    ///
    /// let store = matroska_core::MemoryStore::new();
    /// let applier = listener.apply(store, Strategy::Immediate)?;
    /// # drop(applier); Ok(()) }
    /// ```
    pub fn apply<S: Store>(&self, store: S, strategy: Strategy) -> Result<super::ApplierHandle> {
        self.applier(store).strategy(strategy).spawn()
    }

    /// Configures applying events to `store`; see [`Applier`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(listener: matroska_pg_capture::listener::Listener) -> matroska_core::Result<()> {
    /// use std::time::Duration;
    /// use matroska_pg_capture::listener::{GapAction, Strategy};
    ///
    /// let applier = listener
    ///     .applier(matroska_core::MemoryStore::new())
    ///     .strategy(Strategy::Batched { window: Duration::from_millis(50) })
    ///     .watch_kinds(["article"])
    ///     .gap_action(GapAction::InvalidateKinds)
    ///     .on_gap(|gap| eprintln!("{gap}"))
    ///     .spawn()?;
    /// # drop(applier); Ok(()) }
    /// ```
    pub fn applier<S: Store>(&self, store: S) -> Applier<S> {
        Applier::new(self.clone(), store)
    }

    /// What the listener is doing.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(listener: matroska_pg_capture::listener::Listener) {
    /// println!("{} notifications so far", listener.status().notifications);
    /// # }
    /// ```
    pub fn status(&self) -> ListenerStatus {
        let shared = &self.inner.shared;
        let mut status = shared.state.borrow().clone();
        status.notifications = shared.notifications.load(Ordering::Relaxed);
        status.bad_payloads = shared.bad_payloads.load(Ordering::Relaxed);
        status
    }

    /// Waits until `LISTEN` is active (at most `limit`).
    ///
    /// # Errors
    ///
    /// A transient [`Error::Backend`] carrying the last connection error (or
    /// [`Error::Timeout`]) when not connected within `limit`; a non-transient one if the listener
    /// was shut down.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(listener: matroska_pg_capture::listener::Listener) -> matroska_core::Result<()> {
    /// listener.wait_connected(std::time::Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn wait_connected(&self, limit: Duration) -> Result<()> {
        let mut state = self.inner.shared.state.subscribe();
        let waited = tokio::time::timeout(limit, async {
            state
                .wait_for(|s| s.connected || !s.running)
                .await
                .is_ok_and(|s| s.connected)
        })
        .await;
        match waited {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::Backend {
                store: STORE,
                message: "listener: shut down before it connected".to_owned(),
                transient: false,
                source: None,
            }),
            Err(_) => {
                let last = self.inner.shared.state.borrow().last_error.clone();
                Err(match last {
                    Some(error) => Error::backend(
                        STORE,
                        format!("listener: not connected within {limit:?}"),
                        true,
                        error,
                    ),
                    None => Error::Timeout {
                        operation: "listener connect",
                        after: limit,
                    },
                })
            }
        }
    }

    /// The channel listened to.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(listener: matroska_pg_capture::listener::Listener) {
    /// assert_eq!(listener.channel(), "matroska");
    /// # }
    /// ```
    pub fn channel(&self) -> &str {
        &self.inner.shared.channel
    }

    /// The `application_name` of the listener's connections (unique per listener unless
    /// configured): `SELECT pid FROM pg_stat_activity WHERE application_name = $1` finds its
    /// backend.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(listener: matroska_pg_capture::listener::Listener) {
    /// assert!(listener.application_name().starts_with("matroska-listener-"));
    /// # }
    /// ```
    pub fn application_name(&self) -> &str {
        &self.inner.shared.application_name
    }

    /// The `a:<kind>` tags of the kinds this listener watches (what a gap invalidates by
    /// default).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(listener: matroska_pg_capture::listener::Listener) {
    /// for tag in listener.watched_kind_tags() {
    ///     println!("{tag}");
    /// }
    /// # }
    /// ```
    pub fn watched_kind_tags(&self) -> &[Tag] {
        &self.inner.shared.kind_tags
    }

    /// Stops the listener (for every clone of the handle), closes its connection and waits for
    /// its task; every subscription then ends and appliers stop.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(listener: matroska_pg_capture::listener::Listener) {
    /// listener.shutdown().await;
    /// assert!(!listener.status().running);
    /// # }
    /// ```
    pub async fn shutdown(&self) {
        self.inner.stop.send_replace(true);
        let task = self.inner.task.lock().take();
        if let Some(task) = task
            && let Err(error) = task.await
        {
            tracing::error!(%error, "matroska-postgres listener: the task failed");
        }
    }
}

/// One subscriber's view of a [`Listener`]'s events.
///
/// # Examples
///
/// ```no_run
/// use matroska_pg_capture::listener::Event;
///
/// # async fn demo(listener: matroska_pg_capture::listener::Listener) {
/// let mut subscription = listener.subscribe();
/// while let Some(event) = subscription.recv().await {
///     if let Event::Gap(gap) = &event {
///         eprintln!("{gap}: flushing the local tier");
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<Event>,
    first: Option<Gap>,
}

impl Subscription {
    fn closed() -> Self {
        let (_, rx) = broadcast::channel(1);
        Self { rx, first: None }
    }

    /// The next event; `None` once the listener has shut down. Missed events (this subscriber
    /// fell behind) come back as one [`GapReason::Lagged`] gap.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(listener: matroska_pg_capture::listener::Listener) {
    /// let mut subscription = listener.subscribe();
    /// if let Some(event) = subscription.recv().await {
    ///     println!("{event}");
    /// }
    /// # }
    /// ```
    pub async fn recv(&mut self) -> Option<Event> {
        if let Some(gap) = self.first.take() {
            return Some(Event::Gap(gap));
        }
        match self.rx.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(missed)) => Some(lagged(missed)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// The next event if one is ready (`None` when there is none, or the listener shut down).
    pub(crate) fn try_recv(&mut self) -> Option<Event> {
        if let Some(gap) = self.first.take() {
            return Some(Event::Gap(gap));
        }
        match self.rx.try_recv() {
            Ok(event) => Some(event),
            Err(broadcast::error::TryRecvError::Lagged(missed)) => Some(lagged(missed)),
            Err(_) => None,
        }
    }

    /// The events as a stream, ending when the listener shuts down.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use futures::StreamExt as _;
    ///
    /// # async fn demo(listener: matroska_pg_capture::listener::Listener) {
    /// let first_ten: Vec<_> = listener.subscribe().into_stream().take(10).collect().await;
    /// # let _ = first_ten; }
    /// ```
    pub fn into_stream(self) -> BoxStream<'static, Event> {
        stream::unfold(self, |mut subscription| async move {
            subscription.recv().await.map(|event| (event, subscription))
        })
        .boxed()
    }
}

fn lagged(missed: u64) -> Event {
    tracing::warn!(
        missed,
        "matroska-postgres listener: a subscriber fell behind; reporting a gap"
    );
    Event::Gap(Gap::new(GapReason::Lagged { missed }))
}

/// A listener without a connection whose events a test sends by hand.
#[cfg(test)]
pub(crate) struct TestFeed {
    pub(crate) shared: Arc<Shared>,
    pub(crate) sender: broadcast::Sender<Event>,
}

#[cfg(test)]
impl TestFeed {
    pub(crate) fn new(config: ListenerConfig) -> (Listener, Self) {
        let settings = config.validate().unwrap_or_else(|e| panic!("{e}"));
        let (sender, _) = broadcast::channel(settings.buffer);
        let shared = Arc::new(Shared::new(&settings, &sender));
        let (stop, _) = watch::channel(false);
        let listener = Listener {
            inner: Arc::new(Inner {
                shared: Arc::clone(&shared),
                stop,
                task: Mutex::new(None),
            }),
        };
        (listener, Self { shared, sender })
    }

    pub(crate) fn tags(&self, tags: &[&str]) {
        let tags = tags
            .iter()
            .map(|t| Tag::parse(t).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        let _ = self.sender.send(Event::Tags(TagBatch::new(tags, 1)));
    }

    pub(crate) fn connect(&self, reason: GapReason) {
        self.shared.connected(&self.sender, 1, reason);
    }

    pub(crate) fn disconnect(&self) {
        self.shared.disconnected(
            &self.sender,
            Error::Timeout {
                operation: "test",
                after: Duration::ZERO,
            },
        );
    }
}
