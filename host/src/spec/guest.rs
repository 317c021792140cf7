//! What one app's guests are made from: the directories granted to them,
//! their environment, limits, interpreter and the facts they are told about
//! their host. Built by the plan (from a file or `wasgi run`'s flags alike),
//! read by the sandbox.

use std::path::PathBuf;
use std::sync::Arc;

use crate::spec::connect::Network;
use crate::spec::grant_dir::GrantDir;
use crate::spec::interpreter::Choice;
use crate::spec::limits::{Isolation, Limits, Reload};

/// A directory the guest may use. It appears at the same absolute path as on
/// the host, except the group's private temporary directory, seen as `/tmp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The path as configured (for messages and the snapshot's file list).
    pub path: PathBuf,
    pub guest_path: PathBuf,
    pub write: bool,
    /// Where it comes from (a policy file and line, a flag), for messages.
    pub origin: String,
    /// The directory itself, opened once when the configuration was planned:
    /// what every instance is given, never the path looked up again.
    pub dir: GrantDir,
}

impl Grant {
    pub fn same_path(path: PathBuf, write: bool, origin: impl Into<String>, dir: GrantDir) -> Grant {
        Grant { guest_path: path.clone(), path, write, origin: origin.into(), dir }
    }

    /// One of the group's private directories (its bytecode cache, its
    /// /tmp): the same place in every group's guests, a different directory
    /// on the host for each.
    pub fn is_private(&self) -> bool {
        self.origin == PRIVATE_PYCACHE || self.origin == PRIVATE_TMP
    }
}

/// The origins of the private directories, as grants name them.
pub const PRIVATE_PYCACHE: &str = "the group's private bytecode cache";
pub const PRIVATE_TMP: &str = "the group's private /tmp";
/// Where every guest finds its group's private bytecode cache
/// (PYTHONPYCACHEPREFIX): one path for all, so the groups' guests differ in
/// nothing but the directory behind it.
pub const GUEST_PYCACHE: &str = "/.wasgi-pycache";

/// Everything an instance of one app is made from; shared by its group.
/// Two equal specs make identical instances (a config reload keeps a group
/// whose spec did not change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestSpec {
    /// The name the log uses for this app.
    pub name: Arc<str>,
    pub script: PathBuf,
    pub callable: String,
    pub python_path: Vec<PathBuf>,
    /// Every directory the guest sees; nothing else exists for it.
    pub grants: Vec<Grant>,
    /// The guest's working directory.
    pub home: Option<PathBuf>,
    /// The only environment variables the guest sees.
    pub env: Vec<(String, String)>,
    /// The process group, and what its grants come from, for denial messages.
    pub group: String,
    pub policies: Vec<String>,
    /// Linear-memory cap per instance, in bytes.
    pub memory_limit: usize,
    pub limits: Limits,
    /// What reload_on_change watches.
    pub reload: Reload,
    /// Writes to sys.stdout raise an error instead of going to the log.
    pub restrict_stdout: bool,
    /// Start instances from a snapshot taken after the app's import, when
    /// the interpreter can be snapshotted (gunicorn --preload's semantics:
    /// what the import made, random ids included, is the same in every instance).
    pub snapshot: bool,
    pub isolation: Isolation,
    /// Paths the bridge GETs once before the snapshot, answered to no one,
    /// so the interpreter has specialised the code they run and the app has
    /// filled its lazy caches in the snapshot rather than in every instance.
    pub warmup: Vec<String>,
    /// Which interpreter it runs: part of the spec, so a reload that changes
    /// it restarts the group.
    pub interpreter: Choice,
    /// The packages of its environment whose C extensions are linked into
    /// its interpreter (normalized name, version; sorted): part of the spec,
    /// so a reload after a version changed restarts the group on another
    /// variant. Read from the python path when the groups start
    /// (`cli::supervisor`): which packages have a recipe is the engine's to say.
    pub extensions: Vec<(String, String)>,
    /// Who and where the app is told it runs.
    pub host_facts: HostFacts,
    /// Where its guests may connect, and the group's connection counters.
    pub network: Network,
}

/// What `os.getuid`, `pwd`, `grp`, `getpass.getuser` and
/// `socket.gethostname` answer inside the guest (WASI has none of them; the
/// bridge installs them): one virtual user per group, whose home is the
/// group's home (`GuestSpec::home`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// The user's name (`[[group]] user`).
    pub user: String,
    /// Its group's name (`[[group]] group`).
    pub group: String,
    /// `socket.gethostname()`, `platform.node()`.
    pub hostname: String,
}

/// The virtual user's ids: the same in every guest (the names tell groups apart).
pub const GUEST_UID: u32 = 1000;
pub const GUEST_GID: u32 = 1000;

/// The host's own name, which guests see unless a group configures another.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it or the name is cut short, which the search below handles.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..len]) {
        Ok(name) if ok && !name.is_empty() => name.to_owned(),
        _ => "localhost".to_owned(),
    }
}

/// What the grants of `wasgi run` come from, where a config names its policies.
pub const RUN_FLAGS_POLICY: &str = "the flags of `wasgi run` (--grant-read, --grant-write, --python-path, --venv)";

