//! Command-line options.

use std::net::SocketAddr;
use std::time::Duration;

/// The usage text (`--help`).
pub const USAGE: &str = "\
matroska-eager: eager-cache's service on Matroska

USAGE: matroska-eager [--bind ADDR] [--redis URL] [--prefix P] [--ttl-ms N] [--refresh-ms N]

  --bind ADDR      where to listen (default 127.0.0.1:3000)
  --redis URL      keep the cache in Redis (default: in memory); servers sharing it refresh
                   each key once per interval
  --prefix P       the Redis key prefix (default eager)
  --ttl-ms N       time to live of every value (default 60000)
  --refresh-ms N   refresh point after a load (default 45000)

GET /data/{type}?k=v...   {data, last_retrieved, last_modified}; header x-cache
GET /stats                the cache's counters
Types: weather (?city=...), user (?id=<number>).
";

/// The service's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub bind: SocketAddr,
    /// Redis URL, or `None` for the in-memory store.
    pub redis: Option<String>,
    /// Redis key prefix.
    pub prefix: String,
    /// Time to live of the values.
    pub ttl: Duration,
    /// Refresh point after a load.
    pub refresh_after: Duration,
    /// Fail-safe: how long past expiry the last good value may stand in for a failed upstream.
    pub max_staleness: Duration,
    /// How long a load with a fail-safe value to serve may run.
    pub soft_timeout: Duration,
    /// How long any load may run.
    pub hard_timeout: Duration,
    /// Keys nobody read for this long are not refreshed proactively.
    pub idle_window: Duration,
    /// How often the proactive refresher looks for due keys.
    pub refresh_every: Duration,
    /// The most proactive refreshes at once.
    pub max_concurrent: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 3000)),
            redis: None,
            prefix: "eager".to_owned(),
            ttl: Duration::from_secs(60),
            refresh_after: Duration::from_secs(45),
            max_staleness: Duration::from_secs(3600),
            soft_timeout: Duration::from_millis(500),
            hard_timeout: Duration::from_secs(10),
            idle_window: Duration::from_secs(600),
            refresh_every: Duration::from_secs(1),
            max_concurrent: 8,
        }
    }
}

/// A command line that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{0} (see --help)")]
pub struct ConfigError(String);

impl Config {
    /// Parses the command line (without the program name).
    ///
    /// # Errors
    ///
    /// An unknown option, a missing or malformed value.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = matroska_eager::Config::from_args(["--ttl-ms".to_owned(), "2000".to_owned()])?;
    /// assert_eq!(config.ttl, std::time::Duration::from_secs(2));
    /// assert!(matroska_eager::Config::from_args(["--nope".to_owned()]).is_err());
    /// # Ok::<(), matroska_eager::ConfigError>(())
    /// ```
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let mut value = || {
                args.next()
                    .ok_or_else(|| ConfigError(format!("{flag} needs a value")))
            };
            let ms = |text: String| {
                text.parse::<u64>()
                    .map(Duration::from_millis)
                    .map_err(|e| ConfigError(format!("{flag}: {e}")))
            };
            match flag.as_str() {
                "--bind" => {
                    config.bind = value()?
                        .parse()
                        .map_err(|e| ConfigError(format!("--bind: {e}")))?;
                }
                "--redis" => config.redis = Some(value()?),
                "--prefix" => config.prefix = value()?,
                "--ttl-ms" => config.ttl = ms(value()?)?,
                "--refresh-ms" => config.refresh_after = ms(value()?)?,
                other => return Err(ConfigError(format!("unknown option {other:?}"))),
            }
        }
        Ok(config)
    }
}
