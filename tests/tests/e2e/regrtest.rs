//! CPython's own regression tests inside the sandbox: `python-wasm/regrtest
//! --quick` runs regrtest.toml's quick list of Lib/test modules in our CPython
//! 3.13 build under wasmtime (WASI preopens only) and exits non-zero on any
//! outcome regrtest.toml does not expect. The full list is run by hand
//! (python-wasm/README.md has its table).

use std::process::Command;

use wasgi_tests::{cache_dir, own_interpreter, root};

#[test]
fn quick_part_of_cpythons_regrtest_passes_in_the_sandbox() {
    own_interpreter();
    let output = Command::new(root().join("python-wasm").join("regrtest"))
        .arg("--quick")
        .arg("--cache-dir")
        .arg(cache_dir())
        .output()
        .expect("run python-wasm/regrtest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains(" 0 unexpected"),
        "python-wasm/regrtest --quick: {}\n{stdout}\n{stderr}",
        output.status
    );
    // The table names every module of the quick list.
    for module in ["test_json", "test_sqlite3", "test_ssl", "test_pwd"] {
        assert!(stdout.lines().any(|l| l.starts_with(module)), "no row for {module}:\n{stdout}");
    }
}
