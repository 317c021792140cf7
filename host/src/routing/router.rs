//! Which app serves a request: the Host header first (as Apache picks a
//! `<VirtualHost>` by ServerName/ServerAlias), then the longest mount prefix
//! on a `/` boundary (as WSGIScriptAlias does).

use std::sync::Arc;

use crate::pool::group::Group;
use crate::spec::access::Access;
use crate::spec::proxies::TrustedProxies;

/// An app reachable at `host` + `mount`.
pub struct Route {
    /// A host name, `*.domain` or `*` (lower case).
    pub host: String,
    /// "" for the root, else "/path".
    pub mount: String,
    pub group: Arc<Group>,
    /// Which clients may reach the app.
    pub access: Access,
    /// Does the app see the Authorization header? (WSGIPassAuthorization)
    pub pass_authorization: bool,
}

/// All routes, in configuration order, and the proxies whose forwarding
/// headers are believed (both replaced together by a configuration reload).
pub struct Router {
    routes: Vec<Route>,
    pub trusted: TrustedProxies,
}

/// How well a host pattern matches a name: exact beats the longest wildcard
/// suffix, which beats `*`.
fn host_score(pattern: &str, host: &str) -> Option<usize> {
    if pattern == host {
        Some(usize::MAX)
    } else if let Some(suffix) = pattern.strip_prefix("*.") {
        (host.len() > suffix.len() + 1 && host.ends_with(suffix) && host.as_bytes()[host.len() - suffix.len() - 1] == b'.')
            .then_some(suffix.len() + 1)
    } else if pattern == "*" {
        Some(0)
    } else {
        None
    }
}

impl Router {
    pub fn new(routes: Vec<Route>, trusted: TrustedProxies) -> Router {
        assert!(!routes.is_empty(), "a router needs at least one route");
        Router { routes, trusted }
    }

    /// Every group the routes lead to, once each.
    pub fn groups(&self) -> Vec<&Arc<Group>> {
        let mut groups: Vec<&Arc<Group>> = Vec::new();
        for route in &self.routes {
            if !groups.iter().any(|g| Arc::ptr_eq(g, &route.group)) {
                groups.push(&route.group);
            }
        }
        groups
    }

    /// The route for a request. `host` is the Host header (any case, port
    /// allowed); `path` is [`crate::http::environ::decode_path`] of the request
    /// path. A host that matches no pattern falls to the first configured
    /// host, Apache's default virtual host.
    pub fn route(&self, host: Option<&[u8]>, path: &[u8]) -> Option<&Route> {
        let name = host
            .map(|h| {
                let h = String::from_utf8_lossy(h).to_ascii_lowercase();
                match h.rfind(':') {
                    Some(i) if !h.ends_with(']') => h[..i].to_owned(),
                    _ => h,
                }
            })
            .unwrap_or_default();
        let name = name.trim_end_matches('.');
        let best = self.routes.iter().filter_map(|r| host_score(&r.host, name)).max();
        let host = match best {
            Some(score) => &self.routes.iter().find(|r| host_score(&r.host, name) == Some(score))?.host,
            None => &self.routes[0].host,
        };
        self.routes
            .iter()
            .filter(|r| &r.host == host && under_mount(path, &r.mount))
            .max_by_key(|r| r.mount.len())
    }
}

/// True if `path` lies under `mount` on a `/` boundary (`/blog` holds
/// `/blog` and `/blog/x`, not `/blogger`); the root mount `""` holds all.
pub fn under_mount(path: &[u8], mount: &str) -> bool {
    let m = mount.trim_end_matches('/').as_bytes();
    m.is_empty() || (path.starts_with(m) && matches!(path.get(m.len()), None | Some(b'/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_scores() {
        assert_eq!(host_score("a.example", "a.example"), Some(usize::MAX));
        assert_eq!(host_score("*.example", "a.example"), Some(8));
        assert_eq!(host_score("*.example", "example"), None);
        assert_eq!(host_score("*.example", "aexample"), None);
        assert_eq!(host_score("*", "anything"), Some(0));
        assert_eq!(host_score("b.example", "a.example"), None);
    }

    #[test]
    fn mounts_match_on_segment_boundaries() {
        assert!(under_mount(b"/x", ""));
        assert!(under_mount(b"/blog", "/blog"));
        assert!(under_mount(b"/blog/post", "/blog"));
        assert!(!under_mount(b"/blogger", "/blog"));
    }
}
