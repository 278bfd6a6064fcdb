//! Parsing the addresses, users and groups given to `explain`.

use sockexit_engine::{FilesResolver, NameResolver};
use std::net::{IpAddr, SocketAddr};

/// `ADDR:PORT`, `[V6]:PORT` or `[::ffff:a.b.c.d]:PORT`. A bare address is refused
/// with a hint rather than guessed at: port 0 would silently miss every port rule.
pub fn parse_sockaddr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Err(match ip {
            IpAddr::V4(v4) => format!("no port: write ADDR:PORT, e.g. {v4}:22"),
            IpAddr::V6(v6) => format!(
                "no port: write IPv6 addresses in brackets followed by the port, e.g. [{v6}]:22"
            ),
        });
    }
    if let Some((host, port)) = s.rsplit_once(':') {
        if port.parse::<u16>().is_err() {
            return Err(format!("port `{port}` is not a number from 0 to 65535"));
        }
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.parse::<IpAddr>().is_err() {
            return Err(format!(
                "`{host}` is not an IP address (host names are not resolved: the library \
                 only ever sees addresses)"
            ));
        }
    }
    Err("expected ADDR:PORT, e.g. 192.0.2.7:22 or [2001:db8::7]:22".into())
}

/// An IPv4 peer seen on a dual-stack socket as `::ffff:a.b.c.d` is an IPv4 peer.
pub fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        SocketAddr::V4(_) => a,
    }
}

/// A user or group as given on the command line, with its numeric id.
#[derive(Debug, Clone)]
pub struct Ident {
    /// The name, when a name (not a number) was given.
    pub name: Option<String>,
    /// The uid or gid.
    pub id: u32,
}

impl std::fmt::Display for Ident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}({})", self.id, n),
            None => write!(f, "{}", self.id),
        }
    }
}

fn ident(s: &str, lookup: impl Fn(&str) -> Option<u32>, what: &str) -> Result<Ident, String> {
    if let Ok(id) = s.parse::<u32>() {
        return Ok(Ident { name: None, id });
    }
    match lookup(s) {
        Some(id) => Ok(Ident {
            name: Some(s.to_owned()),
            id,
        }),
        None => Err(format!("no {what} of that name; give a numeric id instead")),
    }
}

/// A user name (looked up in /etc/passwd, as the library does) or a uid.
pub fn parse_user(s: &str) -> Result<Ident, String> {
    let r = FilesResolver::default();
    ident(s, |n| r.user(n), "user in /etc/passwd")
}

/// A group name (looked up in /etc/group, as the library does) or a gid.
pub fn parse_group(s: &str) -> Result<Ident, String> {
    let r = FilesResolver::default();
    ident(s, |n| r.group(n), "group in /etc/group")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_v4_v6_and_mapped() {
        assert_eq!(
            parse_sockaddr("10.1.2.3:21").unwrap(),
            "10.1.2.3:21".parse().unwrap()
        );
        assert_eq!(parse_sockaddr("[2001:db8::1]:443").unwrap().port(), 443);
        let m = parse_sockaddr("[::ffff:192.0.2.1]:80").unwrap();
        assert_eq!(unmap(m), "192.0.2.1:80".parse::<SocketAddr>().unwrap());
        let v6 = parse_sockaddr("[2001:db8::1]:80").unwrap();
        assert_eq!(unmap(v6), v6);
    }

    #[test]
    fn refuses_bare_addresses_and_names_with_a_hint() {
        assert!(parse_sockaddr("10.0.0.1")
            .unwrap_err()
            .contains("10.0.0.1:22"));
        assert!(parse_sockaddr("2001:db8::1")
            .unwrap_err()
            .contains("[2001:db8::1]:22"));
        assert!(parse_sockaddr("[2001:db8::1]")
            .unwrap_err()
            .contains("[2001:db8::1]:22"));
        assert!(parse_sockaddr("1.2.3.4:70000")
            .unwrap_err()
            .contains("port `70000`"));
        assert!(parse_sockaddr("example.org:80")
            .unwrap_err()
            .contains("not an IP address"));
    }

    #[test]
    fn numeric_ids_need_no_lookup() {
        let u = parse_user("4242").unwrap();
        assert_eq!((u.name, u.id), (None, 4242));
    }
}
