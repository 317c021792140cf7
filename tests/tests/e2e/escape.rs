//! The sandbox escape table: path × operation × grant kind, every case denied.
//!
//! One `wasgi run` of tests/apps/escape.wsgi (one instance) is granted a
//! read-only directory and a read-write directory inside a scratch tree; it
//! also has its private /tmp and bytecode cache. Next to its grants lie an
//! outside area with canary files, a second tenant's directories, and a
//! second group's private /tmp and bytecode cache (written by a second
//! `wasgi run` of another script). The host plants what the guest could not
//! make itself inside every writable base (the read-write grant, /tmp, the
//! bytecode cache) and in the read-only grant: symlinks out of the grant,
//! absolute and relative, to files and directories, chains, loops, a link to
//! /, to /etc, /proc and /dev, one with a non-UTF-8 name, and a hard link to
//! an outside file. The table then aims every operation the app can do at
//! the things outside, through every trick, from every base, and expects a
//! refusal each time, with nothing outside changed (content hashes, modes,
//! link counts, times and listings before and after). Positive controls
//! around it show the same server still reads and writes inside its grants.
//!
//! Every case is checked before it is sent: the path it uses must reach its
//! target when the host (unsandboxed) resolves it, so a denial means the
//! sandbox refused, not that the test built a path to nowhere.
//!
//! Not cases, by design: reading a hard link the host itself put inside a
//! grant (it is the same file, so the guest reads and, in a read-write
//! grant, writes the outside copy: only a read-only grant's hard link is
//! attacked here), and the guest's os.chmod, which CPython for WASI reports
//! as done without doing anything (the probe says so, and the snapshots
//! check the host's modes).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wasgi_tests::{apps, cache_dir, TempDir, Wasgi};

/// Enough `..` to climb from any test directory to `/`.
const DEPTH: usize = 40;

// ---------------------------------------------------------------- paths

fn bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// `to` as seen from the directory `from` (both absolute, without symlinks).
fn relative(from: &Path, to: &Path) -> Vec<u8> {
    let f: Vec<Component> = from.components().collect();
    let t: Vec<Component> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&[u8]> = vec![&b".."[..]; f.len() - common];
    parts.extend(t[common..].iter().map(|c| c.as_os_str().as_bytes()));
    parts.join(&b'/')
}

/// An absolute path without its leading `/`.
fn unrooted(p: &Path) -> Vec<u8> {
    bytes(p)[1..].to_vec()
}

/// Bytes for a report: printable, bounded.
fn show(p: &[u8]) -> String {
    let s = p.escape_ascii().to_string();
    if s.len() > 160 {
        format!("{}…{} ({} bytes)", &s[..80], &s[s.len() - 60..], p.len())
    } else {
        s
    }
}

fn token(label: &str) -> String {
    let seed = format!("{label} {} {:?}", std::process::id(), std::time::SystemTime::now());
    format!("CANARY-{label}-{}", &hex::encode(Sha256::digest(seed))[..16])
}

// ---------------------------------------------------------------- requests

/// One request to the probe: an operation, its paths, optional cwd / dir_fd.
#[derive(Clone, Debug)]
struct Request {
    op: &'static str,
    args: Vec<Vec<u8>>,
    cwd: Option<Vec<u8>>,
    dir_fd: Option<Vec<u8>>,
}

impl Request {
    fn new(op: &'static str, args: &[&[u8]]) -> Request {
        Request { op, args: args.iter().map(|a| a.to_vec()).collect(), cwd: None, dir_fd: None }
    }

    fn body(&self) -> String {
        let hexed = |p: &Vec<u8>| json!({ "hex": hex::encode(p) });
        json!({
            "op": self.op,
            "args": self.args.iter().map(hexed).collect::<Vec<_>>(),
            "cwd": self.cwd.as_ref().map(hexed),
            "dir_fd": self.dir_fd.as_ref().map(hexed),
        })
        .to_string()
    }

    fn describe(&self) -> String {
        let mut s = format!("{}({})", self.op, self.args.iter().map(|a| show(a)).collect::<Vec<_>>().join(", "));
        if let Some(cwd) = &self.cwd {
            s += &format!(" cwd={}", show(cwd));
        }
        if let Some(fd) = &self.dir_fd {
            s += &format!(" dir_fd={}", show(fd));
        }
        s
    }
}

/// Sends one request; the probe always answers 200 with JSON.
fn send(server: &Wasgi, req: &Request) -> Result<Value, String> {
    let r = server.post("/op", req.body().as_bytes());
    if r.status != 200 {
        return Err(format!("HTTP {} {}", r.status, show(&r.body)));
    }
    serde_json::from_slice(&r.body).map_err(|e| format!("not JSON ({e}): {}", show(&r.body)))
}

// ---------------------------------------------------------------- the table

/// What an operation is aimed at.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// An existing file.
    File,
    /// An existing directory.
    Dir,
    /// An existing empty directory.
    Empty,
    /// An existing symlink.
    Link,
    /// A name that does not exist yet, in an existing directory.
    New,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Read,
    Write,
    Append,
    Truncate,
    Stat,
    Lstat,
    Exists,
    Chmod,
    Utime,
    Lutime,
    Futime,
    Unlink,
    /// Hard link from outside into the grant.
    LinkIn,
    /// Move an outside file into the grant.
    RenameIn,
    Listdir,
    Scandir,
    Walk,
    Chdir,
    /// chdir to the target directory, then read a file in it by a relative name.
    CwdRead,
    Rmdir,
    Readlink,
    CreateExcl,
    WriteNew,
    Mkdir,
    SymlinkAt,
    /// Hard link from a file in the grant to a new name outside.
    LinkOut,
    /// Move a file in the grant to a new name outside.
    RenameOut,
}

use Op::*;

const ALL_OPS: [Op; 27] = [
    Read, Write, Append, Truncate, Stat, Lstat, Exists, Chmod, Utime, Lutime, Futime, Unlink, LinkIn, RenameIn, Listdir,
    Scandir, Walk, Chdir, CwdRead, Rmdir, Readlink, CreateExcl, WriteNew, Mkdir, SymlinkAt, LinkOut, RenameOut,
];

/// The operations aimed at the other tenants' and groups' files and the shared cache.
const CORE_OPS: [Op; 15] =
    [Read, Write, Append, Stat, Listdir, Readlink, Unlink, Utime, CreateExcl, Mkdir, Rmdir, RenameOut, LinkIn, CwdRead, SymlinkAt];

/// The tricks aimed at them.
const CORE_TRICKS: [&str; 8] =
    ["absolute", "dotdot", "dotdot-root", "abs-dir-link", "rel-dir-link", "final-rel-link", "cwd-dotdot", "dirfd-dotdot"];

impl Op {
    fn kind(self) -> Kind {
        match self {
            Read | Write | Append | Truncate | Stat | Lstat | Exists | Chmod | Utime | Lutime | Futime | Unlink | LinkIn
            | RenameIn => Kind::File,
            Listdir | Scandir | Walk | Chdir | CwdRead => Kind::Dir,
            Rmdir => Kind::Empty,
            Readlink => Kind::Link,
            CreateExcl | WriteNew | Mkdir | SymlinkAt | LinkOut | RenameOut => Kind::New,
        }
    }

    /// Whether a symlink as the path's last component is followed (so a
    /// planted link to the target is an attack, not an operation on the link).
    fn follows(self) -> bool {
        matches!(self, Read | Write | Append | Truncate | Stat | Chmod | Utime | Futime | Listdir | Scandir | Walk | Chdir | CwdRead | CreateExcl | WriteNew)
    }

    /// Whether the probe resolves the path from `dir_fd` for this operation.
    fn takes_dir_fd(self) -> bool {
        matches!(self, Read | Write | Append | Stat | Lstat | Utime | Lutime | Futime | Unlink | Rmdir | Readlink | CreateExcl | WriteNew | Mkdir | SymlinkAt)
    }

    fn name(self) -> &'static str {
        match self {
            Read => "read",
            Write => "write",
            Append => "append",
            Truncate => "truncate",
            Stat => "stat",
            Lstat => "lstat",
            Exists => "exists",
            Chmod => "chmod",
            Utime => "utime",
            Lutime => "lutime",
            Futime => "futime",
            Unlink => "unlink",
            LinkIn => "link-in",
            RenameIn => "rename-in",
            Listdir => "listdir",
            Scandir => "scandir",
            Walk => "walk",
            Chdir => "chdir",
            CwdRead => "chdir+read",
            Rmdir => "rmdir",
            Readlink => "readlink",
            CreateExcl => "create-excl",
            WriteNew => "write-new",
            Mkdir => "mkdir",
            SymlinkAt => "symlink-at",
            LinkOut => "link-out",
            RenameOut => "rename-out",
        }
    }
}

/// Where an attack starts: a directory the guest may use, under its guest
/// path and its host path (they differ only for /tmp).
struct Base {
    kind: &'static str,
    guest: Vec<u8>,
    host: PathBuf,
}

impl Base {
    fn g(&self, suffix: &[u8]) -> Vec<u8> {
        cat(&[&self.guest, b"/", suffix])
    }

    fn h(&self, suffix: &[u8]) -> PathBuf {
        self.host.join(os(suffix))
    }
}

/// Things outside every grant, one of each kind.
struct Targets {
    name: &'static str,
    file: PathBuf,
    dir: PathBuf,
    /// A file directly in `dir`.
    child: String,
    empty: Option<PathBuf>,
    link: Option<PathBuf>,
    /// Where new names are aimed.
    new_dir: PathBuf,
}

/// How a case's path must resolve on the host, unsandboxed.
enum HostCheck {
    /// `path` is `target` (following a final symlink if `follow`).
    Same { path: PathBuf, follow: bool, target: PathBuf },
    /// `path` does not exist and its parent is `dir`.
    NewIn { path: PathBuf, dir: PathBuf },
}

struct Case {
    name: String,
    setup: Vec<Request>,
    req: Request,
    cleanup: Vec<Request>,
    check: Option<HostCheck>,
}

/// An attack path built by a trick.
struct Attack {
    trick: &'static str,
    path: Vec<u8>,
    cwd: Option<Vec<u8>>,
    dir_fd: Option<Vec<u8>>,
    /// The same path as the host resolves it, when it can.
    host: Option<PathBuf>,
    /// The path ends in a planted symlink that points at the target.
    final_link: bool,
}

struct Table {
    /// Common ancestor of the scratch tree and the shared cache.
    anc: PathBuf,
    cases: Vec<Case>,
    victims: Vec<PathBuf>,
    counter: usize,
}

fn kind_tag(kind: Kind) -> &'static str {
    match kind {
        Kind::File => "file",
        Kind::Dir => "dir",
        Kind::New => "new",
        Kind::Empty => "empty",
        Kind::Link => "link",
    }
}

/// The links planted in each base that point at a target set's objects.
fn final_link_names(set: &str, kind: Kind) -> (String, String) {
    (format!("links/fa-{set}-{}", kind_tag(kind)), format!("links/fr-{set}-{}", kind_tag(kind)))
}

fn dangling_target(set: &Targets, base: &str, how: &str) -> PathBuf {
    set.new_dir.join(format!("dangling-{base}-{}-{how}", set.name))
}

impl Table {
    fn next(&mut self) -> usize {
        self.counter += 1;
        self.counter
    }

    /// Every trick that reaches `t` (of `kind`) from `base` (None: absolute paths).
    fn attacks(&self, base: Option<&Base>, t: &Path, kind: Kind, set: &Targets, op: Op) -> Vec<Attack> {
        let mut v = Vec::new();
        let Some(base) = base else {
            let mut add = |trick, path: Vec<u8>, host: Option<PathBuf>| {
                v.push(Attack { trick, path, cwd: None, dir_fd: None, host, final_link: false })
            };
            add("absolute", bytes(t), Some(t.to_owned()));
            let parent = bytes(t.parent().unwrap());
            let dotted = cat(&[&parent, b"/./", t.file_name().unwrap().as_bytes()]);
            add("absolute-dot", dotted.clone(), Some(PathBuf::from(os(&dotted))));
            let double = cat(&[b"//", &unrooted(t)]);
            add("absolute-double-slash", double.clone(), Some(PathBuf::from(os(&double))));
            let proc_root = cat(&[b"/proc/self/root", &bytes(t)]);
            add("proc-self-root", proc_root.clone(), Some(PathBuf::from(os(&proc_root))));
            return v;
        };
        let rel = relative(&base.host, t);
        let t_anc = relative(&self.anc, t);
        let t_root = unrooted(t);
        let up = b"../".repeat(DEPTH);
        let mut plain = |trick, suffix: Vec<u8>, valid: bool| {
            v.push(Attack { trick, path: base.g(&suffix), cwd: None, dir_fd: None, host: valid.then(|| base.h(&suffix)), final_link: false })
        };
        plain("dotdot", rel.clone(), true);
        plain("dotdot-sub", cat(&[b"sub/../", &rel]), true);
        plain("dotdot-dots", cat(&[b"./sub//./..//", &rel]), true);
        plain("dotdot-root", cat(&[&up, &t_root]), true);
        plain("inside-link-then-up", cat(&[b"links/in_sub/../", &rel]), true);
        plain("abs-dir-link", cat(&[b"links/abs_anc/", &t_anc]), true);
        plain("rel-dir-link", cat(&[b"links/rel_anc/", &t_anc]), true);
        plain("rel-chain", cat(&[b"links/chain1/", &t_anc]), true);
        plain("abs-chain", cat(&[b"links/achain1/", &t_anc]), true);
        plain("root-link", cat(&[b"links/deep/", &t_root]), true);
        plain("loop", cat(&[b"links/loop_a/", &t_anc]), false);
        plain("self-loop", cat(&[b"links/self/", &t_anc]), false);
        plain("non-utf8-link", cat(&[b"links/\xff/", &t_anc]), true);
        plain("non-utf8-dotdot", cat(&[b"\xff/../", &rel]), true);
        let overlong: Vec<&[u8]> = rel.split(|&c| c == b'/').map(|c| if c == b".." { &b"\xc0\xae\xc0\xae"[..] } else { c }).collect();
        plain("overlong-utf8-dots", overlong.join(&b'/'), false);
        plain("nul-after", cat(&[&rel, b"\0"]), false);
        plain("nul-before", cat(&[b"sub/file.txt\0/../../", &rel]), false);
        plain("long-path", cat(&[&b"./".repeat(2100), &rel]), false);
        plain("long-name", cat(&[&b"a".repeat(300), b"/../", &rel]), false);
        if op.follows() && matches!(kind, Kind::File | Kind::Dir | Kind::New) {
            let (fa, fr) = final_link_names(set.name, kind);
            for (trick, name) in [("final-abs-link", fa), ("final-rel-link", fr)] {
                let host = (kind != Kind::New).then(|| base.h(name.as_bytes()));
                v.push(Attack { trick, path: base.g(name.as_bytes()), cwd: None, dir_fd: None, host, final_link: true });
            }
        }
        if op != CwdRead {
            let mut in_cwd = |trick, cwd: &[u8], path: Vec<u8>, host: PathBuf| {
                v.push(Attack { trick, path, cwd: Some(base.g(cwd)), dir_fd: None, host: Some(host), final_link: false })
            };
            in_cwd("cwd-dotdot", b".", rel.clone(), base.h(&rel));
            let up_one = cat(&[b"../", &rel]);
            in_cwd("cwd-sub", b"sub", up_one.clone(), base.h(b"sub").join(os(&up_one)));
            let via_link = cat(&[b"links/rel_anc/", &t_anc]);
            in_cwd("cwd-link", b".", via_link.clone(), base.h(&via_link));
            let via_root = cat(&[&up, &t_root]);
            in_cwd("cwd-root", b".", via_root.clone(), base.h(&via_root));
        }
        if op.takes_dir_fd() {
            let mut at = |trick, path: Vec<u8>| {
                let host = base.h(&path);
                v.push(Attack { trick, path, cwd: None, dir_fd: Some(base.guest.clone()), host: Some(host), final_link: false })
            };
            at("dirfd-dotdot", rel.clone());
            at("dirfd-link", cat(&[b"links/abs_anc/", &t_anc]));
            at("dirfd-root", cat(&[&up, &t_root]));
        }
        v
    }

    /// Adds `op` aimed at `set` from `base` through every trick (or those in `only`).
    fn add(&mut self, family: &str, base: Option<&Base>, rw: &Base, set: &Targets, op: Op, only: Option<&[&str]>) {
        let kind = op.kind();
        let n = self.next();
        let target = match kind {
            Kind::File => set.file.clone(),
            Kind::Dir => set.dir.clone(),
            Kind::Empty => match &set.empty {
                Some(p) => p.clone(),
                None => return,
            },
            Kind::Link => match &set.link {
                Some(p) => p.clone(),
                None => return,
            },
            Kind::New => set.new_dir.join(format!("new-{n}")),
        };
        // The inside end of two-path operations.
        let home = base.unwrap_or(rw);
        for attack in self.attacks(base, &target, kind, set, op) {
            if only.is_some_and(|only| !only.contains(&attack.trick)) {
                continue;
            }
            let m = self.next();
            let p = attack.path.as_slice();
            let mut req = match op {
                CwdRead => {
                    let mut r = Request::new("read", &[set.child.as_bytes()]);
                    r.cwd = Some(attack.path.clone());
                    r
                }
                LinkIn | RenameIn => {
                    let inside = home.g(format!("victims/in-{m}").as_bytes());
                    Request::new(if op == LinkIn { "link" } else { "rename" }, &[p, &inside])
                }
                LinkOut | RenameOut => {
                    let victim = format!("victims/v-{m}.txt");
                    self.victims.push(home.h(victim.as_bytes()));
                    let inside = home.g(victim.as_bytes());
                    Request::new(if op == LinkOut { "link" } else { "rename" }, &[&inside, p])
                }
                SymlinkAt => Request::new("symlink", &[b"planted-by-the-guest", p]),
                WriteNew => Request::new("write", &[p]),
                CreateExcl => Request::new("create_excl", &[p]),
                _ => Request::new(op.name(), &[p]),
            };
            if op != CwdRead {
                req.cwd = attack.cwd.clone();
            }
            req.dir_fd = attack.dir_fd.clone();
            let final_target = if attack.final_link && kind == Kind::New {
                None
            } else {
                Some(target.clone())
            };
            let check = attack.host.and_then(|host| {
                let target = final_target?;
                Some(if kind == Kind::New {
                    HostCheck::NewIn { path: host, dir: set.new_dir.clone() }
                } else {
                    HostCheck::Same { path: host, follow: attack.final_link || op.follows(), target }
                })
            });
            let base_name = base.map_or("none", |b| b.kind);
            self.cases.push(Case {
                name: format!("{family}/{base_name}/{}/{}/{}", attack.trick, set.name, op.name()),
                setup: vec![],
                req,
                cleanup: vec![],
                check,
            });
        }
    }
}

/// What the host must have put in a base before the table runs.
fn plant(base: &Base, anc: &Path, sets: &[&Targets]) {
    let h = &base.host;
    let links = h.join("links");
    for d in ["sub", "victims", "links"] {
        std::fs::create_dir_all(h.join(d)).unwrap();
    }
    std::fs::create_dir_all(h.join(os(b"\xff"))).unwrap();
    std::fs::write(h.join("sub/file.txt"), "inside the grant\n").unwrap();
    let rel_anc = relative(&links, anc);
    let link = |target: &[u8], name: &[u8]| {
        symlink(os(target), links.join(os(name))).unwrap_or_else(|e| panic!("plant {}: {e}", links.join(os(name)).display()))
    };
    link(&bytes(anc), b"abs_anc");
    link(&rel_anc, b"rel_anc");
    link(b"chain2", b"chain1");
    link(b"chain3", b"chain2");
    link(b"rel_anc", b"chain3");
    link(&bytes(&links.join("achain2")), b"achain1");
    link(&bytes(anc), b"achain2");
    link(b"../sub", b"in_sub");
    link(&b"../".repeat(DEPTH), b"deep");
    link(b"loop_b", b"loop_a");
    link(b"loop_a", b"loop_b");
    link(b"self", b"self");
    link(b"/etc", b"etc");
    link(b"/proc", b"proc");
    link(b"/dev", b"dev");
    link(&rel_anc, b"\xff");
    for set in sets {
        for (kind, target) in [(Kind::File, set.file.clone()), (Kind::Dir, set.dir.clone())] {
            let (fa, fr) = final_link_names(set.name, kind);
            link(&bytes(&target), &fa.as_bytes()[6..]);
            link(&relative(&links, &target), &fr.as_bytes()[6..]);
        }
        let (fa, fr) = final_link_names(set.name, Kind::New);
        link(&bytes(&dangling_target(set, base.kind, "abs")), &fa.as_bytes()[6..]);
        link(&relative(&links, &dangling_target(set, base.kind, "rel")), &fr.as_bytes()[6..]);
    }
}

/// Checks that a case's path really reaches its target when the host resolves it.
fn validate(check: &HostCheck) -> Result<(), String> {
    match check {
        HostCheck::Same { path, follow, target } => {
            let want = std::fs::symlink_metadata(target).map_err(|e| format!("target {}: {e}", target.display()))?;
            let got = if *follow { std::fs::metadata(path) } else { std::fs::symlink_metadata(path) };
            let got = got.map_err(|e| format!("the host cannot resolve {}: {e}", path.display()))?;
            if (got.dev(), got.ino()) != (want.dev(), want.ino()) {
                return Err(format!("{} is not {} on the host", path.display(), target.display()));
            }
            Ok(())
        }
        HostCheck::NewIn { path, dir } => {
            if std::fs::symlink_metadata(path).is_ok() {
                return Err(format!("{} already exists", path.display()));
            }
            let parent = path.parent().ok_or("no parent")?;
            let got = std::fs::metadata(parent).map_err(|e| format!("the host cannot resolve {}: {e}", parent.display()))?;
            let want = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            if (got.dev(), got.ino()) != (want.dev(), want.ino()) {
                return Err(format!("{} is not in {} on the host", path.display(), dir.display()));
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------- snapshots

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    kind: char,
    mode: u32,
    uid: u32,
    nlink: u64,
    size: u64,
    mtime: (i64, i64),
    /// SHA-256 of a file, the target of a symlink, or nothing for a directory.
    content: String,
}

/// Every entry under `roots` (not following symlinks), plus the names
/// directly in `listed` (their own metadata may change legitimately).
fn snapshot(roots: &[&Path], listed: &[&Path]) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut stack: Vec<PathBuf> = roots.iter().map(|p| p.to_path_buf()).collect();
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
        let ft = m.file_type();
        let (kind, content) = if ft.is_symlink() {
            ('l', bytes(&std::fs::read_link(&p).unwrap()).escape_ascii().to_string())
        } else if ft.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            ('d', String::new())
        } else if ft.is_file() {
            ('f', hex::encode(Sha256::digest(std::fs::read(&p).unwrap())))
        } else {
            ('?', String::new())
        };
        let entry = Entry { kind, mode: m.mode(), uid: m.uid(), nlink: m.nlink(), size: m.size(), mtime: (m.mtime(), m.mtime_nsec()), content };
        out.insert(p, entry);
    }
    for dir in listed {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.entry(p).or_insert(Entry { kind: 'n', mode: 0, uid: 0, nlink: 0, size: 0, mtime: (0, 0), content: String::new() });
        }
    }
    out
}

fn diff(before: &BTreeMap<PathBuf, Entry>, after: &BTreeMap<PathBuf, Entry>) -> Vec<String> {
    let mut out = Vec::new();
    for (p, b) in before {
        match after.get(p) {
            None => out.push(format!("REMOVED {}", p.display())),
            Some(a) if a != b => out.push(format!("CHANGED {}: {b:?} -> {a:?}", p.display())),
            _ => {}
        }
    }
    for p in after.keys().filter(|p| !before.contains_key(*p)) {
        out.push(format!("APPEARED {}", p.display()));
    }
    out
}

/// Errors that mean the probe was asked something malformed, not that the
/// sandbox refused.
const PROBE_BUGS: [&str; 6] = ["TypeError", "KeyError", "NameError", "AttributeError", "unknown operation", "JSONDecodeError"];

/// "PermissionError: [Errno 63] ..." -> "PermissionError 63".
fn error_class(error: &str) -> String {
    let kind = error.split(':').next().unwrap_or("");
    let errno = error.split("[Errno ").nth(1).and_then(|r| r.split(']').next());
    let refused = if error.starts_with("(symlink refused)") { "symlink refused: " } else { "" };
    match errno {
        Some(n) => format!("{refused}{} {n}", kind.trim_start_matches("(symlink refused) ")),
        None => format!("{refused}{}", kind.trim_start_matches("(symlink refused) ")),
    }
}

// ---------------------------------------------------------------- fixtures

/// Removes the test's directories from the shared cache, even on failure.
struct CacheCleanup(Vec<PathBuf>);

impl Drop for CacheCleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

fn env_of(server: &Wasgi) -> Value {
    let r = server.get("/env");
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.text()));
    v["result"].clone()
}

/// Sends `req` and expects it to succeed (or, with `ok` false, to be refused).
/// The host directory behind one of a group's private directories (`guest`:
/// its /tmp or its bytecode cache, `CACHE/KIND/KEY` on the host, at the
/// same guest path in every group): found by a marker the group writes.
fn private_host_dir(server: &Wasgi, cache: &Path, kind: &str, guest: &[u8]) -> PathBuf {
    let marker = format!("where-is-{kind}-{}", std::process::id());
    let mut f = Vec::new();
    expect(server, &mut f, "a marker in a private directory", Request::new("write", &[&cat(&[guest, b"/", marker.as_bytes()]), b"here"]), true);
    assert!(f.is_empty(), "{}", f.join("\n"));
    let found = std::fs::read_dir(cache.join(kind)).unwrap().flatten().map(|e| e.path()).find(|d| d.join(&marker).is_file());
    let found = found.unwrap_or_else(|| panic!("no directory under {} holds the marker", cache.join(kind).display()));
    std::fs::remove_file(found.join(&marker)).unwrap();
    found
}

fn expect(server: &Wasgi, failures: &mut Vec<String>, label: &str, req: Request, ok: bool) -> Value {
    match send(server, &req) {
        Ok(v) if v["ok"] == json!(ok) => v["result"].clone(),
        Ok(v) => {
            failures.push(format!("{label}: {} answered {v}, expected ok={ok}", req.describe()));
            Value::Null
        }
        Err(e) => {
            failures.push(format!("{label}: {}: {e}", req.describe()));
            Value::Null
        }
    }
}

const PAYLOAD: &str = "written by the escape probe\n";

/// Legitimate use of the grants keeps working (and writes stay refused in
/// the read-only one). Returns what went wrong.
fn positive_controls(server: &Wasgi, ro: &Path, ro_text: &str, rw: &Path, tmp: &Base, pycache: &Base, home: &str) -> Vec<String> {
    let mut f = Vec::new();
    let g = |p: &Path| bytes(p);
    let pos = rw.join("pos");
    let _ = std::fs::remove_dir_all(&pos);
    std::fs::create_dir_all(&pos).unwrap();

    let r = expect(server, &mut f, "read in the read-only grant", Request::new("read", &[&g(&ro.join("f.txt"))]), true);
    if r["data"] != json!(ro_text) {
        f.push(format!("read in the read-only grant returned {r}"));
    }
    // (A subdirectory: the grant itself holds a planted non-UTF-8 name, and
    // WASI cannot list a directory holding one.)
    let r = expect(server, &mut f, "list in the read-only grant", Request::new("listdir", &[&g(&ro.join("sub"))]), true);
    if !r.as_array().is_some_and(|a| a.contains(&json!("inside-link"))) {
        f.push(format!("listdir in the read-only grant returned {r}"));
    }
    expect(server, &mut f, "stat in the read-only grant", Request::new("stat", &[&g(&ro.join("f.txt"))]), true);
    expect(server, &mut f, "relative symlink in the read-only grant", Request::new("read", &[&g(&ro.join("sub/inside-link"))]), true);
    expect(server, &mut f, "write in the read-only grant", Request::new("write", &[&g(&ro.join("new.txt"))]), false);
    expect(server, &mut f, "append in the read-only grant", Request::new("append", &[&g(&ro.join("f.txt"))]), false);
    expect(server, &mut f, "mkdir in the read-only grant", Request::new("mkdir", &[&g(&ro.join("newdir"))]), false);
    if ro.join("new.txt").exists() || ro.join("newdir").exists() {
        f.push("a write in the read-only grant reached the host".into());
    }

    let a = pos.join("a.txt");
    expect(server, &mut f, "write in the read-write grant", Request::new("write", &[&g(&a)]), true);
    if std::fs::read_to_string(&a).ok().as_deref() != Some(PAYLOAD) {
        f.push(format!("the write did not reach {}", a.display()));
    }
    let r = expect(server, &mut f, "read back", Request::new("read", &[&g(&a)]), true);
    if r["data"] != json!(PAYLOAD) {
        f.push(format!("read back returned {r}"));
    }
    expect(server, &mut f, "append", Request::new("append", &[&g(&a)]), true);
    if std::fs::read_to_string(&a).ok() != Some(PAYLOAD.repeat(2)) {
        f.push("the append did not reach the host".into());
    }
    expect(server, &mut f, "mkdir", Request::new("mkdir", &[&g(&pos.join("d"))]), true);
    expect(server, &mut f, "rename", Request::new("rename", &[&g(&a), &g(&pos.join("d/b.txt"))]), true);
    if a.exists() || !pos.join("d/b.txt").is_file() {
        f.push("the rename did not happen on the host".into());
    }
    expect(server, &mut f, "relative symlink", Request::new("symlink", &[b"d/b.txt", &g(&pos.join("l"))]), true);
    let r = expect(server, &mut f, "read through it", Request::new("read", &[&g(&pos.join("l"))]), true);
    if r["data"] != json!(PAYLOAD.repeat(2)) {
        f.push(format!("read through a relative symlink returned {r}"));
    }
    let r = expect(server, &mut f, "readlink", Request::new("readlink", &[&g(&pos.join("l"))]), true);
    if r != json!("d/b.txt") {
        f.push(format!("readlink returned {r}"));
    }
    expect(server, &mut f, "symlink to a directory", Request::new("symlink", &[b"d", &g(&pos.join("dl"))]), true);
    expect(server, &mut f, "traverse it", Request::new("read", &[&g(&pos.join("dl/b.txt"))]), true);
    expect(server, &mut f, "hard link", Request::new("link", &[&g(&pos.join("d/b.txt")), &g(&pos.join("h.txt"))]), true);
    if std::fs::metadata(pos.join("d/b.txt")).map(|m| m.nlink()).ok() != Some(2) {
        f.push("the hard link did not reach the host".into());
    }
    expect(server, &mut f, "utime", Request::new("utime", &[&g(&pos.join("h.txt"))]), true);
    if std::fs::metadata(pos.join("h.txt")).map(|m| m.mtime()).ok() != Some(1) {
        f.push("utime did not reach the host".into());
    }
    let mut r = Request::new("read", &[b"d/b.txt"]);
    r.cwd = Some(g(&pos));
    expect(server, &mut f, "read relative to a cwd in the grant", r, true);
    let mut r = Request::new("read", &[b"d/b.txt"]);
    r.dir_fd = Some(g(&pos));
    expect(server, &mut f, "read relative to a dir_fd in the grant", r, true);
    let r = expect(server, &mut f, "chdir into the grant", Request::new("chdir", &[&g(&pos)]), true);
    if r != json!(pos.to_str().unwrap()) {
        f.push(format!("chdir returned {r}"));
    }
    expect(server, &mut f, "create exclusively", Request::new("create_excl", &[&g(&pos.join("e.txt"))]), true);
    expect(server, &mut f, "create exclusively twice", Request::new("create_excl", &[&g(&pos.join("e.txt"))]), false);
    expect(server, &mut f, "unlink", Request::new("unlink", &[&g(&pos.join("e.txt"))]), true);
    expect(server, &mut f, "mkdir another", Request::new("mkdir", &[&g(&pos.join("empty"))]), true);
    expect(server, &mut f, "rmdir", Request::new("rmdir", &[&g(&pos.join("empty"))]), true);
    if pos.join("e.txt").exists() || pos.join("empty").exists() {
        f.push("unlink or rmdir did not reach the host".into());
    }
    let listing = expect(server, &mut f, "listdir", Request::new("listdir", &[&g(&pos)]), true);
    let mut names: Vec<String> = listing.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(String::from)).collect();
    names.sort();
    if names != ["d", "dl", "h.txt", "l"] {
        f.push(format!("listdir of the read-write grant returned {listing}"));
    }

    // The private /tmp and bytecode cache are writable, and renaming between
    // two writable grants is allowed.
    expect(server, &mut f, "write in /tmp", Request::new("write", &[&tmp.g(b"pos.txt")]), true);
    if !tmp.h(b"pos.txt").is_file() {
        f.push(format!("the /tmp write did not reach {}", tmp.h(b"pos.txt").display()));
    }
    expect(server, &mut f, "rename from /tmp to the grant", Request::new("rename", &[&tmp.g(b"pos.txt"), &g(&pos.join("from-tmp.txt"))]), true);
    if !pos.join("from-tmp.txt").is_file() {
        f.push("the rename from /tmp did not reach the host".into());
    }
    expect(server, &mut f, "write in the bytecode cache", Request::new("write", &[&pycache.g(b"pos.txt")]), true);
    if !pycache.h(b"pos.txt").is_file() {
        f.push("the bytecode cache write did not reach the host".into());
    }
    let r = expect(server, &mut f, "the working directory is the app's again", Request::new("getcwd", &[]), true);
    if r != json!(home) {
        f.push(format!("getcwd returned {r}, not {home}"));
    }
    f
}

// ---------------------------------------------------------------- the test

#[test]
fn no_path_operation_or_grant_reaches_outside_the_sandbox() {
    let started = Instant::now();
    let scratch = TempDir::new("escape");
    let root = scratch.path().canonicalize().unwrap();
    let cache = cache_dir().canonicalize().unwrap();
    let anc: PathBuf = {
        let common: Vec<Component> = root.components().zip(cache.components()).take_while(|(a, b)| a == b).map(|(a, _)| a).collect();
        common.iter().collect()
    };

    // The outside area (never granted). Its name starts with the read-write
    // grant's, so absolute paths to it also test prefix confusion.
    let outside = root.join("rw-outside");
    let canary_tok = token("outside-file");
    let canary2_tok = token("outside-dir");
    let hl_tok = token("hard-linked");
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    std::fs::create_dir_all(outside.join("empty")).unwrap();
    std::fs::write(outside.join("canary.txt"), &canary_tok).unwrap();
    std::fs::write(outside.join("dir/canary2.txt"), &canary2_tok).unwrap();
    std::fs::write(outside.join("hl-canary.txt"), &hl_tok).unwrap();
    symlink("canary.txt", outside.join("link")).unwrap();

    let ro = root.join("ro");
    let rw = root.join("rw");
    std::fs::create_dir_all(ro.join("sub")).unwrap();
    std::fs::create_dir_all(ro.join("empty")).unwrap();
    std::fs::create_dir_all(&rw).unwrap();
    let ro_text = "the read-only grant's own file\n";
    std::fs::write(ro.join("f.txt"), ro_text).unwrap();
    symlink("../f.txt", ro.join("sub/inside-link")).unwrap();
    // A hard link the host made from the read-only grant to an outside file:
    // the guest may read it (it is the same file), never change it.
    std::fs::create_dir_all(ro.join("hard")).unwrap();
    let hard_link_made = match std::fs::hard_link(outside.join("hl-canary.txt"), ro.join("hard/hl")) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("note: the host cannot hard-link into the grant ({e}); the hard-link cases are skipped");
            false
        }
    };

    // The second tenant: its own script (so its own group, /tmp and bytecode
    // cache) and data.
    let tenant2 = root.join("tenant2");
    let t2_tok = token("tenant2");
    std::fs::create_dir_all(tenant2.join("app")).unwrap();
    std::fs::create_dir_all(tenant2.join("data/empty")).unwrap();
    std::fs::write(tenant2.join("data/secret.txt"), &t2_tok).unwrap();
    symlink("secret.txt", tenant2.join("data/link")).unwrap();
    let script2 = tenant2.join("app/escape2.wsgi");
    std::fs::copy(apps().join("escape.wsgi"), &script2).unwrap();

    let mut cleanup = CacheCleanup(Vec::new());
    let b_tok = token("other-group");
    let (b_tmp, b_pycache) = {
        let other = Wasgi::start(&[script2.to_str().unwrap(), "--instances", "1", "--grant-write", tenant2.join("data").to_str().unwrap()]);
        let env = env_of(&other);
        // Every group's guests see their bytecode cache at one path; each
        // group's is its own directory on the host.
        let prefix = PathBuf::from(env["PYTHONPYCACHEPREFIX"].as_str().expect("PYTHONPYCACHEPREFIX"));
        let b_pycache = private_host_dir(&other, &cache, "pycache", &bytes(&prefix));
        let b_tmp = private_host_dir(&other, &cache, "tmp", b"/tmp");
        assert_eq!(b_pycache.file_name(), b_tmp.file_name(), "a group's private directories share its key");
        cleanup.0.extend([b_pycache.clone(), b_tmp.clone()]);
        let mut f = Vec::new();
        for (guest, host) in [(b"/tmp".to_vec(), &b_tmp), (bytes(&prefix), &b_pycache)] {
            let at = |name: &[u8]| cat(&[&guest, b"/", name]);
            expect(&other, &mut f, "the other group writes a marker", Request::new("write", &[&at(b"b-marker.txt"), b_tok.as_bytes()]), true);
            expect(&other, &mut f, "the other group makes a directory", Request::new("mkdir", &[&at(b"b-empty")]), true);
            expect(&other, &mut f, "the other group makes a symlink", Request::new("symlink", &[b"b-marker.txt", &at(b"b-link")]), true);
            assert_eq!(std::fs::read_to_string(host.join("b-marker.txt")).ok().as_deref(), Some(b_tok.as_str()), "{}", host.display());
        }
        assert!(f.is_empty(), "the other group could not set up its files:\n{}", f.join("\n"));
        (b_tmp, b_pycache)
    };

    let script = apps().join("escape.wsgi");
    let server = Wasgi::start(&[
        script.to_str().unwrap(),
        "--instances",
        "1",
        "--grant-read",
        ro.to_str().unwrap(),
        "--grant-write",
        rw.to_str().unwrap(),
    ]);
    let env = env_of(&server);
    let home = env["home"].as_str().unwrap().to_owned();
    let a_pycache = PathBuf::from(env["PYTHONPYCACHEPREFIX"].as_str().unwrap());
    let a_pycache_host = private_host_dir(&server, &cache, "pycache", &bytes(&a_pycache));
    let a_tmp_host = private_host_dir(&server, &cache, "tmp", b"/tmp");
    assert_ne!(a_pycache_host, b_pycache, "each group has its own bytecode cache");
    let plant_name = format!("escape-plant-{}", std::process::id());
    for dir in [&a_tmp_host, &a_pycache_host] {
        // Leftovers of an interrupted run.
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.file_name().to_string_lossy().starts_with("escape-plant-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let tmp_base = Base { kind: "tmp", guest: format!("/tmp/{plant_name}").into_bytes(), host: a_tmp_host.join(&plant_name) };
    let pycache_base = Base { kind: "pycache", guest: bytes(&a_pycache.join(&plant_name)), host: a_pycache_host.join(&plant_name) };
    cleanup.0.extend([tmp_base.host.clone(), pycache_base.host.clone()]);
    let ro_base = Base { kind: "ro", guest: bytes(&ro), host: ro.clone() };
    let rw_base = Base { kind: "rw", guest: bytes(&rw), host: rw.clone() };

    let module = std::fs::read_dir(cache.join("modules"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "crc32"))
        .expect("a compiled module's checksum in the cache");
    let sets = [
        Targets {
            name: "outside",
            file: outside.join("canary.txt"),
            dir: outside.join("dir"),
            child: "canary2.txt".into(),
            empty: Some(outside.join("empty")),
            link: Some(outside.join("link")),
            new_dir: outside.join("dir"),
        },
        Targets {
            name: "tenant2",
            file: tenant2.join("data/secret.txt"),
            dir: tenant2.join("data"),
            child: "secret.txt".into(),
            empty: Some(tenant2.join("data/empty")),
            link: Some(tenant2.join("data/link")),
            new_dir: tenant2.join("data"),
        },
        Targets {
            name: "group2-tmp",
            file: b_tmp.join("b-marker.txt"),
            dir: b_tmp.clone(),
            child: "b-marker.txt".into(),
            empty: Some(b_tmp.join("b-empty")),
            link: Some(b_tmp.join("b-link")),
            new_dir: b_tmp.clone(),
        },
        Targets {
            name: "group2-pycache",
            file: b_pycache.join("b-marker.txt"),
            dir: b_pycache.clone(),
            child: "b-marker.txt".into(),
            empty: Some(b_pycache.join("b-empty")),
            link: Some(b_pycache.join("b-link")),
            new_dir: b_pycache.clone(),
        },
        Targets {
            name: "shared-modules",
            file: module.clone(),
            dir: cache.join("modules"),
            child: module.file_name().unwrap().to_str().unwrap().into(),
            empty: None,
            link: None,
            new_dir: cache.join("modules"),
        },
    ];
    let bases = [&ro_base, &rw_base, &tmp_base, &pycache_base];
    let set_refs: Vec<&Targets> = sets.iter().collect();
    for base in bases {
        plant(base, &anc, &set_refs);
    }

    // ------------------------------------------------------------ the cases
    let mut table = Table { anc: anc.clone(), cases: Vec::new(), victims: Vec::new(), counter: 0 };
    // path × operation × grant kind, against the outside area: every trick.
    for op in ALL_OPS {
        table.add("outside", None, &rw_base, &sets[0], op, None);
        for base in bases {
            table.add("outside", Some(base), &rw_base, &sets[0], op, None);
        }
    }
    // The other tenant, the other group's /tmp and bytecode cache, the shared
    // compiled modules: the core operations through the core tricks.
    for set in &sets[1..] {
        for op in CORE_OPS {
            table.add(set.name, None, &rw_base, set, op, Some(&CORE_TRICKS));
            for base in bases {
                table.add(set.name, Some(base), &rw_base, set, op, Some(&CORE_TRICKS));
            }
        }
    }

    // The host system: /etc, /proc, /dev, / itself.
    let mut created_outside: Vec<PathBuf> = Vec::new();
    let pid = std::process::id();
    let system: Vec<(String, Op)> = {
        let mut v: Vec<(String, Op)> = Vec::new();
        for (path, ops) in [
            ("/etc/passwd", &[Read, Stat, Lstat, Exists][..]),
            ("/etc/shadow", &[Read][..]),
            ("/etc/hostname", &[Read, Stat][..]),
            ("/etc", &[Listdir, Chdir, Scandir][..]),
            ("/proc/self/environ", &[Read][..]),
            ("/proc/self/mounts", &[Read][..]),
            ("/proc/1/environ", &[Read][..]),
            ("/proc/self/root", &[Listdir, Chdir][..]),
            ("/proc/self/cwd", &[Readlink, Listdir][..]),
            ("/proc/self/exe", &[Readlink, Read][..]),
            ("/proc/self/fd", &[Listdir][..]),
            ("/proc", &[Listdir][..]),
            ("/dev/null", &[Read, Write][..]),
            ("/dev/zero", &[Read][..]),
            ("/dev/urandom", &[Read][..]),
            ("/dev/fd/0", &[Read][..]),
            ("/dev", &[Listdir][..]),
            ("/dev/shm", &[Listdir][..]),
            ("/sys/kernel", &[Listdir][..]),
            ("/root", &[Listdir][..]),
            ("/", &[Listdir, Chdir, Stat][..]),
        ] {
            for op in ops {
                v.push((path.to_string(), *op));
            }
        }
        v.push((format!("/proc/self/root{}", outside.join("canary.txt").display()), Read));
        for (i, path) in [format!("/etc/wasgi-escape-{pid}"), format!("/dev/shm/wasgi-escape-{pid}"), format!("/wasgi-escape-{pid}")].into_iter().enumerate() {
            created_outside.push(PathBuf::from(&path));
            v.push((path, if i == 2 { Mkdir } else { CreateExcl }));
        }
        v
    };
    for (path, op) in &system {
        let app_op = match op {
            CreateExcl => "create_excl",
            o => o.name(),
        };
        let add = |table: &mut Table, base: &str, trick: &str, p: Vec<u8>, cwd: Option<Vec<u8>>, dir_fd: Option<Vec<u8>>| {
            let mut req = Request::new(app_op, &[&p]);
            req.cwd = cwd;
            req.dir_fd = dir_fd;
            table.cases.push(Case { name: format!("system/{base}/{trick}/{path}/{}", op.name()), setup: vec![], req, cleanup: vec![], check: None });
        };
        add(&mut table, "none", "absolute", path.as_bytes().to_vec(), None, None);
        let t_root = &path.as_bytes()[1..];
        let up = b"../".repeat(DEPTH);
        for base in bases {
            add(&mut table, base.kind, "dotdot-root", base.g(&cat(&[&up, t_root])), None, None);
            add(&mut table, base.kind, "root-link", base.g(&cat(&[b"links/deep/", t_root])), None, None);
            for top in ["etc", "proc", "dev"] {
                if let Some(rest) = path.strip_prefix(&format!("/{top}")) {
                    add(&mut table, base.kind, "system-link", base.g(format!("links/{top}{rest}").as_bytes()), None, None);
                }
            }
            add(&mut table, base.kind, "cwd-root", cat(&[&up, t_root]), Some(base.guest.clone()), None);
            if op.takes_dir_fd() {
                add(&mut table, base.kind, "dirfd-root", cat(&[&up, t_root]), None, Some(base.guest.clone()));
            }
        }
    }

    // Symlinks the guest makes itself, then follows.
    let writable = [&rw_base, &tmp_base, &pycache_base];
    for base in writable {
        let f = &sets[0].file;
        let d = &sets[0].dir;
        let up = b"../".repeat(DEPTH);
        let targets: Vec<(&str, Vec<u8>, Kind)> = vec![
            ("rel-file", relative(&base.host, f), Kind::File),
            ("abs-file", bytes(f), Kind::File),
            ("root-file", cat(&[&up, &unrooted(f)]), Kind::File),
            ("rel-dir", relative(&base.host, d), Kind::Dir),
            ("abs-dir", bytes(d), Kind::Dir),
            ("rel-tenant2", relative(&base.host, &sets[1].file), Kind::File),
            ("rel-group2-tmp", relative(&base.host, &sets[2].file), Kind::File),
            ("rel-group2-pycache", relative(&base.host, &sets[3].file), Kind::File),
            ("etc-passwd", b"/etc/passwd".to_vec(), Kind::File),
            ("proc-root", b"/proc/self/root".to_vec(), Kind::Dir),
            ("rel-dangling", relative(&base.host, &d.join(format!("gsym-dangling-{}", base.kind))), Kind::New),
            ("chain", relative(&base.host, f), Kind::File),
            ("loop", b"gsym-loop-partner".to_vec(), Kind::File),
        ];
        for (label, target, kind) in targets {
            let ops: &[(&str, &'static str)] = match kind {
                Kind::File => &[("read", "read"), ("write", "write"), ("append", "append"), ("stat", "stat"), ("truncate", "truncate"), ("utime", "utime"), ("futime", "futime")],
                Kind::Dir => &[("listdir", "listdir"), ("scandir", "scandir"), ("chdir", "chdir"), ("chdir+read", "read"), ("read-child", "read")],
                _ => &[("write-new", "write"), ("append-new", "append")],
            };
            for (opname, app_op) in ops {
                let n = table.next();
                let link = base.g(format!("gsym-{n}").as_bytes());
                let mut setup = Vec::new();
                let mut cleanup = vec![Request::new("unlink", &[&link])];
                match label {
                    "chain" => {
                        let second = base.g(format!("gsym-{n}-b").as_bytes());
                        setup.push(Request::new("symlink", &[&target, &second]));
                        setup.push(Request::new("symlink", &[format!("gsym-{n}-b").as_bytes(), &link]));
                        cleanup.push(Request::new("unlink", &[&second]));
                    }
                    "loop" => {
                        let partner = base.g(format!("gsym-{n}-b").as_bytes());
                        setup.push(Request::new("symlink", &[format!("gsym-{n}").as_bytes(), &partner]));
                        setup.push(Request::new("symlink", &[format!("gsym-{n}-b").as_bytes(), &link]));
                        cleanup.push(Request::new("unlink", &[&partner]));
                    }
                    _ => setup.push(Request::new("symlink", &[&target, &link])),
                }
                let req = match *opname {
                    "chdir+read" => {
                        let mut r = Request::new("read", &[sets[0].child.as_bytes()]);
                        r.cwd = Some(link.clone());
                        r
                    }
                    "read-child" => Request::new("read", &[&cat(&[&link, b"/", sets[0].child.as_bytes()])]),
                    _ => Request::new(app_op, &[&link]),
                };
                table.cases.push(Case { name: format!("guest-symlink/{}/{label}/{opname}", base.kind), setup, req, cleanup, check: None });
            }
        }
    }

    // Writes into the read-only grant, and rename / link / symlink across grants.
    {
        let n = table.next();
        let ro_victim = ro.join(format!("victims/ro-{n}.txt"));
        let ro_victim2 = ro.join(format!("victims/ro2-{n}.txt"));
        let rw_victim = rw.join(format!("victims/rw-{n}.txt"));
        let tmp_victim = tmp_base.g(format!("victims/tmp-{n}.txt").as_bytes());
        table.victims.extend([ro_victim.clone(), ro_victim2.clone(), rw_victim.clone(), tmp_base.h(format!("victims/tmp-{n}.txt").as_bytes())]);
        let g = |p: &Path| bytes(p);
        let f = g(&ro.join("f.txt"));
        let mut cross: Vec<(&str, Request)> = vec![
            ("ro/write", Request::new("write", &[&f])),
            ("ro/append", Request::new("append", &[&f])),
            ("ro/truncate", Request::new("truncate", &[&f])),
            ("ro/ftruncate", Request::new("ftruncate", &[&f])),
            ("ro/utime", Request::new("utime", &[&f])),
            ("ro/lutime", Request::new("lutime", &[&f])),
            ("ro/futime", Request::new("futime", &[&f])),
            ("ro/chmod", Request::new("chmod", &[&f])),
            ("ro/unlink", Request::new("unlink", &[&f])),
            ("ro/create-excl", Request::new("create_excl", &[&g(&ro.join("new.txt"))])),
            ("ro/write-new", Request::new("write", &[&g(&ro.join("new.txt"))])),
            ("ro/mkdir", Request::new("mkdir", &[&g(&ro.join("newdir"))])),
            ("ro/rmdir", Request::new("rmdir", &[&g(&ro.join("empty"))])),
            ("ro/symlink-inside", Request::new("symlink", &[b"f.txt", &g(&ro.join("sym"))])),
            ("ro/symlink-outward", Request::new("symlink", &[b"../rw-outside/canary.txt", &g(&ro.join("sym2"))])),
            ("ro/unlink-symlink", Request::new("unlink", &[&g(&ro.join("sub/inside-link"))])),
            ("ro/rename-within", Request::new("rename", &[&g(&ro_victim), &g(&ro.join("renamed.txt"))])),
            ("ro/link-within", Request::new("link", &[&g(&ro_victim), &g(&ro.join("linked.txt"))])),
            ("ro→rw/rename", Request::new("rename", &[&g(&ro_victim), &g(&rw.join("from-ro.txt"))])),
            ("ro→rw/link", Request::new("link", &[&g(&ro_victim2), &g(&rw.join("from-ro-link.txt"))])),
            ("ro→rw/rename-dir", Request::new("rename", &[&g(&ro.join("sub")), &g(&rw.join("from-ro-dir"))])),
            ("ro→tmp/rename", Request::new("rename", &[&g(&ro_victim), &tmp_base.g(b"from-ro.txt")])),
            ("rw→ro/rename", Request::new("rename", &[&g(&rw_victim), &g(&ro.join("from-rw.txt"))])),
            ("rw→ro/link", Request::new("link", &[&g(&rw_victim), &g(&ro.join("from-rw-link.txt"))])),
            ("rw→ro/replace", Request::new("replace", &[&g(&rw_victim), &f])),
            ("tmp→ro/rename", Request::new("rename", &[&tmp_victim, &g(&ro.join("from-tmp.txt"))])),
            ("rw→tenant2/rename", Request::new("rename", &[&g(&rw_victim), &g(&tenant2.join("data/from-rw.txt"))])),
            ("rw→tenant2/link", Request::new("link", &[&g(&rw_victim), &g(&tenant2.join("data/from-rw-link.txt"))])),
            ("rw→group2-tmp/rename", Request::new("rename", &[&g(&rw_victim), &g(&b_tmp.join("from-rw.txt"))])),
            ("tmp→group2-tmp/rename", Request::new("rename", &[&tmp_victim, &g(&b_tmp.join("from-tmp.txt"))])),
            ("tmp→group2-tmp/dotdot-rename", Request::new("rename", &[&tmp_victim, &cat(&[b"/tmp/../", b_tmp.file_name().unwrap().as_bytes(), b"/from-tmp.txt"])])),
            ("rw→group2-pycache/link", Request::new("link", &[&g(&rw_victim), &g(&b_pycache.join("from-rw.txt"))])),
            ("tenant2→rw/rename", Request::new("rename", &[&g(&tenant2.join("data/secret.txt")), &g(&rw.join("stolen.txt"))])),
            ("group2-tmp→tmp/rename", Request::new("rename", &[&g(&b_tmp.join("b-marker.txt")), &tmp_base.g(b"stolen.txt")])),
            ("script-dir/write", Request::new("write", &[&g(&apps().join("escape-written.txt"))])),
            ("script-dir/rename-script", Request::new("rename", &[&g(&script), &g(&rw.join("stolen.wsgi"))])),
        ];
        let mut dir_fd_write = Request::new("write", &[b"f.txt"]);
        dir_fd_write.dir_fd = Some(g(&ro));
        cross.push(("ro/dirfd-write", dir_fd_write));
        let mut cwd_write = Request::new("append", &[b"f.txt"]);
        cwd_write.cwd = Some(g(&ro));
        cross.push(("ro/cwd-append", cwd_write));
        let mut dir_fd_mkdir = Request::new("mkdir", &[b"newdir"]);
        dir_fd_mkdir.dir_fd = Some(g(&ro));
        cross.push(("ro/dirfd-mkdir", dir_fd_mkdir));
        if hard_link_made {
            let hl = g(&ro.join("hard/hl"));
            for op in ["write", "append", "truncate", "ftruncate", "utime", "futime", "chmod", "unlink"] {
                cross.push((op, Request::new(op, &[&hl])));
            }
            cross.push(("rename", Request::new("rename", &[&hl, &g(&rw.join("hl-moved"))])));
            cross.push(("link", Request::new("link", &[&hl, &g(&rw.join("hl-linked"))])));
        }
        for (name, req) in cross {
            let name = if name.contains('/') { format!("grants/{name}") } else { format!("grants/ro-hard-link-to-outside/{name}") };
            table.cases.push(Case { name, setup: vec![], req, cleanup: vec![], check: None });
        }
    }

    // ------------------------------------------------------------ run
    for v in &table.victims {
        std::fs::create_dir_all(v.parent().unwrap()).unwrap();
        std::fs::write(v, "a victim file inside a grant\n").unwrap();
    }
    let mut failures: Vec<String> = Vec::new();
    for case in &table.cases {
        if let Some(check) = &case.check {
            if let Err(e) = validate(check) {
                failures.push(format!("{}: INVALID CASE (test bug): {e}: {}", case.name, case.req.describe()));
            }
        }
    }
    let canaries = [canary_tok.as_str(), canary2_tok.as_str(), hl_tok.as_str(), t2_tok.as_str(), b_tok.as_str()];
    // Every place a case aims at is under these roots (the shared cache's
    // other directories are not listed: other test runs may add groups there).
    let snapshot_now = || {
        snapshot(&[&outside, &ro, &tenant2, &b_tmp, &b_pycache, &cache.join("modules"), &cache.join("python")], &[&root])
    };
    // A server marks a compiled module it loads as used (its modification
    // time, at most once an hour; see wasgi's engine::cache): marked here
    // first, so that the other tests' servers do not change them meanwhile.
    for module in std::fs::read_dir(cache.join("modules")).unwrap().flatten() {
        if let Ok(file) = std::fs::File::open(module.path()) {
            let _ = file.set_modified(std::time::SystemTime::now());
        }
    }
    let before = snapshot_now();

    let controls_before = positive_controls(&server, &ro, ro_text, &rw, &tmp_base, &pycache_base, &home);
    assert!(controls_before.is_empty(), "legitimate access does not work, so denials would mean nothing:\n{}", controls_before.join("\n"));

    let mut families: BTreeMap<String, usize> = BTreeMap::new();
    let mut ops_seen: BTreeSet<&str> = BTreeSet::new();
    let mut requests = 0usize;
    let mut denials: BTreeMap<String, usize> = BTreeMap::new();
    let run_started = Instant::now();
    for case in &table.cases {
        *families.entry(case.name.split('/').next().unwrap().to_owned()).or_default() += 1;
        ops_seen.insert(case.req.op);
        // A guest-made symlink the sandbox refused to create leaves nothing
        // to follow: the case is denied there (sending the operation anyway
        // would only create an ordinary file inside the grant).
        let mut refused_at_setup = None;
        let mut setup_failure = None;
        for s in &case.setup {
            requests += 1;
            match send(&server, s) {
                Ok(v) if v["ok"] == json!(true) => {}
                Ok(v) => {
                    refused_at_setup.get_or_insert_with(|| v["error"].as_str().unwrap_or("").to_owned());
                }
                Err(e) => setup_failure = Some(format!("setup {}: {e}", s.describe())),
            }
        }
        let answer = if let Some(e) = setup_failure {
            Err(e)
        } else if let Some(error) = refused_at_setup {
            Ok(json!({ "ok": false, "error": format!("(symlink refused) {error}"), "result": null }))
        } else {
            requests += 1;
            send(&server, &case.req)
        };
        for c in &case.cleanup {
            requests += 1;
            let _ = send(&server, c);
        }
        let what = match &answer {
            Err(e) => Some(format!("NO ANSWER: {e}")),
            Ok(v) => {
                let text = v.to_string();
                let error = v["error"].as_str().unwrap_or("");
                if let Some(tok) = canaries.iter().find(|t| text.contains(*t)) {
                    Some(format!("LEAKED canary {tok}: {}", show(text.as_bytes())))
                } else if v["ok"] != json!(false) {
                    Some(format!("NOT DENIED: {}", show(text.as_bytes())))
                } else if PROBE_BUGS.iter().any(|bug| error.contains(bug)) {
                    Some(format!("PROBE ERROR (test bug, not a denial): {error}"))
                } else {
                    *denials.entry(error_class(error)).or_default() += 1;
                    None
                }
            }
        };
        if let Some(what) = what {
            failures.push(format!("{}: {} -> {what}", case.name, case.req.describe()));
        }
    }
    let run_time = run_started.elapsed();

    let controls_after = positive_controls(&server, &ro, ro_text, &rw, &tmp_base, &pycache_base, &home);
    failures.extend(controls_after.into_iter().map(|c| format!("positive control after the table: {c}")));

    let after = snapshot_now();
    let changed = diff(&before, &after);
    for p in &created_outside {
        if std::fs::symlink_metadata(p).is_ok() {
            failures.push(format!("ESCAPE: {} exists on the host", p.display()));
            let _ = std::fs::remove_file(p).or_else(|_| std::fs::remove_dir(p));
        }
    }
    // The canaries' content, independently of the snapshot.
    for (path, tok) in [
        (outside.join("canary.txt"), &canary_tok),
        (outside.join("dir/canary2.txt"), &canary2_tok),
        (outside.join("hl-canary.txt"), &hl_tok),
        (tenant2.join("data/secret.txt"), &t2_tok),
        (b_tmp.join("b-marker.txt"), &b_tok),
        (b_pycache.join("b-marker.txt"), &b_tok),
    ] {
        if std::fs::read_to_string(&path).ok().as_deref() != Some(tok.as_str()) {
            failures.push(format!("ESCAPE: canary {} changed or vanished", path.display()));
        }
    }
    drop(server);

    let total = table.cases.len();
    eprintln!(
        "escape table: {total} cases ({}) in {} requests, {:.1}s for the table, {:.1}s in all; operations: {}; denied with: {}",
        families.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
        requests,
        run_time.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        ops_seen.iter().copied().collect::<Vec<_>>().join(" "),
        denials.iter().map(|(k, v)| format!("{k} ×{v}")).collect::<Vec<_>>().join(", "),
    );
    assert!(total >= 300, "only {total} cases");
    assert!(
        failures.is_empty() && changed.is_empty(),
        "{} of {total} cases failed, {} changes outside the grants:\n{}\n{}",
        failures.len(),
        changed.len(),
        failures.join("\n"),
        changed.join("\n")
    );
}

// ---------------------------------------------------------------- grant swaps
//
// A grant is the directory that was there when the configuration was
// planned, held by handle (host/src/spec/grant_dir.rs). These cases replace a
// granted directory's name with a symlink into another tenant's files, from
// outside the sandbox (a tenant's shell or SFTP account, or an app through a
// write grant around the name), and expect every later instance to keep
// seeing the original directory, never the other tenant's.

/// Tenant a's read-only grant `a/ro` and tenant b's `b` with a secret; both
/// hold `file.txt`, so the same guest path reads one or the other.
struct SwapLayout {
    _dir: TempDir,
    a_ro: PathBuf,
    b: PathBuf,
}

impl SwapLayout {
    fn new(label: &str) -> SwapLayout {
        let dir = TempDir::new(label);
        let root = dir.path().canonicalize().unwrap();
        let a_ro = root.join("a/ro");
        let b = root.join("b");
        std::fs::create_dir_all(&a_ro).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a_ro.join("file.txt"), "tenant a").unwrap();
        std::fs::write(b.join("file.txt"), "tenant b").unwrap();
        std::fs::write(b.join("secret.txt"), "b's secret").unwrap();
        SwapLayout { _dir: dir, a_ro, b }
    }

    /// What the issue reproduced: `ro` renamed away, a relative symlink
    /// `ro -> ../b` in its place.
    fn swap(&self) {
        std::fs::rename(&self.a_ro, self.a_ro.with_file_name("ro.old")).unwrap();
        symlink("../b", &self.a_ro).unwrap();
        // The host itself now reaches b through the name: the case is real.
        assert_eq!(std::fs::read_to_string(self.a_ro.join("file.txt")).unwrap(), "tenant b");
    }

    fn read(&self, server: &Wasgi, name: &str) -> String {
        let r = server.get(&format!("/read-file?path={}", self.a_ro.join(name).display()));
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
    }
}

/// Serves features.wsgi with `a/ro` granted read-only, swaps the name for a
/// symlink to b, and reads through fresh instances: each must still see a's
/// directory (now `ro.old`) and nothing of b's.
fn swapped_grant_is_not_followed(label: &str, extra: &[&str]) {
    let layout = SwapLayout::new(label);
    let script = apps().join("features.wsgi");
    let mut args = vec![script.to_str().unwrap(), "--instances", "1", "--grant-read", layout.a_ro.to_str().unwrap()];
    args.extend_from_slice(extra);
    let server = Wasgi::start(&args);
    assert_eq!(layout.read(&server, "file.txt"), "tenant a");
    layout.swap();
    // maximum_requests = 1 (or isolation = "request") makes every request
    // after the swap run in an instance started after it.
    for round in 0..4 {
        assert_eq!(layout.read(&server, "file.txt"), "tenant a", "round {round}: an instance started after the swap followed it\n{}", server.log.text());
        assert_eq!(layout.read(&server, "secret.txt"), "denied: FileNotFoundError", "round {round}");
    }
    let _ = &layout.b;
}

#[test]
fn a_grant_swapped_for_a_symlink_while_serving_is_not_followed_by_new_instances() {
    swapped_grant_is_not_followed("swap-recycle", &["--maximum-requests", "1"]);
}

#[test]
fn a_grant_swapped_for_a_symlink_is_not_followed_under_request_isolation() {
    wasgi_tests::own_interpreter();
    swapped_grant_is_not_followed("swap-isolation", &["--interpreter", "cpython-3.13", "--isolation", "request"]);
}

#[test]
fn a_grant_swapped_for_a_symlink_is_not_followed_by_instances_from_a_snapshot() {
    wasgi_tests::own_interpreter();
    swapped_grant_is_not_followed("swap-snapshot", &["--interpreter", "cpython-3.13", "--snapshot", "--maximum-requests", "1"]);
}

/// The layout: a read-only directory inside the app's write grant,
/// which the app itself could rename and replace. It is refused at start,
/// naming both grants, for an explicit grant and for the script directory.
#[test]
fn a_read_only_grant_inside_a_write_grant_is_refused_at_start() {
    let layout = SwapLayout::new("nested");
    let site = layout.a_ro.parent().unwrap().to_owned();
    let script = apps().join("features.wsgi");
    let (ok, out) = wasgi_tests::run_to_end(wasgi_tests::start_command(&[
        script.to_str().unwrap(),
        "--grant-write",
        site.to_str().unwrap(),
        "--grant-read",
        layout.a_ro.to_str().unwrap(),
        "--maximum-requests",
        "2",
    ]));
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("{} is granted read-only (--grant-read) but lies inside the write grant {} (--grant-write)", layout.a_ro.display(), site.display())),
        "{out}"
    );
    // The script's directory is an implied read-only grant.
    std::fs::copy(&script, layout.a_ro.join("app.wsgi")).unwrap();
    let (ok, out) = wasgi_tests::run_to_end(wasgi_tests::start_command(&[layout.a_ro.join("app.wsgi").to_str().unwrap(), "--grant-write", site.to_str().unwrap()]));
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("{} is granted read-only (the script's directory) but lies inside the write grant", layout.a_ro.display())), "{out}");
}

/// A symlink planted while the server was stopped: the next start refuses
/// the grant and names the link, unless --follow-symlinks says to resolve it.
#[test]
fn a_symlink_planted_while_stopped_is_refused_at_start_unless_followed_on_purpose() {
    let layout = SwapLayout::new("planted");
    layout.swap();
    let script = apps().join("features.wsgi");
    let (ok, out) = wasgi_tests::run_to_end(wasgi_tests::start_command(&[script.to_str().unwrap(), "--grant-read", layout.a_ro.to_str().unwrap()]));
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("--grant-read {}: {} is a symlink (to ../b)", layout.a_ro.display(), layout.a_ro.display())), "{out}");
    // A symlink higher up the path is named too.
    let via = layout.b.with_file_name("via");
    symlink(layout.a_ro.with_file_name("ro.old"), &via).unwrap();
    std::fs::create_dir_all(via.join("deeper")).unwrap();
    let (ok, out) = wasgi_tests::run_to_end(wasgi_tests::start_command(&[script.to_str().unwrap(), "--grant-read", via.join("deeper").to_str().unwrap()]));
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("{} is a symlink", via.display())), "{out}");
    // Asked for, the link is resolved once, at start.
    let server = Wasgi::start(&[script.to_str().unwrap(), "--instances", "1", "--grant-read", layout.a_ro.to_str().unwrap(), "--follow-symlinks"]);
    assert_eq!(layout.read(&server, "file.txt"), "tenant b");
}

/// `wasgi serve`: a policy grant swapped for a symlink while serving. A
/// SIGHUP re-plans with the same rules, so the reload is refused with the
/// link named, and the running groups keep their original directories.
#[test]
fn a_sighup_after_a_grant_was_swapped_refuses_the_reload_and_keeps_the_original_directory() {
    let layout = SwapLayout::new("swap-sighup");
    let root = layout.b.parent().unwrap().to_owned();
    std::fs::create_dir_all(root.join("policies/users")).unwrap();
    std::fs::write(root.join("policies/users/a.toml"), format!("[[grant]]\npath = \"{}\"\naccess = \"read\"\n", layout.a_ro.display())).unwrap();
    let config = root.join("wasgi.toml");
    std::fs::write(
        &config,
        format!(
            "[[listen]]\naddress = \"127.0.0.1:0\"\n\n[[group]]\nname = \"a\"\ninstances = 1\nuser = \"a\"\nmaximum_requests = 1\n\n[[app]]\nscript = \"{}\"\ngroup = \"a\"\n",
            apps().join("features.wsgi").display()
        ),
    )
    .unwrap();
    let server = Wasgi::serve(&config);
    assert_eq!(layout.read(&server, "file.txt"), "tenant a");
    layout.swap();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    server.log.wait_for(&format!("{} is a symlink (to ../b)", layout.a_ro.display()), std::time::Duration::from_secs(30));
    for round in 0..3 {
        assert_eq!(layout.read(&server, "file.txt"), "tenant a", "round {round}\n{}", server.log.text());
    }
    // wasgi check names the policy line, and resolves the link only when asked.
    let (ok, out) = wasgi_tests::check(&config);
    assert!(!ok && out.contains("policies/users/a.toml:2: grant[0].path:") && out.contains("is a symlink (to ../b)"), "{out}");
    std::fs::write(root.join("policies/users/a.toml"), format!("[[grant]]\npath = \"{}\"\naccess = \"read\"\nfollow_symlinks = true\n", layout.a_ro.display())).unwrap();
    let (ok, out) = wasgi_tests::check(&config);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("(follow_symlinks: resolved once, to {})", layout.b.display())), "{out}");
}

/// Under isolation = "request" nothing a request writes may outlive it: the
/// group's bytecode cache (filled while the snapshot imports the app) is
/// read-only for the instances that serve, so no request can plant a .pyc
/// that a later request would run.
#[test]
fn under_request_isolation_a_request_cannot_write_the_bytecode_cache() {
    wasgi_tests::own_interpreter();
    let script = apps().join("features.wsgi");
    let server = Wasgi::start(&[script.to_str().unwrap(), "--interpreter", "cpython-3.13", "--isolation", "request", "--instances", "1"]);
    let env = server.get("/env").text();
    let prefix = env.lines().find_map(|l| l.strip_prefix("PYTHONPYCACHEPREFIX=")).unwrap_or_else(|| panic!("{env}")).to_owned();
    let planted = Path::new(&prefix).join("planted.cpython-313.pyc");
    let r = server.get(&format!("/write-file?path={}", planted.display()));
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("denied: "), "a request wrote the bytecode cache: {}", r.text());
    assert!(!planted.exists(), "{} exists on the host", planted.display());
    // The group's /tmp stays writable: only the bytecode cache is frozen.
    assert_eq!(server.get("/write-file?path=/tmp/scratch.txt").text(), "written");
}
