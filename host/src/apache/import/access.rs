//! Who may reach an app: Apache 2.2's `Order`/`Allow`/`Deny` and 2.4's
//! `Require` (with `<RequireAll>`/`<RequireAny>`) of the section that holds
//! the script, mapped onto `[[app]] allow` / `deny` address lists. What the
//! lists cannot say goes to `unmapped`, and the app is then open to everyone
//! wasgi's listener lets in (Apache, in front, still applies its own rules).

use std::net::IpAddr;

use ipnet::IpNet;

use super::Item;
use crate::apache::conf::Directive;

/// Who may reach an app: allowed = (allow is None or matches allow) and not deny.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Access {
    pub(super) allow: Option<Vec<String>>,
    pub(super) deny: Vec<String>,
}

impl Access {
    pub(super) fn everyone() -> Access {
        Access { allow: None, deny: Vec::new() }
    }

    pub(super) fn nobody() -> Access {
        Access { allow: None, deny: vec!["all".into()] }
    }

    fn is_nobody(&self) -> bool {
        self.deny.iter().any(|d| d == "all") || self.allow.as_ref().is_some_and(|a| a.is_empty())
    }

    fn normal(self) -> Access {
        if self.is_nobody() {
            Access::nobody()
        } else {
            self
        }
    }
}

/// `10.1` → `10.1.0.0/16`, `192.168.1.0/255.255.255.0` → `192.168.1.0/24`,
/// addresses and CIDR blocks as they are; host names are `None`.
pub(super) fn address(entry: &str) -> Option<String> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    if let Ok(net) = entry.parse::<IpNet>() {
        return Some(net.to_string());
    }
    if let Some((ip, mask)) = entry.split_once('/') {
        let ip: std::net::Ipv4Addr = ip.parse().ok()?;
        let mask: std::net::Ipv4Addr = mask.parse().ok()?;
        let bits = u32::from(mask);
        if bits.leading_ones() + bits.trailing_zeros() != 32 {
            return None;
        }
        return Some(IpNet::new(IpAddr::V4(ip), bits.leading_ones() as u8).ok()?.trunc().to_string());
    }
    crate::spec::access::apache_prefix(entry).map(|net| net.to_string())
}

fn overlaps(a: &str, b: &str) -> bool {
    let net = |s: &str| s.parse::<IpNet>().ok().or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from));
    match (net(a), net(b)) {
        (Some(a), Some(b)) => a.contains(&b) || b.contains(&a),
        _ => a == b,
    }
}

/// The directives this module reads: a section's access control.
pub(super) fn is_access(d: &Directive) -> bool {
    ["Order", "Allow", "Deny", "Require", "Satisfy", "RequireAll", "RequireAny", "RequireNone"].iter().any(|n| d.is(n))
}

/// Maps access-control directives of one section onto allow/deny lists.
pub(super) fn map_access(directives: &[&Directive], unmapped: &mut Vec<Item>) -> Option<Access> {
    let modern: Vec<&Directive> = directives.iter().copied().filter(|d| d.is("Require") || d.children.is_some()).collect();
    let item = |d: &Directive, why: &str| Item { at: d.at(), what: d.text(), why: why.to_owned() };
    if !modern.is_empty() {
        for d in directives.iter().filter(|d| !d.is("Require") && d.children.is_none()) {
            unmapped.push(item(d, "Apache 2.2 access control next to 2.4 Require lines: only the Require lines are mapped"));
        }
        return require_any(&modern, unmapped);
    }
    // Apache 2.2: Order, Allow from, Deny from. Default order: deny,allow.
    let mut allow_first = false;
    let mut allows: Vec<String> = Vec::new();
    let mut denies: Vec<String> = Vec::new();
    let mut ok = true;
    for d in directives {
        if d.is("Order") {
            let order = d.args.join("").to_ascii_lowercase();
            allow_first = match order.as_str() {
                "allow,deny" | "mutual-failure" => true,
                "deny,allow" => false,
                _ => {
                    unmapped.push(item(d, "unknown Order"));
                    ok = false;
                    false
                }
            };
        } else if d.is("Allow") || d.is("Deny") {
            if !d.args.first().is_some_and(|a| a.eq_ignore_ascii_case("from")) {
                unmapped.push(item(d, "expected `from`"));
                ok = false;
                continue;
            }
            let into = if d.is("Allow") { &mut allows } else { &mut denies };
            for entry in &d.args[1..] {
                if entry.eq_ignore_ascii_case("all") {
                    into.push("all".into());
                } else if let Some(a) = address(entry) {
                    into.push(a);
                } else if entry.starts_with("env=") {
                    unmapped.push(item(d, &format!("{entry}: environment-variable access control has no wasgi equivalent")));
                    ok = false;
                } else {
                    unmapped.push(item(d, &format!("{entry}: host names are not mapped (wasgi matches addresses and CIDR blocks)")));
                    ok = false;
                }
            }
        } else if d.is("Satisfy") {
            unmapped.push(item(d, "Satisfy combines access control with authentication, which stays in Apache"));
        }
    }
    if !ok {
        return None;
    }
    let all = |v: &Vec<String>| v.iter().any(|e| e == "all");
    let access = if allow_first {
        // allowed = matches Allow and not Deny.
        if allows.is_empty() {
            Access::nobody()
        } else {
            Access { allow: if all(&allows) { None } else { Some(allows) }, deny: denies }
        }
    } else {
        // allowed = matches Allow, or does not match Deny.
        if all(&allows) || denies.is_empty() {
            Access::everyone()
        } else if all(&denies) {
            Access { allow: Some(allows), deny: Vec::new() }
        } else if allows.iter().any(|a| denies.iter().any(|d| overlaps(a, d))) {
            let d = directives.iter().find(|d| d.is("Order")).or(directives.first()).unwrap();
            unmapped.push(item(
                d,
                &format!(
                    "Order deny,allow with Allow from {} inside Deny from {}: \"deny wins\" lists cannot say this; write allow/deny by hand",
                    allows.join(" "),
                    denies.join(" ")
                ),
            ));
            return None;
        } else {
            // Allowed addresses outside the denied ones were allowed anyway.
            Access { allow: None, deny: denies }
        }
    };
    Some(access.normal())
}

/// A `Require` line: Ok((access, negated)).
fn require_line(d: &Directive, unmapped: &mut Vec<Item>) -> Option<(Access, bool)> {
    let mut args: Vec<&str> = d.args.iter().map(String::as_str).collect();
    let negated = args.first().is_some_and(|a| a.eq_ignore_ascii_case("not"));
    if negated {
        args.remove(0);
    }
    let kind = args.first().map(|a| a.to_ascii_lowercase()).unwrap_or_default();
    let item = |why: String| Item { at: d.at(), what: d.text(), why };
    let access = match (kind.as_str(), &args[1.min(args.len())..]) {
        ("all", [v]) if v.eq_ignore_ascii_case("granted") => Access::everyone(),
        ("all", [v]) if v.eq_ignore_ascii_case("denied") => Access::nobody(),
        ("local", []) => Access { allow: Some(vec!["127.0.0.0/8".into(), "::1".into()]), deny: Vec::new() },
        ("ip", entries) if !entries.is_empty() => {
            let mut nets = Vec::new();
            for e in entries {
                match address(e) {
                    Some(a) => nets.push(a),
                    None => {
                        unmapped.push(item(format!("{e} is not an address or CIDR block")));
                        return None;
                    }
                }
            }
            Access { allow: Some(nets), deny: Vec::new() }
        }
        _ => {
            unmapped.push(item(format!(
                "Require {kind}: only `all`, `ip` and `local` are mapped; authentication and other checks stay in Apache"
            )));
            return None;
        }
    };
    if negated {
        // `Require not ip X`: everyone except X.
        match access.allow {
            Some(nets) => Some((Access { allow: None, deny: nets }, true)),
            None => {
                unmapped.push(item("only `Require not ip` is mapped".into()));
                None
            }
        }
    } else {
        Some((access, false))
    }
}

fn require_item(d: &Directive, unmapped: &mut Vec<Item>) -> Option<(Access, bool)> {
    if d.is("RequireAll") {
        require_all(&d.children().iter().collect::<Vec<_>>(), unmapped).map(|a| (a, false))
    } else if d.is("RequireAny") {
        require_any(&d.children().iter().collect::<Vec<_>>(), unmapped).map(|a| (a, false))
    } else if d.is("Require") {
        require_line(d, unmapped)
    } else {
        unmapped.push(Item { at: d.at(), what: d.text(), why: "not mapped (only Require, RequireAll and RequireAny are)".into() });
        None
    }
}

/// `<RequireAny>` (and bare Require lines): a client allowed by any of them.
fn require_any(items: &[&Directive], unmapped: &mut Vec<Item>) -> Option<Access> {
    let mut result: Option<Access> = None;
    for d in items {
        let (a, negated) = require_item(d, unmapped)?;
        if negated {
            unmapped.push(Item { at: d.at(), what: d.text(), why: "`Require not` only counts inside <RequireAll>".into() });
            return None;
        }
        result = Some(match result {
            None => a,
            Some(r) if r.is_nobody() => a,
            Some(r) if a.is_nobody() => r,
            Some(r) if r == Access::everyone() || a == Access::everyone() => Access::everyone(),
            Some(r) if r.deny.is_empty() && a.deny.is_empty() => {
                let mut nets = r.allow.unwrap_or_default();
                nets.extend(a.allow.unwrap_or_default());
                Access { allow: Some(nets), deny: Vec::new() }
            }
            Some(_) => {
                unmapped.push(Item {
                    at: d.at(),
                    what: d.text(),
                    why: "this combination of denials inside <RequireAny> cannot be written as allow/deny lists".into(),
                });
                return None;
            }
        });
    }
    result.map(Access::normal)
}

/// `<RequireAll>`: a client allowed by every one of them.
fn require_all(items: &[&Directive], unmapped: &mut Vec<Item>) -> Option<Access> {
    let mut result = Access::everyone();
    for d in items {
        let (a, _) = require_item(d, unmapped)?;
        result.deny.extend(a.deny);
        result.allow = match (result.allow, a.allow) {
            (None, x) | (x, None) => x,
            (Some(x), Some(y)) if x == y => Some(x),
            (Some(_), Some(_)) => {
                unmapped.push(Item {
                    at: d.at(),
                    what: d.text(),
                    why: "two different address lists that must both match cannot be written as one allow list".into(),
                });
                return None;
            }
        };
    }
    Some(result.normal())
}


#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::apache::conf::Reader;
    use super::*;

    fn access(text: &str) -> (Option<Access>, Vec<Item>) {
        let tree = Reader::new(None).parse(text, Path::new("/a.conf")).unwrap();
        let directives: Vec<&Directive> = tree.iter().collect();
        let mut unmapped = Vec::new();
        (map_access(&directives, &mut unmapped), unmapped)
    }

    fn lists(allow: &[&str], deny: &[&str]) -> Option<Access> {
        Some(Access {
            allow: if allow.is_empty() { None } else { Some(allow.iter().map(|s| s.to_string()).collect()) },
            deny: deny.iter().map(|s| s.to_string()).collect(),
        })
    }

    #[test]
    fn addresses() {
        assert_eq!(address("10.1").as_deref(), Some("10.1.0.0/16"));
        assert_eq!(address("10.1.").as_deref(), Some("10.1.0.0/16"));
        assert_eq!(address("192.168.1.0/255.255.255.0").as_deref(), Some("192.168.1.0/24"));
        assert_eq!(address("192.168.1.7").as_deref(), Some("192.168.1.7"));
        assert_eq!(address("2001:db8::/32").as_deref(), Some("2001:db8::/32"));
        assert_eq!(address("example.com"), None);
        assert_eq!(address("10.0.0.0/255.0.255.0"), None);
    }

    #[test]
    fn apache_22_access() {
        assert_eq!(access("Order deny,allow\nAllow from all\n").0, lists(&[], &[]));
        assert_eq!(access("Order allow,deny\nAllow from all\n").0, lists(&[], &[]));
        assert_eq!(access("Order allow,deny\n").0, lists(&[], &["all"]), "allow,deny with no Allow admits nobody");
        assert_eq!(access("Order Deny,Allow\nDeny from all\nAllow from 10.1 192.0.2.5\n").0, lists(&["10.1.0.0/16", "192.0.2.5"], &[]));
        assert_eq!(access("Order allow,deny\nAllow from all\nDeny from 203.0.113.0/24\n").0, lists(&[], &["203.0.113.0/24"]));
        assert_eq!(access("Order allow,deny\nAllow from 10.0.0.0/8\nDeny from 10.9\n").0, lists(&["10.0.0.0/8"], &["10.9.0.0/16"]));
        assert_eq!(access("Deny from 198.51.100.1\n").0, lists(&[], &["198.51.100.1"]), "the default order is deny,allow");
        let (mapped, unmapped) = access("Order deny,allow\nDeny from 10.0.0.0/8\nAllow from 10.1\n");
        assert_eq!(mapped, None);
        assert!(unmapped[0].why.contains("cannot say this"), "{unmapped:?}");
        let (mapped, unmapped) = access("Order allow,deny\nAllow from .example.com\n");
        assert_eq!(mapped, None);
        assert_eq!(unmapped[0].to_string(), "/a.conf:2: Allow from .example.com: .example.com: host names are not mapped (wasgi matches addresses and CIDR blocks)");
    }

    #[test]
    fn apache_24_access() {
        assert_eq!(access("Require all granted\n").0, lists(&[], &[]));
        assert_eq!(access("Require all denied\n").0, lists(&[], &["all"]));
        assert_eq!(access("Require ip 10.1 192.0.2.0/24\nRequire ip ::1\n").0, lists(&["10.1.0.0/16", "192.0.2.0/24", "::1"], &[]));
        assert_eq!(access("Require local\n").0, lists(&["127.0.0.0/8", "::1"], &[]));
        assert_eq!(
            access("<RequireAll>\nRequire all granted\nRequire not ip 203.0.113.9 198.51.100\n</RequireAll>\n").0,
            lists(&[], &["203.0.113.9", "198.51.100.0/24"])
        );
        assert_eq!(
            access("<RequireAll>\n<RequireAny>\nRequire ip 10.0.0.0/8\nRequire ip 172.16.0.0/12\n</RequireAny>\nRequire not ip 10.66.0.0/16\n</RequireAll>\n").0,
            lists(&["10.0.0.0/8", "172.16.0.0/12"], &["10.66.0.0/16"])
        );
        let (mapped, unmapped) = access("Require valid-user\n");
        assert_eq!(mapped, None);
        assert!(unmapped[0].why.starts_with("Require valid-user: only `all`, `ip` and `local` are mapped"), "{unmapped:?}");
        let (mapped, unmapped) = access("Require not ip 10.0.0.1\n");
        assert_eq!(mapped, None);
        assert!(unmapped[0].why.contains("only counts inside <RequireAll>"));
    }
}
