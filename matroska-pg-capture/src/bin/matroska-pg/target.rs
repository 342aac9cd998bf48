//! Where to connect: `--url`, `$MATROSKA_PG_URL`, `$DATABASE_URL`, or libpq's `PG*` environment
//! variables (which also fill in what a URL leaves out, as `psql` does), and connecting with the
//! cause of a failure kept.

use std::time::Duration;

use matroska_postgres::tls::{RootCert, SslMode, TlsOptions};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::BoxError;

/// The libpq variables read, for messages.
const PG_VARS: &str = "PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE, PGSSLROOTCERT";

/// The connection settings, and where they came from (for messages).
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) origin: &'static str,
    /// `sslmode` / `sslrootcert` (else `PGSSLMODE` / `PGSSLROOTCERT`).
    pub(crate) tls: TlsOptions,
}

impl Target {
    /// The rustls connector, when the settings ask for TLS.
    pub(crate) fn connector(&self) -> Result<Option<MakeRustlsConnect>, BoxError> {
        if self.tls.mode_given && self.tls.wants_tls() {
            Ok(Some(matroska_postgres::tls::connector(&self.tls)?))
        } else {
            Ok(None)
        }
    }
}

/// Reads the environment through a function (tests pass their own).
pub(crate) fn resolve(
    url: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Target, BoxError> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    let given = url
        .map(|u| (u.to_owned(), "--url"))
        .or_else(|| var("MATROSKA_PG_URL").map(|u| (u, "$MATROSKA_PG_URL")))
        .or_else(|| var("DATABASE_URL").map(|u| (u, "$DATABASE_URL")));
    let mut tls = TlsOptions::default();
    let (mut config, origin) = match given {
        Some((url, origin)) => {
            let (rest, options) = TlsOptions::split(&url)?;
            tls = options;
            let config = rest
                .parse::<tokio_postgres::Config>()
                .map_err(|e| ConnectionStringError { origin, source: e })?;
            (config, origin)
        }
        None if ["PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD"]
            .iter()
            .any(|name| var(name).is_some()) =>
        {
            (
                tokio_postgres::Config::new(),
                "the PG* environment variables",
            )
        }
        None => {
            return Err(format!(
                "no database: give --url, or set MATROSKA_PG_URL or DATABASE_URL (e.g. \
                 postgres://user@localhost/db), or libpq's {PG_VARS}"
            )
            .into());
        }
    };
    // libpq's defaults for what the connection string leaves out.
    if config.get_hosts().is_empty() {
        let hosts = var("PGHOST").unwrap_or_else(|| "localhost".to_owned());
        for host in hosts.split(',') {
            config.host(host);
        }
    }
    if config.get_ports().is_empty()
        && let Some(port) = var("PGPORT")
    {
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("PGPORT is not a port number: {port:?}"))?;
        config.port(port);
    }
    if config.get_user().is_none() {
        match var("PGUSER").or_else(|| var("USER")) {
            Some(user) => {
                config.user(user);
            }
            None => {
                return Err(
                    format!("no user: give one in the URL or set PGUSER ({PG_VARS})").into(),
                );
            }
        }
    }
    if config.get_dbname().is_none()
        && let Some(db) = var("PGDATABASE")
    {
        config.dbname(db);
    }
    if config.get_password().is_none()
        && let Some(password) = var("PGPASSWORD")
    {
        config.password(password);
    }
    if config.get_application_name().is_none() {
        config.application_name(var("PGAPPNAME").as_deref().unwrap_or("matroska-pg"));
    }
    if config.get_connect_timeout().is_none() {
        let secs = var("PGCONNECT_TIMEOUT")
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(10);
        config.connect_timeout(Duration::from_secs(secs));
    }
    if !tls.mode_given
        && let Some(mode) = var("PGSSLMODE")
    {
        tls.mode = SslMode::parse(&mode)?;
        tls.mode_given = true;
    }
    if tls.root_cert.is_none()
        && let Some(root) = var("PGSSLROOTCERT")
    {
        tls.root_cert = Some(if root == "system" {
            RootCert::System
        } else {
            RootCert::File(root.into())
        });
    }
    if tls.mode_given {
        config.ssl_mode(tls.mode.driver_mode());
    }
    Ok(Target {
        config,
        origin,
        tls,
    })
}

/// A connection string that did not parse (the string is not repeated: it may hold a password).
#[derive(Debug, thiserror::Error)]
#[error("invalid connection string in {origin}")]
pub(crate) struct ConnectionStringError {
    origin: &'static str,
    #[source]
    source: tokio_postgres::Error,
}

/// A failed connection, with the server's own words when it gave any.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {server} (from {origin}): {reason}")]
pub(crate) struct ConnectError {
    server: String,
    origin: &'static str,
    reason: String,
    #[source]
    source: tokio_postgres::Error,
}

impl ConnectError {
    /// The driver's error.
    pub(crate) fn driver_error(&self) -> &tokio_postgres::Error {
        &self.source
    }

    pub(crate) fn new(target: &Target, source: tokio_postgres::Error) -> Self {
        Self {
            server: describe(&target.config),
            origin: target.origin,
            reason: reason(&source),
            source,
        }
    }
}

/// `user@host:port/db`, without the password.
pub(crate) fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("?");
    let db = config.get_dbname().unwrap_or(user);
    format!("{user}@{host}:{port}/{db}")
}

/// What went wrong, in words: the server's message (wrong password, no such role or database)
/// or the I/O error (refused, unreachable), never only "db error".
pub(crate) fn reason(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let hint = match db.code().code() {
            "28P01" => " (check the password: PGPASSWORD or the URL)",
            "28000" => " (check the user name and pg_hba.conf)",
            "3D000" => " (check the database name)",
            _ => "",
        };
        return format!("{} ({}){hint}", db.message(), db.code().code());
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// Whether retrying cannot help: the server answered and refused (authentication, no such
/// database or role, bad parameters), as opposed to a server that is down or unreachable.
pub(crate) fn is_hopeless(error: &tokio_postgres::Error) -> bool {
    error.as_db_error().is_some_and(|db| {
        let code = db.code().code();
        code.starts_with("28") || code == "3D000" || code.starts_with("42") || code == "08004"
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name: &str| vars.get(name).cloned()
    }

    #[test]
    fn pg_variables_alone_are_enough() {
        let target = resolve(
            None,
            &env(&[
                ("PGHOST", "db.internal"),
                ("PGPORT", "6543"),
                ("PGUSER", "app"),
                ("PGDATABASE", "shop"),
                ("PGPASSWORD", "s3cret"),
            ]),
        )
        .unwrap();
        assert_eq!(describe(&target.config), "app@db.internal:6543/shop");
        assert_eq!(target.config.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(target.origin, "the PG* environment variables");
    }

    #[test]
    fn pg_variables_fill_what_the_url_leaves_out_only() {
        let vars = env(&[
            ("PGPASSWORD", "s3cret"),
            ("PGUSER", "other"),
            ("PGPORT", "1"),
        ]);
        let target = resolve(Some("postgres://app@db:5433/shop"), &vars).unwrap();
        assert_eq!(describe(&target.config), "app@db:5433/shop");
        assert_eq!(target.config.get_password(), Some(&b"s3cret"[..]));
    }

    #[test]
    fn the_url_variables_come_before_pg_variables() {
        let vars = env(&[
            ("DATABASE_URL", "postgres://a@h/d"),
            ("PGHOST", "elsewhere"),
        ]);
        let target = resolve(None, &vars).unwrap();
        assert_eq!(describe(&target.config), "a@h:5432/d");
        assert_eq!(target.origin, "$DATABASE_URL");
    }

    #[test]
    fn tls_settings_come_from_the_string_else_pg_variables() {
        let vars = env(&[("PGSSLMODE", "require"), ("PGSSLROOTCERT", "/pg.pem")]);
        let target = resolve(Some("postgres://a@h/d?sslmode=verify-full"), &vars).unwrap();
        assert_eq!(target.tls.mode, SslMode::VerifyFull);
        assert_eq!(target.tls.root_cert, Some(RootCert::File("/pg.pem".into())));
        let target = resolve(Some("postgres://a@h/d"), &vars).unwrap();
        assert_eq!(target.tls.mode, SslMode::Require);
        assert!(target.connector().unwrap().is_some());
        let target = resolve(Some("postgres://a@h/d"), &env(&[])).unwrap();
        assert!(
            target.connector().unwrap().is_none(),
            "no sslmode: no TLS, as before"
        );
        assert!(resolve(None, &env(&[("PGUSER", "u"), ("PGSSLMODE", "sometimes")])).is_err());
    }

    #[test]
    fn nothing_set_says_what_to_set() {
        let error = resolve(None, &env(&[])).unwrap_err().to_string();
        assert!(
            error.contains("MATROSKA_PG_URL") && error.contains("PGHOST"),
            "{error}"
        );
        let error = resolve(None, &env(&[("PGHOST", "h")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("PGUSER"), "{error}");
    }

    #[test]
    fn a_bad_string_or_port_is_reported_without_echoing_it() {
        let error = resolve(Some("postgres://u:hunter2@h:notaport/d"), &env(&[])).unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(error.source().is_some());
        let error = resolve(None, &env(&[("PGUSER", "u"), ("PGPORT", "x")])).unwrap_err();
        assert!(error.to_string().contains("PGPORT"), "{error}");
    }
}
