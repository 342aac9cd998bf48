//! eager-cache's job on Matroska: an HTTP service that serves data fetched from upstream
//! sources, one registered fetcher per data type, kept fresh ahead of expiry, with the time each
//! value was fetched and last changed.
//!
//! `GET /data/{type}?k=v...` answers `{"data": ..., "last_retrieved": ..., "last_modified": ...}`
//! (RFC 3339 times) with the header `x-cache: hit | miss | shared | stale`; an unknown type is
//! 404, a query its fetcher does not take is 400, a failed upstream without a fail-safe value is
//! 502. `GET /stats` shows the cache's counters. On `MemoryStore` by default, on Redis with
//! `--redis URL` (then several servers share the cache and refresh each key once per interval).
//!
//! The data types: `weather` (`?city=...`) and `user` (`?id=<number>`), read from a [`Source`]
//! that stands in for the upstream services (a test changes it, or makes it fail).

mod config;
mod routes;
mod source;

use std::sync::Arc;

use matroska_core::clock::{Clock, UnixClock};
use matroska_core::fetchers::{Fetcher, Fetchers, Refresher};
use matroska_core::{Cache, CacheStats, Loaded, MemoryStore, Store};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

pub use crate::config::{Config, ConfigError, USAGE};
pub use crate::source::{Source, SourceDown};

/// The store under the cache: memory or Redis.
pub type AnyStore = Arc<dyn Store>;

/// A `weather` query.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeatherQuery {
    /// The city.
    pub city: String,
}

/// A `user` query.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserQuery {
    /// The user's id: a number (given as text in a URL).
    #[serde(deserialize_with = "number")]
    pub id: u32,
}

/// A number, also from its text (URL queries are text).
fn number<'de, D: Deserializer<'de>>(de: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Number(u32),
        Text(String),
    }
    match Text::deserialize(de)? {
        Text::Number(n) => Ok(n),
        Text::Text(text) => text.parse().map_err(serde::de::Error::custom),
    }
}

/// The running service: the fetchers over the cache, their refresher, the source.
#[derive(Debug, Clone)]
pub struct App {
    fetchers: Fetchers<AnyStore>,
    source: Source,
    _refresher: Arc<Refresher>,
}

impl App {
    /// Builds the service on the store `config` names (memory, or Redis with `--redis`), on the
    /// wall clock. Needs a Tokio runtime (the refresher runs on it).
    ///
    /// # Errors
    ///
    /// When Redis cannot be reached or the prefix is invalid.
    pub async fn connect(config: &Config, source: Source) -> Result<Self, matroska_core::Error> {
        let store: AnyStore = match &config.redis {
            #[cfg(feature = "redis")]
            Some(url) => Arc::new(
                matroska_redis::RedisStore::builder(url.as_str())
                    .prefix(&config.prefix)
                    .build()
                    .await?,
            ),
            #[cfg(not(feature = "redis"))]
            Some(_) => {
                return Err(matroska_core::Error::Config(
                    "built without the redis feature".to_owned(),
                ));
            }
            None => Arc::new(MemoryStore::new()),
        };
        Ok(Self::with_store(config, source, store, UnixClock))
    }

    /// Builds the service on `store`, with `clock` as the cache's clock (tests pass the mock
    /// clock of their `MemoryStore`).
    pub fn with_store(config: &Config, source: Source, store: AnyStore, clock: impl Clock) -> Self {
        let cache = Cache::builder(store)
            .clock(clock)
            .fail_safe(config.max_staleness)
            .soft_timeout(config.soft_timeout)
            .hard_timeout(config.hard_timeout)
            .refresh_jitter(0.0)
            .build();
        let weather = {
            let source = source.clone();
            Fetcher::new("weather", move |q: WeatherQuery| {
                let got = source.load("weather", &[("city", Value::from(q.city))].into());
                async move { got.map(Loaded::new) }
            })
        };
        let user = {
            let source = source.clone();
            Fetcher::new("user", move |q: UserQuery| {
                let got = source.load("user", &[("id", Value::from(q.id))].into());
                async move { got.map(Loaded::new) }
            })
        };
        let fetchers = Fetchers::builder(cache)
            .register(weather.ttl(config.ttl).refresh_after(config.refresh_after))
            .register(user.ttl(config.ttl).refresh_after(config.refresh_after))
            .idle_window(config.idle_window)
            .max_concurrent(config.max_concurrent)
            .build();
        let refresher = Arc::new(fetchers.spawn_refresher(config.refresh_every));
        Self {
            fetchers,
            source,
            _refresher: refresher,
        }
    }

    /// The HTTP routes.
    pub fn router(&self) -> axum::Router {
        routes::router(self.clone())
    }

    /// The cache's counters.
    pub fn stats(&self) -> CacheStats {
        self.fetchers.cache().stats()
    }

    /// The upstream source.
    pub fn source(&self) -> &Source {
        &self.source
    }
}
