//! The `db_url` syntax, read exactly as Kamailio's `parse_db_url`
//! (`lib/srdb1/db_id.c`) reads it, so that a URL means the same file or
//! server to the native writers as to db_sqlite and db_postgres:
//!
//! ```text
//! scheme://[username[:password]@]hostname[:port]/database[?params]
//! ```
//!
//! Its quirks are kept: the database is everything after the slash that
//! ends the host, up to a `?` (so `sqlite:///var/lib/t.db` names the
//! *relative* path `var/lib/t.db`, and `sqlite:////var/lib/t.db` the
//! absolute one); a username may hold an `@` when another follows; a
//! password may hold `@` (the last one ends it); a port that is not a
//! number reads as 0 (no port); an IPv6 host is written in brackets.

/// The parts of a database URL, as `struct db_id` holds them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DbId {
    pub scheme: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub host: Option<String>,
    /// 0 when the URL gives none (or one that is not a number).
    pub port: u16,
    pub database: Option<String>,
}

/// The databases the module writes to without Kamailio's DB API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl DbId {
    /// The native backend for this URL's scheme: the schemes that bind
    /// db_sqlite and db_postgres (`db_bind_mod` takes `db_<scheme>`).
    pub fn backend(&self) -> Option<Backend> {
        match self.scheme.as_str() {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" => Some(Backend::Postgres),
            _ => None,
        }
    }
}

/// Kamailio's `str2s`: up to five decimal digits, wrapping as an unsigned
/// short does; anything else is 0.
fn str2s(s: &[u8]) -> u16 {
    if s.len() > 5 || !s.iter().all(u8::is_ascii_digit) {
        return 0;
    }
    s.iter().fold(0u16, |n, d| n.wrapping_mul(10).wrapping_add(u16::from(d - b'0')))
}

fn text(s: &[u8]) -> String {
    String::from_utf8_lossy(s).into_owned()
}

/// The database part: up to a `?`.
fn database(s: &[u8]) -> String {
    let end = s.iter().position(|&c| c == b'?').unwrap_or(s.len());
    text(&s[..end])
}

/// Whether `s` is an IPv6 address, as Kamailio's `str2ip6` decides.
fn is_ip6(s: &[u8]) -> bool {
    std::str::from_utf8(s).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
}

/// Parses `url` as `parse_db_url` does; None where it fails.
pub fn parse(url: &str) -> Option<DbId> {
    #[derive(Clone, Copy, PartialEq)]
    enum St {
        Scheme,
        Slash1,
        Slash2,
        UserHost,
        PassPort,
        Host,
        Host6,
        Port,
    }
    let u = url.as_bytes();
    // "s://a/b" is the shortest URL it takes.
    if u.len() < 7 {
        return None;
    }
    let mut id = DbId::default();
    let mut st = St::Scheme;
    let mut begin = 0usize;
    let mut prev_token: Option<String> = None;
    let mut found_another = false;
    let mut ipv6 = 0usize;
    let mut i = 0usize;
    while i < u.len() {
        let c = u[i];
        match st {
            St::Scheme => {
                if c == b':' {
                    st = St::Slash1;
                    id.scheme = text(&u[begin..i]);
                }
            }
            St::Slash1 => {
                if c != b'/' {
                    return None;
                }
                st = St::Slash2;
            }
            St::Slash2 => {
                if c != b'/' {
                    return None;
                }
                st = St::UserHost;
                begin = i + 1;
            }
            St::UserHost => match c {
                b'@' => {
                    // Another '@' further on: this one is part of the user name.
                    if !found_another && u[i + 1..].contains(&b'@') {
                        found_another = true;
                    } else {
                        st = St::Host;
                        id.username = Some(text(&u[begin..i]));
                        begin = i + 1;
                    }
                }
                b':' => {
                    st = St::PassPort;
                    prev_token = Some(text(&u[begin..i]));
                    begin = i + 1;
                }
                b'[' => {
                    st = St::Host6;
                    begin = i + 1;
                }
                b'/' => {
                    id.host = Some(text(&u[begin..i]));
                    id.database = Some(database(&u[i + 1..]));
                    return Some(id);
                }
                _ => {}
            },
            St::PassPort => match c {
                b'@' => {
                    st = St::Host;
                    id.username = prev_token.take();
                    // The last '@' ends the password.
                    if let Some(last) = u[i + 1..].iter().rposition(|&c| c == b'@') {
                        i = i + 1 + last;
                    }
                    id.password = Some(text(&u[begin..i]));
                    begin = i + 1;
                }
                b'/' => {
                    id.host = prev_token.take();
                    id.port = str2s(&u[begin..i]);
                    id.database = Some(database(&u[i + 1..]));
                    return Some(id);
                }
                _ => {}
            },
            St::Host => match c {
                b'[' => {
                    st = St::Host6;
                    begin = i + 1;
                }
                b':' => {
                    st = St::Port;
                    id.host = Some(text(&u[begin..i - ipv6]));
                    begin = i + 1;
                }
                b'/' => {
                    id.host = Some(text(&u[begin..i - ipv6]));
                    id.database = Some(database(&u[i + 1..]));
                    return Some(id);
                }
                _ => {}
            },
            St::Host6 => {
                if c == b']' {
                    if is_ip6(&u[begin..i]) {
                        ipv6 = 1;
                    } else {
                        ipv6 = 0;
                        begin -= 1;
                    }
                    st = St::Host;
                }
            }
            St::Port => {
                if c == b'/' {
                    id.port = str2s(&u[begin..i]);
                    id.database = Some(database(&u[i + 1..]));
                    return Some(id);
                }
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(scheme: &str, user: Option<&str>, password: Option<&str>, host: &str, port: u16, db: &str) -> DbId {
        DbId {
            scheme: scheme.into(),
            username: user.map(Into::into),
            password: password.map(Into::into),
            host: Some(host.into()),
            port,
            database: Some(db.into()),
        }
    }

    #[test]
    fn sqlite_paths_keep_the_slash_count() {
        // Three slashes: the host is empty and the path relative, as
        // db_sqlite reads it (issue 19: "a path one slash short").
        assert_eq!(parse("sqlite:///var/lib/t.db").unwrap(), id("sqlite", None, None, "", 0, "var/lib/t.db"));
        assert_eq!(
            parse("sqlite:////var/lib/t.db").unwrap(),
            id("sqlite", None, None, "", 0, "/var/lib/t.db")
        );
        assert_eq!(parse("sqlite:////tmp/t.db?x=1").unwrap().database.as_deref(), Some("/tmp/t.db"));
        assert_eq!(parse("sqlite:///tmp/t.db").unwrap().backend(), Some(Backend::Sqlite));
    }

    #[test]
    fn postgres_urls() {
        assert_eq!(
            parse("postgres://kamailio:pw@127.0.0.1:5433/kamailio").unwrap(),
            id("postgres", Some("kamailio"), Some("pw"), "127.0.0.1", 5433, "kamailio")
        );
        assert_eq!(parse("postgres://u@db/k").unwrap(), id("postgres", Some("u"), None, "db", 0, "k"));
        assert_eq!(parse("postgres://db/k").unwrap(), id("postgres", None, None, "db", 0, "k"));
        assert_eq!(parse("postgres://db:5432/k").unwrap(), id("postgres", None, None, "db", 5432, "k"));
        assert_eq!(
            parse("postgres://u:p@ss@db:5432/k").unwrap(),
            id("postgres", Some("u"), Some("p@ss"), "db", 5432, "k")
        );
        assert_eq!(
            parse("postgres://u@dom@db/k").unwrap(),
            id("postgres", Some("u@dom"), None, "db", 0, "k")
        );
        assert_eq!(
            parse("postgres://u:p@[::1]:5432/k").unwrap(),
            id("postgres", Some("u"), Some("p"), "::1", 5432, "k")
        );
        assert_eq!(parse("postgres://db:port/k").unwrap().port, 0);
        assert_eq!(parse("postgres://db/k").unwrap().backend(), Some(Backend::Postgres));
        assert_eq!(parse("mysql://u:p@db/k").unwrap().backend(), None);
        // db_bind_mod would look for db_postgresql, which does not exist.
        assert_eq!(parse("postgresql://db/k").unwrap().backend(), None);
    }

    #[test]
    fn what_kamailio_refuses() {
        for bad in ["", "s://a", "sqlite:/x/y.db", "sqlite:x/y", "postgres://db", "postgres://u:p@db:5432"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ports_as_str2s_reads_them() {
        assert_eq!(str2s(b"5432"), 5432);
        assert_eq!(str2s(b"65536"), 0);
        assert_eq!(str2s(b"123456"), 0);
        assert_eq!(str2s(b"54a"), 0);
    }
}
