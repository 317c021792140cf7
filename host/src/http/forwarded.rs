//! Trusted forwarding: what a proxy in front of wasgi (Apache mod_proxy,
//! nginx, a load balancer) says about the original request.
//!
//! Only a peer listed in `trusted_proxies` (or a Unix-socket peer, when
//! trusted by choice) is believed, and only in the headers named by
//! `trusted_proxy_headers` (mod_wsgi's WSGITrustedProxyHeaders). By default
//! those are `X-Forwarded-For/-Host/-Proto/-Port`, which set REMOTE_ADDR,
//! HTTP_HOST, SERVER_NAME, wsgi.url_scheme and SERVER_PORT; RFC 7239
//! `Forwarded` must be asked for, because Apache and nginx pass a client's
//! own `Forwarded` header through untouched. The client address is the
//! right-most address in the chain that is not itself a trusted proxy, as
//! Apache's mod_remoteip picks it; entries that do not parse are skipped.
//! From any other peer the headers change nothing (they still reach the app
//! as HTTP_* keys).

use std::net::IpAddr;

use http::HeaderMap;
use crate::spec::proxies::{canonical, TrustedProxies};


/// What a trusted proxy told us; `None` where it said nothing usable.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Forwarded {
    pub client: Option<(IpAddr, Option<u16>)>,
    pub scheme: Option<&'static str>,
    pub host: Option<String>,
    pub port: Option<u16>,
}

impl Forwarded {
    /// Did the proxy forward anything at all? (Then the request reached it,
    /// not us: our own listening port says nothing about the client's.)
    pub fn any(&self) -> bool {
        self.client.is_some() || self.scheme.is_some() || self.host.is_some() || self.port.is_some()
    }
}

/// Every value of a header, split on commas, in order.
fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:8080`, `[2001:db8::1]:443`, `"[2001:db8::1]"`.
fn parse_node(node: &str) -> Option<(IpAddr, Option<u16>)> {
    let node = node.trim().trim_matches('"');
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some((canonical(ip), None));
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip = ip.parse::<IpAddr>().ok()?;
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return Some((canonical(ip), port));
    }
    let (ip, port) = node.rsplit_once(':')?;
    Some((canonical(ip.parse::<IpAddr>().ok()?), port.parse().ok()))
}

fn scheme(value: &str) -> Option<&'static str> {
    match value.trim().trim_matches('"').to_ascii_lowercase().as_str() {
        "https" => Some("https"),
        "http" => Some("http"),
        _ => None,
    }
}

/// The right-most hop that is not a trusted proxy: the client as far as
/// anyone we trust can tell.
fn client_of(chain: &[(IpAddr, Option<u16>)], trusted: &TrustedProxies) -> Option<(IpAddr, Option<u16>)> {
    chain.iter().rev().find(|(ip, _)| !trusted.trusts(Some(*ip))).or(chain.first()).copied()
}

/// Reads the forwarding headers of a request from a trusted peer. RFC 7239
/// `Forwarded` wins over the `X-Forwarded-*` family when both are present.
pub fn read(headers: &HeaderMap, trusted: &TrustedProxies) -> Forwarded {
    let mut out = Forwarded::default();
    let believed = trusted.headers;
    // A header that is not believed reads as absent.
    let values = |on: bool, name: &str| if on { header_values(headers, name) } else { Vec::new() };

    // RFC 7239: elements separated by commas, pairs by semicolons.
    let elements: Vec<Vec<(String, String)>> = values(believed.forwarded, "forwarded")
        .into_iter()
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    Some((k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_owned()))
                })
                .collect()
        })
        .collect();
    if !elements.is_empty() {
        let chain: Vec<_> = elements.iter().filter_map(|e| e.iter().find(|(k, _)| k == "for")).filter_map(|(_, v)| parse_node(v)).collect();
        out.client = client_of(&chain, trusted);
        // The nearest proxy's element describes the request it received.
        if let Some(last) = elements.last() {
            for (k, v) in last {
                match k.as_str() {
                    "proto" => out.scheme = scheme(v),
                    "host" => out.host = valid_host(v),
                    _ => {}
                }
            }
        }
    }

    if out.client.is_none() {
        let chain: Vec<_> = values(believed.x_forwarded_for, "x-forwarded-for").into_iter().filter_map(parse_node).collect();
        out.client = client_of(&chain, trusted);
    }
    if out.scheme.is_none() {
        out.scheme = values(believed.x_forwarded_proto, "x-forwarded-proto").last().and_then(|v| scheme(v));
    }
    if out.host.is_none() {
        out.host = values(believed.x_forwarded_host, "x-forwarded-host").last().and_then(|v| valid_host(v));
    }
    out.port = values(believed.x_forwarded_port, "x-forwarded-port").last().and_then(|v| v.parse().ok());
    out
}

/// A host, optionally with a port: letters, digits, dots, dashes, brackets
/// and colons only, so a forged value cannot smuggle anything else.
fn valid_host(value: &str) -> Option<String> {
    let value = value.trim();
    let ok = !value.is_empty()
        && value.len() <= 255
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b));
    ok.then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::proxies::ProxyHeaders;

    fn trusted() -> TrustedProxies {
        let mut t = TrustedProxies::default();
        t.add("10.0.0.0/8").unwrap();
        t.add("::1").unwrap();
        t.headers.forwarded = true;
        t
    }

    #[test]
    fn fuzz_forwarding_headers_give_only_clean_values() {
        let tokens = ["for=", "host=", "proto=", "by=", ";", ",", "\"", "[", "]", ":", "10.1.2.3", "203.0.113.9", "::1", "2001:db8::1", "8080",
            "https", "HTTP", "ex.ample", "evil/..", " ", "\t", "unknown", "_hidden", "99999"];
        let headers_read = ["forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port"];
        crate::fuzz::check("forwarded", |g| {
            let mut pairs = Vec::new();
            for _ in 0..g.below(6) {
                let mut value = String::new();
                for _ in 0..g.below(10) {
                    value.push_str(*g.pick(&tokens));
                }
                pairs.push((*g.pick(&headers_read), value.trim().to_owned()));
            }
            let h = headers(&pairs.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());
            let mut t = trusted();
            t.headers.forwarded = g.chance(2);
            let f = read(&h, &t);
            if let Some(host) = &f.host {
                assert!(!host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b)), "{host:?} from {pairs:?}");
            }
            assert!(matches!(f.scheme, None | Some("http") | Some("https")));
            if let Some((ip, _)) = f.client {
                // "2001:db8::110.1.2.3" is an address too: only say where it came from.
                assert!(pairs.iter().any(|(k, v)| *k == "x-forwarded-for" || v.contains("for=")), "{ip} from {pairs:?}");
            }
        });
    }

    #[test]
    fn only_the_believed_headers_count() {
        let mut t = trusted();
        t.headers = ProxyHeaders::default();
        let h = headers(&[("forwarded", "for=203.0.113.66;proto=https;host=evil.example"), ("x-forwarded-for", "198.51.100.7")]);
        let f = read(&h, &t);
        assert_eq!(f.client.unwrap().0.to_string(), "198.51.100.7", "Forwarded is not believed by default");
        assert_eq!((f.scheme, f.host), (None, None));
        t.headers = ProxyHeaders::from_names(["x-forwarded-for"]).unwrap();
        let f = read(&headers(&[("x-forwarded-proto", "https"), ("x-forwarded-for", "198.51.100.7")]), &t);
        assert_eq!((f.client.unwrap().0.to_string().as_str(), f.scheme), ("198.51.100.7", None));
        let e = ProxyHeaders::from_names(["X-Real-IP"]).unwrap_err();
        assert!(e.contains("not a forwarding header wasgi reads"), "{e}");
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let t = trusted();
        let f = read(&headers(&[("x-forwarded-for", "203.0.113.9, 198.51.100.7, 10.1.1.1")]), &t);
        assert_eq!(f.client.unwrap().0.to_string(), "198.51.100.7", "a forged left-most entry is not believed");
        let f = read(&headers(&[("x-forwarded-for", "10.0.0.2"), ("x-forwarded-for", "10.0.0.3")]), &t);
        assert_eq!(f.client.unwrap().0.to_string(), "10.0.0.2", "all trusted: the left-most");
        let f = read(&headers(&[("x-forwarded-for", "garbage, 192.0.2.5 , ,::ffff:192.0.2.6")]), &t);
        assert_eq!(f.client.unwrap().0.to_string(), "192.0.2.6");
        let f = read(&headers(&[("x-forwarded-for", "not an ip; drop table")]), &t);
        assert_eq!(f.client, None);
    }

    #[test]
    fn rfc_7239_forwarded() {
        let t = trusted();
        let f = read(
            &headers(&[("forwarded", "for=192.0.2.60;proto=http, for=\"[2001:db8::1]:4711\";proto=https;host=example.com")]),
            &t,
        );
        assert_eq!(f.client, Some(("2001:db8::1".parse().unwrap(), Some(4711))));
        assert_eq!(f.scheme, Some("https"));
        assert_eq!(f.host.as_deref(), Some("example.com"));
    }

    #[test]
    fn proto_host_and_port() {
        let t = trusted();
        let f = read(
            &headers(&[("x-forwarded-proto", "https"), ("x-forwarded-host", "shop.example:8443"), ("x-forwarded-port", "8443")]),
            &t,
        );
        assert_eq!((f.scheme, f.host.as_deref(), f.port), (Some("https"), Some("shop.example:8443"), Some(8443)));
        let f = read(&headers(&[("x-forwarded-proto", "gopher"), ("x-forwarded-host", "evil host/\\x")]), &t);
        assert_eq!((f.scheme, f.host), (None, None));
    }

    #[test]
    fn trust_list_entries() {
        let mut t = TrustedProxies::default();
        assert!(t.add("192.0.2.1").is_ok());
        assert!(t.add("unix").is_ok());
        assert!(t.add("10.0.0.0/33").is_err());
        assert!(t.trusts(Some("192.0.2.1".parse().unwrap())));
        assert!(t.trusts(Some("::ffff:192.0.2.1".parse().unwrap())));
        assert!(!t.trusts(Some("192.0.2.2".parse().unwrap())));
        assert!(t.trusts(None));
    }
}
