//! Where a PostgreSQL server is ([`PgTarget`], from the spec's libpq-style `connection`), and
//! how to ask it things: psql, one statement per `-c`, never prompting.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::VaultError;

/// How to reach one database of one server. The password comes from the secret the spec
/// names and is only ever handed to child processes as `PGPASSWORD`.
#[derive(Clone, PartialEq, Eq)]
pub struct PgTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    /// Other libpq parameters (`sslmode`, `connect_timeout`…), passed through as given.
    pub options: BTreeMap<String, String>,
    pub password: Option<String>,
}

/// A connection string that cannot be used. The message never repeats a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed PostgreSQL connection: {reason}")]
pub struct BadConnection {
    pub reason: String,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .field("options", &self.options)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .finish()
    }
}

/// `user@host:port/dbname`, for messages.
impl std::fmt::Display for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "postgresql {}@{}:{}/{}",
            self.user, self.host, self.port, self.dbname
        )
    }
}

impl PgTarget {
    pub fn new(host: &str, port: u16, user: &str, dbname: &str) -> PgTarget {
        PgTarget {
            host: host.to_string(),
            port,
            user: user.to_string(),
            dbname: dbname.to_string(),
            options: BTreeMap::new(),
            password: None,
        }
    }

    /// Parses a libpq keyword/value string (`host=db1 port=5433 user=app dbname=shop
    /// sslmode=require`; values may be single-quoted, with `\'` and `\\`). Missing parts
    /// default to `localhost`, 5432, `postgres`, and the user's name for the database. A
    /// `password` keyword is refused: the password is a secret, given apart.
    pub fn parse(text: &str) -> Result<PgTarget, BadConnection> {
        let mut params = BTreeMap::new();
        let mut chars = text.chars().peekable();
        let bad = |reason: String| BadConnection { reason };
        loop {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            if chars.peek().is_none() {
                break;
            }
            let mut key = String::new();
            while let Some(c) = chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_') {
                key.push(c);
            }
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            if key.is_empty() || chars.next() != Some('=') {
                return Err(bad(if text.contains("://") {
                    "use the `host=… port=… user=… dbname=…` form, not a URI".to_string()
                } else {
                    format!("expected `keyword=value` at `{}`", key.escape_debug())
                }));
            }
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            let mut value = String::new();
            if chars.next_if_eq(&'\'').is_some() {
                loop {
                    match chars.next() {
                        None => return Err(bad(format!("unterminated quoted value for `{key}`"))),
                        Some('\'') => break,
                        Some('\\') => value.extend(chars.next()),
                        Some(c) => value.push(c),
                    }
                }
            } else {
                while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                    if c == '\\' {
                        value.extend(chars.next());
                    } else {
                        value.push(c);
                    }
                }
            }
            if key == "password" {
                return Err(bad(
                    "the connection holds a password: give it as the dataset's `password` secret instead".to_string(),
                ));
            }
            if params.insert(key.clone(), value).is_some() {
                return Err(bad(format!("`{key}` is given twice")));
            }
        }
        let host = params.remove("host").unwrap_or_else(|| "localhost".to_string());
        let port = match params.remove("port") {
            None => 5432,
            Some(p) => p
                .parse()
                .map_err(|_| bad(format!("port `{}` is not a port number", p.escape_debug())))?,
        };
        let user = params.remove("user").unwrap_or_else(|| "postgres".to_string());
        let dbname = params.remove("dbname").unwrap_or_else(|| user.clone());
        Ok(PgTarget {
            host,
            port,
            user,
            dbname,
            options: params,
            password: None,
        })
    }

    pub fn with_password(mut self, password: Option<String>) -> PgTarget {
        self.password = password;
        self
    }

    /// The same server, another database.
    pub fn with_dbname(&self, dbname: &str) -> PgTarget {
        PgTarget {
            dbname: dbname.to_string(),
            ..self.clone()
        }
    }

    /// The libpq connection string, without the password.
    pub fn conninfo(&self) -> String {
        let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        let mut parts = vec![
            format!("host={}", quote(&self.host)),
            format!("port={}", self.port),
            format!("user={}", quote(&self.user)),
            format!("dbname={}", quote(&self.dbname)),
        ];
        parts.extend(self.options.iter().map(|(k, v)| format!("{k}={}", quote(v))));
        parts.join(" ")
    }

    /// Environment for a child program: the password, and a connect timeout so an
    /// unreachable server fails instead of hanging.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if let Some(password) = &self.password {
            env.push(("PGPASSWORD".to_string(), password.clone()));
        }
        if !self.options.contains_key("connect_timeout") && std::env::var_os("PGCONNECT_TIMEOUT").is_none() {
            env.push(("PGCONNECT_TIMEOUT".to_string(), "10".to_string()));
        }
        env
    }

    pub(crate) fn location(&self) -> String {
        self.to_string()
    }
}

/// A WAL position (`16/B374D848`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lsn(pub u64);

impl std::str::FromStr for Lsn {
    type Err = String;
    fn from_str(s: &str) -> Result<Lsn, String> {
        let (hi, lo) = s.trim().split_once('/').ok_or_else(|| format!("`{s}` is not an LSN"))?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| format!("`{s}` is not an LSN"))?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| format!("`{s}` is not an LSN"))?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

fn psql(target: &PgTarget) -> Result<Command, VaultError> {
    let mut cmd = super::pg_command("psql", Some(target))?;
    cmd.args(["-X", "-A", "-t", "-q", "-w", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(target.conninfo());
    Ok(cmd)
}

/// Runs one SQL statement through `psql -XAtq`: rows on lines, fields separated by `|`,
/// without the final newline.
pub fn query(target: &PgTarget, sql: &str) -> Result<String, VaultError> {
    let mut cmd = psql(target)?;
    cmd.arg("-c").arg(sql);
    let out = super::run(cmd, Some(&target.location()))?;
    Ok(out.strip_suffix('\n').unwrap_or(&out).to_string())
}

/// Rows of fields, unambiguously (separators no value can contain).
pub(crate) fn query_rows(target: &PgTarget, sql: &str) -> Result<Vec<Vec<String>>, VaultError> {
    let mut cmd = psql(target)?;
    cmd.args(["-F", "\x1f", "-R", "\x1e", "-c", sql]);
    let out = super::run(cmd, Some(&target.location()))?;
    let out = out.strip_suffix('\n').unwrap_or(&out);
    Ok(out
        .split('\x1e')
        .filter(|row| !row.is_empty())
        .map(|row| row.split('\x1f').map(str::to_string).collect())
        .collect())
}

/// The one row a query returns, checked to have `n` fields.
pub(crate) fn query_row(target: &PgTarget, sql: &str, n: usize) -> Result<Vec<String>, VaultError> {
    let rows = query_rows(target, sql)?;
    match rows.as_slice() {
        [row] if row.len() == n => Ok(row.clone()),
        _ => Err(VaultError::Command {
            program: "psql".to_string(),
            status: "unexpected answer".to_string(),
            stderr: format!("expected one row of {n} fields from `{sql}`, got {rows:?}"),
        }),
    }
}

/// Runs statements one by one, each in its own transaction (`ALTER SYSTEM` refuses to run
/// inside one).
pub(crate) fn execute(target: &PgTarget, statements: &[&str]) -> Result<(), VaultError> {
    let mut cmd = psql(target)?;
    for s in statements {
        cmd.arg("-c").arg(s);
    }
    super::run(cmd, Some(&target.location())).map(drop)
}

pub fn is_in_recovery(target: &PgTarget) -> Result<bool, VaultError> {
    Ok(query(target, "SELECT pg_is_in_recovery()")? == "t")
}

/// Polls `check` until it yields a value, or `timeout` passes. Transient errors (the server
/// is not up yet) count as "not yet"; others end the wait. On timeout, the last transient
/// error or `what` explains.
pub fn wait_for<T>(
    target: &PgTarget,
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>, VaultError>,
) -> Result<T, VaultError> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        let last = match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => None,
            Err(e) if e.is_transient() => Some(e),
            Err(e) => return Err(e),
        };
        if Instant::now() >= deadline {
            let reason = match last {
                Some(e) => format!("{what} not reached after {timeout:?}: {e}"),
                None => format!("{what} not reached after {timeout:?}"),
            };
            return Err(VaultError::ServerUnreachable {
                server: target.location(),
                reason,
            });
        }
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Waits until the server accepts queries.
pub fn wait_ready(target: &PgTarget, timeout: Duration) -> Result<(), VaultError> {
    wait_for(target, "accepting queries", timeout, || {
        query(target, "SELECT 1").map(|_| Some(()))
    })
}

/// Waits until the server has left recovery (a restore finished, a standby was promoted).
pub fn wait_until_primary(target: &PgTarget, timeout: Duration) -> Result<(), VaultError> {
    wait_for(target, "the end of recovery", timeout, || {
        Ok((!is_in_recovery(target)?).then_some(()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_form_with_defaults_and_quotes() {
        let t = PgTarget::parse("host=db1 port=5433 user=app dbname='my shop' sslmode=require").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.user.as_str(), t.dbname.as_str()),
            ("db1", 5433, "app", "my shop")
        );
        assert_eq!(t.options.get("sslmode").map(String::as_str), Some("require"));
        assert_eq!(
            t.conninfo(),
            "host='db1' port=5433 user='app' dbname='my shop' sslmode='require'"
        );
        let t = PgTarget::parse("  user = 'o\\'neil' ").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.user.as_str(), t.dbname.as_str()),
            ("localhost", 5432, "o'neil", "o'neil")
        );
        assert_eq!(PgTarget::parse(&t.conninfo()).unwrap(), t);
    }

    #[test]
    fn refuses_passwords_and_nonsense_without_echoing_secrets() {
        let e = PgTarget::parse("host=x password=hunter2").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        for bad in [
            "host",
            "host=x port=many",
            "postgresql://x/y",
            "host='x",
            "host=a host=b",
        ] {
            assert!(PgTarget::parse(bad).is_err(), "{bad}");
        }
        let t = PgTarget::parse("host=x").unwrap().with_password(Some("hunter2".into()));
        assert!(!format!("{t:?} {t} {}", t.conninfo()).contains("hunter2"));
    }

    #[test]
    fn lsns_round_trip() {
        let l: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(l.0, 0x16_B374_D848);
        assert_eq!(l.to_string(), "16/B374D848");
        assert!("16".parse::<Lsn>().is_err());
    }
}
