//! Which clients may reach an app: `[[app]] allow` / `deny`, the wasgi form
//! of Apache's `Require ip` and 2.2's `Order`/`Allow from`/`Deny from` in a
//! `<Directory>` block. Checked on the client's address after trusted
//! forwarding, so behind Apache it is the browser's address, not Apache's.

use std::net::IpAddr;

use ipnet::IpNet;

/// One side of the rule: every client, or some networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressSet {
    pub all: bool,
    pub nets: Vec<IpNet>,
}

impl AddressSet {
    fn contains(&self, client: Option<IpAddr>) -> bool {
        self.all || client.is_some_and(|ip| self.nets.iter().any(|n| n.contains(&ip)))
    }

    pub fn is_empty(&self) -> bool {
        !self.all && self.nets.is_empty()
    }
}

/// A deny match refuses; otherwise an empty allow list lets everyone in and
/// a non-empty one only its members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    pub allow: AddressSet,
    pub deny: AddressSet,
}

impl Access {
    /// Adds an entry: `all`, an address, a CIDR block, or an Apache-style
    /// address prefix (`10.1` is 10.1.0.0/16).
    pub fn add(&mut self, entry: &str, deny: bool) -> Result<(), String> {
        let set = if deny { &mut self.deny } else { &mut self.allow };
        let entry = entry.trim();
        if entry.eq_ignore_ascii_case("all") {
            set.all = true;
            return Ok(());
        }
        set.nets.push(parse_net(entry)?);
        Ok(())
    }

    /// True when every client is let in (nothing was configured).
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether `client` may reach the app. A client whose address is unknown
    /// (a Unix-socket peer without trusted forwarding) matches only `all`.
    pub fn permits(&self, client: Option<IpAddr>) -> bool {
        !self.deny.contains(client) && (self.allow.is_empty() || self.allow.contains(client))
    }
}

fn parse_net(entry: &str) -> Result<IpNet, String> {
    if let Ok(net) = entry.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    if let Some(net) = apache_prefix(entry) {
        return Ok(net);
    }
    Err(format!(
        "{entry:?} is not \"all\", an IP address, a CIDR block like 10.0.0.0/8, or an address prefix like 10.1 \
         (host names are not supported: they would need a DNS lookup per request)"
    ))
}

/// Apache 2.2/2.4 partial addresses: "10", "10.1", "10.1.2" (a trailing dot
/// allowed) are the networks 10.0.0.0/8, 10.1.0.0/16, 10.1.2.0/24.
pub fn apache_prefix(entry: &str) -> Option<IpNet> {
    let parts: Vec<&str> = entry.trim_end_matches('.').split('.').collect();
    if !(1..4).contains(&parts.len()) {
        return None;
    }
    let mut octets = [0u8; 4];
    for (i, p) in parts.iter().enumerate() {
        octets[i] = p.parse().ok()?;
    }
    let net = ipnet::Ipv4Net::new(octets.into(), 8 * parts.len() as u8).expect("prefix is at most 24");
    Some(IpNet::V4(net))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn nothing_configured_lets_everyone_in() {
        let access = Access::default();
        assert!(access.is_open());
        assert!(access.permits(ip("203.0.113.9")));
        assert!(access.permits(None));
    }

    #[test]
    fn allow_list_admits_only_its_members() {
        let mut access = Access::default();
        access.add("127.0.0.1", false).unwrap();
        access.add("10.1", false).unwrap();
        access.add("2001:db8::/32", false).unwrap();
        assert!(access.permits(ip("127.0.0.1")));
        assert!(access.permits(ip("10.1.200.3")));
        assert!(!access.permits(ip("10.2.0.1")));
        assert!(access.permits(ip("2001:db8::5")));
        assert!(!access.permits(ip("192.0.2.1")));
        assert!(!access.permits(None), "an unknown address matches only `all`");
    }

    #[test]
    fn deny_wins() {
        let mut access = Access::default();
        access.add("all", false).unwrap();
        access.add("192.0.2.0/24", true).unwrap();
        assert!(access.permits(ip("198.51.100.1")));
        assert!(!access.permits(ip("192.0.2.77")));
        let mut closed = Access::default();
        closed.add("all", true).unwrap();
        assert!(!closed.permits(ip("127.0.0.1")));
    }

    #[test]
    fn bad_entries_are_explained() {
        let mut access = Access::default();
        let e = access.add("example.org", false).unwrap_err();
        assert!(e.contains("host names are not supported"), "{e}");
        assert!(access.add("10.300", false).is_err());
        assert!(access.add("10.0.0.0/40", false).is_err());
    }
}
