//! wasgi: WSGI apps served from CPython compiled to WASI, inside wasmtime.
//!
//! # The data path, and the module that owns each arrow
//!
//! ```text
//! client ──► listener (TCP or Unix socket, hyper HTTP/1.1 and HTTP/2)   server
//!        ──► WSGI environ from the request                              environ
//!        ──► the group's bounded queue ─► a free instance               group
//!        ──► request frames to the guest, the body on demand            request, frames, hostcalls | stdio
//!        ──► the bridge calls `application` inside the sandbox          guest/bridge.py, instance
//!        ──► status, headers, body frames from the guest                request, frames, hostcalls | stdio
//!        ──► streamed back to the client
//! ```
//!
//! - [`interpreter`]: finding, verifying and compiling python.wasm; the compiled-module cache.
//! - [`instance`]: one guest (Store, WASI context built from its grants, limits).
//! - [`group`]: a pool of instances of one app; queueing, replacement, backoff.
//! - [`request`]: one request's exchange with an instance, and the access log.
//! - [`environ`]: HTTP request → WSGI environ (PEP 3333, CGI).
//! - [`forwarded`]: what a trusted proxy says about the original request.
//! - [`framing`]: spots requests with both Content-Length and Transfer-Encoding.
//! - [`frames`]: the host ↔ bridge wire format.
//! - [`hostcalls`]: frames through wasm imports (`_wasgi` in our own 3.13 build).
//! - [`stdio`]: the guest's stdin/stdout channels (frames on the pinned 3.12) and its stderr → log
//!   (guest log records cut to 16 KiB and rate-limited per instance).
//! - [`logline`]: every log record one physical line (control characters escaped).
//! - [`server`]: listeners, hyper connections, graceful shutdown.
//! - [`router`]: Host header and mount prefix → the app that serves a request.
//! - [`access`]: which client addresses may reach an app (`allow` / `deny`).
//! - [`config`], [`policy`]: `wasgi.toml` and the capability policies, validated.
//! - [`grant_dir`]: each granted directory opened once, by handle, never followed through a symlink.
//! - [`check`]: `wasgi check` and `wasgi serve`: a config file's groups and apps.
//! - [`run`]: `wasgi run`: one script, one group, from command-line flags; and
//!   `Interpreters`, each interpreter the groups run, linked once on first use.
//! - [`zoneinfo`]: the IANA time-zone database every guest's `zoneinfo` reads.
//! - [`apache`]: `wasgi apache-config` (the Apache side of a wasgi.toml) and
//!   `wasgi import-apache` (a mod_wsgi configuration → wasgi.toml and policies).

pub mod access;
pub mod apache;
pub mod check;
pub mod config;
pub mod environ;
pub mod forwarded;
pub mod framing;
pub mod frames;
#[cfg(test)]
mod fuzz;
pub mod grant_dir;
pub mod group;
pub mod hostcalls;
pub mod instance;
pub mod interpreter;
pub mod logline;
pub mod policy;
pub mod request;
pub mod router;
pub mod run;
pub mod server;
pub mod snapshot;
pub mod stdio;
pub mod zoneinfo;
