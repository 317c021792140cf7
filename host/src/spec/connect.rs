//! Outbound connection grants (`[[connect]] to = "..."` in a policy,
//! `wasgi run --connect TO`): what a guest may connect to, and the check
//! every connection the host makes for it goes through.
//!
//! A grant names a TCP destination (`HOST:PORT`) or a Unix socket
//! (`unix:/path/to.sock`). HOST is an IP address, a CIDR block, a DNS name or
//! `*.domain`; IPv6 addresses and blocks are written in brackets
//! (`[2001:db8::1]:443`, `[2001:db8::/32]:443`). PORT is a number or a range
//! (`5432-5433`).
//!
//! Two rules hold whatever is granted:
//! - link-local and cloud metadata addresses (169.254.0.0/16, fe80::/10,
//!   fd00:ec2::254) are reached only through a grant of that literal
//!   address, never through a block, and never through a name (a DNS answer
//!   pointing a granted name there is how metadata credentials are stolen);
//! - the unspecified addresses (0.0.0.0, ::), which Linux treats as "this
//!   host", and multicast and broadcast addresses are never reached.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are checked as the IPv4
//! address they carry, so that a mapped form cannot slip past a rule.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;

use ipnet::IpNet;

/// One grant: where a guest may connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectGrant {
    Tcp { host: HostPattern, ports: RangeInclusive<u16> },
    Unix(PathBuf),
}

/// The host part of a TCP grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// One address, written literally (the only way to reach a link-local
    /// or metadata address).
    Addr(IpAddr),
    /// A CIDR block.
    Net(IpNet),
    /// A DNS name, lower case, without a trailing dot.
    Name(String),
    /// `*.domain`: any name below `domain` (not `domain` itself), stored as
    /// `.domain`.
    Suffix(String),
}

/// Why a grant's text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub text: String,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connect grant {:?}: {} (write HOST:PORT with HOST an IP address, a CIDR block, a DNS name or *.domain, \
             IPv6 in brackets, PORT a number or a range such as 5432-5433; or unix:/path/to.sock)",
            self.text, self.reason
        )
    }
}

impl std::error::Error for ParseError {}

impl FromStr for ConnectGrant {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<ConnectGrant, ParseError> {
        let fail = |reason: &str| ParseError { text: text.to_string(), reason: reason.to_string() };
        let trimmed = text.trim();
        if let Some(path) = trimmed.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(fail("a Unix socket's path must be absolute"));
            }
            return Ok(ConnectGrant::Unix(path));
        }
        let (host, port) = if let Some(rest) = trimmed.strip_prefix('[') {
            let Some((inside, after)) = rest.split_once(']') else {
                return Err(fail("an opening [ without its closing ]"));
            };
            let Some(port) = after.strip_prefix(':') else {
                return Err(fail("no :PORT after the bracketed address"));
            };
            (parse_bracketed(inside).map_err(|r| fail(&r))?, port)
        } else {
            let Some((host, port)) = trimmed.rsplit_once(':') else {
                return Err(fail("no :PORT"));
            };
            if host.contains(':') {
                return Err(fail("an IPv6 address must be written in brackets, as [2001:db8::1]:443"));
            }
            (parse_host(host).map_err(|r| fail(&r))?, port)
        };
        let ports = parse_ports(port).map_err(|r| fail(&r))?;
        Ok(ConnectGrant::Tcp { host, ports })
    }
}

fn parse_bracketed(inside: &str) -> Result<HostPattern, String> {
    if inside.contains('/') {
        let net: IpNet = inside.parse().map_err(|_| format!("{inside:?} is not an IPv6 CIDR block"))?;
        if !matches!(net, IpNet::V6(_)) {
            return Err(format!("{inside:?}: brackets are for IPv6; write IPv4 blocks without them"));
        }
        return Ok(HostPattern::Net(net.trunc()));
    }
    match inside.parse::<Ipv6Addr>() {
        Ok(addr) => Ok(HostPattern::Addr(IpAddr::V6(addr))),
        Err(_) => Err(format!("{inside:?} is not an IPv6 address")),
    }
}

fn parse_host(host: &str) -> Result<HostPattern, String> {
    if host.is_empty() {
        return Err("no host before :PORT".into());
    }
    if host.contains('/') {
        let net: IpNet = host.parse().map_err(|_| format!("{host:?} is not a CIDR block"))?;
        return Ok(HostPattern::Net(net.trunc()));
    }
    if let Ok(addr) = host.parse::<Ipv4Addr>() {
        return Ok(HostPattern::Addr(IpAddr::V4(addr)));
    }
    if let Some(domain) = host.strip_prefix("*.") {
        let domain = dns_name(domain)?;
        return Ok(HostPattern::Suffix(format!(".{domain}")));
    }
    if host.contains('*') {
        return Err(format!("{host:?}: a wildcard is only allowed as the whole first label, as *.example.com"));
    }
    // All digits and dots, but not an address (300.1.2.3, 10.1): refused
    // rather than taken for a name that no resolver would answer.
    if host.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("{host:?} is not an IPv4 address"));
    }
    Ok(HostPattern::Name(dns_name(host)?))
}

/// A DNS name as grants hold it: lower case, no trailing dot, each label
/// 1–63 letters, digits, hyphens or underscores (SRV-style names), not
/// starting or ending with a hyphen; at most 253 characters.
fn dns_name(name: &str) -> Result<String, String> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{name:?} is not a DNS name"));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("{name:?} is not a DNS name (label {label:?})"));
        }
    }
    Ok(name)
}

fn parse_ports(text: &str) -> Result<RangeInclusive<u16>, String> {
    let port = |p: &str| -> Result<u16, String> {
        match p.trim().parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("{p:?} is not a port (1-65535)")),
            Ok(n) => Ok(n),
        }
    };
    match text.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (port(lo)?, port(hi)?);
            if lo > hi {
                return Err(format!("the port range {text:?} runs backwards"));
            }
            Ok(lo..=hi)
        }
        None => {
            let p = port(text)?;
            Ok(p..=p)
        }
    }
}

impl fmt::Display for ConnectGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectGrant::Unix(path) => write!(f, "unix:{}", path.display()),
            ConnectGrant::Tcp { host, ports } => {
                match host {
                    HostPattern::Addr(IpAddr::V6(a)) => write!(f, "[{a}]")?,
                    HostPattern::Addr(IpAddr::V4(a)) => write!(f, "{a}")?,
                    HostPattern::Net(IpNet::V6(n)) => write!(f, "[{n}]")?,
                    HostPattern::Net(IpNet::V4(n)) => write!(f, "{n}")?,
                    HostPattern::Name(n) => write!(f, "{n}")?,
                    HostPattern::Suffix(s) => write!(f, "*{s}")?,
                }
                if ports.start() == ports.end() {
                    write!(f, ":{}", ports.start())
                } else {
                    write!(f, ":{}-{}", ports.start(), ports.end())
                }
            }
        }
    }
}

/// How an address is kept from guests whatever the grants say, if it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarded {
    /// Never reachable: unspecified, multicast, broadcast.
    Never,
    /// Only through a grant of this literal address: link-local, metadata.
    LiteralOnly,
}

/// The guard on `addr` (IPv4-mapped IPv6 checked as IPv4), if any.
pub fn guarded(addr: IpAddr) -> Option<Guarded> {
    match canonical(addr) {
        IpAddr::V4(a) => {
            if a.is_unspecified() || a.is_multicast() || a.is_broadcast() {
                Some(Guarded::Never)
            } else if a.is_link_local() {
                Some(Guarded::LiteralOnly)
            } else {
                None
            }
        }
        IpAddr::V6(a) => {
            let metadata = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
            if a.is_unspecified() || a.is_multicast() {
                Some(Guarded::Never)
            } else if (a.segments()[0] & 0xffc0) == 0xfe80 || a == metadata {
                Some(Guarded::LiteralOnly)
            } else {
                None
            }
        }
    }
}

/// `addr` with an IPv4-mapped IPv6 address turned into the IPv4 one.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(a),
        },
        v4 => v4,
    }
}

impl ConnectGrant {
    /// Whether this grant lets a guest connect to `addr`:`port` when it
    /// asked for that address itself (not through a name).
    pub fn allows_addr(&self, addr: IpAddr, port: u16) -> bool {
        let ConnectGrant::Tcp { host, ports } = self else { return false };
        if !ports.contains(&port) {
            return false;
        }
        let addr = canonical(addr);
        match (host, guarded(addr)) {
            (_, Some(Guarded::Never)) => false,
            (HostPattern::Addr(granted), Some(Guarded::LiteralOnly)) => canonical(*granted) == addr,
            (_, Some(Guarded::LiteralOnly)) => false,
            (HostPattern::Addr(granted), None) => canonical(*granted) == addr,
            (HostPattern::Net(net), None) => net_contains(net, addr),
            (HostPattern::Name(_) | HostPattern::Suffix(_), None) => false,
        }
    }

    /// Whether this grant lets a guest resolve `name` and connect to it on
    /// `port` (an address the name resolves to is then checked with
    /// [`ConnectGrant::allows_resolved`]).
    pub fn allows_name(&self, name: &str, port: u16) -> bool {
        let ConnectGrant::Tcp { host, ports } = self else { return false };
        if !ports.contains(&port) {
            return false;
        }
        let Ok(name) = dns_name(name) else { return false };
        match host {
            HostPattern::Name(granted) => *granted == name,
            HostPattern::Suffix(suffix) => name.ends_with(suffix.as_str()),
            HostPattern::Addr(_) | HostPattern::Net(_) => false,
        }
    }

    /// Whether an address that a granted name resolved to may be connected
    /// to: any the name's grant covers, except the guarded ones (a name can
    /// never lead to a link-local or metadata address) and, through a
    /// `*.domain` grant, the loopback addresses: whoever controls a name
    /// under the domain could point it at the server's own local services
    /// (a grant naming the host exactly, such as `localhost:5432`, may).
    pub fn allows_resolved(&self, name: &str, addr: IpAddr, port: u16) -> bool {
        let wildcard = matches!(self, ConnectGrant::Tcp { host: HostPattern::Suffix(_), .. });
        self.allows_name(name, port) && guarded(addr).is_none() && !(wildcard && canonical(addr).is_loopback())
    }

    /// Whether this grant lets a guest connect to the Unix socket `path`.
    pub fn allows_unix(&self, path: &std::path::Path) -> bool {
        matches!(self, ConnectGrant::Unix(granted) if granted == path)
    }
}

/// A grant with where it comes from (a policy's file and line, or
/// `--connect`), for `wasgi check` and for the log's explanations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRule {
    pub grant: ConnectGrant,
    pub origin: String,
}

/// What a group's guests may reach, and the group's connections counted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Network {
    /// Nothing is reachable without a rule.
    pub rules: Vec<ConnectRule>,
    /// Open connections the whole group may hold at once.
    pub max_connections: usize,
    /// How long a connect may take when the guest sets no shorter timeout.
    pub connect_timeout: std::time::Duration,
    /// A CA bundle the guest's `ssl` module trusts (granted read-only).
    pub ca_file: Option<PathBuf>,
    /// Shared by every instance of the group (not part of its identity).
    pub counters: std::sync::Arc<NetCounters>,
}

impl Network {
    /// The first rule that lets a guest connect to `addr`:`port` which it
    /// asked for by address.
    pub fn rule_for_addr(&self, addr: IpAddr, port: u16) -> Option<&ConnectRule> {
        self.rules.iter().find(|r| r.grant.allows_addr(addr, port))
    }

    /// The first rule that lets a guest connect to `addr`:`port`, which
    /// `name` resolved to.
    pub fn rule_for_resolved(&self, name: &str, addr: IpAddr, port: u16) -> Option<&ConnectRule> {
        self.rules.iter().find(|r| r.grant.allows_resolved(name, addr, port))
    }

    /// Whether any rule names `name` (on any port): only then is it looked up.
    pub fn names(&self, name: &str) -> bool {
        self.rules.iter().any(|r| matches!(&r.grant, ConnectGrant::Tcp { ports, .. } if r.grant.allows_name(name, *ports.start())))
    }

    pub fn rule_for_unix(&self, path: &std::path::Path) -> Option<&ConnectRule> {
        self.rules.iter().find(|r| r.grant.allows_unix(path))
    }
}

/// A group's connections, counted by every instance: the open ones (held
/// under `max_connections`) and, for metrics, all made and the bytes moved.
#[derive(Debug, Default)]
pub struct NetCounters {
    pub open: std::sync::atomic::AtomicUsize,
    pub opened: std::sync::atomic::AtomicU64,
    pub denied: std::sync::atomic::AtomicU64,
    pub bytes_in: std::sync::atomic::AtomicU64,
    pub bytes_out: std::sync::atomic::AtomicU64,
}

/// Counters are a group's running state, not part of what its guests are
/// made from: two specs that differ only in them are the same spec.
impl PartialEq for NetCounters {
    fn eq(&self, _: &NetCounters) -> bool {
        true
    }
}

impl Eq for NetCounters {}

fn net_contains(net: &IpNet, addr: IpAddr) -> bool {
    match (net, addr) {
        (IpNet::V4(n), IpAddr::V4(a)) => n.contains(&a),
        (IpNet::V6(n), IpAddr::V6(a)) => n.contains(&a),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(text: &str) -> ConnectGrant {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn every_form_of_grant_parses_and_prints_back() {
        for text in [
            "10.0.0.5:5432",
            "10.0.0.0/8:5432-5433",
            "db.internal:5432",
            "*.example.com:443",
            "[2001:db8::1]:443",
            "[2001:db8::/32]:443",
            "unix:/run/postgresql/.s.PGSQL.5432",
            "_srv.example.com:8080",
        ] {
            assert_eq!(grant(text).to_string(), text);
        }
        assert_eq!(grant("DB.Internal.:5432").to_string(), "db.internal:5432");
        assert_eq!(grant(" 10.1.2.3/16:80 ").to_string(), "10.1.0.0/16:80", "a block is kept as its network");
    }

    #[test]
    fn malformed_grants_say_what_is_wrong() {
        for (text, reason) in [
            ("db.internal", "no :PORT"),
            ("db.internal:0", "is not a port"),
            ("db.internal:70000", "is not a port"),
            ("db.internal:5433-5432", "runs backwards"),
            ("db.internal:x", "is not a port"),
            (":5432", "no host"),
            ("2001:db8::1:443", "must be written in brackets"),
            ("[2001:db8::1:443", "without its closing"),
            ("[2001:db8::1]", "no :PORT after"),
            ("[10.0.0.1]:80", "is not an IPv6 address"),
            ("[10.0.0.0/8]:80", "brackets are for IPv6"),
            ("10.0.0.0/33:80", "is not a CIDR block"),
            ("300.1.2.3:80", "is not an IPv4 address"),
            ("db.*.com:80", "wildcard is only allowed"),
            ("*:80", "wildcard is only allowed"),
            ("-bad.example:80", "is not a DNS name"),
            ("a..b:80", "is not a DNS name"),
            ("unix:relative.sock", "must be absolute"),
        ] {
            let err = text.parse::<ConnectGrant>().expect_err(text).to_string();
            assert!(err.contains(reason), "{text}: {err}");
            assert!(err.contains(&format!("{text:?}")), "{text}: the message names the grant: {err}");
        }
    }

    #[test]
    fn addresses_match_literal_grants_and_blocks_on_the_granted_ports_only() {
        let one = grant("10.0.0.5:5432");
        assert!(one.allows_addr(ip("10.0.0.5"), 5432));
        assert!(!one.allows_addr(ip("10.0.0.5"), 5433));
        assert!(!one.allows_addr(ip("10.0.0.6"), 5432));
        let block = grant("10.0.0.0/8:5432-5433");
        assert!(block.allows_addr(ip("10.200.1.1"), 5433));
        assert!(!block.allows_addr(ip("11.0.0.1"), 5432));
        assert!(!block.allows_addr(ip("10.0.0.1"), 5434));
        let v6 = grant("[2001:db8::/32]:443");
        assert!(v6.allows_addr(ip("2001:db8:1::7"), 443));
        assert!(!v6.allows_addr(ip("2001:db9::7"), 443));
        // A name grant says nothing about addresses asked for directly.
        assert!(!grant("db.internal:5432").allows_addr(ip("10.0.0.5"), 5432));
        assert!(!grant("unix:/run/db.sock").allows_addr(ip("10.0.0.5"), 5432));
    }

    #[test]
    fn ipv4_mapped_ipv6_is_checked_as_the_ipv4_address() {
        assert!(grant("10.0.0.5:5432").allows_addr(ip("::ffff:10.0.0.5"), 5432));
        assert!(!grant("0.0.0.0/0:80").allows_addr(ip("::ffff:169.254.169.254"), 80));
        assert!(!grant("[::/0]:80").allows_addr(ip("::ffff:169.254.169.254"), 80));
        assert!(!grant("[::/0]:80").allows_addr(ip("::ffff:0.0.0.0"), 80));
    }

    #[test]
    fn link_local_and_metadata_need_a_literal_grant() {
        for addr in ["169.254.169.254", "169.254.0.1", "fe80::1", "fd00:ec2::254"] {
            let a = ip(addr);
            assert!(!grant("0.0.0.0/0:80").allows_addr(a, 80), "{addr} through 0.0.0.0/0");
            assert!(!grant("169.254.0.0/16:80").allows_addr(a, 80), "{addr} through its own block");
            assert!(!grant("[::/0]:80").allows_addr(a, 80), "{addr} through ::/0");
            assert!(!grant("[fe80::/10]:80").allows_addr(a, 80), "{addr} through fe80::/10");
            let literal = if a.is_ipv6() { format!("[{addr}]:80") } else { format!("{addr}:80") };
            assert!(grant(&literal).allows_addr(a, 80), "{addr} through its literal grant");
        }
        // Neighbours of the metadata address are not metadata.
        assert!(grant("[fd00::/8]:80").allows_addr(ip("fd00:ec2::253"), 80));
    }

    #[test]
    fn unspecified_multicast_and_broadcast_are_never_reached() {
        for addr in ["0.0.0.0", "::", "224.0.0.1", "255.255.255.255", "ff02::1"] {
            let a = ip(addr);
            let literal = if a.is_ipv6() { format!("[{addr}]:80") } else { format!("{addr}:80") };
            assert!(!grant(&literal).allows_addr(a, 80), "{addr} literal");
            assert!(!grant("0.0.0.0/0:80").allows_addr(a, 80), "{addr} in 0.0.0.0/0");
            assert!(!grant("[::/0]:80").allows_addr(a, 80), "{addr} in ::/0");
        }
    }

    #[test]
    fn names_match_exactly_or_below_a_wildcard() {
        let exact = grant("db.internal:5432");
        assert!(exact.allows_name("db.internal", 5432));
        assert!(exact.allows_name("DB.internal.", 5432), "case and the trailing dot do not matter");
        assert!(!exact.allows_name("db.internal", 5433));
        assert!(!exact.allows_name("x.db.internal", 5432));
        assert!(!exact.allows_name("db.internal.evil.com", 5432));
        let wild = grant("*.example.com:443");
        assert!(wild.allows_name("api.example.com", 443));
        assert!(wild.allows_name("a.b.example.com", 443));
        assert!(!wild.allows_name("example.com", 443), "*.domain is below the domain, not the domain");
        assert!(!wild.allows_name("badexample.com", 443));
        assert!(!wild.allows_name("api.example.com.evil.net", 443));
        // Address grants say nothing about names, even one spelling an address.
        assert!(!grant("10.0.0.5:5432").allows_name("10.0.0.5", 5432));
    }

    #[test]
    fn a_granted_name_never_leads_to_a_guarded_address() {
        let g = grant("api.example.com:443");
        assert!(g.allows_resolved("api.example.com", ip("93.184.216.34"), 443));
        assert!(g.allows_resolved("api.example.com", ip("10.0.0.7"), 443), "private addresses are the app's own business");
        for addr in ["169.254.169.254", "fe80::1", "fd00:ec2::254", "0.0.0.0", "::", "::ffff:169.254.169.254"] {
            assert!(!g.allows_resolved("api.example.com", ip(addr), 443), "{addr}");
        }
        assert!(!g.allows_resolved("other.example.com", ip("93.184.216.34"), 443));
        assert!(grant("localhost:5432").allows_resolved("localhost", ip("127.0.0.1"), 5432), "a name granted exactly may be local");
        let wildcard = grant("*.example.com:443");
        assert!(wildcard.allows_resolved("a.example.com", ip("10.0.0.7"), 443));
        for addr in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert!(!wildcard.allows_resolved("a.example.com", ip(addr), 443), "a wildcard never reaches the server's loopback: {addr}");
        }
    }

    #[test]
    fn unix_grants_match_their_path_only() {
        let g = grant("unix:/run/postgresql/.s.PGSQL.5432");
        assert!(g.allows_unix(std::path::Path::new("/run/postgresql/.s.PGSQL.5432")));
        assert!(!g.allows_unix(std::path::Path::new("/run/postgresql/other.sock")));
        assert!(!grant("db.internal:5432").allows_unix(std::path::Path::new("/run/postgresql/.s.PGSQL.5432")));
    }
}
