//! The directories a mod_wsgi `.wsgi` script puts on `sys.path` itself, read
//! from its text (no Python needed): `sys.path.insert(0, '/x')`,
//! `sys.path.append`, `sys.path.extend([...])`, `site.addsitedir('/x')` and
//! the deployment guide's virtualenv recipe (`activate_this = '/venv/bin/activate_this.py'`
//! then `exec(open(activate_this).read(), ...)` or `with open(activate_this) as f: exec(...)`).
//!
//! Under mod_wsgi those directories were readable by the daemon's Unix user;
//! inside the sandbox nothing is visible unless granted, so `import-apache`
//! grants each one read-only. A path is resolved when it is a string literal,
//! a name assigned one earlier in the script, or built from `__file__` with
//! `os.path.dirname/abspath/realpath/normpath/join`, `pathlib.Path(...).parent`,
//! `.resolve()`, `/` and `+`. Anything else (an environment variable, a value
//! computed at run time) is reported with its line, never guessed.
//!
//! The scanner is a small Python tokenizer: comments and the insides of
//! strings (docstrings included) are never taken for code, and a statement
//! runs until a newline outside brackets, as in Python.

use std::collections::HashMap;

/// One line of the script that puts a directory on `sys.path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathLine {
    /// 1-based line of the call.
    pub line: usize,
    /// That source line, trimmed.
    pub text: String,
    pub kind: Kind,
    /// The absolute, normalised directory (for [`Kind::ActivateThis`]: the
    /// virtualenv, two levels above `bin/activate_this.py`), or why it cannot
    /// be known from the text.
    pub path: Result<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `sys.path.insert`, `.append` or `.extend`.
    SysPath,
    /// `site.addsitedir`.
    SiteDir,
    /// A virtualenv's `activate_this.py`, run by the script.
    ActivateThis,
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Kind::SysPath => "sys.path",
            Kind::SiteDir => "site.addsitedir",
            Kind::ActivateThis => "activate_this.py",
        }
    }
}

// ---------------------------------------------------------------- tokens

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    /// A string literal's value; `None` for bytes, or an f-string with
    /// replacement fields (not known from the text).
    Str(Option<String>),
    Num(String),
    Op(String),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

/// The script's logical lines (statements), as tokens. Comments are dropped;
/// a newline inside brackets or after a backslash continues the statement.
fn statements(src: &str) -> Vec<Vec<Token>> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut current: Vec<Token> = Vec::new();
    let (mut i, mut line, mut depth) = (0usize, 1usize, 0usize);
    let end = |current: &mut Vec<Token>, out: &mut Vec<Vec<Token>>| {
        if !current.is_empty() {
            out.push(std::mem::take(current));
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
            if depth == 0 {
                end(&mut current, &mut out);
            }
        } else if c == '\\' && chars.get(i + 1) == Some(&'\n') {
            line += 1;
            i += 2;
        } else if c == '\\' && chars.get(i + 1) == Some(&'\r') && chars.get(i + 2) == Some(&'\n') {
            line += 1;
            i += 3;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '\'' || c == '"' {
            let start = line;
            let value = string(&chars, &mut i, &mut line, "");
            current.push(Token { tok: Tok::Str(value), line: start });
        } else if c.is_alphabetic() || c == '_' {
            let from = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[from..i].iter().collect();
            let prefix = word.to_ascii_lowercase();
            let is_prefix = ["r", "u", "b", "f", "br", "rb", "fr", "rf"].contains(&prefix.as_str());
            if is_prefix && matches!(chars.get(i), Some('\'' | '"')) {
                let start = line;
                let value = string(&chars, &mut i, &mut line, &prefix);
                current.push(Token { tok: Tok::Str(value), line: start });
            } else {
                current.push(Token { tok: Tok::Name(word), line });
            }
        } else if c.is_ascii_digit() {
            let from = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                i += 1;
            }
            current.push(Token { tok: Tok::Num(chars[from..i].iter().collect()), line });
        } else if c == ';' && depth == 0 {
            i += 1;
            end(&mut current, &mut out);
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = if ["==", "!=", "<=", ">=", "**", "//", "->", ":=", "<<", ">>"].contains(&two.as_str())
                || (two.len() == 2 && two.ends_with('=') && "+-*/%&|^@".contains(c))
            {
                two
            } else {
                c.to_string()
            };
            match c {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            i += op.chars().count();
            current.push(Token { tok: Tok::Op(op), line });
        }
    }
    end(&mut current, &mut out);
    out
}

/// Reads a string literal starting at its opening quote; `prefix` is its
/// lower-cased prefix (`r`, `b`, `f`, ...). An unterminated single-quoted
/// string ends at the end of its line, as a tokenizer recovering would.
fn string(chars: &[char], i: &mut usize, line: &mut usize, prefix: &str) -> Option<String> {
    let quote = chars[*i];
    let triple = chars.get(*i + 1) == Some(&quote) && chars.get(*i + 2) == Some(&quote);
    *i += if triple { 3 } else { 1 };
    let raw = prefix.contains('r');
    let mut value = String::new();
    while *i < chars.len() {
        let c = chars[*i];
        if c == quote && (!triple || (chars.get(*i + 1) == Some(&quote) && chars.get(*i + 2) == Some(&quote))) {
            *i += if triple { 3 } else { 1 };
            break;
        }
        if c == '\n' {
            *line += 1;
            if !triple {
                break;
            }
        }
        if c == '\\' && *i + 1 < chars.len() {
            let next = chars[*i + 1];
            *i += 2;
            if next == '\n' {
                *line += 1;
            }
            if raw {
                value.push('\\');
                value.push(next);
                continue;
            }
            match next {
                '\n' => {}
                'n' => value.push('\n'),
                't' => value.push('\t'),
                '\\' | '\'' | '"' => value.push(next),
                other => {
                    value.push('\\');
                    value.push(other);
                }
            }
            continue;
        }
        value.push(c);
        *i += 1;
    }
    if prefix.contains('b') || (prefix.contains('f') && value.contains('{')) {
        None
    } else {
        Some(value)
    }
}

// ---------------------------------------------------------------- values

/// A partly evaluated expression.
#[derive(Debug, Clone)]
enum Val {
    Str(String),
    /// A dotted name that is not a variable: a function, a module, `os.environ`.
    Name(String),
    /// `value.method`, waiting for its call.
    Method(String, String),
    /// `path.parents`, waiting for its index.
    Parents(String),
}

type Res = Result<Val, String>;

fn is_op(t: Option<&Token>, op: &str) -> bool {
    matches!(t, Some(Token { tok: Tok::Op(o), .. }) if o == op)
}

fn name_of(t: Option<&Token>) -> Option<&str> {
    match t {
        Some(Token { tok: Tok::Name(n), .. }) => Some(n),
        _ => None,
    }
}

/// The index just past the bracket that closes the one at `open`.
fn closing(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        if let Tok::Op(o) = &t.tok {
            match o.as_str() {
                "(" | "[" | "{" => depth += 1,
                ")" | "]" | "}" => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
        }
    }
    tokens.len()
}

/// The arguments between the bracket at `open` and its match, split at the
/// top-level commas; returns them and the index past the closing bracket.
fn arguments(tokens: &[Token], open: usize) -> (Vec<&[Token]>, usize) {
    let close = closing(tokens, open);
    let inner = &tokens[open + 1..close.saturating_sub(1).max(open + 1)];
    let mut args = Vec::new();
    let (mut depth, mut from) = (0usize, 0usize);
    for (i, t) in inner.iter().enumerate() {
        if let Tok::Op(o) = &t.tok {
            match o.as_str() {
                "(" | "[" | "{" => depth += 1,
                ")" | "]" | "}" => depth = depth.saturating_sub(1),
                "," if depth == 0 => {
                    args.push(&inner[from..i]);
                    from = i + 1;
                }
                _ => {}
            }
        }
    }
    if from < inner.len() {
        args.push(&inner[from..]);
    }
    (args, close)
}

fn dirname(p: &str) -> String {
    match p.trim_end_matches('/').rfind('/') {
        Some(0) => "/".into(),
        Some(i) => p[..i].to_owned(),
        None => String::new(),
    }
}

/// `os.path.join` / pathlib's `/`: an absolute part replaces what came before.
fn join(a: &str, b: &str) -> String {
    if b.starts_with('/') || a.is_empty() {
        b.to_owned()
    } else if a.ends_with('/') {
        format!("{a}{b}")
    } else {
        format!("{a}/{b}")
    }
}

/// `.` and `..` removed, as `os.path.normpath` does (no symlinks followed).
pub fn normalise(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

struct Eval<'a> {
    script: &'a str,
    vars: &'a HashMap<String, Result<String, String>>,
}

impl Eval<'_> {
    /// The value of a whole expression, or why it is not known.
    fn path(&self, tokens: &[Token]) -> Result<String, String> {
        if tokens.is_empty() {
            return Err("no path given".into());
        }
        let mut pos = 0;
        let mut value = self.term(tokens, &mut pos)?;
        while pos < tokens.len() {
            let op = match &tokens[pos].tok {
                Tok::Op(o) if o == "+" || o == "/" => o.clone(),
                _ => return Err(format!("{} is computed at run time", text_of(tokens))),
            };
            pos += 1;
            let right = self.term(tokens, &mut pos)?;
            value = match (value, right) {
                (Val::Str(a), Val::Str(b)) if op == "+" => Val::Str(a + &b),
                (Val::Str(a), Val::Str(b)) => Val::Str(join(&a, &b)),
                _ => return Err(format!("{} is computed at run time", text_of(tokens))),
            };
        }
        match value {
            Val::Str(s) => Ok(s),
            Val::Name(n) => Err(format!("`{n}` is not a path written in the script")),
            _ => Err(format!("{} is computed at run time", text_of(tokens))),
        }
    }

    /// A primary with its attributes, calls and subscripts.
    fn term(&self, tokens: &[Token], pos: &mut usize) -> Res {
        let mut value = match tokens.get(*pos).map(|t| &t.tok) {
            Some(Tok::Str(_)) => {
                let mut s = String::new();
                while let Some(Tok::Str(part)) = tokens.get(*pos).map(|t| &t.tok) {
                    match part {
                        Some(p) => s.push_str(p),
                        None => return Err("an f-string or bytes value is computed at run time".into()),
                    }
                    *pos += 1;
                }
                Val::Str(s)
            }
            Some(Tok::Name(n)) => {
                *pos += 1;
                if n == "__file__" {
                    Val::Str(self.script.to_owned())
                } else if let Some(v) = self.vars.get(n) {
                    Val::Str(v.clone()?)
                } else {
                    Val::Name(n.clone())
                }
            }
            Some(Tok::Op(o)) if o == "(" => {
                let (args, close) = arguments(tokens, *pos);
                *pos = close;
                match args.as_slice() {
                    [inner] => Val::Str(self.path(inner)?),
                    _ => return Err(format!("{} is computed at run time", text_of(tokens))),
                }
            }
            _ => return Err(format!("{} is not a literal path", text_of(tokens))),
        };
        loop {
            if is_op(tokens.get(*pos), ".") {
                let Some(attr) = name_of(tokens.get(*pos + 1)) else { return Err(format!("{} is not a literal path", text_of(tokens))) };
                *pos += 2;
                value = match value {
                    Val::Name(n) => Val::Name(format!("{n}.{attr}")),
                    Val::Str(s) if attr == "parent" => Val::Str(dirname(&s)),
                    Val::Str(s) if attr == "parents" => Val::Parents(s),
                    Val::Str(s) => Val::Method(s, attr.to_owned()),
                    _ => return Err(format!("{} is computed at run time", text_of(tokens))),
                };
            } else if is_op(tokens.get(*pos), "(") {
                let (args, close) = arguments(tokens, *pos);
                *pos = close;
                value = match value {
                    Val::Name(f) => Val::Str(self.call(&f, &args)?),
                    Val::Method(s, m) => Val::Str(self.method(s, &m, &args)?),
                    _ => return Err(format!("{} is computed at run time", text_of(tokens))),
                };
            } else if is_op(tokens.get(*pos), "[") {
                let (args, close) = arguments(tokens, *pos);
                *pos = close;
                let index = match args.as_slice() {
                    [[Token { tok: Tok::Num(n), .. }]] => n.parse::<usize>().ok(),
                    _ => None,
                };
                value = match (value, index) {
                    (Val::Parents(mut s), Some(n)) => {
                        for _ in 0..=n {
                            s = dirname(&s);
                        }
                        Val::Str(s)
                    }
                    (Val::Name(n), _) if n.contains("environ") => return Err(format!("{n}[...] is an environment variable, not a path in the script")),
                    _ => return Err(format!("{} is computed at run time", text_of(tokens))),
                };
            } else {
                return Ok(value);
            }
        }
    }

    /// A known path function called with literal arguments.
    fn call(&self, function: &str, args: &[&[Token]]) -> Result<String, String> {
        let last = function.rsplit('.').next().unwrap_or(function);
        let module = function.strip_suffix(last).unwrap_or("").trim_end_matches('.');
        let os_path = ["", "os.path", "path", "posixpath"].contains(&module);
        let values = || args.iter().filter(|a| !is_keyword(a)).map(|a| self.path(a)).collect::<Result<Vec<_>, _>>();
        let one = || match values()?.as_slice() {
            [v] => Ok(v.clone()),
            _ => Err(format!("{function}(...) with {} arguments", args.len())),
        };
        match last {
            "dirname" if os_path => Ok(dirname(&one()?)),
            "abspath" | "realpath" | "normpath" if os_path => one(),
            "expanduser" if os_path => one().and_then(|v| if v.starts_with('~') { Err(format!("{v}: the home directory of Apache's user")) } else { Ok(v) }),
            "join" if os_path => Ok(values()?.iter().fold(String::new(), |a, b| join(&a, b))),
            "Path" | "PurePath" | "PosixPath" if ["", "pathlib"].contains(&module) => Ok(values()?.iter().fold(String::new(), |a, b| join(&a, b))),
            "str" | "fspath" if ["", "os"].contains(&module) => one(),
            "getenv" | "get" if function.contains("environ") || function.ends_with("getenv") => {
                Err(format!("{function}(...) is an environment variable, not a path in the script"))
            }
            _ => Err(format!("{function}(...) is computed at run time")),
        }
    }

    /// A pathlib method on a known path.
    fn method(&self, value: String, method: &str, args: &[&[Token]]) -> Result<String, String> {
        match method {
            "resolve" | "absolute" | "expanduser" | "as_posix" | "__str__" if args.is_empty() => Ok(value),
            "joinpath" => {
                let parts = args.iter().map(|a| self.path(a)).collect::<Result<Vec<_>, _>>()?;
                Ok(parts.iter().fold(value, |a, b| join(&a, b)))
            }
            _ => Err(format!(".{method}(...) is computed at run time")),
        }
    }
}

fn is_keyword(arg: &[Token]) -> bool {
    name_of(arg.first()).is_some() && is_op(arg.get(1), "=")
}

/// The tokens as Python-looking text, for messages.
fn text_of(tokens: &[Token]) -> String {
    let mut s = String::new();
    for (i, t) in tokens.iter().enumerate() {
        let piece = match &t.tok {
            Tok::Name(n) => n.clone(),
            Tok::Str(Some(v)) => format!("{v:?}"),
            Tok::Str(None) => "f\"...\"".into(),
            Tok::Num(n) => n.clone(),
            Tok::Op(o) => o.clone(),
        };
        let glue = i > 0 && matches!(t.tok, Tok::Name(_) | Tok::Str(_) | Tok::Num(_)) && matches!(tokens[i - 1].tok, Tok::Name(_) | Tok::Str(_) | Tok::Num(_));
        if glue {
            s.push(' ');
        }
        s.push_str(&piece);
        if piece == "," {
            s.push(' ');
        }
    }
    format!("`{s}`")
}

// ---------------------------------------------------------------- scanning

/// Every line of `source` (the script at `script`, an absolute path) that
/// puts a directory on `sys.path` or runs a virtualenv's `activate_this.py`.
pub fn scan(script: &str, source: &str) -> Vec<PathLine> {
    let lines: Vec<&str> = source.lines().collect();
    let mut vars: HashMap<String, Result<String, String>> = HashMap::new();
    let mut found = Vec::new();
    for statement in statements(source) {
        let eval = Eval { script, vars: &vars };
        let mut push = |at: &Token, kind: Kind, path: Result<String, String>| {
            let text = lines.get(at.line - 1).map(|l| l.trim().to_owned()).unwrap_or_default();
            found.push(PathLine { line: at.line, text, kind, path: path.and_then(|p| absolute(&p)) });
        };
        for i in 0..statement.len() {
            let after_dot = i > 0 && is_op(statement.get(i - 1), ".");
            let word = |k: usize| name_of(statement.get(i + k));
            let dot = |k: usize| is_op(statement.get(i + k), ".");
            let call = |k: usize| is_op(statement.get(i + k), "(");
            // sys.path.insert(0, P) / .append(P) / .extend([P, ...])
            if !after_dot && word(0) == Some("sys") && dot(1) && word(2) == Some("path") && dot(3) && call(5) {
                let (args, _) = arguments(&statement, i + 5);
                match (word(4), args.as_slice()) {
                    (Some("insert"), [_, p]) | (Some("append"), [p]) => push(&statement[i], Kind::SysPath, eval.path(p)),
                    (Some("extend"), [list]) if is_op(list.first(), "[") || is_op(list.first(), "(") => {
                        let (items, _) = arguments(list, 0);
                        for p in items {
                            push(&statement[i], Kind::SysPath, eval.path(p));
                        }
                    }
                    (Some("extend"), [list]) => push(&statement[i], Kind::SysPath, Err(format!("{} is computed at run time", text_of(list)))),
                    _ => {}
                }
            }
            // site.addsitedir(P), or addsitedir(P) imported from site.
            let addsitedir = (!after_dot && word(0) == Some("site") && dot(1) && word(2) == Some("addsitedir") && call(3)).then_some(3)
                .or((!after_dot && word(0) == Some("addsitedir") && call(1)).then_some(1));
            if let Some(open) = addsitedir {
                let (args, _) = arguments(&statement, i + open);
                if let Some(p) = args.first() {
                    push(&statement[i], Kind::SiteDir, eval.path(p));
                }
            }
            // open(P) / io.open(P) / execfile(P) / runpy.run_path(P) of a venv's activate_this.py.
            let opener = match (word(0), after_dot) {
                (Some("open" | "execfile"), false) => call(1).then_some(1),
                (Some("io"), false) if dot(1) && word(2) == Some("open") && call(3) => Some(3),
                (Some("runpy"), false) if dot(1) && word(2) == Some("run_path") && call(3) => Some(3),
                _ => None,
            };
            if let Some(open) = opener {
                let (args, _) = arguments(&statement, i + open);
                let Some(p) = args.first() else { continue };
                let mentions = p.iter().any(|t| match &t.tok {
                    Tok::Name(n) => n.contains("activate_this"),
                    Tok::Str(Some(s)) => s.contains("activate_this"),
                    _ => false,
                });
                match eval.path(p) {
                    Ok(file) if file.ends_with("activate_this.py") => push(&statement[i], Kind::ActivateThis, Ok(dirname(&dirname(&file)))),
                    Err(why) if mentions => push(&statement[i], Kind::ActivateThis, Err(why)),
                    _ => {}
                }
            }
        }
        // NAME = expression: remembered for the lines below.
        if let (Some(name), true) = (name_of(statement.first()), is_op(statement.get(1), "=")) {
            let value = Eval { script, vars: &vars }.path(&statement[2..]).map_err(|why| format!("`{name}` is not a literal path ({why})"));
            vars.insert(name.to_owned(), value);
        }
    }
    found
}

/// Absolute and normalised, or why not.
fn absolute(p: &str) -> Result<String, String> {
    if p.starts_with('/') {
        Ok(normalise(p))
    } else {
        Err(format!(
            "{p:?} is a relative path: under mod_wsgi it is relative to the daemon's working directory; write it as an absolute path"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(src: &str) -> Vec<(usize, Kind, Result<String, String>)> {
        scan("/srv/app/app.wsgi", src).into_iter().map(|p| (p.line, p.kind, p.path)).collect()
    }

    fn ok(line: usize, kind: Kind, p: &str) -> (usize, Kind, Result<String, String>) {
        (line, kind, Ok(p.to_owned()))
    }

    #[test]
    fn the_guides_recipes() {
        assert_eq!(
            paths("import sys\nsys.path.insert(0, '/path/to/the/application')\nfrom yourapplication import app as application\n"),
            [ok(2, Kind::SysPath, "/path/to/the/application")]
        );
        assert_eq!(
            paths("activate_this = '/path/to/env/bin/activate_this.py'\nwith open(activate_this) as file_:\n    exec(file_.read(), dict(__file__=activate_this))\n"),
            [ok(2, Kind::ActivateThis, "/path/to/env")]
        );
        assert_eq!(
            paths("activate_this = \"/venv/bin/activate_this.py\"\nexec(open(activate_this).read(), dict(__file__=activate_this))\n"),
            [ok(2, Kind::ActivateThis, "/venv")]
        );
        assert_eq!(paths("execfile('/venv/bin/activate_this.py', dict(__file__='/venv/bin/activate_this.py'))\n"), [ok(1, Kind::ActivateThis, "/venv")]);
    }

    #[test]
    fn spellings() {
        let src = r#"import os, sys, site
sys.path.insert(0, "/a")
sys.path.append(r'/b/')
sys.path.insert(0,
                '/c')   # a comment: sys.path.append('/not-me')
site.addsitedir('/venv/lib/python3.11/site-packages')
sys.path.extend(['/d', "/e"]); sys.path.append('/f' '/g')
"""A docstring with sys.path.append('/not-me-either')"""
x = 'sys.path.append("/nor-me")'
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, 'libs'))
sys.path.append(os.path.join(os.path.dirname(__file__), '..', 'shared'))
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent / "vendor"))
sys.path.append(os.path.dirname(__file__) + '/plugins')
sys.path.insert(0, str(Path(__file__).parents[1] / 'lib'))
"#;
        assert_eq!(
            paths(src),
            [
                ok(2, Kind::SysPath, "/a"),
                ok(3, Kind::SysPath, "/b"),
                ok(4, Kind::SysPath, "/c"),
                ok(6, Kind::SiteDir, "/venv/lib/python3.11/site-packages"),
                ok(7, Kind::SysPath, "/d"),
                ok(7, Kind::SysPath, "/e"),
                ok(7, Kind::SysPath, "/f/g"),
                ok(11, Kind::SysPath, "/srv/app/libs"),
                ok(12, Kind::SysPath, "/srv/shared"),
                ok(14, Kind::SysPath, "/srv/app/vendor"),
                ok(15, Kind::SysPath, "/srv/app/plugins"),
                ok(16, Kind::SysPath, "/srv/lib"),
            ]
        );
    }

    #[test]
    fn what_is_not_literal_says_why() {
        let found = paths(
            "import os, sys\nsys.path.insert(0, os.environ['APP_LIBS'])\nbase = os.getenv('BASE')\nsys.path.append(base)\n\
             sys.path.append('libs')\nfor p in ['/x']:\n    sys.path.append(p)\nsys.path.append(f'/srv/{name}')\n",
        );
        let whys: Vec<(usize, String)> = found.into_iter().map(|(line, _, p)| (line, p.unwrap_err())).collect();
        assert_eq!(whys[0], (2, "os.environ[...] is an environment variable, not a path in the script".into()));
        assert_eq!(whys[1].0, 4);
        assert!(whys[1].1.starts_with("`base` is not a literal path (os.getenv(...) is an environment variable"), "{whys:?}");
        assert_eq!(whys[2], (5, "\"libs\" is a relative path: under mod_wsgi it is relative to the daemon's working directory; write it as an absolute path".into()));
        assert_eq!(whys[3], (7, "`p` is not a path written in the script".into()));
        assert_eq!(whys[4], (8, "an f-string or bytes value is computed at run time".into()));
        assert_eq!(whys.len(), 5);
    }

    /// Half-written scripts (every prefix of one with brackets, strings,
    /// continuations and comments) never make the scanner panic.
    #[test]
    fn any_prefix_of_a_script_is_scanned_without_panicking() {
        let src = "import os, sys\\\nx = r'''a\\'b\n'''  # c\nsys.path.insert(0, os.path.join(os.path.dirname(__file__), \"l\\\"i\"))\n\
                   sys.path.extend((Path(__file__).parents[2] / 'x', b'/y'))\nsite.addsitedir(f'{x}')\nopen(activate_this)\n([{)]}\n";
        for end in (0..=src.len()).filter(|&i| src.is_char_boundary(i)) {
            let _ = scan("/s/app.wsgi", &src[..end]);
        }
        assert_eq!(scan("/s/app.wsgi", src).len(), 5);
    }

    #[test]
    fn other_opens_and_calls_are_not_taken_for_paths() {
        assert_eq!(paths("import sys\nopen('/etc/app.conf').read()\nprint(sys.path)\nsys.path.remove('/x')\nmy.sys.path.append('/y')\n"), []);
        let found = paths("import os\nactivate_this = os.environ['VENV'] + '/bin/activate_this.py'\nexec(open(activate_this).read())\n");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1, Kind::ActivateThis);
        assert!(found[0].2.as_ref().unwrap_err().contains("environment variable"), "{found:?}");
    }
}
