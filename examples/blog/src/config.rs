//! Settings, from the command line or the environment.

use std::net::SocketAddr;

use crate::error::SetupError;

/// How the app runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// PostgreSQL (`--database-url`, `DATABASE_URL`).
    pub database_url: String,
    /// The schema holding the blog's tables, created if missing (`--schema`, `BLOG_SCHEMA`).
    pub schema: String,
    /// Redis for the cache (`--redis`, `BLOG_REDIS_URL`); the cache is in memory without it.
    pub redis_url: Option<String>,
    /// Where to listen (`--bind`, `BLOG_BIND`).
    pub bind: SocketAddr,
    /// Database connections in the pool.
    pub pool_size: u32,
    /// Listen for the invalidations that capture triggers NOTIFY (`--listen`, `BLOG_LISTEN=1`),
    /// so that writes made outside the app (plain SQL) are seen.
    pub listen: bool,
}

/// The usage text of the binary.
pub const USAGE: &str = "\
matroska-blog: a blog on axum + Diesel + PostgreSQL, cached with Matroska

Options (each also read from the environment variable shown):
  --database-url URL   PostgreSQL             [DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres]
  --schema NAME        schema of the tables   [BLOG_SCHEMA, default blog]
  --redis URL          cache on Redis         [BLOG_REDIS_URL, default: in memory]
  --bind ADDR          listen address         [BLOG_BIND, default 127.0.0.1:3000]
  --listen             apply the invalidations capture triggers NOTIFY (see README.md)
                                              [BLOG_LISTEN=1, default: off]
";

impl Config {
    /// A configuration for `database_url` and `schema`, with the defaults for the rest.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = matroska_blog::Config::new("postgres://localhost/blog", "blog");
    /// assert!(config.redis_url.is_none());
    /// ```
    pub fn new(database_url: impl Into<String>, schema: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            schema: schema.into(),
            redis_url: None,
            bind: SocketAddr::from(([127, 0, 0, 1], 3000)),
            pool_size: 8,
            listen: false,
        }
    }

    /// Puts the cache on Redis at `url`.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = matroska_blog::Config::new("postgres://localhost/blog", "blog").redis("redis://127.0.0.1");
    /// assert!(config.redis_url.is_some());
    /// ```
    #[must_use]
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.redis_url = Some(url.into());
        self
    }

    /// The key prefix of the cache's namespace on Redis: `blog:<schema>`, so that blogs in
    /// different schemas never share entries.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = matroska_blog::Config::new("postgres://localhost/blog", "blog_a");
    /// assert_eq!(config.redis_prefix(), "blog:blog_a");
    /// ```
    pub fn redis_prefix(&self) -> String {
        format!("blog:{}", self.schema)
    }

    /// Reads the command line (`args` without the program name), then the environment.
    ///
    /// # Errors
    ///
    /// [`SetupError::Config`] for an unknown option, a missing value or a bad address.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = matroska_blog::Config::from_args(["--schema", "blog_demo"].map(String::from))?;
    /// assert_eq!(config.schema, "blog_demo");
    /// # Ok::<(), matroska_blog::SetupError>(())
    /// ```
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Self, SetupError> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut config = Self::new(
            env("DATABASE_URL")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned()),
            env("BLOG_SCHEMA").unwrap_or_else(|| "blog".to_owned()),
        );
        config.redis_url = env("BLOG_REDIS_URL");
        config.listen = env("BLOG_LISTEN").is_some_and(|v| v != "0");
        let mut bind = env("BLOG_BIND");
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .ok_or_else(|| SetupError::Config(format!("{arg} needs a value")))
            };
            match arg.as_str() {
                "--database-url" => config.database_url = value()?,
                "--schema" => config.schema = value()?,
                "--redis" => config.redis_url = Some(value()?),
                "--bind" => bind = Some(value()?),
                "--listen" => config.listen = true,
                other => {
                    return Err(SetupError::Config(format!(
                        "unknown option {other:?}\n\n{USAGE}"
                    )));
                }
            }
        }
        if let Some(bind) = bind {
            config.bind = bind
                .parse()
                .map_err(|err| SetupError::Config(format!("bad address {bind:?}: {err}")))?;
        }
        Ok(config)
    }
}
