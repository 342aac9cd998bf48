//! TLS as libpq configures it: `sslmode` (`disable`, `prefer`, `require`, `verify-ca`,
//! `verify-full`) and `sslrootcert` in the connection string, which `tokio-postgres` alone does
//! not read in full ([`TlsOptions::split`] takes them out of the string). With the feature
//! `rustls`, [`PgStoreConfig::from_url`](crate::PgStoreConfig::from_url) and
//! [`PgStore::builder`](crate::PgStore::builder) connect as the string says, through
//! [rustls](https://docs.rs/rustls) (ring); without it, give a connector with
//! [`PgStoreConfig::tls`](crate::PgStoreConfig::tls).
//!
//! | `sslmode` | TLS | the server's certificate |
//! | --- | --- | --- |
//! | `disable` | no | - |
//! | `prefer` | if the server offers it | not checked |
//! | `require` | yes | not checked (as libpq without a root certificate) |
//! | `verify-ca` | yes | signed by a root of `sslrootcert` |
//! | `verify-full` | yes | signed by a root of `sslrootcert`, and for the host connected to |
//!
//! `sslrootcert` is a PEM file of root certificates, or `system` for the operating system's;
//! `verify-ca` and `verify-full` need it. A string without `sslmode` uses no TLS (libpq would
//! try `prefer`): name the mode to get it.
//!
//! ```no_run
//! # #[cfg(feature = "rustls")]
//! # fn demo() -> matroska_core::Result<()> {
//! use matroska_postgres::PgStore;
//!
//! let store = PgStore::builder(
//!     "postgres://app@db.example.com/app?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem",
//! )
//! .schema("app_cache")
//! .build()?;
//! # let _ = store; Ok(()) }
//! ```

use std::path::PathBuf;

use matroska_core::{Error, Result};

mod split;

#[cfg(feature = "rustls")]
mod rustls;

#[cfg(feature = "rustls")]
pub use self::rustls::connector;

/// Parses a connection URL or key-value string as the store and the listener read it: the
/// driver's settings (with `sslmode` and `sslrootcert` taken out as libpq reads them), and the
/// connector the string asks for (`None`: it names no TLS; keep the default).
///
/// # Errors
///
/// [`Error::Config`] when the string does not parse (the message never contains it, as it may
/// hold a password), or names TLS that cannot be set up.
#[doc(hidden)] // For `matroska-pg-capture`, through `__private`.
pub fn parse_url(
    url: &str,
) -> Result<(
    tokio_postgres::Config,
    Option<std::sync::Arc<dyn crate::connect::Connector>>,
)> {
    let (rest, tls) = TlsOptions::split(url)?;
    let mut pg = rest
        .parse::<tokio_postgres::Config>()
        .map_err(|e| Error::Config(format!("invalid PostgreSQL connection string: {e}")))?;
    if tls.mode_given {
        pg.ssl_mode(tls.mode.driver_mode());
    }
    let connector = if tls.mode_given && tls.wants_tls() {
        Some(connector_for(&tls)?)
    } else {
        None
    };
    Ok((pg, connector))
}

/// The connector `PgStoreConfig::from_url` installs for a string that names an `sslmode`: rustls
/// with the feature, else none (`NoTls`, as before), refusing the verifying modes.
pub fn connector_for(
    options: &TlsOptions,
) -> Result<std::sync::Arc<dyn crate::connect::Connector>> {
    #[cfg(feature = "rustls")]
    {
        Ok(std::sync::Arc::new(crate::connect::Tls(connector(
            options,
        )?)))
    }
    #[cfg(not(feature = "rustls"))]
    {
        match options.mode {
            SslMode::VerifyCa | SslMode::VerifyFull => Err(Error::Config(
                "sslmode=verify-ca and verify-full need the feature rustls of matroska-postgres \
                 (or a verifying connector given with PgStoreConfig::tls)"
                    .to_owned(),
            )),
            // As before: the connector given with `tls` (none by default) does the TLS.
            _ => Ok(std::sync::Arc::new(crate::connect::Tls(
                tokio_postgres::NoTls,
            ))),
        }
    }
}

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it; the certificate is not checked.
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is not checked.
    Require,
    /// TLS, with a certificate signed by a trusted root.
    VerifyCa,
    /// TLS, with a certificate signed by a trusted root and issued for the host.
    VerifyFull,
}

impl SslMode {
    /// Reads libpq's spelling (`verify-full`).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for anything else (`allow` included: it is not supported).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_postgres::tls::SslMode;
    ///
    /// assert_eq!(SslMode::parse("verify-full")?, SslMode::VerifyFull);
    /// assert!(SslMode::parse("verify_full").is_err());
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(Error::Config(format!(
                    "sslmode {other:?} is not one of disable, prefer, require, verify-ca, \
                     verify-full"
                )));
            }
        })
    }

    /// The `tokio-postgres` mode that goes with it (the verifying modes require TLS).
    pub fn driver_mode(self) -> tokio_postgres::config::SslMode {
        match self {
            Self::Disable => tokio_postgres::config::SslMode::Disable,
            Self::Prefer => tokio_postgres::config::SslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }
}

/// Where the trusted root certificates come from (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RootCert {
    /// A PEM file.
    File(PathBuf),
    /// The operating system's roots (`sslrootcert=system`).
    System,
}

/// The TLS settings of a connection string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsOptions {
    /// `sslmode`, else [`SslMode::Prefer`] (libpq's default).
    pub mode: SslMode,
    /// `sslrootcert`.
    pub root_cert: Option<RootCert>,
    /// Whether the string named `sslmode` at all.
    pub mode_given: bool,
}

impl TlsOptions {
    /// Takes `sslmode` and `sslrootcert` out of a connection URL or key=value string, leaving a
    /// string that `tokio-postgres` parses.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an unknown `sslmode`, or a string whose quoting does not parse.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_postgres::tls::{RootCert, SslMode, TlsOptions};
    ///
    /// let (rest, tls) = TlsOptions::split("postgres://a@h/d?sslmode=verify-full&sslrootcert=%2Fca.pem&application_name=x")?;
    /// assert_eq!(rest, "postgres://a@h/d?application_name=x");
    /// assert_eq!(tls.mode, SslMode::VerifyFull);
    /// assert_eq!(tls.root_cert, Some(RootCert::File("/ca.pem".into())));
    ///
    /// let (rest, tls) = TlsOptions::split("host=h sslmode='require' user=a")?;
    /// assert_eq!(rest, "host=h user=a");
    /// assert_eq!(tls.mode, SslMode::Require);
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn split(conninfo: &str) -> Result<(String, Self)> {
        let (rest, pairs) = split::take(conninfo, &["sslmode", "sslrootcert"])?;
        let mut options = Self::default();
        for (key, value) in pairs {
            match key.as_str() {
                "sslmode" => {
                    options.mode = SslMode::parse(&value)?;
                    options.mode_given = true;
                }
                _ => {
                    options.root_cert = Some(if value == "system" {
                        RootCert::System
                    } else {
                        RootCert::File(PathBuf::from(value))
                    });
                }
            }
        }
        Ok((rest, options))
    }

    /// Whether a connection needs a TLS connector: every mode but `disable` (`prefer` uses TLS
    /// when offered).
    pub fn wants_tls(&self) -> bool {
        self.mode != SslMode::Disable
    }
}
