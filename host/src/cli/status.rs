//! `wasgi status`: what Apache's server-status shows, for a running wasgi:
//! asks its admin listener for /status and prints each group's instances
//! with their state, age, requests served, memory and CPU time, and the
//! request each is serving and for how long.

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::http::admin::Status;
use crate::spec::listen::ListenAddr;

/// GET `path` from the admin listener at `addr`: the body of a 200.
pub fn fetch(addr: &ListenAddr, path: &str) -> Result<String> {
    let request = format!("GET {path} HTTP/1.0\r\nHost: wasgi-admin\r\nUser-Agent: wasgi-status\r\n\r\n");
    let mut reply = Vec::new();
    let timeout = Some(Duration::from_secs(10));
    match addr {
        ListenAddr::Tcp(a) => {
            let mut stream = std::net::TcpStream::connect_timeout(a, Duration::from_secs(5))
                .with_context(|| format!("cannot reach the admin listener at {a} (is wasgi running with admin = \"{a}\"?)"))?;
            stream.set_read_timeout(timeout)?;
            stream.write_all(request.as_bytes())?;
            stream.read_to_end(&mut reply)?;
        }
        ListenAddr::Unix(p) => {
            let mut stream = std::os::unix::net::UnixStream::connect(p)
                .with_context(|| format!("cannot reach the admin listener at unix:{} (is wasgi running with that admin socket?)", p.display()))?;
            stream.set_read_timeout(timeout)?;
            stream.write_all(request.as_bytes())?;
            stream.read_to_end(&mut reply)?;
        }
    }
    let text = String::from_utf8_lossy(&reply);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| anyhow!("the admin listener at {addr} sent no HTTP response"))?;
    let status_line = head.lines().next().unwrap_or_default();
    if status_line.split_whitespace().nth(1) != Some("200") {
        bail!("the admin listener at {addr} answered {status_line}: {}", body.trim());
    }
    Ok(body.to_owned())
}

/// The admin listener's status, read and parsed.
pub fn status(addr: &ListenAddr) -> Result<Status> {
    let body = fetch(addr, "/status")?;
    serde_json::from_str(&body).with_context(|| format!("the admin listener at {addr} sent a /status wasgi cannot read"))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// 3.2s, 4m05s, 2h03m, 3d04h.
fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{:.1}s", d.as_secs_f64()),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// The report `wasgi status` prints.
pub fn report(status: &Status) -> String {
    let mut out = format!(
        "wasgi {} (pid {}), up {} since {}{}\n",
        status.version,
        status.pid,
        age(Duration::from_secs_f64(status.uptime)),
        status.started,
        if status.draining { ", DRAINING (shutting down)" } else { "" }
    );
    for g in &status.groups {
        let busy = g.instances.iter().filter(|i| i.request.is_some()).count();
        out.push_str(&format!(
            "\ngroup {} ({}): {} of {} instance(s) up ({busy} busy, {} idle, {} starting), {} queued, {} served, CPU {:.1}s, memory {} (peak {}){}\n  {}\n",
            g.name,
            g.app,
            g.instances.len(),
            g.size,
            g.instances.len() - busy,
            g.starting,
            g.queued,
            g.served,
            g.cpu_seconds,
            mib(g.memory_bytes),
            mib(g.memory_peak_bytes),
            if g.failing { ", FAILING to start instances" } else { "" },
            g.script,
        ));
        out.push_str(&format!("  {:>5}  {:<5}  {:>7}  {:>7}  {:>10}  {:>7}  REQUEST\n", "ID", "STATE", "AGE", "SERVED", "MEMORY", "CPU"));
        for i in &g.instances {
            let (state, request) = match &i.request {
                Some(r) => ("busy", format!("{} {} for {} (id {})", r.method, r.target, age(r.running), r.id)),
                None => ("idle", "-".to_owned()),
            };
            out.push_str(&format!(
                "  {:>5}  {state:<5}  {:>7}  {:>7}  {:>10}  {:>6.1}s  {request}\n",
                i.id,
                age(i.age),
                i.served,
                mib(i.memory_bytes),
                i.cpu.as_secs_f64()
            ));
        }
    }
    out
}
