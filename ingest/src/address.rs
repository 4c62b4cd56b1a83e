//! Which network addresses a list's URL may make vidfeat connect to.
//!
//! URL lists are scraped from the web and fetched from inside cloud networks, so by default a
//! source may not reach the machine itself, its cloud's metadata service or the private
//! network: loopback, link-local (169.254.169.254 and fd00:ec2::254 are the metadata services),
//! private (RFC 1918), shared (100.64/10, carrier-grade NAT, often internal in clouds),
//! unique-local, unspecified, multicast, broadcast and reserved addresses are refused. The
//! check runs on the *resolved* address of every connection (each redirect hop included), in
//! the resolver the HTTP client connects through, so a public name that resolves to a private
//! address is refused too, and the address checked is the address connected to.
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};

/// Why `ip` may not be connected to by default, or `None` for a public address.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(match () {
        _ if a == 0 => "unspecified",
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_link_local() => "link-local (cloud metadata)",
        _ if ip.is_private() => "private",
        _ if a == 100 && (64..128).contains(&b) => "shared (carrier-grade NAT)",
        _ if a == 192 && b == 0 && ip.octets()[2] == 0 => "reserved (IETF protocol assignments)",
        _ if a == 198 && (b == 18 || b == 19) => "reserved (benchmarking)",
        _ if ip.is_multicast() => "multicast",
        _ if a >= 240 => "reserved",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    // Addresses that carry an IPv4 address: IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible
    // (::a.b.c.d, deprecated) and the NAT64 prefix (64:ff9b::/96) reach that IPv4 address.
    let embedded = |hi: [u16; 6]| (s[..6] == hi).then(|| Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
    if let Some(v4) = embedded([0, 0, 0, 0, 0, 0xffff]).or_else(|| embedded([0x64, 0xff9b, 0, 0, 0, 0])) {
        return forbidden_v4(v4);
    }
    Some(match () {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "loopback",
        _ if s[..6] == [0; 6] => forbidden_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8)).unwrap_or("reserved (IPv4-compatible)"),
        _ if s[0] & 0xffc0 == 0xfe80 => "link-local",
        _ if s[0] & 0xffc0 == 0xfec0 => "site-local",
        _ if s[0] & 0xfe00 == 0xfc00 => "unique-local (cloud metadata fd00:ec2::254 is one)",
        _ if ip.is_multicast() => "multicast",
        _ => return None,
    })
}

/// What the guard refused last: the host asked for and the address it resolved to.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub host: String,
    pub addr: IpAddr,
    pub why: &'static str,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.trim_matches(['[', ']']) == self.addr.to_string() {
            write!(f, "{} is a {} address", self.host, self.why)
        } else {
            write!(f, "{} resolves to {}, a {} address", self.host, self.addr, self.why)
        }
    }
}

/// A resolver (for ureq) that drops forbidden addresses from every lookup and fails a lookup
/// that leaves none, remembering why so the caller can report `forbidden_address`. Hosts in
/// `trusted` (`host:port` as the URL spells them: endpoints the user configured) pass as
/// they are.
#[derive(Clone, Default)]
pub struct Guard {
    pub allow_private: bool,
    pub trusted: Vec<String>,
    refused: Arc<Mutex<Option<Refusal>>>,
}

impl Guard {
    pub fn new(allow_private: bool, trusted: Vec<String>) -> Self {
        Guard { allow_private, trusted, refused: Arc::default() }
    }

    /// The refusal behind the last failed lookup, taken.
    pub fn take_refusal(&self) -> Option<Refusal> {
        self.refused.lock().unwrap().take()
    }

    pub fn resolve(&self, netloc: &str) -> io::Result<Vec<SocketAddr>> {
        let addrs: Vec<SocketAddr> = netloc.to_socket_addrs()?.collect();
        if self.allow_private || self.trusted.iter().any(|t| t.eq_ignore_ascii_case(netloc)) {
            return Ok(addrs);
        }
        let host = netloc.rsplit_once(':').map_or(netloc, |(h, _)| h).to_string();
        let mut first_refusal = None;
        let allowed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match forbidden(a.ip()) {
                Some(why) => {
                    first_refusal.get_or_insert(Refusal { host: host.clone(), addr: a.ip(), why });
                    false
                }
                None => true,
            })
            .collect();
        if allowed.is_empty() {
            if let Some(r) = first_refusal {
                let msg = r.to_string();
                *self.refused.lock().unwrap() = Some(r);
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, msg));
            }
        }
        Ok(allowed)
    }
}

impl ureq::Resolver for Guard {
    fn resolve(&self, netloc: &str) -> io::Result<Vec<SocketAddr>> {
        Guard::resolve(self, netloc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Option<&'static str> {
        forbidden(s.parse().unwrap())
    }

    #[test]
    fn ranges_refused_by_default() {
        for a in [
            "127.0.0.1", "127.8.9.10", "0.0.0.0", "0.1.2.3", "10.0.0.5", "172.16.0.1", "172.31.255.255", "192.168.1.1",
            "169.254.169.254", "100.64.0.1", "100.127.255.254", "224.0.0.1", "255.255.255.255", "240.0.0.1", "192.0.0.1",
            "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254", "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
            "::ffff:10.1.2.3", "64:ff9b::a9fe:a9fe", "::127.0.0.1", "fec0::1",
        ] {
            assert!(f(a).is_some(), "{a} should be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for a in [
            "8.8.8.8", "1.1.1.1", "172.15.255.255", "172.32.0.1", "100.63.255.255", "100.128.0.1", "192.169.0.1",
            "169.255.0.1", "11.0.0.1", "2001:4860:4860::8888", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808",
        ] {
            assert_eq!(f(a), None, "{a} should pass");
        }
    }

    #[test]
    fn reasons_name_the_range() {
        assert_eq!(f("169.254.169.254"), Some("link-local (cloud metadata)"));
        assert_eq!(f("::ffff:127.0.0.1"), Some("loopback"));
        assert_eq!(f("10.0.0.5"), Some("private"));
    }

    #[test]
    fn guard_refuses_names_resolving_to_private_addresses_and_remembers_why() {
        let g = Guard::new(false, vec![]);
        let e = g.resolve("localhost:80").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        let r = g.take_refusal().unwrap();
        assert_eq!(r.host, "localhost");
        assert!(r.addr.is_loopback());
        assert!(r.to_string().contains("localhost resolves to"), "{r}");
        assert!(g.take_refusal().is_none(), "taken once");
        let e = g.resolve("169.254.169.254:80").unwrap_err();
        assert!(e.to_string().contains("169.254.169.254 is a link-local"), "{e}");
        let e = g.resolve("[::1]:80").unwrap_err();
        assert!(e.to_string().contains("[::1] is a loopback"), "{e}");
        // Opted in, or a configured endpoint: resolved as they are.
        assert!(!Guard::new(true, vec![]).resolve("127.0.0.1:9").unwrap().is_empty());
        assert!(!Guard::new(false, vec!["127.0.0.1:9".into()]).resolve("127.0.0.1:9").unwrap().is_empty());
        assert!(Guard::new(false, vec!["127.0.0.1:9".into()]).resolve("127.0.0.1:10").is_err());
    }
}
