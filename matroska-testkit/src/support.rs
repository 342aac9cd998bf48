//! Small helpers for cases, here and in store-specific tests.

mod faulty;

use std::future::Future;
use std::time::{Duration, Instant};

use matroska_core::store::{Lookup, Store};
use matroska_core::{Bytes, Dep, Key, Tag};

pub use self::faulty::{Faulty, Gate, Op};

/// A key from text that is known to be valid.
///
/// # Panics
///
/// If the text is not a valid key.
///
/// # Examples
///
/// ```
/// assert_eq!(matroska_testkit::support::key("a").as_str(), "a");
/// ```
pub fn key(text: &str) -> Key {
    Key::new(text).unwrap_or_else(|e| panic!("invalid test key {text:?}: {e}"))
}

/// The tag of a dependency that is known to be valid.
///
/// # Panics
///
/// If the dependency is invalid.
///
/// # Examples
///
/// ```
/// use matroska_core::Dep;
///
/// assert_eq!(matroska_testkit::support::tag(&Dep::tag("t")).as_str(), "g:t");
/// ```
pub fn tag(dep: &Dep) -> Tag {
    dep.to_tag()
        .unwrap_or_else(|e| panic!("invalid test dependency {dep:?}: {e}"))
}

/// Bytes from text.
///
/// # Examples
///
/// ```
/// assert_eq!(&matroska_testkit::support::bytes("v")[..], b"v");
/// ```
pub fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// The bytes stored under `key`, or `None` on a miss.
///
/// # Panics
///
/// If the store fails.
///
/// # Examples
///
/// ```
/// # futures::executor::block_on(async {
/// let store = matroska_core::MemoryStore::new();
/// assert_eq!(matroska_testkit::support::hit(&store, &matroska_testkit::support::key("k")).await, None);
/// # });
/// ```
pub async fn hit<S: Store + ?Sized>(store: &S, key: &Key) -> Option<Bytes> {
    match store.get(key).await {
        Ok(Lookup::Hit(bytes)) => Some(bytes),
        Ok(Lookup::Miss(_)) => None,
        Err(e) => panic!(
            "get {key} failed: {e} ({:?})",
            std::error::Error::source(&e)
        ),
    }
}

/// Polls `check` every 10 ms until it holds, failing after `limit`. For conditions that become
/// true on their own (a counter reaching a value, a server coming back); never a fixed sleep.
///
/// # Panics
///
/// If `check` does not hold within `limit`.
///
/// # Examples
///
/// ```
/// # futures::executor::block_on(async {
/// matroska_testkit::support::eventually(std::time::Duration::from_secs(1), "true is true", || async { true }).await;
/// # });
/// ```
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return;
        }
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Builds the shape of a case that needs several writes to land while a short time to live has
/// not run out, and returns that time to live. `build(ttl, attempt)` writes the shape with `ttl`
/// (under keys and tags of its own for each `attempt`); it is run with 200 ms, then twice as long
/// each time, until it finished within half the time to live, so that on a slow machine (or a
/// slow server) the case tests what it says with a longer time to live instead of silently
/// testing less. With an exact clock (`exact_time`: time passes only when the case says so) the
/// first attempt stands.
///
/// # Panics
///
/// If the shape still takes more than half of 6.4 s to write.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// # futures::executor::block_on(async {
/// let ttl = matroska_testkit::support::short_ttl(false, |ttl, _attempt| async move {
///     assert!(ttl >= Duration::from_millis(200));
/// })
/// .await;
/// assert_eq!(ttl, Duration::from_millis(200));
/// # });
/// ```
pub async fn short_ttl<F, Fut>(exact_time: bool, mut build: F) -> Duration
where
    F: FnMut(Duration, usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ttl = Duration::from_millis(200);
    for attempt in 0..6 {
        let start = Instant::now();
        build(ttl, attempt).await;
        let took = start.elapsed();
        if exact_time || took < ttl / 2 {
            return ttl;
        }
        eprintln!("writing the shape took {took:?}, too long for a time to live of {ttl:?}");
        ttl *= 2;
    }
    panic!("the shape could not be written within half of a {ttl:?} time to live");
}

/// A small deterministic random number generator (SplitMix64) for randomized cases: a failing
/// seed can be replayed.
///
/// # Examples
///
/// ```
/// use matroska_testkit::support::Rng;
///
/// let mut a = Rng::new(7);
/// let mut b = Rng::new(7);
/// assert_eq!(a.below(100), b.below(100));
/// ```
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    ///
    /// # Examples
    ///
    /// ```
    /// let _ = matroska_testkit::support::Rng::new(1);
    /// ```
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A seed from the environment variable `MATROSKA_TEST_SEED`, or from the clock; printed so a
    /// failure can be replayed.
    ///
    /// # Examples
    ///
    /// ```
    /// let _ = matroska_testkit::support::Rng::from_env();
    /// ```
    pub fn from_env() -> Self {
        let seed = std::env::var("MATROSKA_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| {
                        u64::try_from(d.as_nanos() % u128::from(u64::MAX)).unwrap_or(1)
                    })
            });
        eprintln!("randomized case: MATROSKA_TEST_SEED={seed}");
        Self(seed)
    }

    /// The next 64 random bits.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut rng = matroska_testkit::support::Rng::new(1);
    /// assert_ne!(rng.next_u64(), rng.next_u64());
    /// ```
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(matroska_testkit::support::Rng::new(3).below(10) < 10);
    /// ```
    #[allow(clippy::cast_possible_truncation)] // The result is below n, which is a usize.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}
