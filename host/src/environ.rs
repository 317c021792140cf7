//! HTTP request → WSGI environ, by the CGI and PEP 3333 rules.
//!
//! The host builds every string key; the bridge adds the `wsgi.*` objects
//! (input, errors, file_wrapper). Values travel as latin-1 bytes, which is
//! what PEP 3333 asks of "native strings" built from HTTP bytes.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use http::request::Parts;
use http::Version;

use crate::forwarded::Forwarded;

/// What the listener knows about a connection.
#[derive(Clone, Debug)]
pub struct Connection {
    /// The client's address; `None` for a Unix-socket peer.
    pub peer: Option<SocketAddr>,
    /// The address the connection arrived on; `None` for a Unix socket.
    pub local: Option<SocketAddr>,
    /// `http` or `https` (TLS is terminated in front of wasgi).
    pub scheme: &'static str,
    /// Per HTTP/1 request, in order: did its head carry both Content-Length
    /// and Transfer-Encoding? (see [`crate::framing`])
    pub ambiguous: Option<crate::framing::Verdicts>,
}

impl Connection {
    /// The verdict for the next request on this connection.
    pub fn next_request_ambiguous(&self) -> bool {
        self.ambiguous.as_ref().and_then(|v| v.lock().unwrap_or_else(|e| e.into_inner()).pop_front()).unwrap_or(false)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvironError {
    #[error("the request path contains an encoded NUL byte")]
    NulInPath,
    #[error("the request target is not a path")]
    NotAPath,
    #[error("the request has both Content-Length and Transfer-Encoding (a request-smuggling pattern)")]
    AmbiguousLength,
}

pub const SERVER_SOFTWARE: &str = concat!("wasgi/", env!("CARGO_PKG_VERSION"));

/// Headers that never become `HTTP_*` keys.
fn skipped_header(name: &str) -> bool {
    // CONTENT_TYPE / CONTENT_LENGTH carry these without the prefix (CGI);
    // `Proxy` is dropped as Apache and others do against "httpoxy"
    // (HTTP_PROXY would read as a proxy setting to much client code).
    matches!(name, "content-type" | "content-length" | "proxy")
        // Apache 2.4 drops header names with underscores, so that `X_User`
        // cannot pose as `X-User` once both become HTTP_X_USER.
        || name.contains('_')
}

/// Appends `key\0value\0` to the frame payload being built.
struct EnvironWriter(BytesMut);

impl EnvironWriter {
    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.0.put_slice(key);
        self.0.put_u8(0);
        self.0.put_slice(value);
        self.0.put_u8(0);
    }

    fn finish(mut self) -> Bytes {
        self.0.truncate(self.0.len().saturating_sub(1));
        self.0.freeze()
    }
}

/// True if `path` lies under `mount` on a `/` boundary (`/blog` holds
/// `/blog` and `/blog/x`, not `/blogger`); the root mount `""` holds all.
pub fn under_mount(path: &[u8], mount: &str) -> bool {
    let m = mount.trim_end_matches('/').as_bytes();
    m.is_empty() || (path.starts_with(m) && matches!(path.get(m.len()), None | Some(b'/')))
}

/// Splits a decoded path at the app's mount point (`""` for the root),
/// giving SCRIPT_NAME and PATH_INFO as mod_wsgi does.
pub fn split_mount<'a>(path: &'a [u8], mount: &'a str) -> (&'a [u8], &'a [u8]) {
    let mount = mount.trim_end_matches('/');
    if !mount.is_empty() && under_mount(path, mount) {
        (mount.as_bytes(), &path[mount.len()..])
    } else {
        (b"", path)
    }
}

/// The host a request is for: what a trusted proxy forwarded, else the Host
/// header, else the authority of an absolute or HTTP/2 request target.
pub fn request_host<'a>(parts: &'a Parts, forwarded: Option<&'a Forwarded>) -> Option<&'a [u8]> {
    match forwarded.and_then(|f| f.host.as_deref()) {
        Some(h) => Some(h.as_bytes()),
        None => parts
            .headers
            .get(http::header::HOST)
            .map(|h| h.as_bytes())
            .or_else(|| parts.uri.authority().map(|a| a.as_str().as_bytes())),
    }
}

/// Builds the environ payload of a `Request` frame. `forwarded` is what a
/// trusted proxy said about the original request (see [`crate::forwarded`]).
pub fn build(parts: &Parts, conn: &Connection, mount: &str, request_id: u64, forwarded: Option<&Forwarded>) -> Result<Bytes, EnvironError> {
    let raw_path = parts.uri.path();
    if !raw_path.starts_with('/') && raw_path != "*" {
        return Err(EnvironError::NotAPath);
    }
    let path: Vec<u8> = percent_encoding::percent_decode(raw_path.as_bytes()).collect();
    if path.contains(&0) {
        return Err(EnvironError::NulInPath);
    }
    let (script_name, path_info) = split_mount(&path, mount);
    let query = parts.uri.query().unwrap_or("");

    let mut env = EnvironWriter(BytesMut::with_capacity(1024));
    env.put(b"REQUEST_METHOD", parts.method.as_str().as_bytes());
    env.put(b"SCRIPT_NAME", script_name);
    env.put(b"PATH_INFO", path_info);
    env.put(b"QUERY_STRING", query.as_bytes());
    let request_uri = match parts.uri.path_and_query() {
        Some(pq) => pq.as_str(),
        None => raw_path,
    };
    env.put(b"REQUEST_URI", request_uri.as_bytes());
    env.put(
        b"SERVER_PROTOCOL",
        match parts.version {
            Version::HTTP_09 => b"HTTP/0.9",
            Version::HTTP_10 => b"HTTP/1.0",
            Version::HTTP_2 => b"HTTP/2.0",
            Version::HTTP_3 => b"HTTP/3.0",
            _ => b"HTTP/1.1",
        },
    );
    env.put(b"SERVER_SOFTWARE", SERVER_SOFTWARE.as_bytes());
    let scheme = forwarded.and_then(|f| f.scheme).unwrap_or(conn.scheme);
    env.put(b"wsgi.url_scheme", scheme.as_bytes());
    if scheme == "https" {
        env.put(b"HTTPS", b"1");
    }
    env.put(b"wasgi.request_id", request_id.to_string().as_bytes());

    // SERVER_NAME/PORT from the Host header (Apache's UseCanonicalName Off),
    // falling back to the address the connection arrived on.
    let forwarded_host = forwarded.and_then(|f| f.host.as_deref());
    let host = request_host(parts, forwarded);
    let (mut server_name, mut server_port) = match &conn.local {
        Some(addr) => (addr.ip().to_string().into_bytes(), addr.port().to_string().into_bytes()),
        None => (b"localhost".to_vec(), b"80".to_vec()),
    };
    if forwarded.is_some_and(|f| f.scheme.is_some() || f.host.is_some()) {
        // Behind a proxy, the port the client used is not ours.
        server_port = if scheme == "https" { b"443".to_vec() } else { b"80".to_vec() };
    }
    if let Some(host) = host {
        let (name, port) = split_host_port(host);
        if !name.is_empty() {
            server_name = name.to_vec();
        }
        if let Some(port) = port {
            server_port = port.to_vec();
        }
    }
    if let Some(port) = forwarded.and_then(|f| f.port) {
        server_port = port.to_string().into_bytes();
    }
    env.put(b"SERVER_NAME", &server_name);
    env.put(b"SERVER_PORT", &server_port);

    match (forwarded.and_then(|f| f.client), conn.peer) {
        (Some((ip, port)), _) => {
            env.put(b"REMOTE_ADDR", ip.to_string().as_bytes());
            if let Some(port) = port {
                env.put(b"REMOTE_PORT", port.to_string().as_bytes());
            }
        }
        (None, Some(peer)) => {
            env.put(b"REMOTE_ADDR", peer.ip().to_string().as_bytes());
            env.put(b"REMOTE_PORT", peer.port().to_string().as_bytes());
        }
        (None, None) => env.put(b"REMOTE_ADDR", b""),
    }

    if let Some(ct) = parts.headers.get(http::header::CONTENT_TYPE) {
        env.put(b"CONTENT_TYPE", ct.as_bytes());
    }
    if let Some(cl) = parts.headers.get(http::header::CONTENT_LENGTH) {
        env.put(b"CONTENT_LENGTH", cl.as_bytes());
    }
    if let (Some(host), None) = (host, parts.headers.get(http::header::HOST)) {
        // HTTP/2 carries the host in :authority; WSGI apps look for HTTP_HOST.
        env.put(b"HTTP_HOST", host);
    }

    // HeaderMap keeps repeated fields together, in arrival order.
    let mut key = Vec::with_capacity(64);
    let mut value = Vec::with_capacity(256);
    for name in parts.headers.keys() {
        let lower = name.as_str();
        if skipped_header(lower) {
            continue;
        }
        key.clear();
        key.extend_from_slice(b"HTTP_");
        key.extend(lower.bytes().map(|b| if b == b'-' { b'_' } else { b.to_ascii_uppercase() }));
        // Repeated fields join with ", " (RFC 9110 §5.3); cookies with "; ".
        let separator: &[u8] = if lower == "cookie" { b"; " } else { b"," };
        value.clear();
        for (i, v) in parts.headers.get_all(name).iter().enumerate() {
            if i > 0 {
                value.extend_from_slice(separator);
            }
            value.extend_from_slice(v.as_bytes());
        }
        env.put(&key, &value);
    }
    if let Some(host) = forwarded_host {
        // Written last, so it replaces the proxy's own Host in the app's dict.
        env.put(b"HTTP_HOST", host.as_bytes());
    }
    Ok(env.finish())
}

/// `example.com:8080` → (`example.com`, Some(`8080`)); `[::1]:80` → (`[::1]`, Some(`80`)).
fn split_host_port(host: &[u8]) -> (&[u8], Option<&[u8]>) {
    let colon = if host.starts_with(b"[") {
        host.iter().position(|b| *b == b']').and_then(|end| (host.get(end + 1) == Some(&b':')).then_some(end + 1))
    } else {
        host.iter().rposition(|b| *b == b':')
    };
    match colon {
        Some(i) => (&host[..i], Some(&host[i + 1..]).filter(|p| !p.is_empty())),
        None => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_splits_on_segment_boundaries() {
        assert_eq!(split_mount(b"/app/x", "/app"), (&b"/app"[..], &b"/x"[..]));
        assert_eq!(split_mount(b"/app", "/app/"), (&b"/app"[..], &b""[..]));
        assert_eq!(split_mount(b"/application", "/app"), (&b""[..], &b"/application"[..]));
        assert_eq!(split_mount(b"/x", ""), (&b""[..], &b"/x"[..]));
    }

    #[test]
    fn host_and_port() {
        assert_eq!(split_host_port(b"example.com:8080"), (&b"example.com"[..], Some(&b"8080"[..])));
        assert_eq!(split_host_port(b"example.com"), (&b"example.com"[..], None));
        assert_eq!(split_host_port(b"[::1]:80"), (&b"[::1]"[..], Some(&b"80"[..])));
        assert_eq!(split_host_port(b"[::1]"), (&b"[::1]"[..], None));
    }
}
