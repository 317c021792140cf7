//! One log record, one physical line: nothing a client or a tenant writes
//! can start a line that looks like another record.
//!
//! Messages carry text the host does not control: a request path (decoded,
//! so `%0D%0A` is a real CR LF), an app's exception in a traceback, whatever
//! a guest prints. [`OneLinePerRecord`] wraps tracing-subscriber's formatter
//! and, after it, escapes control characters (`\r`, `\x00`, `\x1b`, ...;
//! tracing-subscriber already escapes some of them). A message of several
//! lines, a traceback above all, stays readable: each of its lines becomes a
//! record of its own with the same timestamp, level, target and fields, so a
//! forged line still begins with the real tags of who wrote it.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;

use crate::spec::logging::LogFormat;

/// The error log's format now: JSON if set. Chosen by `--log-format` or
/// `WASGI_LOG_FORMAT` before the first record, else by the file's
/// `log_format` once it is read.
static JSON: AtomicBool = AtomicBool::new(false);
/// Set when the flag or the environment chose: the file does not override it.
static CHOSEN: AtomicBool = AtomicBool::new(false);

/// The format the flag or the environment asks for, from the start.
pub fn choose_format(format: LogFormat) {
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
    CHOSEN.store(true, Ordering::Relaxed);
}

/// The configuration file's `log_format`, unless a flag or the environment chose.
pub fn apply_config_format(format: LogFormat) {
    if !CHOSEN.load(Ordering::Relaxed) {
        JSON.store(format == LogFormat::Json, Ordering::Relaxed);
    }
}

pub fn current_format() -> LogFormat {
    if JSON.load(Ordering::Relaxed) {
        LogFormat::Json
    } else {
        LogFormat::Text
    }
}

/// Text records through `text`, or JSON ones through `json`, as
/// [`current_format`] says at each record.
pub struct TextOrJson<T, J> {
    pub text: T,
    pub json: J,
}

impl<S, N, T, J> FormatEvent<S, N> for TextOrJson<T, J>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    T: FormatEvent<S, N>,
    J: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        if JSON.load(Ordering::Relaxed) {
            self.json.format_event(ctx, writer, event)
        } else {
            self.text.format_event(ctx, writer, event)
        }
    }
}

/// Formats with `inner`, then makes every record of the result one physical line.
pub struct OneLinePerRecord<F> {
    pub inner: F,
}

impl<S, N, F> FormatEvent<S, N> for OneLinePerRecord<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut scan = Scan::default();
        event.record(&mut scan);
        if !scan.found {
            // Nearly every record: formatted as usual, colours and all.
            return self.inner.format_event(ctx, writer, event);
        }
        // Formatted without colours, then cut into lines and escaped.
        let mut text = String::new();
        self.inner.format_event(ctx, Writer::new(&mut text), event)?;
        let body = text.strip_suffix('\n').unwrap_or(&text);
        writer.write_str(&one_line_per_record(body, scan.message.as_deref().unwrap_or("")))
    }
}

/// Whether any field holds a character to escape; the message, if so.
#[derive(Default)]
struct Scan {
    found: bool,
    message: Option<String>,
}

impl Visit for Scan {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let text = format!("{value:?}");
            self.found |= text.chars().any(needs_escape);
            self.message = Some(text);
        } else if !self.found {
            let mut sink = ControlSink(false);
            let _ = write!(sink, "{value:?}");
            self.found = sink.0;
        }
    }
}

/// Notes a character to escape, keeping nothing.
struct ControlSink(bool);

impl fmt::Write for ControlSink {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 |= s.chars().any(needs_escape);
        Ok(())
    }
}

/// Characters that could end a line or steer a terminal; a tab is kept.
fn needs_escape(c: char) -> bool {
    c != '\t' && (c.is_control() || c == '\u{2028}' || c == '\u{2029}')
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        if !needs_escape(c) {
            out.push(c);
            continue;
        }
        let _ = match c {
            '\n' => out.write_str("\\n"),
            '\r' => out.write_str("\\r"),
            c if (c as u32) < 0x100 => write!(out, "\\x{:02x}", c as u32),
            c => write!(out, "\\u{{{:x}}}", c as u32),
        };
    }
}

/// `body` is a formatted record, `prefix message fields`, without its final
/// newline. A message of several lines becomes one record per line, each
/// `prefix line fields`; every other control character is escaped. When the
/// message cannot be found in place (the formatter changed it), the whole
/// record is escaped into one line.
fn one_line_per_record(body: &str, message: &str) -> String {
    let mut out = String::with_capacity(body.len() + 16);
    let lines: Vec<&str> = message.split('\n').collect();
    let (first, last) = (lines[0], lines[lines.len() - 1]);
    let split = (lines.len() > 1 && body.matches('\n').count() == lines.len() - 1)
        .then(|| {
            let first_end = body.find('\n')?;
            let prefix = body[..first_end].strip_suffix(first)?;
            let last_start = body.rfind('\n')? + 1;
            let fields = body[last_start..].strip_prefix(last)?;
            body[first_end + 1..].starts_with(&message[first.len() + 1..]).then_some((prefix, fields))
        })
        .flatten();
    match split {
        Some((prefix, fields)) => {
            for line in lines.iter().filter(|l| !l.trim().is_empty()) {
                escape_into(&mut out, prefix);
                escape_into(&mut out, line);
                escape_into(&mut out, fields);
                out.push('\n');
            }
            if out.is_empty() {
                escape_into(&mut out, body);
                out.push('\n');
            }
        }
        None => {
            escape_into(&mut out, body);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "2025-01-01T00:00:00.000000Z ERROR wasgi::app: ";
    const FIELDS: &str = " app=a.wsgi instance=1 request=7";

    fn record(message: &str) -> String {
        one_line_per_record(&format!("{PREFIX}{message}{FIELDS}"), message)
    }

    #[test]
    fn a_traceback_becomes_one_tagged_record_per_line() {
        let out = record("Exception on GET /x:\nTraceback (most recent call last):\n  File \"a.wsgi\", line 3\n\nValueError: no\n");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(lines.iter().all(|l| l.starts_with(PREFIX) && l.ends_with(FIELDS)), "{out}");
        assert_eq!(lines[2], format!("{PREFIX}  File \"a.wsgi\", line 3{FIELDS}"));
    }

    #[test]
    fn a_forged_line_keeps_the_real_tags_and_carriage_returns_are_escaped() {
        let fake = "2025-01-01T00:00:00.000000Z  INFO wasgi::access: group=other request=1 status=200";
        let out = record(&format!("Exception on GET /\r\n{fake}"));
        for line in out.lines() {
            assert!(line.starts_with(PREFIX) && line.ends_with(FIELDS), "{line}");
        }
        assert!(out.contains("GET /\\r app="), "{out}");
    }

    #[test]
    fn other_control_characters_are_escaped_in_place() {
        let out = record("a\x00b\x1b[31mc\u{2028}d\te");
        assert_eq!(out, format!("{PREFIX}a\\x00b\\x1b[31mc\\u{{2028}}d\te{FIELDS}\n"));
    }

    #[test]
    fn a_message_not_found_in_place_is_escaped_whole() {
        // A field value with a line break: the record stays one line.
        let out = one_line_per_record("x: m1\nm2 note=a\nb", "m1\nm2");
        assert_eq!(out, "x: m1\\nm2 note=a\\nb\n");
    }
}
