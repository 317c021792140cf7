//! The access log: one line per response, written when its body has been
//! sent (or the client went away), in Apache's formats or as JSON, to
//! stdout, stderr or a file that SIGUSR1 reopens for logrotate.
//!
//! The default format is Apache's combined format with the request id, the
//! group and the duration added, so the tools that read Apache's logs read
//! it up to the added fields.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

pub use crate::spec::logging::{AccessFormat, AccessLogTarget};
use crate::spec::logging::{parse_template, Item};

/// What one response's line says.
#[derive(Debug, Clone, Default)]
pub struct AccessRecord {
    pub time: Option<SystemTime>,
    /// The client (a trusted proxy's word for it, else the peer); None for a
    /// Unix-socket peer.
    pub client: Option<IpAddr>,
    pub method: String,
    /// Path and query as the client sent them.
    pub target: String,
    /// "HTTP/1.1", "HTTP/2.0".
    pub protocol: &'static str,
    pub status: u16,
    /// Response body bytes sent.
    pub bytes: u64,
    /// Request body bytes received.
    pub received: u64,
    pub duration: Duration,
    pub request_id: String,
    /// The group that served it; None for what the server answered itself
    /// (no app mounted, refused before routing).
    pub group: Option<String>,
    /// The app (its script's file name), for the metrics.
    pub app: Option<String>,
    pub host: Option<String>,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    /// Other request headers a custom format names (`%{Name}i`), lower case.
    pub request_headers: Vec<(String, String)>,
    /// Response headers a custom format names (`%{Name}o`), lower case.
    pub response_headers: Vec<(String, String)>,
    /// Not logged: a readiness probe.
    pub skip: bool,
}

/// A parsed access log format.
#[derive(Debug, Clone)]
pub struct Format {
    kind: AccessFormat,
    items: Vec<Item>,
    /// The headers its `%{…}i` and `%{…}o` name (lower case; Referer and
    /// User-Agent aside), found once here, not at every request.
    request_headers: Vec<String>,
    response_headers: Vec<String>,
}

/// Apache's `combined` LogFormat.
pub const COMBINED: &str = r#"%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i""#;
/// Apache's `common` LogFormat.
pub const COMMON: &str = r#"%h %l %u %t "%r" %>s %b"#;
/// wasgi's default: combined, then the request id, the group ("-" for the
/// server's own answers) and the duration in milliseconds.
pub const WASGI: &str = r#"%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %L %G %{ms}T"#;

impl Format {
    pub fn new(kind: &AccessFormat) -> Result<Format, String> {
        let template = match kind {
            AccessFormat::Combined => COMBINED,
            AccessFormat::Common => COMMON,
            AccessFormat::Wasgi => WASGI,
            AccessFormat::Json => "",
            AccessFormat::Template(t) => t.as_str(),
        };
        let items = parse_template(template)?;
        let (request_headers, response_headers) = (header_args(&items, 'i'), header_args(&items, 'o'));
        Ok(Format { kind: kind.clone(), items, request_headers, response_headers })
    }

    /// The request headers this format prints beyond Referer and User-Agent
    /// (lower case), so the server keeps only those.
    pub fn request_headers(&self) -> &[String] {
        &self.request_headers
    }

    pub fn response_headers(&self) -> &[String] {
        &self.response_headers
    }

    /// The record as one line (with its newline).
    pub fn line(&self, r: &AccessRecord) -> String {
        if self.kind == AccessFormat::Json {
            return json_line(r);
        }
        let mut out = String::with_capacity(200);
        for item in &self.items {
            match item {
                Item::Text(t) => out.push_str(t),
                Item::Directive(c, arg) => directive(&mut out, *c, arg.as_deref(), r),
            }
        }
        out.push('\n');
        out
    }
}

/// The header names `which` (`i` or `o`) directives of `items` print.
fn header_args(items: &[Item], which: char) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Directive(c, Some(name)) if *c == which => Some(name.to_ascii_lowercase()),
            _ => None,
        })
        .filter(|n| n != "referer" && n != "user-agent")
        .collect()
}

fn directive(out: &mut String, c: char, arg: Option<&str>, r: &AccessRecord) {
    match c {
        'h' | 'a' => match r.client {
            Some(ip) => {
                let _ = write!(out, "{ip}");
            }
            None => out.push('-'),
        },
        'l' | 'u' => out.push('-'),
        't' => out.push_str(&apache_time(r.time.unwrap_or_else(SystemTime::now))),
        'r' => {
            escaped(out, &r.method);
            out.push(' ');
            escaped(out, &r.target);
            out.push(' ');
            out.push_str(r.protocol);
        }
        'm' => escaped(out, &r.method),
        'U' => escaped(out, r.target.split('?').next().unwrap_or_default()),
        'q' => {
            if let Some((_, q)) = r.target.split_once('?') {
                out.push('?');
                escaped(out, q);
            }
        }
        'H' => out.push_str(r.protocol),
        's' => {
            let _ = write!(out, "{}", r.status);
        }
        'b' if r.bytes == 0 => out.push('-'),
        'b' | 'B' => {
            let _ = write!(out, "{}", r.bytes);
        }
        'D' => {
            let _ = write!(out, "{}", r.duration.as_micros());
        }
        'T' => {
            let _ = match arg {
                Some("ms") => write!(out, "{:.1}", r.duration.as_secs_f64() * 1000.0),
                Some("us") => write!(out, "{}", r.duration.as_micros()),
                _ => write!(out, "{}", r.duration.as_secs()),
            };
        }
        'L' => escaped_or_dash(out, Some(&r.request_id)),
        'G' => escaped_or_dash(out, r.group.as_deref()),
        'v' => escaped_or_dash(out, r.host.as_deref()),
        'i' => {
            let name = arg.unwrap_or_default().to_ascii_lowercase();
            let value = match name.as_str() {
                "referer" => r.referer.as_deref(),
                "user-agent" => r.user_agent.as_deref(),
                "host" => r.host.as_deref(),
                "x-request-id" => Some(r.request_id.as_str()),
                _ => r.request_headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str()),
            };
            escaped_or_dash(out, value)
        }
        'o' => {
            let name = arg.unwrap_or_default().to_ascii_lowercase();
            escaped_or_dash(out, r.response_headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str()))
        }
        _ => {}
    }
}

fn escaped_or_dash(out: &mut String, value: Option<&str>) {
    match value.filter(|v| !v.is_empty()) {
        Some(v) => escaped(out, v),
        None => out.push('-'),
    }
}

/// As Apache escapes what a client sent: `"` and `\` with a backslash,
/// control characters and bytes past ASCII as `\xhh`, so a line can be
/// neither broken nor forged.
fn escaped(out: &mut String, value: &str) {
    for b in value.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
}

/// `[07/Dec/2026:13:10:16 +0000]`: Apache's %t, in UTC.
fn apache_time(time: SystemTime) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (y, m, d, hh, mm, ss, _) = civil(time);
    format!("[{d:02}/{}/{y}:{hh:02}:{mm:02}:{ss:02} +0000]", MONTHS[m as usize - 1])
}

/// RFC 3339 in UTC with milliseconds, for JSON lines.
pub fn rfc3339(time: SystemTime) -> String {
    let (y, m, d, hh, mm, ss, ms) = civil(time);
    format!("{y}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z")
}

/// Year, month, day, hour, minute, second, millisecond (UTC), by Howard
/// Hinnant's days-to-civil.
fn civil(time: SystemTime) -> (i64, u32, u32, u64, u64, u64, u32) {
    let since = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rest / 3600, rest % 3600 / 60, rest % 60, since.subsec_millis())
}

fn json_line(r: &AccessRecord) -> String {
    let mut value = serde_json::json!({
        "time": rfc3339(r.time.unwrap_or_else(SystemTime::now)),
        "request_id": r.request_id,
        "client": r.client.map(|ip| ip.to_string()),
        "method": r.method,
        "target": r.target,
        "protocol": r.protocol,
        "status": r.status,
        "bytes": r.bytes,
        "request_bytes": r.received,
        "duration_ms": (r.duration.as_secs_f64() * 1_000_000.0).round() / 1000.0,
        "group": r.group,
        "host": r.host,
        "referer": r.referer,
        "user_agent": r.user_agent,
    });
    if let Some(object) = value.as_object_mut() {
        for (name, v) in &r.request_headers {
            object.insert(format!("request_header.{name}"), v.clone().into());
        }
        for (name, v) in &r.response_headers {
            object.insert(format!("response_header.{name}"), v.clone().into());
        }
    }
    let mut line = value.to_string();
    line.push('\n');
    line
}

/// Where the lines go. A file is opened for appending, and opened again by
/// [`AccessLog::reopen`] (SIGUSR1) after logrotate moved it.
pub struct AccessLog {
    pub format: Format,
    target: AccessLogTarget,
    file: Mutex<Option<std::fs::File>>,
}

impl AccessLog {
    pub fn open(target: &AccessLogTarget, format: &AccessFormat) -> Result<AccessLog> {
        let format = Format::new(format).map_err(|e| anyhow::anyhow!("access log format: {e}"))?;
        let file = match target {
            AccessLogTarget::File(path) => Some(open_append(path)?),
            _ => None,
        };
        Ok(AccessLog { format, target: target.clone(), file: Mutex::new(file) })
    }

    pub fn enabled(&self) -> bool {
        self.target != AccessLogTarget::Off
    }

    pub fn write(&self, record: &AccessRecord) {
        if !self.enabled() {
            return;
        }
        let line = self.format.line(record);
        let written = match &self.target {
            AccessLogTarget::Off => Ok(()),
            AccessLogTarget::Stdout => std::io::stdout().lock().write_all(line.as_bytes()),
            AccessLogTarget::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
            // One write per line on a file opened for appending: lines of
            // concurrent requests never interleave.
            AccessLogTarget::File(_) => match &mut *self.file.lock().unwrap_or_else(|e| e.into_inner()) {
                Some(file) => file.write_all(line.as_bytes()),
                None => Ok(()),
            },
        };
        if let Err(e) = written {
            tracing::warn!(target: "wasgi::server", "cannot write the access log ({}): {e}", self.target);
        }
    }

    /// Opens the file again (after logrotate renamed it); stdout and stderr
    /// have nothing to reopen.
    pub fn reopen(&self) -> Result<()> {
        if let AccessLogTarget::File(path) = &self.target {
            let file = open_append(path)?;
            *self.file.lock().unwrap_or_else(|e| e.into_inner()) = Some(file);
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        self.target.to_string()
    }
}

fn open_append(path: &PathBuf) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open the access log {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AccessRecord {
        AccessRecord {
            time: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_649_016)),
            client: Some("203.0.113.7".parse().unwrap()),
            method: "GET".into(),
            target: "/a b?x=\"1\"".into(),
            protocol: "HTTP/1.1",
            status: 200,
            bytes: 1234,
            received: 0,
            duration: Duration::from_micros(12_345),
            request_id: "req-1".into(),
            group: Some("shop".into()),
            host: Some("example.com".into()),
            referer: None,
            user_agent: Some("curl/8 \"x\"\n".into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_default_is_combined_with_id_group_and_duration() {
        let line = Format::new(&AccessFormat::Wasgi).unwrap().line(&record());
        assert_eq!(
            line,
            "203.0.113.7 - - [07/Dec/2026:13:10:16 +0000] \"GET /a b?x=\\\"1\\\" HTTP/1.1\" 200 1234 \"-\" \"curl/8 \\\"x\\\"\\x0a\" req-1 shop 12.3\n"
        );
        let combined = Format::new(&AccessFormat::Combined).unwrap().line(&record());
        assert!(line.starts_with(combined.trim_end()), "{combined}");
    }

    #[test]
    fn templates_take_apache_directives_and_refuse_unknown_ones() {
        let format = Format::new(&AccessFormat::Template("%a %m %U%q %>s %B %D %{X-Trace}i %{Content-Type}o %%".into())).unwrap();
        let mut r = record();
        r.request_headers = vec![("x-trace".into(), "t1".into())];
        r.response_headers = vec![("content-type".into(), "text/html".into())];
        r.bytes = 0;
        assert_eq!(format.line(&r), "203.0.113.7 GET /a b?x=\\\"1\\\" 200 0 12345 t1 text/html %\n");
        assert_eq!(format.request_headers(), vec!["x-trace"]);
        let e = Format::new(&AccessFormat::Template("%h %Z".into())).unwrap_err();
        assert!(e.starts_with("%Z is not a directive wasgi knows"), "{e}");
        assert!(Format::new(&AccessFormat::Template("%i".into())).is_err());
    }

    #[test]
    fn json_lines_carry_every_field() {
        let line = Format::new(&AccessFormat::Json).unwrap().line(&record());
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "2026-12-07T13:10:16.000Z");
        assert_eq!(v["status"], 200);
        assert_eq!(v["group"], "shop");
        assert_eq!(v["request_id"], "req-1");
        assert_eq!(v["duration_ms"], 12.345);
        assert_eq!(v["user_agent"], "curl/8 \"x\"\n");
    }
}
