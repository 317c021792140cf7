//! wasgi's end-to-end tests, one binary with a module per area, so that the
//! suite links once (`cargo test -p wasgi --test e2e`; one area:
//! `cargo test -p wasgi --test e2e flask::`). Each test drives the real
//! `wasgi` binary (or, where the area needs no separate process, the
//! in-process server) with real clients over loopback; the shared harness is
//! the `wasgi-tests` crate (tests/src).
//!
//! The areas, along the data path and then across it:
//! - HTTP in: [`malformed`] (bad requests), [`http2`], [`tls`] (HTTPS), [`bounds`] (what the
//!   guest hands back is bounded), [`streaming`] (bodies both ways);
//! - the app as WSGI sees it: [`wsgi`] (PEP 3333), [`environ`] (fixtures),
//!   [`modwsgi`] (the same environ as mod_wsgi), [`startup`] (loading the
//!   script, the messages a person sees);
//! - frameworks and Python: [`flask`], [`django`], [`asyncio`], [`hostfacts`]
//!   (what an app learns about its host), [`regrtest`] (CPython's own tests),
//!   [`interpreters`] (per-group interpreter choice and builds);
//! - the pool and its lifecycle: [`limits`], [`reload`], [`snapshot`],
//!   [`transport`] (host calls or stdio), [`cache`] (the cache directory);
//! - the sandbox and tenants: [`escape`] (the escape table), [`tenants`],
//!   [`network`] (outbound connections by grant), [`drivers`] (real servers
//!   and PyPI drivers through those grants),
//!   [`access`] (allow/deny);
//! - operations: [`logs`] (access and error logs, request ids), [`admin`]
//!   (the admin listener: metrics, status, probes), [`systemd`] (notify,
//!   watchdog, socket activation), [`deploy`] (container image, Kubernetes);
//! - Apache: [`apache`] (behind a real httpd), [`apache_import`]
//!   (`wasgi import-apache` on the guide's configs);
//! - [`inprocess`]: the in-process server harness, for tests that need no
//!   separate process.

mod access;
mod admin;
mod apache;
mod apache_import;
mod asyncio;
mod bounds;
mod cache;
mod deploy;
mod django;
mod drivers;
mod environ;
mod escape;
mod extensions;
mod flask;
mod hostfacts;
mod http2;
mod inprocess;
mod interpreters;
mod limits;
mod logs;
mod malformed;
mod modwsgi;
mod network;
mod regrtest;
mod reload;
mod snapshot;
mod startup;
mod streaming;
mod systemd;
mod tenants;
mod tls;
mod transport;
mod wsgi;
