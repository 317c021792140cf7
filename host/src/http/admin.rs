//! The admin listener: an address of its own (TCP or a Unix socket), never
//! routed to an app, for the people and programs that run the server:
//!
//! - `GET /metrics`: Prometheus' text format ([`crate::http::metrics`]);
//! - `GET /status`: each group's instances as JSON, what `wasgi status` prints;
//! - `GET /live`: 200 while the process serves (a liveness probe);
//! - `GET /ready` and `/ready/GROUP`: the readiness check of the public
//!   listeners, 503 once shutdown began or while a group fails to start.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use crate::http::listener::{accept_loop, AcceptSettings, Accepted, Listener};
use crate::http::metrics::GroupView;
use crate::http::server::Server;
use crate::pool::accounting::InstanceStatus;
use crate::pool::group::Group;

const LOG_TARGET: &str = "wasgi::admin";

/// `GET /status`: the server and each group, now.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    /// Seconds since the server started.
    pub uptime: f64,
    /// When it started, RFC 3339.
    pub started: String,
    pub draining: bool,
    pub groups: Vec<GroupStatus>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct GroupStatus {
    pub name: String,
    pub app: String,
    pub script: String,
    pub size: usize,
    pub starting: usize,
    pub queued: usize,
    pub failing: bool,
    pub served: u64,
    pub cpu_seconds: f64,
    pub memory_bytes: u64,
    pub memory_peak_bytes: u64,
    pub instances: Vec<InstanceStatus>,
}

/// What the admin listener reads: the server (its groups through the
/// router) and when it started.
pub struct Admin {
    pub server: Arc<Server>,
    pub started: (Instant, SystemTime),
}

impl Admin {
    fn views(&self) -> Vec<(Arc<Group>, GroupView)> {
        self.server
            .router()
            .groups()
            .into_iter()
            .map(|g| {
                let c = &g.spec.network.counters;
                let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
                let outbound = (
                    c.open.load(std::sync::atomic::Ordering::Relaxed) as u64,
                    load(&c.opened),
                    load(&c.denied),
                    load(&c.bytes_in),
                    load(&c.bytes_out),
                );
                let view = GroupView { name: g.spec.group.clone(), app: g.app().to_owned(), size: g.size(), queued: g.queued(), failing: g.failing(), usage: g.accounting.snapshot(), outbound };
                (g.clone(), view)
            })
            .collect()
    }

    pub fn status(&self) -> Status {
        let groups = self
            .views()
            .into_iter()
            .map(|(g, v)| GroupStatus {
                name: v.name,
                app: v.app,
                script: g.spec.script.display().to_string(),
                size: v.size,
                starting: v.usage.starting,
                queued: v.queued,
                failing: v.failing,
                served: v.usage.served,
                cpu_seconds: v.usage.cpu.as_secs_f64(),
                memory_bytes: v.usage.memory_bytes,
                memory_peak_bytes: v.usage.memory_peak_bytes,
                instances: v.usage.instances,
            })
            .collect();
        Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            uptime: self.started.0.elapsed().as_secs_f64(),
            started: crate::http::access_log::rfc3339(self.started.1),
            draining: self.server.draining(),
            groups,
        }
    }

    fn answer(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let reply = |status: StatusCode, kind: &'static str, body: String| {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = status;
            response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(kind));
            response.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
            response
        };
        if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "GET only\n".into());
        }
        let path = req.uri().path();
        match path {
            "/metrics" => {
                let views = self.views().into_iter().map(|(_, v)| v).collect();
                reply(StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", self.server.metrics.encode(views))
            }
            "/status" => {
                let body = serde_json::to_string_pretty(&self.status()).unwrap_or_default() + "\n";
                reply(StatusCode::OK, "application/json", body)
            }
            "/live" => reply(StatusCode::OK, "text/plain; charset=utf-8", "alive\n".into()),
            _ => match path.strip_prefix("/ready") {
                Some("") => self.server.readiness_answer(None),
                Some(rest) if rest.len() > 1 && rest.starts_with('/') && !rest[1..].contains('/') => self.server.readiness_answer(Some(&rest[1..])),
                _ => reply(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "not found: the admin listener answers /metrics, /status, /live, /ready and /ready/GROUP\n".into()),
            },
        }
    }
}

/// Serves the admin listener until the task is dropped.
pub async fn serve(admin: Arc<Admin>, listener: Listener) {
    let (conn_tx, mut conn_rx) = mpsc::channel::<Accepted>(16);
    // A few connections at a time: scrapes and `wasgi status`, not traffic.
    let slots = Arc::new(tokio::sync::Semaphore::new(64));
    let settings = AcceptSettings { write_timeout: std::time::Duration::from_secs(30), handshake_timeout: std::time::Duration::from_secs(10) };
    let accepting = tokio::spawn(accept_loop(listener, conn_tx, slots, settings));
    let builder = hyper::server::conn::http1::Builder::new();
    while let Some((io, _conn, slot)) = conn_rx.recv().await {
        let admin = admin.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let response = admin.answer(&req);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = builder.serve_connection(TokioIo::new(io), service);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(target: LOG_TARGET, "admin connection ended with an error: {e}");
            }
            drop(slot);
        });
    }
    accepting.abort();
}
