//! Native extensions, built rather than loaded: what an app's environment
//! holds ([`scan`]), and the interpreter variant that has its packages' C
//! extension modules linked in ([`locate_variant`]), made by
//! `python-wasm/extensions` (embedded in the binary with its recipes).
//!
//! A variant is filed under `CACHE/cpython/KEY/variants/VKEY/`, VKEY being
//! [`variant_key`]: wasgi computes it itself so that a variant built before
//! is found without starting Python.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::engine::interpreter::{Interpreter, RECIPE};

/// This module's log target, beside the interpreter's.
const LOG_TARGET: &str = "wasgi::interpreter";

/// python-wasm/extensions, byte for byte: its own bytes are part of every
/// variant key.
const SCRIPT: &str = include_str!("../../../python-wasm/extensions");

/// python-wasm/recipes/*.toml, by file name: which packages wasgi can link in.
const RECIPES: &[(&str, &str)] = &[
    ("bcrypt.toml", include_str!("../../../python-wasm/recipes/bcrypt.toml")),
    ("lxml.toml", include_str!("../../../python-wasm/recipes/lxml.toml")),
    ("markupsafe.toml", include_str!("../../../python-wasm/recipes/markupsafe.toml")),
    ("msgpack.toml", include_str!("../../../python-wasm/recipes/msgpack.toml")),
    ("numpy.toml", include_str!("../../../python-wasm/recipes/numpy.toml")),
    ("orjson.toml", include_str!("../../../python-wasm/recipes/orjson.toml")),
    ("pillow.toml", include_str!("../../../python-wasm/recipes/pillow.toml")),
    ("psycopg2.toml", include_str!("../../../python-wasm/recipes/psycopg2.toml")),
    ("pydantic-core.toml", include_str!("../../../python-wasm/recipes/pydantic-core.toml")),
    ("pyyaml.toml", include_str!("../../../python-wasm/recipes/pyyaml.toml")),
    ("sqlalchemy.toml", include_str!("../../../python-wasm/recipes/sqlalchemy.toml")),
];

/// A package and version, as an environment pins it: (normalized name, version).
pub type Pin = (String, String);

/// A package name as PEP 503 compares them (`MarkupSafe`, `markup_safe` and
/// `markupsafe` are one package); recipe files are named this way.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.extend(c.to_lowercase());
            in_run = false;
        }
    }
    out
}

/// What a recipe tells the host: the package it builds and its modules. The
/// rest of the file (sources, libraries) is the script's.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Recipe {
    /// The package as PyPI spells it ("MarkupSafe").
    pub package: String,
    #[serde(default, rename = "extension")]
    extensions: Vec<RecipeExtension>,
    /// Modules of the package the recipe leaves out on purpose, each with
    /// why (numpy's test-only modules): no warning at start for them.
    #[serde(default)]
    not_built: BTreeMap<String, String>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct RecipeExtension {
    module: String,
}

impl Recipe {
    /// The full dotted names of the modules it links in.
    pub fn modules(&self) -> impl Iterator<Item = &str> {
        self.extensions.iter().map(|e| e.module.as_str())
    }
}

/// Every embedded recipe, by normalized package name (a recipe that does not
/// parse is left out; a unit test parses them all).
fn recipes() -> &'static BTreeMap<String, Recipe> {
    static PARSED: LazyLock<BTreeMap<String, Recipe>> = LazyLock::new(|| {
        RECIPES
            .iter()
            .filter_map(|(file, text)| Some((file.strip_suffix(".toml")?.to_owned(), toml::from_str::<Recipe>(text).ok()?)))
            .collect()
    });
    &PARSED
}

/// The recipe for a package, by any spelling of its name.
pub fn recipe(name: &str) -> Option<&'static Recipe> {
    recipes().get(&normalize(name))
}

/// The packages wasgi has a recipe for, as PyPI spells them, each with its
/// modules: what the guest's hint lists.
pub fn recipe_packages() -> Vec<(&'static str, Vec<&'static str>)> {
    recipes().values().map(|r| (r.package.as_str(), r.modules().collect())).collect()
}

/// The key `python-wasm/extensions` files a variant under (its
/// `variant_key()`): SHA-256 over the interpreter's key, the script, and each
/// (normalized name, version, recipe file) in name order.
pub fn variant_key(interpreter_key: &str, packages: &[(String, String)]) -> String {
    let mut h = Sha256::new();
    h.update(b"wasgi-variant\0");
    h.update(interpreter_key.as_bytes());
    h.update(b"\0");
    h.update(SCRIPT.as_bytes());
    h.update(b"\0");
    let mut sorted: Vec<(String, &str)> = packages.iter().map(|(n, v)| (normalize(n), v.as_str())).collect();
    sorted.sort();
    for (name, version) in sorted {
        h.update(format!("{name}\0{version}\0").as_bytes());
        let text = RECIPES.iter().find(|(file, _)| file.strip_suffix(".toml") == Some(name.as_str())).map_or("", |(_, t)| t);
        h.update(text.as_bytes());
        h.update(b"\0");
    }
    hex::encode(h.finalize())[..16].to_owned()
}

/// What an app's environment holds that concerns native code.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Environment {
    /// The installed packages wasgi has a recipe for: the set its variant is
    /// built for. Sorted, one version each (the first on the path wins, as
    /// it would at import).
    pub to_build: Vec<Pin>,
    /// Every native extension module found, the first of each name.
    pub modules: Vec<NativeModule>,
}

/// A native extension file (`*.so`) of the environment: built for the host,
/// it cannot load in the sandbox; only a recipe makes it available.
#[derive(Debug, PartialEq, Eq)]
pub struct NativeModule {
    /// Its full dotted name ("markupsafe._speedups").
    pub module: String,
    pub file: PathBuf,
    /// The installed package it belongs to (name as installed, version),
    /// when one is found: by a recipe naming the module, else by its
    /// top-level package.
    pub package: Option<(String, String)>,
    /// A recipe builds it, and its package is in `to_build`.
    pub recipe: bool,
    /// Its package's recipe leaves it out on purpose, for this reason.
    pub not_built: Option<&'static str>,
}

/// Directory entries [`scan`] reads under one path entry at most: an app
/// directory on the path must not make a start walk a whole tree.
const SCAN_LIMIT: usize = 50_000;

/// Reads each directory of a python path: the distributions installed there
/// (`Name-Version.dist-info`, `Name-Version[-pyX.Y].egg-info`) and the native
/// extension files under it, and says which packages have a recipe.
pub fn scan(python_path: &[PathBuf]) -> Environment {
    // normalized name → (name as installed, version, top-level names)
    let mut installed: BTreeMap<String, (String, String, Vec<String>)> = BTreeMap::new();
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for dir in python_path {
        for (name, version, tops) in distributions(dir) {
            installed.entry(normalize(&name)).or_insert((name, version, tops));
        }
        for (module, file) in extension_files(dir) {
            if !files.iter().any(|(m, _)| *m == module) {
                files.push((module, file));
            }
        }
    }
    let to_build: Vec<Pin> = installed.iter().filter(|(n, _)| recipes().contains_key(*n)).map(|(n, (_, v, _))| (n.clone(), v.clone())).collect();
    let modules = files
        .into_iter()
        .map(|(module, file)| {
            let top = module.split('.').next().unwrap_or_default();
            let by_recipe = installed.iter().find(|(n, _)| recipes().get(*n).is_some_and(|r| r.modules().any(|m| m == module)));
            let owner = by_recipe.or_else(|| {
                installed
                    .iter()
                    .find(|(_, (_, _, tops))| tops.iter().any(|t| t == top))
                    .or_else(|| installed.iter().find(|(n, _)| normalize(top) == **n))
            });
            let not_built = owner.and_then(|(n, _)| recipes().get(n)).and_then(|r| r.not_built.get(&module)).map(String::as_str);
            NativeModule {
                package: owner.map(|(_, (name, version, _))| (name.clone(), version.clone())),
                recipe: by_recipe.is_some(),
                not_built,
                module,
                file,
            }
        })
        .collect();
    Environment { to_build, modules }
}

/// The distributions installed directly in `dir`: (name, version, top-level
/// names from top_level.txt, when it has one).
fn distributions(dir: &Path) -> Vec<(String, String, Vec<String>)> {
    let mut found = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).into_iter().flatten().filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else { continue };
        let stem = match file.strip_suffix(".dist-info").or_else(|| file.strip_suffix(".egg-info")) {
            Some(stem) => stem,
            None => continue,
        };
        // The name's own dashes are written as underscores, so the first
        // dash ends it; an egg-info may add "-pyX.Y" after the version.
        let mut parts = stem.split('-');
        let (Some(name), Some(version)) = (parts.next(), parts.next()) else { continue };
        if name.is_empty() || !is_release(version) {
            continue;
        }
        let tops = std::fs::read_to_string(path.join("top_level.txt"))
            .map(|t| t.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        found.push((name.to_owned(), version.to_owned(), tops));
    }
    found
}

/// Whether `version` can be a release's version (PEP 440's characters,
/// starting with a digit). The environment is the tenant's: a directory
/// named `markupsafe-*.dist-info` or `pyyaml-1 --index-url x.dist-info`
/// must not reach pip's command line or the script's sdist lookup.
fn is_release(version: &str) -> bool {
    version.starts_with(|c: char| c.is_ascii_digit())
        && version.len() <= 64
        && version.chars().all(|c| c.is_ascii_alphanumeric() || ".!+_".contains(c))
}

/// The native extension modules under `dir`: every `NAME.*.so` (or
/// `NAME.so`) whose path from `dir` is a dotted module name, as
/// (full name, file), in name order. Shared libraries that are not modules
/// (`Pillow.libs/libjpeg-1a2b.so`) have no such name and are left out.
fn extension_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    let mut seen = 0usize;
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().filter_map(|e| e.ok()) {
            seen += 1;
            if seen > SCAN_LIMIT {
                found.sort();
                return found;
            }
            let path = entry.path();
            // Not followed: a link may lead anywhere, even back up.
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "so") {
                if let Some(module) = module_name(dir, &path) {
                    found.push((module, path));
                }
            }
        }
    }
    found.sort();
    found
}

/// `markupsafe/_speedups.cpython-311-x86_64-linux-gnu.so` under `dir` →
/// `markupsafe._speedups`; None if a part is not an identifier.
fn module_name(dir: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(dir).ok()?;
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_str().map(str::to_owned)).collect::<Option<_>>()?;
    let last = parts.pop()?;
    parts.push(last.split('.').next()?.to_owned());
    let identifier = |s: &String| s.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_') && s.chars().all(|c| c.is_alphanumeric() || c == '_');
    parts.iter().all(identifier).then(|| parts.join("."))
}

/// An interpreter with an app's extension modules linked in, as
/// `python-wasm/extensions` left it.
#[derive(Debug, Clone)]
pub struct Variant {
    pub dir: PathBuf,
    pub python_wasm: PathBuf,
    pub reactor: Option<PathBuf>,
    pub sha256: String,
    pub packages: Vec<BuiltPackage>,
    /// Packages whose sources did not compile: left out, and left out again
    /// until their recipe or version changes (the key changes with them).
    pub failed: Vec<FailedPackage>,
}

/// A package whose modules the variant has built in.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct BuiltPackage {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub modules: Vec<String>,
}

/// A package the variant could not build, and where its log is.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct FailedPackage {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub log: String,
}

/// variant.json, as far as the host reads it.
#[derive(serde::Deserialize)]
struct VariantJson {
    python_wasm_sha256: String,
    #[serde(default)]
    packages: Vec<BuiltPackage>,
    #[serde(default)]
    failed: Vec<FailedPackage>,
}

impl Variant {
    /// The variant's interpreter: its own python.wasm and reactor, the
    /// base's standard library and version.
    pub fn interpreter(&self, base: &Interpreter) -> Interpreter {
        Interpreter {
            path: self.python_wasm.clone(),
            sha256: self.sha256.clone(),
            stdlib: base.stdlib.clone(),
            reactor: self.reactor.clone(),
            version: base.version.clone(),
        }
    }

    /// Whether `module` is built in.
    pub fn has(&self, module: &str) -> bool {
        self.packages.iter().any(|p| p.modules.iter().any(|m| m == module))
    }

    /// Why `package` is not built in, when the script tried and failed.
    pub fn failure(&self, package: &str) -> Option<&FailedPackage> {
        self.failed.iter().find(|f| normalize(&f.name) == normalize(package))
    }
}

/// The build directory of our own interpreter that `base` was taken from
/// (CACHE/cpython/KEY), and KEY as its build.json records it (what the
/// script reads).
fn base_dir(base: &Interpreter) -> Result<(&Path, String)> {
    let dir = base.path.parent().with_context(|| format!("{} has no directory", base.path.display()))?;
    let json = dir.join("build.json");
    let text = std::fs::read_to_string(&json).with_context(|| format!("cannot read {} (only our own CPython 3.13 build links extensions in)", json.display()))?;
    let info: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not a build.json of python-wasm/build", json.display()))?;
    let key = info["key"].as_str().with_context(|| format!("{} records no key", json.display()))?;
    Ok((dir, key.to_owned()))
}

/// Where the variant of `base` for `packages` is (or will be) filed.
pub fn variant_dir(base: &Interpreter, packages: &[Pin]) -> Result<PathBuf> {
    let (dir, key) = base_dir(base)?;
    Ok(dir.join("variants").join(variant_key(&key, packages)))
}

/// The variant of `base` for `packages` if it was built before; None if not
/// (nothing is built: `wasgi check` asks this).
pub fn built_variant(base: &Interpreter, packages: &[Pin]) -> Result<Option<Variant>> {
    let dir = variant_dir(base, packages)?;
    if !dir.join("variant.json").is_file() {
        return Ok(None);
    }
    read_variant(dir).map(Some)
}

/// The variant of `base` with `packages`' extension modules linked in, built
/// by python-wasm/extensions unless it was before (its progress goes to our
/// stderr); None for no packages. An error carries the script's last words.
pub fn locate_variant(cache_dir: &Path, base: &Interpreter, packages: &[Pin]) -> Result<Option<Variant>> {
    if packages.is_empty() {
        return Ok(None);
    }
    if let Some(variant) = built_variant(base, packages)? {
        return Ok(Some(variant));
    }
    let (dir, _) = base_dir(base)?;
    let script = write_script(cache_dir)?;
    let python = std::env::var_os("WASGI_HOST_PYTHON").unwrap_or_else(|| "python3".into());
    let mut child = std::process::Command::new(&python)
        .arg(&script)
        .arg("--interpreter")
        .arg(dir)
        .arg("--print-dir")
        .args(packages.iter().map(|(name, version)| format!("{name}=={version}")))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {} to link native extensions (python-wasm/extensions needs Python 3.11 or newer; set WASGI_HOST_PYTHON to one)", python.to_string_lossy()))?;
    // Its progress is passed on as it comes; the last lines say why it failed.
    let stderr = child.stderr.take().expect("stderr is piped");
    let relay = std::thread::spawn(move || {
        let mut last = std::collections::VecDeque::new();
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            eprintln!("{line}");
            if last.len() == 5 {
                last.pop_front();
            }
            last.push_back(line);
        }
        last.into_iter().collect::<Vec<_>>().join("\n")
    });
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().expect("stdout is piped"), &mut stdout)
        .with_context(|| format!("cannot read what {} printed", script.display()))?;
    let status = child.wait().with_context(|| format!("waiting for {}", script.display()))?;
    let last_words = relay.join().unwrap_or_default();
    if !status.success() {
        bail!("python-wasm/extensions failed ({status}): {}", if last_words.is_empty() { "it said nothing" } else { last_words.trim() });
    }
    read_variant(PathBuf::from(stdout.trim())).map(Some)
}

/// A variant directory as python-wasm/extensions left it.
fn read_variant(dir: PathBuf) -> Result<Variant> {
    let json = dir.join("variant.json");
    let text = std::fs::read_to_string(&json).with_context(|| format!("cannot read {}", json.display()))?;
    let info: VariantJson = serde_json::from_str(&text).with_context(|| format!("{} is not a variant.json of python-wasm/extensions", json.display()))?;
    let python_wasm = dir.join("python.wasm");
    if !python_wasm.is_file() {
        bail!("the interpreter variant {} has no python.wasm", dir.display());
    }
    let reactor = Some(dir.join("python-reactor.wasm")).filter(|p| p.is_file());
    crate::engine::cache::mark_used(&dir);
    Ok(Variant { python_wasm, reactor, sha256: info.python_wasm_sha256, packages: info.packages, failed: info.failed, dir })
}

/// Writes python-wasm/extensions and its recipes out of the binary, beside a
/// copy of the interpreter's own recipe (the script imports `build` from its
/// directory), into CACHE/cpython/extensions-DIGEST/; the script's path.
fn write_script(cache_dir: &Path) -> Result<PathBuf> {
    let files: Vec<(String, &str)> = RECIPE
        .iter()
        .map(|(name, text)| (name.to_string(), *text))
        .chain(std::iter::once(("extensions".to_owned(), SCRIPT)))
        .chain(RECIPES.iter().map(|(name, text)| (format!("recipes/{name}"), *text)))
        .collect();
    let mut digest = Sha256::new();
    for (name, text) in &files {
        digest.update(name.as_bytes());
        digest.update(b"\0");
        digest.update(text.as_bytes());
        digest.update(b"\0");
    }
    let dir = cache_dir.join("cpython").join(format!("extensions-{}", &hex::encode(digest.finalize())[..16]));
    // The script last: its presence says the rest is there.
    if crate::engine::interpreter::write_out(&dir, files.iter().map(|(name, text)| (name.as_str(), *text)), "extensions")? {
        tracing::debug!(target: LOG_TARGET, "wrote python-wasm/extensions and its recipes to {}", dir.display());
    }
    Ok(dir.join("extensions"))
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::{normalize, scan, variant_key, NativeModule};

    fn python_wasm() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../python-wasm")
    }

    /// Every recipe of python-wasm/recipes, and the script itself, byte for
    /// byte: a missing or stale one would change what an installed wasgi
    /// builds, and the variant key the script computes.
    #[test]
    fn the_embedded_recipes_are_the_whole_recipes() {
        let dir = python_wasm();
        assert_eq!(super::SCRIPT, std::fs::read_to_string(dir.join("extensions")).unwrap(), "python-wasm/extensions is not embedded as it is");
        let mut wanted: Vec<String> = std::fs::read_dir(dir.join("recipes"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        wanted.sort();
        for name in &wanted {
            let embedded = super::RECIPES.iter().find(|(n, _)| n == name).map(|(_, t)| *t);
            let on_disk = std::fs::read_to_string(dir.join("recipes").join(name)).unwrap();
            assert_eq!(embedded, Some(on_disk.as_str()), "python-wasm/recipes/{name} is not embedded in extensions::RECIPES");
        }
        assert_eq!(super::RECIPES.len(), wanted.len(), "RECIPES carries a recipe python-wasm/recipes no longer has");
        // Each parses, with a package and at least one module.
        assert_eq!(super::recipes().len(), wanted.len(), "a recipe does not parse");
        for recipe in super::recipes().values() {
            assert!(!recipe.package.is_empty() && recipe.modules().count() > 0, "{recipe:?}");
        }
    }

    #[test]
    fn names_are_normalized_as_pep_503_says() {
        assert_eq!(normalize("MarkupSafe"), "markupsafe");
        assert_eq!(normalize("Markup_Safe"), "markup-safe");
        assert_eq!(normalize("zope.interface"), "zope-interface");
        assert_eq!(normalize("a-_.-B__c"), "a-b-c");
        assert_eq!(normalize("PyYAML"), "pyyaml");
    }

    /// The host finds a variant without Python by the key the script files
    /// it under: the script's own function, run on the same set, agrees.
    #[test]
    fn the_variant_key_is_the_scripts_own() {
        let set = [("MarkupSafe", "3.0.2"), ("PyYAML", "6.0.2"), ("msgpack", "1.1.0")];
        let pairs: Vec<(String, String)> = set.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        let output = std::process::Command::new("python3")
            .arg("-c")
            .arg(
                "import importlib.machinery, importlib.util, json, sys\n\
                 loader = importlib.machinery.SourceFileLoader('extensions', sys.argv[1])\n\
                 m = importlib.util.module_from_spec(importlib.util.spec_from_loader('extensions', loader))\n\
                 loader.exec_module(m)\n\
                 print(m.variant_key(sys.argv[2], json.loads(sys.argv[3])))",
            )
            .arg(python_wasm().join("extensions"))
            .arg("0123456789abcdef")
            .arg(serde_json::to_string(&pairs).unwrap())
            .output()
            .expect("python3 runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), variant_key("0123456789abcdef", &pairs));
        // The order given and the names' spelling do not matter.
        let respelled: Vec<(String, String)> = [("pyyaml", "6.0.2"), ("msgpack", "1.1.0"), ("markupsafe", "3.0.2")].iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        assert_eq!(variant_key("0123456789abcdef", &pairs), variant_key("0123456789abcdef", &respelled));
        assert_ne!(variant_key("0123456789abcdef", &pairs), variant_key("0123456789abcdef", &pairs[..2]));
    }

    /// A scratch directory, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(label: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("wasgi-extensions-{label}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn file(&self, relative: &str) -> PathBuf {
            let path = self.0.join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"").unwrap();
            path
        }

        fn dir(&self, relative: &str) -> PathBuf {
            let path = self.0.join(relative);
            std::fs::create_dir_all(&path).unwrap();
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn scan_finds_the_packages_with_recipes_and_every_native_module() {
        let s = Scratch::new("scan");
        let site = s.dir("site");
        s.dir("site/MarkupSafe-3.0.2.dist-info");
        let speedups = s.file("site/markupsafe/_speedups.cpython-311-x86_64-linux-gnu.so");
        s.file("site/markupsafe/__init__.py");
        s.dir("site/ujson-5.10.0.dist-info");
        let ujson = s.file("site/ujson.cpython-311-x86_64-linux-gnu.so");
        // An egg-info with its Python version, and a stable-ABI module.
        s.file("site/PyYAML-6.0.1-py3.11.egg-info/PKG-INFO");
        let cyaml = s.file("site/yaml/_yaml.abi3.so");
        // A distribution whose top-level package has another name.
        std::fs::create_dir_all(site.join("python_dateutil_fake-1.0.dist-info")).unwrap();
        std::fs::write(site.join("python_dateutil_fake-1.0.dist-info/top_level.txt"), "fakedate\n").unwrap();
        let fast = s.file("site/fakedate/_fast.so");
        // A shared library beside the modules, not a module.
        s.file("site/Pillow.libs/libjpeg-1a2b3c.so");
        s.dir("site/itsdangerous-2.2.0.dist-info");
        // numpy: a module its recipe builds, and a test-only one it leaves out.
        s.dir("site/numpy-2.4.6.dist-info");
        let umath = s.file("site/numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so");
        let tests = s.file("site/numpy/_core/_multiarray_tests.cpython-311-x86_64-linux-gnu.so");

        let env = scan(&[site.clone()]);
        assert_eq!(
            env.to_build,
            vec![
                ("markupsafe".to_owned(), "3.0.2".to_owned()),
                ("numpy".to_owned(), "2.4.6".to_owned()),
                ("pyyaml".to_owned(), "6.0.1".to_owned())
            ]
        );
        let pin = |n: &str, v: &str| Some((n.to_owned(), v.to_owned()));
        assert_eq!(
            env.modules,
            vec![
                NativeModule { module: "fakedate._fast".into(), file: fast, package: pin("python_dateutil_fake", "1.0"), recipe: false, not_built: None },
                NativeModule { module: "markupsafe._speedups".into(), file: speedups, package: pin("MarkupSafe", "3.0.2"), recipe: true, not_built: None },
                NativeModule {
                    module: "numpy._core._multiarray_tests".into(),
                    file: tests,
                    package: pin("numpy", "2.4.6"),
                    recipe: false,
                    not_built: Some("numpy's own test suite")
                },
                NativeModule { module: "numpy._core._multiarray_umath".into(), file: umath, package: pin("numpy", "2.4.6"), recipe: true, not_built: None },
                NativeModule { module: "ujson".into(), file: ujson, package: pin("ujson", "5.10.0"), recipe: false, not_built: None },
                NativeModule { module: "yaml._yaml".into(), file: cyaml, package: pin("PyYAML", "6.0.1"), recipe: true, not_built: None },
            ]
        );
    }

    /// A tenant's directory names that are no release version are not
    /// built: nothing of them reaches pip or the script.
    #[test]
    fn a_dist_info_whose_version_is_no_release_is_not_built() {
        let s = Scratch::new("hostile");
        let site = s.dir("site");
        for name in ["MarkupSafe-*.dist-info", "PyYAML-6.0 --index-url x.dist-info", "msgpack-..dist-info", "lxml-1/.dist-info"] {
            let _ = std::fs::create_dir_all(site.join(name));
        }
        s.dir("site/SQLAlchemy-2.1.9+local.1.dist-info");
        let env = scan(&[site.clone()]);
        assert_eq!(env.to_build, vec![("sqlalchemy".to_owned(), "2.1.9+local.1".to_owned())]);
    }

    /// As at import, the first directory on the path wins: its version is
    /// the one built, its file the one reported.
    #[test]
    fn the_first_directory_on_the_path_wins() {
        let s = Scratch::new("first");
        let (app, venv) = (s.dir("app"), s.dir("venv"));
        s.dir("app/markupsafe-2.1.5.dist-info");
        let first = s.file("app/markupsafe/_speedups.cpython-312-x86_64-linux-gnu.so");
        s.dir("venv/MarkupSafe-3.0.2.dist-info");
        s.file("venv/markupsafe/_speedups.cpython-311-x86_64-linux-gnu.so");
        // msgpack installed without its extension still gets it built.
        s.dir("venv/msgpack-1.1.0.dist-info");

        let env = scan(&[app, venv]);
        assert_eq!(env.to_build, vec![("markupsafe".to_owned(), "2.1.5".to_owned()), ("msgpack".to_owned(), "1.1.0".to_owned())]);
        assert_eq!(env.modules.len(), 1, "{:?}", env.modules);
        assert_eq!((&env.modules[0].file, &env.modules[0].package), (&first, &Some(("markupsafe".to_owned(), "2.1.5".to_owned()))));
    }

    #[test]
    fn an_empty_or_missing_path_holds_nothing() {
        assert_eq!(scan(&[]), Default::default());
        assert_eq!(scan(&[PathBuf::from("/nonexistent/wasgi-scan")]), Default::default());
    }
}
