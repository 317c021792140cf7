//! Request ids: an `X-Request-Id` from a trusted proxy is kept, so one id
//! follows a request from the edge through Apache to the app; otherwise
//! wasgi makes one. The id is in the environ (`wasgi.request_id`, and
//! `HTTP_X_REQUEST_ID` as the app's middleware expects it), in every log
//! line about the request, and in the response's `X-Request-Id`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub const HEADER: &str = "x-request-id";

/// The longest id kept from a proxy; a longer one is replaced.
const MAX_LEN: usize = 200;

/// Makes ids: 32 hex digits, a random half per process and a counter half,
/// so ids stay unique across restarts and across servers behind one balancer.
pub struct RequestIds {
    process: u64,
    next: AtomicU64,
}

impl RequestIds {
    pub fn new() -> RequestIds {
        RequestIds { process: random_u64(), next: AtomicU64::new(1) }
    }

    pub fn make(&self) -> Arc<str> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}{n:016x}", self.process).into()
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        RequestIds::new()
    }
}

/// A proxy's id, if it is one wasgi can pass on safely: 1 to 200 visible
/// ASCII characters without quotes, backslashes or spaces (it goes into log
/// lines and a response header as it is).
pub fn acceptable(value: &http::HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    let ok = !text.is_empty() && text.len() <= MAX_LEN && text.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    ok.then_some(text)
}

fn random_u64() -> u64 {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).is_ok() {
        return u64::from_le_bytes(bytes);
    }
    // No /dev/urandom (a bare container): the time and the pid still differ.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_ids_are_unique_and_plain() {
        let (a, b) = (RequestIds::new(), RequestIds::new());
        let ids = [a.make(), a.make(), b.make()];
        assert_eq!(ids[0].len(), 32);
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[0], ids[2]);
        assert!(ids.iter().all(|id| id.bytes().all(|c| c.is_ascii_hexdigit())));
    }

    #[test]
    fn a_proxys_id_is_kept_only_when_it_is_safe_to_repeat() {
        let value = |s: &str| http::HeaderValue::from_str(s).unwrap();
        assert_eq!(acceptable(&value("edge-7f3a:1")), Some("edge-7f3a:1"));
        assert_eq!(acceptable(&value("a b")), None);
        assert_eq!(acceptable(&value("a\"b")), None);
        assert_eq!(acceptable(&value(&"x".repeat(201))), None);
        assert_eq!(acceptable(&http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap()), None);
    }
}
