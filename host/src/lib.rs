//! wasgi: WSGI apps served from CPython compiled to WASI, inside wasmtime.
//!
//! # The data path, and the folder that owns each arrow
//!
//! ```text
//! client ──► listener (TCP or Unix socket, hyper HTTP/1.1 and HTTP/2)   http/server
//!        ──► framing watcher, head checks                               http/framing
//!        ──► Host header and mount → the app; allow/deny                routing/router
//!        ──► WSGI environ from the request                              http/environ, http/forwarded
//!        ──► the group's bounded queue ─► a free instance               pool/group
//!        ──► request frames to the guest, the body on demand            pool/exchange, protocol/frames
//!        ──► the guest's store, WASI context, channels                  sandbox/instance, hostcalls | stdio
//!            (its outbound connections, made by the host on its grants: sandbox/net)
//!        ──► the bridge calls `application` inside the sandbox          guest/bridge/
//!        ──► status, headers, body frames from the guest                pool/exchange
//!        ──► streamed back to the client                                http/server
//! ```
//!
//! # Layout
//!
//! One folder per stage; each folder's `mod.rs` says what it owns and what it
//! may use. Dependencies point one way (checked by `layering`, which also
//! lists them: `cargo test -p wasgi --lib layering -- --nocapture`):
//!
//! ```text
//! cli ─► apache ─► config ─────────────────────────────┐
//!  └──► http ─► routing ─► pool ─► sandbox ─► engine ──┴─► spec
//!                           └──────────┴─► protocol
//! ```
//!
//! - [`cli`]: the subcommands: `wasgi run` (flags, turned into the same
//!   config a file gives), `wasgi serve` (a config file), `wasgi check`,
//!   `wasgi python`; the one supervisor both servers use (listeners, groups,
//!   signals, SIGHUP reloads); the log format.
//! - [`apache`]: `wasgi apache-config` and `wasgi import-apache`.
//! - [`config`]: `wasgi.toml` and the capability policies, validated, and the
//!   plan (each app's guest spec) for a file and for `wasgi run`'s flags
//!   alike; the defaults. No runtime module.
//! - [`http`]: listeners, hyper connections, the service, the framing
//!   watcher, the WSGI environ, trusted forwarding; graceful shutdown.
//! - [`routing`]: Host header and mount prefix → the app; who may reach it.
//! - [`pool`]: a group's instances (queue, workers, replacement, reloads) and
//!   one request's exchange with an instance (and the access log).
//! - [`sandbox`]: one guest: the linked interpreter, the store and its WASI
//!   context built from the grants, host calls (their ABI in one table),
//!   outbound connections, stdio, snapshots, the
//!   interpreters a server runs and the epoch ticker.
//! - [`engine`]: finding, verifying and building python.wasm, and its
//!   variants with an app's native extensions linked in; the engine and the
//!   compiled-code cache; the time-zone database.
//! - [`protocol`]: the host ↔ bridge frames (a leaf).
//! - [`spec`]: plain values every stage reads: limits, listen addresses,
//!   trusted proxies, access lists, interpreter choice, the guest spec,
//!   each granted directory opened once, and the outbound connection grants
//!   (a leaf).
//!
//! Log targets keep the module names of the flat layout (`wasgi::server`,
//! `wasgi::group`, ...), so log lines and `WASGI_LOG` filters did not change
//! with the folders.

pub mod apache;
pub mod cli;
pub mod config;
pub mod engine;
#[cfg(test)]
mod fuzz;
pub mod http;
#[cfg(test)]
mod layering;
pub mod pool;
pub mod protocol;
pub mod routing;
pub mod sandbox;
pub mod spec;
