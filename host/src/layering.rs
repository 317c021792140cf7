//! The tree's rule, checked: which folder may use which, and no import
//! cycles between files.
//!
//! Reads every `crate::...` path in `host/src` (comments and strings
//! aside; `super::` and `self::` paths stay inside a folder and are not
//! read), maps it to the file it names, and fails on an edge between folders
//! that [`MAY_USE`] does not allow or on a cycle between files. To see the
//! listing:
//!
//! ```sh
//! cargo test -p wasgi --lib layering -- --nocapture
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each folder (or top-level file) of `host/src`, and what it may use, in the
/// order of the data path. Dependencies point one way: cli → config →
/// (http → routing → pool) → sandbox → engine; `protocol` (the wire format)
/// and `spec` (plain values) are leaves every runtime folder may use.
const MAY_USE: &[(&str, &[&str])] = &[
    ("main", &["cli", "apache", "config", "engine", "spec"]),
    ("cli", &["apache", "config", "http", "routing", "pool", "sandbox", "engine", "protocol", "spec"]),
    ("apache", &["config", "spec"]),
    ("config", &["spec"]),
    ("http", &["routing", "pool", "spec"]),
    ("routing", &["pool", "spec"]),
    ("pool", &["sandbox", "engine", "protocol", "spec"]),
    ("sandbox", &["engine", "protocol", "spec"]),
    ("engine", &["spec"]),
    ("protocol", &[]),
    ("spec", &[]),
    // Test helpers: anyone's tests may use them; they use nothing.
    ("fuzz", &[]),
    ("layering", &[]),
];

/// A source file's module path: `http/server.rs` → `http::server`,
/// `http/mod.rs` → `http`, `lib.rs` → ``.
fn module_of(relative: &Path) -> String {
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("host/src is readable").flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comments, string and char literals (so a doc link or
/// a message that mentions a path is not an import).
fn code_only(source: &str) -> String {
    let b = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if b[i] == b'r' && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#')) && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            j += 1;
            let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
            while j < b.len() && !b[j..].starts_with(&close) {
                j += 1;
            }
            i = j + close.len();
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            i += 3;
        } else if b[i] == b'\'' && b.get(i + 1) == Some(&b'\\') {
            i += 2;
            while i < b.len() && b[i] != b'\'' {
                i += 1;
            }
            i += 1;
        } else {
            let c = source[i..].chars().next().expect("inside the text");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Every module path written after `crate::` (`crate::a::b::C` gives
/// `a::b::C`; `crate::{a::B, c}` gives both).
fn crate_paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `wasgi_crate::`, not ours
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            found.extend(group[..end].split(',').map(|p| path_prefix(p.trim())).filter(|p| !p.is_empty()));
        } else {
            found.push(path_prefix(rest));
        }
    }
    found
}

fn path_prefix(text: &str) -> String {
    let end = text.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(text.len());
    text[..end].trim_end_matches(':').to_owned()
}

/// The folder (first segment) a module belongs to; `main` for the binary.
fn folder(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

/// The file-level import graph: module → (module it uses → one path that shows it).
fn graph() -> (BTreeMap<String, BTreeMap<String, String>>, Vec<String>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f.strip_prefix(&src).expect("under src"))).collect();
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let from = module_of(relative);
        let code = code_only(&std::fs::read_to_string(file).expect("a source file is readable"));
        let from_name = if relative == Path::new("main.rs") { "main".to_owned() } else { from };
        let uses = edges.entry(from_name.clone()).or_default();
        for path in crate_paths(&code) {
            // The longest module prefix of the path is the file it names.
            let segments: Vec<&str> = path.split("::").collect();
            let target = (1..=segments.len()).rev().map(|n| segments[..n].join("::")).find(|m| modules.contains(m));
            if let Some(target) = target.filter(|t| *t != from_name) {
                uses.entry(target).or_insert(path);
            }
        }
        // main.rs reaches the library as `wasgi::`.
        if relative == Path::new("main.rs") {
            for at in code.match_indices("wasgi::").map(|(i, _)| i) {
                let path = path_prefix(&code[at + "wasgi::".len()..]);
                let segments: Vec<&str> = path.split("::").collect();
                if let Some(target) = (1..=segments.len()).rev().map(|n| segments[..n].join("::")).find(|m| modules.contains(m)) {
                    uses.entry(target).or_insert(path);
                }
            }
        }
    }
    (edges, modules.into_iter().collect())
}

/// A cycle in the graph, if any (depth-first).
fn cycle(edges: &BTreeMap<String, BTreeMap<String, String>>) -> Option<Vec<String>> {
    fn visit(node: &str, edges: &BTreeMap<String, BTreeMap<String, String>>, state: &mut BTreeMap<String, u8>, stack: &mut Vec<String>) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flat_map(|m| m.keys()) {
            match state.get(next.as_str()) {
                Some(1) => {
                    let from = stack.iter().position(|n| n == next).expect("on the stack");
                    let mut found = stack[from..].to_vec();
                    found.push(next.clone());
                    return Some(found);
                }
                Some(_) => {}
                None => {
                    if let Some(found) = visit(next, edges, state, stack) {
                        return Some(found);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if !state.contains_key(node) {
            let mut stack = Vec::new();
            if let Some(found) = visit(node, edges, &mut state, &mut stack) {
                return Some(found);
            }
        }
    }
    None
}

#[test]
fn layering_dependencies_point_one_way() {
    let (edges, _) = graph();
    let allowed: BTreeMap<&str, &[&str]> = MAY_USE.iter().copied().collect();
    let mut listing = String::new();
    let mut wrong = Vec::new();
    for (from, uses) in &edges {
        if from.is_empty() {
            continue; // lib.rs only declares the folders
        }
        let targets: Vec<&str> = uses.keys().map(String::as_str).collect();
        listing.push_str(&format!("{from} -> {}\n", if targets.is_empty() { "(nothing)".to_owned() } else { targets.join(", ") }));
        let Some(may) = allowed.get(folder(from)) else {
            wrong.push(format!("{from}: folder {:?} is not in layering::MAY_USE", folder(from)));
            continue;
        };
        for (to, path) in uses {
            let to_folder = folder(to);
            if to_folder != folder(from) && !may.contains(&to_folder) && !matches!(to_folder, "fuzz" | "layering") {
                wrong.push(format!("{from} uses {to} (crate::{path}): {} may use only {may:?}", folder(from)));
            }
        }
    }
    println!("{listing}");
    assert!(wrong.is_empty(), "imports against the layering (see host/src/layering.rs):\n{}", wrong.join("\n"));
}

#[test]
fn layering_has_no_import_cycles() {
    let (edges, _) = graph();
    if let Some(found) = cycle(&edges) {
        panic!("an import cycle between modules: {}", found.join(" -> "));
    }
}

#[test]
fn layering_reads_paths_as_written() {
    assert_eq!(crate_paths("use crate::http::server::{Listener, X};"), vec!["http::server"]);
    assert_eq!(crate_paths("use crate::{spec::guest::GuestSpec, engine};"), vec!["spec::guest::GuestSpec", "engine"]);
    assert_eq!(code_only("a // crate::x\n\"crate::y\" r#\"crate::z\"# b"), "a \n\"\" \"\" b");
    assert_eq!(module_of(Path::new("http/mod.rs")), "http");
    assert_eq!(module_of(Path::new("http/server.rs")), "http::server");
}
