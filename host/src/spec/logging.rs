//! Where the logs go and in what format: the access log's target and
//! format, and the error log's format (text or JSON).

use std::path::PathBuf;

/// Where access log lines go.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum AccessLogTarget {
    #[default]
    Stdout,
    Stderr,
    /// Appended to; reopened on SIGUSR1.
    File(PathBuf),
    Off,
}

impl std::str::FromStr for AccessLogTarget {
    type Err = String;

    /// `stdout` (or `-`), `stderr`, `off`, or a file's path.
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "" => return Err("an empty access log target: say stdout, stderr, off or a file's path".into()),
            "stdout" | "-" => AccessLogTarget::Stdout,
            "stderr" => AccessLogTarget::Stderr,
            "off" | "none" => AccessLogTarget::Off,
            path => AccessLogTarget::File(PathBuf::from(path)),
        })
    }
}

impl std::fmt::Display for AccessLogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessLogTarget::Stdout => f.write_str("stdout"),
            AccessLogTarget::Stderr => f.write_str("stderr"),
            AccessLogTarget::File(p) => write!(f, "{}", p.display()),
            AccessLogTarget::Off => f.write_str("off"),
        }
    }
}

/// The access log's format: a name or an Apache LogFormat template.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum AccessFormat {
    /// Apache's combined format plus the request id, the group and the
    /// duration in milliseconds.
    #[default]
    Wasgi,
    Combined,
    Common,
    /// One JSON object per line.
    Json,
    /// Apache LogFormat directives (`%h %t "%r" %>s ...`).
    Template(String),
}

impl std::str::FromStr for AccessFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "wasgi" | "default" => AccessFormat::Wasgi,
            "combined" => AccessFormat::Combined,
            "common" => AccessFormat::Common,
            "json" => AccessFormat::Json,
            t if t.contains('%') => {
                parse_template(t)?;
                AccessFormat::Template(t.to_owned())
            }
            other => return Err(format!("{other:?} is neither a format name (wasgi, combined, common, json) nor a template with %-directives")),
        })
    }
}

impl std::fmt::Display for AccessFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessFormat::Wasgi => f.write_str("wasgi"),
            AccessFormat::Combined => f.write_str("combined"),
            AccessFormat::Common => f.write_str("common"),
            AccessFormat::Json => f.write_str("json"),
            AccessFormat::Template(t) => write!(f, "{t:?}"),
        }
    }
}

/// The error log's (every event but the access lines) format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    /// One JSON object per event.
    Json,
}

impl LogFormat {
    pub const NAMES: [&'static str; 2] = ["text", "json"];
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("{other:?} is not a log format: text or json")),
        }
    }
}

/// The logging settings of a configuration.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Logging {
    pub access_log: AccessLogTarget,
    pub access_format: AccessFormat,
    pub format: LogFormat,
}

/// One item of a parsed access log template.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Text(String),
    /// `%X` or `%{arg}X`.
    Directive(char, Option<String>),
}

/// The directives a template may use (Apache's, and `%G` for the group).
const DIRECTIVES: &str = "a h l u t r m U q H s b B D T L G v i o %";

/// Splits a template into text and directives; an unknown directive is an
/// error that lists the known ones.
pub fn parse_template(template: &str) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    let mut text = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        let mut arg = None;
        if chars.peek() == Some(&'{') {
            chars.next();
            let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
            arg = Some(name);
        }
        // Apache's status modifiers: %>s (final) and %<s (original) are the same here.
        while matches!(chars.peek(), Some('>') | Some('<')) {
            chars.next();
        }
        let Some(d) = chars.next() else { return Err(format!("{template:?} ends in a lone %")) };
        if d == '%' {
            text.push('%');
            continue;
        }
        if !DIRECTIVES.split(' ').any(|k| k.starts_with(d)) {
            return Err(format!("%{d} is not a directive wasgi knows; it knows %{}", DIRECTIVES.replace(' ', " %")));
        }
        if matches!(d, 'i' | 'o') && arg.as_deref().is_none_or(str::is_empty) {
            return Err(format!("%{d} needs a header name, as in %{{User-Agent}}{d}"));
        }
        if !text.is_empty() {
            items.push(Item::Text(std::mem::take(&mut text)));
        }
        items.push(Item::Directive(d, arg));
    }
    if !text.is_empty() {
        items.push(Item::Text(text));
    }
    Ok(items)
}

