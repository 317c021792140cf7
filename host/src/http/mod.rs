//! The HTTP front: where a request comes in and its response goes out.
//!
//! - [`listener`]: listeners (TCP and Unix sockets, bound or handed over by
//!   systemd), their accept loops and TLS handshakes.
//! - [`tls`]: certificates and keys (rustls), reloaded on SIGHUP; ALPN.
//! - [`server`]: hyper connections (HTTP/1.1 and HTTP/2), the service that
//!   checks a request and hands it to its group, the readiness check and
//!   graceful shutdown.
//! - [`framing`]: the framing watcher (requests with both Content-Length and
//!   Transfer-Encoding, request smuggling) and the head checks.
//! - [`head_error`]: why a request head is refused (400).
//! - [`environ`]: the request → WSGI environ (PEP 3333, CGI).
//! - [`request_id`]: each request's id, kept from a trusted proxy or made.
//! - [`access_log`]: one line per response, Apache's formats or JSON.
//! - [`metrics`]: /metrics, per request and per group (prometheus-client).
//! - [`admin`]: the admin listener: /metrics, /status, /live, /ready.
//! - [`forwarded`]: what a trusted proxy says about the original request.
//!
//! May use: `routing` (which app), `pool` (its group and the exchange's
//! types), `spec`. The request then goes: routing → pool → sandbox.

pub mod access_log;
pub mod admin;
pub mod environ;
pub mod forwarded;
pub mod framing;
pub mod head_error;
pub mod listener;
pub mod metrics;
pub mod request_id;
pub mod server;
pub mod tls;
