//! Apache configuration files read into a tree of directives.
//!
//! What httpd's own reader does, as far as an import needs: `\` at the end
//! of a line continues it, `#` starts a comment line, arguments are split on
//! blanks unless quoted (`"..."` or `'...'`, with `\"` inside), directive and
//! section names are case-insensitive, `<Section args>` … `</Section>` nest,
//! `Define NAME VALUE` sets `${NAME}`, and `Include`/`IncludeOptional` are
//! replaced by the files they name (globs, directories, paths relative to
//! ServerRoot or to the including file). Conditional sections (`<IfModule>`,
//! `<IfDefine>`, …) are kept as sections; [`flatten`] reads through them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One directive, or a section with its contents.
#[derive(Debug, Clone)]
pub struct Directive {
    /// As written (compare with [`Directive::is`]).
    pub name: String,
    pub args: Vec<String>,
    pub file: Arc<Path>,
    /// The line the directive starts on.
    pub line: usize,
    /// `Some` for a section (`<VirtualHost *:80>` … `</VirtualHost>`).
    pub children: Option<Vec<Directive>>,
}

impl Directive {
    /// Case-insensitive name comparison, as Apache does it.
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// `file:line`.
    pub fn at(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }

    /// The directive as a line of Apache configuration (sections as their opening tag).
    pub fn text(&self) -> String {
        let mut s = String::new();
        if self.children.is_some() {
            s.push('<');
        }
        s.push_str(&self.name);
        for a in &self.args {
            s.push(' ');
            if a.is_empty() || a.contains(char::is_whitespace) {
                s.push('"');
                s.push_str(a);
                s.push('"');
            } else {
                s.push_str(a);
            }
        }
        if self.children.is_some() {
            s.push('>');
        }
        s
    }

    pub fn children(&self) -> &[Directive] {
        self.children.as_deref().unwrap_or_default()
    }
}

/// A file that cannot be read as Apache configuration.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct ParseError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

/// Sections whose contents apply only under a condition; an import reads
/// them as if the condition held.
pub fn is_conditional(d: &Directive) -> bool {
    d.children.is_some() && ["IfModule", "IfDefine", "IfVersion", "IfFile", "IfDirective", "IfSection"].iter().any(|n| d.is(n))
}

/// The directives of `list`, with the contents of conditional sections in
/// their place.
pub fn flatten(list: &[Directive]) -> Vec<&Directive> {
    let mut out = Vec::new();
    for d in list {
        if is_conditional(d) {
            out.extend(flatten(d.children()));
        } else {
            out.push(d);
        }
    }
    out
}

/// Splits a line into words as Apache's `ap_getword_conf` does: blanks
/// separate words; a word that starts with a quote runs to the matching
/// quote (a backslash before that quote escapes it, other backslashes
/// stay, so `C:\dir` is kept as written).
pub fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        let mut word = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '\\' && chars.peek() == Some(&first) {
                    word.push(first);
                    chars.next();
                } else if c == first {
                    break;
                } else {
                    word.push(c);
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        out.push(word);
    }
    out
}

/// Logical lines of a file: (first physical line number, text). A line
/// ending in a single `\` continues on the next one.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let (start, mut line) = pending.take().unwrap_or((i + 1, String::new()));
        if raw.ends_with('\\') && !raw.ends_with("\\\\") {
            line.push_str(&raw[..raw.len() - 1]);
            pending = Some((start, line));
        } else {
            line.push_str(raw);
            out.push((start, line));
        }
    }
    out.extend(pending);
    out
}

/// Reads Apache configuration files.
pub struct Reader {
    /// From a `ServerRoot` directive, or given.
    server_root: Option<PathBuf>,
    defines: HashMap<String, String>,
    /// Files being read, to refuse include loops.
    open: Vec<PathBuf>,
}

impl Reader {
    pub fn new(server_root: Option<PathBuf>) -> Reader {
        Reader { server_root, defines: HashMap::new(), open: Vec::new() }
    }

    /// Reads `path` and everything it includes.
    pub fn read(&mut self, path: &Path) -> Result<Vec<Directive>, ParseError> {
        self.read_included(path, None)
    }

    fn read_included(&mut self, path: &Path, from: Option<(&Path, usize)>) -> Result<Vec<Directive>, ParseError> {
        let error = |message: String| match from {
            Some((file, line)) => ParseError { file: file.to_owned(), line, message },
            None => ParseError { file: path.to_owned(), line: 0, message },
        };
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_owned());
        if self.open.contains(&canonical) {
            return Err(error(format!("{} includes itself", path.display())));
        }
        let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot read {}: {e}", path.display())))?;
        self.open.push(canonical);
        let result = self.parse(&text, path);
        self.open.pop();
        result
    }

    /// Parses the text of one file (its includes read from disk).
    pub fn parse(&mut self, text: &str, path: &Path) -> Result<Vec<Directive>, ParseError> {
        let file: Arc<Path> = Arc::from(path);
        let err = |line: usize, message: String| ParseError { file: path.to_owned(), line, message };
        // Open sections: the section directive and the contents read so far.
        let mut stack: Vec<(Directive, Vec<Directive>)> = Vec::new();
        let mut top: Vec<Directive> = Vec::new();
        for (line, text) in logical_lines(text) {
            let text = text.trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            if let Some(rest) = text.strip_prefix("</") {
                let name = rest.trim_end().strip_suffix('>').ok_or_else(|| err(line, format!("{text}: a closing tag ends with '>'")))?.trim();
                let Some((mut section, children)) = stack.pop() else {
                    return Err(err(line, format!("</{name}> without a matching <{name}>")));
                };
                if !section.is(name) {
                    return Err(err(line, format!("</{name}> closes <{}> opened on line {}", section.name, section.line)));
                }
                section.children = Some(children);
                match stack.last_mut() {
                    Some((_, parent)) => parent.push(section),
                    None => top.push(section),
                }
                continue;
            }
            let (section, body) = match text.strip_prefix('<') {
                Some(rest) => {
                    let body = rest.strip_suffix('>').ok_or_else(|| err(line, format!("{text}: a section's opening tag ends with '>'")))?;
                    (true, body)
                }
                None => (false, text),
            };
            let mut args: Vec<String> = words(body).into_iter().map(|w| self.substitute(&w)).collect();
            if args.is_empty() {
                return Err(err(line, format!("{text}: a section needs a name")));
            }
            let name = args.remove(0);
            let directive = Directive { name, args, file: file.clone(), line, children: None };
            if section {
                stack.push((directive, Vec::new()));
                continue;
            }
            let into = match stack.last_mut() {
                Some((_, children)) => children,
                None => &mut top,
            };
            if directive.is("Include") || directive.is("IncludeOptional") {
                let optional = directive.is("IncludeOptional");
                let Some(pattern) = directive.args.first() else {
                    return Err(err(line, format!("{} needs a file name", directive.name)));
                };
                for included in self.expand(pattern, optional, path, line)? {
                    into.extend(self.read_included(&included, Some((path, line)))?);
                }
                continue;
            }
            if directive.is("ServerRoot") {
                if let Some(root) = directive.args.first() {
                    self.server_root = Some(PathBuf::from(root));
                }
            } else if directive.is("Define") {
                if let Some(name) = directive.args.first() {
                    self.defines.insert(name.clone(), directive.args.get(1).cloned().unwrap_or_default());
                }
            } else if directive.is("UnDefine") {
                if let Some(name) = directive.args.first() {
                    self.defines.remove(name);
                }
            }
            into.push(directive);
        }
        if let Some((section, _)) = stack.pop() {
            return Err(err(section.line, format!("<{}> is never closed (expected </{}> before the end of the file)", section.name, section.name)));
        }
        Ok(top)
    }

    /// `${NAME}` from `Define`; unknown names stay as written.
    fn substitute(&self, word: &str) -> String {
        let mut out = String::new();
        let mut rest = word;
        while let Some(start) = rest.find("${") {
            let Some(len) = rest[start..].find('}') else { break };
            let name = &rest[start + 2..start + len];
            out.push_str(&rest[..start]);
            match self.defines.get(name) {
                Some(value) => out.push_str(value),
                None => out.push_str(&rest[start..start + len + 1]),
            }
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
        out
    }

    /// The files an `Include` names, in the order Apache reads them.
    fn expand(&self, pattern: &str, optional: bool, from: &Path, line: usize) -> Result<Vec<PathBuf>, ParseError> {
        let err = |message: String| ParseError { file: from.to_owned(), line, message };
        let directive = if optional { "IncludeOptional" } else { "Include" };
        let wildcard = pattern.contains(['*', '?', '[']);
        let mut bases: Vec<PathBuf> = Vec::new();
        if Path::new(pattern).is_absolute() {
            bases.push(PathBuf::new());
        } else {
            bases.extend(self.server_root.clone());
            bases.push(from.parent().map(Path::to_owned).unwrap_or_default());
            bases.dedup();
        }
        for base in &bases {
            let full = base.join(pattern);
            let matches: Vec<PathBuf> = if wildcard {
                let full = full.to_string_lossy().into_owned();
                let paths = glob::glob(&full).map_err(|e| err(format!("{directive} {pattern}: {e}")))?;
                let mut found: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
                found.sort();
                found
            } else if full.exists() {
                vec![full]
            } else {
                Vec::new()
            };
            if !matches.is_empty() {
                let mut files = Vec::new();
                for m in matches {
                    files_under(&m, &mut files);
                }
                return Ok(files);
            }
        }
        if optional {
            return Ok(Vec::new());
        }
        let places: Vec<String> = bases.iter().map(|b| if b.as_os_str().is_empty() { pattern.to_owned() } else { b.join(pattern).display().to_string() }).collect();
        Err(err(if wildcard {
            format!("{directive} {pattern}: the wildcard matches no file (looked for {}); use IncludeOptional if that is expected", places.join(" and "))
        } else {
            format!("{directive} {pattern}: no such file (looked for {})", places.join(" and "))
        }))
    }
}

/// A file, or every file under a directory (recursively, sorted), as
/// Apache includes a directory.
fn files_under(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path).into_iter().flatten().filter_map(|e| e.ok()).map(|e| e.path()).collect();
        entries.sort();
        for e in entries {
            files_under(&e, out);
        }
    } else {
        out.push(path.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Directive>, ParseError> {
        Reader::new(None).parse(text, Path::new("/etc/apache2/test.conf"))
    }

    /// A scratch directory, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(label: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("wasgi-conf-{label}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn write(&self, rel: &str, text: &str) -> PathBuf {
            let path = self.0.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn words_follow_apache_quoting() {
        assert_eq!(words(r#"WSGIScriptAlias /  "/srv/my app/app.wsgi"  process-group=x"#), ["WSGIScriptAlias", "/", "/srv/my app/app.wsgi", "process-group=x"]);
        assert_eq!(words(r#"Header set X "say \"hi\"" 'single q'"#), ["Header", "set", "X", "say \"hi\"", "single q"]);
        assert_eq!(words(r"WSGIScriptAlias / C:\yourdir\yourapp.wsgi"), ["WSGIScriptAlias", "/", r"C:\yourdir\yourapp.wsgi"]);
        assert_eq!(words(r#""C:\dir\""#), [r#"C:\dir""#], "a backslash before the closing quote escapes it, as in httpd");
        assert_eq!(words("  \t "), Vec::<String>::new());
    }

    #[test]
    fn continuations_comments_and_sections() {
        let tree = parse(
            "# a comment\r\n\
             <virtualhost *:80>\n\
             \x20   ServerName example.com\n\
             \x20   WSGIDaemonProcess app \\\n\
             \x20       user=alice \\\n\
             \x20       threads=5\n\
             \x20   <IfModule mod_wsgi.c>\n\
             \x20     <Directory \"/srv/my app\">\n\
             \x20       Require all granted\n\
             \x20     </directory>\n\
             \x20   </IfModule>\n\
             </VirtualHost>\n\
             \x20 # indented comment \\\n",
        )
        .unwrap();
        assert_eq!(tree.len(), 1);
        let vhost = &tree[0];
        assert!(vhost.is("VirtualHost") && vhost.args == ["*:80"] && vhost.line == 2);
        let kids = vhost.children();
        assert_eq!(kids[1].name, "WSGIDaemonProcess");
        assert_eq!(kids[1].args, ["app", "user=alice", "threads=5"]);
        assert_eq!(kids[1].line, 4, "a continued directive is located on its first line");
        assert_eq!(kids[2].line, 7);
        let flat = flatten(kids);
        assert_eq!(flat.len(), 3, "the IfModule is read through");
        assert!(flat[2].is("directory") && flat[2].args == ["/srv/my app"]);
        assert_eq!(flat[2].children()[0].text(), "Require all granted");
        assert_eq!(flat[2].text(), "<Directory \"/srv/my app\">");
    }

    #[test]
    fn unbalanced_sections_are_errors_with_their_line() {
        let e = parse("<VirtualHost *>\n<Directory /x>\n</VirtualHost>\n").unwrap_err().to_string();
        assert_eq!(e, "/etc/apache2/test.conf:3: </VirtualHost> closes <Directory> opened on line 2");
        let e = parse("\n<VirtualHost *>\nServerName a\n").unwrap_err().to_string();
        assert_eq!(e, "/etc/apache2/test.conf:2: <VirtualHost> is never closed (expected </VirtualHost> before the end of the file)");
        let e = parse("</Directory>\n").unwrap_err().to_string();
        assert_eq!(e, "/etc/apache2/test.conf:1: </Directory> without a matching <Directory>");
        let e = parse("<Directory /x\n").unwrap_err().to_string();
        assert_eq!(e, "/etc/apache2/test.conf:1: <Directory /x: a section's opening tag ends with '>'");
    }

    #[test]
    fn defines_are_substituted() {
        let tree = parse("Define APP /srv/app\nWSGIScriptAlias / ${APP}/app.wsgi\nErrorLog ${APACHE_LOG_DIR}/e.log\n").unwrap();
        assert_eq!(tree[1].args, ["/", "/srv/app/app.wsgi"]);
        assert_eq!(tree[2].args, ["${APACHE_LOG_DIR}/e.log"], "unknown variables stay as written");
    }

    #[test]
    fn includes_globs_directories_and_server_root() {
        let s = Scratch::new("include");
        s.write("sites/b.conf", "ServerName b\n");
        s.write("sites/a.conf", "ServerName a\n");
        s.write("sites/skip.txt", "ServerName skipped\n");
        s.write("conf.d/one/x.conf", "ServerName x\n");
        s.write("root/extra.conf", "ServerName from-root\n");
        let main = s.write(
            "main.conf",
            &format!(
                "<VirtualHost *>\nInclude sites/*.conf\n</VirtualHost>\nIncludeOptional nothing/*.conf\nIncludeOptional missing.conf\nInclude conf.d\nServerRoot {}\nInclude extra.conf\nInclude sites/a.conf\n",
                s.0.join("root").display()
            ),
        );
        let tree = Reader::new(None).read(&main).unwrap();
        let names: Vec<String> = tree[0].children().iter().map(|d| d.args[0].clone()).collect();
        assert_eq!(names, ["a", "b"], "glob matches are read in alphabetical order, inside the section");
        assert_eq!(tree[0].children()[0].file.as_ref(), s.0.join("sites/a.conf"));
        assert_eq!(tree[1].args, ["x"], "a directory is read whole");
        assert_eq!(tree[3].args, ["from-root"], "relative to ServerRoot once it is set");
        assert_eq!(tree[4].args, ["a"], "relative to the including file when ServerRoot has no such file");

        let bad = s.write("bad.conf", "\n\nInclude sites/*.nope\n");
        let e = Reader::new(None).read(&bad).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:3: Include sites/*.nope: the wildcard matches no file", bad.display())), "{e}");
        let bad = s.write("bad2.conf", "Include /nonexistent/x.conf\n");
        let e = Reader::new(None).read(&bad).unwrap_err().to_string();
        assert_eq!(e, format!("{}:1: Include /nonexistent/x.conf: no such file (looked for /nonexistent/x.conf)", bad.display()));
        let looped = s.write("loop.conf", "Include loop.conf\n");
        let e = Reader::new(None).read(&looped).unwrap_err().to_string();
        assert!(e.ends_with("loop.conf includes itself"), "{e}");

        // With a ServerRoot given, relative includes look there first.
        let main = s.write("other/main.conf", "Include extra.conf\n");
        let tree = Reader::new(Some(s.0.join("root"))).read(&main).unwrap();
        assert_eq!(tree[0].args, ["from-root"]);
    }
}

/// Mutation fuzzing of this format (see `crate::fuzz`).
#[cfg(test)]
mod fuzz_target {
    use std::path::Path;

    use crate::fuzz::run;

    /// Apache configuration text (the importer's reader). Inputs that
    /// include other files are skipped: a mutated `Include /*` would read
    /// the machine's files; includes have their own tests.
    #[test]
    fn fuzz_apache_conf() {
        let guide = "<VirtualHost *>\n    ServerName example.com\n    WSGIDaemonProcess yourapplication user=user1 group=group1 threads=5\n    WSGIScriptAlias / /var/www/yourapplication/yourapplication.wsgi\n    <Directory /var/www/yourapplication>\n        WSGIProcessGroup yourapplication\n        WSGIApplicationGroup %{GLOBAL}\n        Order deny,allow\n        Allow from all\n    </Directory>\n</VirtualHost>\n";
        let more = "Define ROOT /srv\n<IfModule mod_wsgi.c>\nWSGIPythonPath \"${ROOT}/lib\" \\\n  /other\n</IfModule>\n<Location /x>\nRequire ip 10.0.0.0/8\n</Location>\n";
        run("apache-conf", &[guide.as_bytes(), more.as_bytes()], |input| {
            let text = String::from_utf8_lossy(input);
            if text.to_ascii_lowercase().contains("include") {
                return;
            }
            let _ = crate::apache::conf::Reader::new(None).parse(&text, Path::new("/nonexistent/site.conf"));
        });
    }
}
