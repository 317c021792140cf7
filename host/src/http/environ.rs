//! HTTP request → WSGI environ, by the CGI and PEP 3333 rules.
//!
//! The host builds every string key; the bridge adds the `wsgi.*` objects
//! (input, errors, file_wrapper). Values travel as latin-1 bytes, which is
//! what PEP 3333 asks of "native strings" built from HTTP bytes.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use http::request::Parts;
use http::Version;

use crate::http::forwarded::Forwarded;
use crate::http::head_error::HeadError;
use crate::routing::router::under_mount;

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
    /// and Transfer-Encoding? (see [`crate::http::framing`])
    pub ambiguous: Option<crate::http::framing::Verdicts>,
    /// Set when the connection's writes made no progress for
    /// body_write_timeout (see [`crate::http::framing::WatchedIo`]).
    pub write_stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Connection {
    /// The verdict for the next request on this connection.
    pub fn next_request_ambiguous(&self) -> bool {
        self.ambiguous.as_ref().and_then(|v| v.lock().unwrap_or_else(|e| e.into_inner()).pop_front()).unwrap_or(false)
    }
}

pub const SERVER_SOFTWARE: &str = concat!("wasgi/", env!("CARGO_PKG_VERSION"));

/// Headers that never become `HTTP_*` keys, as Apache's
/// `ap_add_common_vars` leaves them out of mod_wsgi's environ.
fn skipped_header(name: &str, pass_authorization: bool) -> bool {
    // CONTENT_TYPE / CONTENT_LENGTH carry these without the prefix (CGI);
    // `Proxy` is dropped against "httpoxy" (HTTP_PROXY would read as a
    // proxy setting to much client code); credentials stay out of the
    // app's sight unless it asks for them (WSGIPassAuthorization), and
    // proxy credentials always.
    matches!(name, "content-type" | "content-length" | "proxy" | "proxy-authorization")
        || (name == "authorization" && !pass_authorization)
        // Names with anything but letters, digits and '-' are dropped, so
        // that `X_User` or `X.User` cannot pose as `X-User` once each
        // becomes HTTP_X_USER.
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
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

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// RFC 3986 unreserved characters: an escape of one of these means the
/// character itself.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Apache's `ap_normalize_path`: merges runs of slashes (`MergeSlashes On`),
/// removes `.` segments and resolves `..` ones. In the `first` pass, on the
/// raw path, escapes of unreserved characters are decoded (so `%2e%2e` is
/// `..`), other escapes are kept for later, and a malformed escape or a
/// `..` above the root is an error (Apache's 400); in the second, on the
/// decoded path, a `..` at the root is dropped, as Apache drops it.
fn normalize(path: &[u8], first: bool) -> Result<Vec<u8>, HeadError> {
    let mut chars: Vec<u8> = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if first && path[i] == b'%' {
            let (Some(hi), Some(lo)) = (path.get(i + 1).copied().and_then(hex), path.get(i + 2).copied().and_then(hex)) else {
                return Err(HeadError::BadEscape);
            };
            let c = hi << 4 | lo;
            if unreserved(c) {
                chars.push(c);
            } else {
                chars.extend_from_slice(&path[i..i + 3]);
            }
            i += 3;
        } else {
            chars.push(path[i]);
            i += 1;
        }
    }
    let end_of_segment = |c: Option<&u8>| matches!(c, None | Some(b'/'));
    let mut out: Vec<u8> = Vec::with_capacity(chars.len());
    let mut l = 0;
    while l < chars.len() {
        if out.last().is_none_or(|b| *b == b'/') {
            if chars[l] == b'/' && !out.is_empty() {
                // A run of slashes is one slash.
                l += 1;
                continue;
            }
            if chars[l] == b'.' && end_of_segment(chars.get(l + 1)) {
                // "/./" is "/".
                l += 2;
                continue;
            }
            if chars[l] == b'.' && chars.get(l + 1) == Some(&b'.') && end_of_segment(chars.get(l + 2)) {
                // "/a/../" is "/": drop the segment before.
                if out.len() <= 1 && first {
                    return Err(HeadError::AboveRoot);
                }
                out.pop();
                while out.last().is_some_and(|b| *b != b'/') {
                    out.pop();
                }
                if out.is_empty() {
                    out.push(b'/');
                }
                l += 3;
                continue;
            }
        }
        out.push(chars[l]);
        l += 1;
    }
    Ok(out)
}

/// The request path as mod_wsgi gets it from Apache (`AllowEncodedSlashes
/// On`, `MergeSlashes On`): normalized (see [`normalize`]), then
/// percent-decoded, then normalized again, since a decoded `%2F` can make
/// new segments. PATH_INFO, SCRIPT_NAME and routing all use this path;
/// REQUEST_URI keeps the raw one.
pub fn decode_path(raw: &str) -> Result<Vec<u8>, HeadError> {
    if raw == "*" {
        return Ok(b"*".to_vec());
    }
    if !raw.starts_with('/') {
        return Err(HeadError::NotAPath);
    }
    let normalized = normalize(raw.as_bytes(), true)?;
    if !normalized.contains(&b'%') {
        return Ok(normalized);
    }
    let decoded: Vec<u8> = percent_encoding::percent_decode(&normalized).collect();
    if decoded.contains(&0) {
        return Err(HeadError::NulInPath);
    }
    normalize(&decoded, false)
}

/// Apache's server name of a Host header (`fix_hostname`): lower case,
/// without a trailing dot.
fn server_name(host: &[u8]) -> Vec<u8> {
    let name = host.strip_suffix(b".").unwrap_or(host);
    name.to_ascii_lowercase()
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

/// The app a request goes to, as far as its environ is concerned.
pub struct Target<'a> {
    /// The mount point: "" for the root, else "/path".
    pub mount: &'a str,
    /// The WSGI script (SCRIPT_FILENAME).
    pub script: &'a std::path::Path,
    /// Does the app see HTTP_AUTHORIZATION? (mod_wsgi's WSGIPassAuthorization)
    pub pass_authorization: bool,
}

/// Builds the environ payload of a `Request` frame, keys and values as
/// Apache gives them to mod_wsgi. `path` is [`decode_path`] of the request
/// path; `forwarded` is what a trusted proxy said about the original
/// request (see [`crate::http::forwarded`]).
pub fn build(
    parts: &Parts,
    path: &[u8],
    conn: &Connection,
    target: &Target,
    request_id: &str,
    forwarded: Option<&Forwarded>,
) -> Result<Bytes, HeadError> {
    let raw_path = parts.uri.path();
    let (script_name, path_info) = split_mount(path, target.mount);
    let query = parts.uri.query().unwrap_or("");

    let mut env = EnvironWriter(BytesMut::with_capacity(1024));
    env.put(b"GATEWAY_INTERFACE", b"CGI/1.1");
    env.put(b"REQUEST_METHOD", parts.method.as_str().as_bytes());
    env.put(b"SCRIPT_NAME", script_name);
    env.put(b"PATH_INFO", path_info);
    env.put(b"QUERY_STRING", query.as_bytes());
    let request_uri = match parts.uri.path_and_query() {
        Some(pq) => pq.as_str(),
        None => raw_path,
    };
    env.put(b"REQUEST_URI", request_uri.as_bytes());
    {
        use std::os::unix::ffi::OsStrExt;
        env.put(b"SCRIPT_FILENAME", target.script.as_os_str().as_bytes());
    }
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
    // No `HTTPS` key: mod_wsgi turns Apache's HTTPS=on into
    // wsgi.url_scheme and removes it, so WSGI apps look at the scheme only.
    let scheme = forwarded.and_then(|f| f.scheme).unwrap_or(conn.scheme);
    env.put(b"wsgi.url_scheme", scheme.as_bytes());
    env.put(b"REQUEST_SCHEME", scheme.as_bytes());
    env.put(b"wasgi.request_id", request_id.as_bytes());

    // SERVER_NAME/PORT as Apache has them with UseCanonicalName Off: from
    // the Host header (or what a trusted proxy forwarded), the name in lower
    // case; a Host without a port means the scheme's default port, as the
    // client omits only that one. Without any Host, the address and port
    // the connection arrived on.
    let forwarded_host = forwarded.and_then(|f| f.host.as_deref());
    let host = request_host(parts, forwarded);
    let default_port: &[u8] = if scheme == "https" { b"443" } else { b"80" };
    let (mut server_name, mut server_port) = match &conn.local {
        Some(addr) => (addr.ip().to_string().into_bytes(), addr.port().to_string().into_bytes()),
        None => (b"localhost".to_vec(), default_port.to_vec()),
    };
    if forwarded.is_some_and(Forwarded::any) {
        // Behind a proxy, the port the connection arrived on is not the client's.
        server_port = default_port.to_vec();
    }
    if let Some(host) = host {
        let (name, port) = split_host_port(host);
        if !name.is_empty() {
            server_name = self::server_name(name);
        }
        server_port = port.unwrap_or(default_port).to_vec();
    }
    if let Some(port) = forwarded.and_then(|f| f.port) {
        server_port = port.to_string().into_bytes();
    }
    env.put(b"SERVER_NAME", &server_name);
    env.put(b"SERVER_PORT", &server_port);
    if let Some(local) = conn.local {
        env.put(b"SERVER_ADDR", local.ip().to_string().as_bytes());
    }

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
        if skipped_header(lower, target.pass_authorization) {
            continue;
        }
        key.clear();
        key.extend_from_slice(b"HTTP_");
        key.extend(lower.bytes().map(|b| if b == b'-' { b'_' } else { b.to_ascii_uppercase() }));
        // Repeated fields join with ", ", as Apache joins them (RFC 9110
        // §5.3); cookies with "; ", the one separator cookie parsers
        // understand (RFC 9113 §8.2.3 asks it of HTTP/2 cookie crumbs).
        let separator: &[u8] = if lower == "cookie" { b"; " } else { b", " };
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
    fn paths_are_normalized_and_decoded_as_apache_does() {
        let ok = |raw: &str| String::from_utf8(decode_path(raw).unwrap()).unwrap();
        assert_eq!(ok("/a//b/./c/../d"), "/a/b/d");
        assert_eq!(ok("///a"), "/a");
        assert_eq!(ok("/a/."), "/a/");
        assert_eq!(ok("/a/.."), "/");
        assert_eq!(ok("/a/%2e%2E/b"), "/b", "escaped dots are dots");
        assert_eq!(ok("/%7Euser/%41"), "/~user/A");
        assert_eq!(ok("/a%2Fb%20c"), "/a/b c", "%2F is decoded (AllowEncodedSlashes On)");
        assert_eq!(ok("/a%2F%2F..%2Fb"), "/b", "segments made by decoding are normalized too");
        assert_eq!(ok("/..%2Fx"), "/x", "as Apache: a decoded .. at the root is dropped");
        assert_eq!(ok("/a..b/.c/..."), "/a..b/.c/...");
        assert_eq!(ok("/caf%C3%A9").as_bytes(), "/café".as_bytes());
        assert_eq!(ok("/%25zz"), "/%zz");
        assert_eq!(ok("*"), "*");
        assert_eq!(decode_path("/../x"), Err(HeadError::AboveRoot));
        assert_eq!(decode_path("/a/../../x"), Err(HeadError::AboveRoot));
        assert_eq!(decode_path("/%2e%2e/x"), Err(HeadError::AboveRoot));
        assert_eq!(decode_path("/a%zz"), Err(HeadError::BadEscape));
        assert_eq!(decode_path("/a%2"), Err(HeadError::BadEscape));
        assert_eq!(decode_path("/a%00"), Err(HeadError::NulInPath));
        assert_eq!(decode_path("a"), Err(HeadError::NotAPath));
    }

    #[test]
    fn fuzz_a_decoded_path_keeps_no_dot_segment_empty_segment_or_nul() {
        let tokens = ["/", "/", ".", "..", "%2e", "%2E", "%2f", "%2F", "%25", "%00", "%", "%zz", "a", "~", "%7e", "%C3%A9", "?"];
        crate::fuzz::check("decode_path", |g| {
            let mut raw = String::from(if g.chance(20) { "" } else { "/" });
            for _ in 0..g.below(12) {
                raw.push_str(*g.pick(&tokens));
            }
            let Ok(path) = decode_path(&raw) else { return };
            assert!(!path.contains(&0), "{raw:?} → {path:?}");
            assert!(path.starts_with(b"/"), "{raw:?} → {path:?}");
            let segments: Vec<&[u8]> = path[1..].split(|b| *b == b'/').collect();
            for (i, segment) in segments.iter().enumerate() {
                assert!(*segment != b"." && *segment != b"..", "{raw:?} → {:?}", String::from_utf8_lossy(&path));
                assert!(!segment.is_empty() || i == segments.len() - 1, "{raw:?} → {:?}", String::from_utf8_lossy(&path));
            }
        });
    }

    #[test]
    fn fuzz_an_environ_never_has_a_key_twice_and_its_header_keys_are_clean() {
        let names = ["x-user", "X_User", "x.user", "X-USER", "host", "content-type", "content-length", "proxy", "authorization", "cookie", "a", "-", "x--y", "x-y-"];
        crate::fuzz::check("environ headers", |g| {
            let mut request = http::Request::builder().uri("/app/x?q=1");
            for _ in 0..g.below(8) {
                let value = String::from_utf8(g.bytes_of(b"abc ;=,:/\t\"", 0..10)).unwrap();
                request = request.header(*g.pick(&names), value.trim());
            }
            let Ok(request) = request.body(()) else { return };
            let (parts, ()) = request.into_parts();
            let conn = Connection { peer: None, local: None, scheme: "http", ambiguous: None, write_stalled: Default::default() };
            let pass_authorization = g.chance(2);
            let target = Target { mount: "/app", script: std::path::Path::new("/srv/app.wsgi"), pass_authorization };
            let payload = build(&parts, b"/app/x", &conn, &target, "1", None).unwrap();
            let fields: Vec<&[u8]> = payload.split(|b| *b == 0).collect();
            let mut keys: Vec<&[u8]> = fields.chunks(2).map(|kv| kv[0]).collect();
            for key in &keys {
                if let Some(name) = key.strip_prefix(b"HTTP_") {
                    assert!(name.iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_'), "{:?}", String::from_utf8_lossy(key));
                    assert!(*key != b"HTTP_PROXY", "httpoxy");
                    assert!(*key != b"HTTP_AUTHORIZATION" || pass_authorization);
                }
            }
            let count = keys.len();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), count, "a key twice in {:?}", String::from_utf8_lossy(&payload));
        });
    }

    #[test]
    fn server_names_as_apache_fixes_them() {
        assert_eq!(server_name(b"App.Example."), b"app.example");
        assert_eq!(server_name(b"[::1]"), b"[::1]");
    }

    #[test]
    fn host_and_port() {
        assert_eq!(split_host_port(b"example.com:8080"), (&b"example.com"[..], Some(&b"8080"[..])));
        assert_eq!(split_host_port(b"example.com"), (&b"example.com"[..], None));
        assert_eq!(split_host_port(b"[::1]:80"), (&b"[::1]"[..], Some(&b"80"[..])));
        assert_eq!(split_host_port(b"[::1]"), (&b"[::1]"[..], None));
    }
}
