//! How frames travel between the host and the bridge: through host calls on
//! wasgi's own CPython 3.13 build (its built-in `_wasgi` module), through the
//! guest's stdin and stdout on the pinned 3.12 build. The suite runs on
//! either (WASGI_INTERPRETER); this test checks the one it runs on.

use std::time::Duration;

use wasgi_tests::{apps, Wasgi};

/// The suite runs on our own build unless WASGI_INTERPRETER names the pinned one.
fn own_build() -> bool {
    !std::env::var("WASGI_INTERPRETER").is_ok_and(|v| matches!(v.trim(), "cpython-3.12" | "cpython-3.12.0" | "pinned"))
}

#[test]
fn the_startup_log_names_the_transport_and_only_host_calls_keep_fd_1_out_of_the_frames() {
    let script = apps().join("features.wsgi");
    let server = Wasgi::start(&[script.to_str().unwrap(), "--instances", "1"]);
    let log = server.log.text();
    let ready = log.lines().find(|l| l.contains("instance(s) ready")).unwrap_or_else(|| panic!("no ready line:\n{log}"));
    let r = server.get("/fd1");
    if own_build() {
        assert!(ready.contains("frames over host calls"), "the own build uses the host calls: {ready}");
        // fd 1 is only the log: raw bytes written there neither break the
        // response nor the instance.
        assert_eq!((r.status, r.text().as_str()), (200, "wrote to fd 1\n"), "{}", server.log.text());
        let log = server.log.wait_for("raw-fd1-bytes", Duration::from_secs(10));
        let line = log.lines().find(|l| l.contains("raw-fd1-bytes")).unwrap();
        assert!(line.contains("app=features.wsgi") && line.contains("request="), "logged as the app's output: {line}");
        assert!(!log.contains("instance lost"), "{log}");
    } else {
        assert!(ready.contains("frames over stdio"), "the pinned build uses stdin/stdout: {ready}");
        // There fd 1 carries the frames: stray bytes break that instance
        // (and only that request), and the log says why.
        assert_eq!(r.status, 502, "{}", r.text());
        server.log.wait_for("something other than the bridge wrote to fd 1", Duration::from_secs(10));
        server.log.wait_for("replacement instance ready", Duration::from_secs(60));
    }
    assert_eq!(server.get("/head").text(), "hello");
}

/// What a module imports from `module` and exports, each function with its
/// wasm parameter and result types.
struct Abi {
    imports: Vec<(String, Vec<wasmparser::ValType>, Vec<wasmparser::ValType>)>,
    exports: Vec<(String, Vec<wasmparser::ValType>, Vec<wasmparser::ValType>)>,
}

fn abi_of(wasm: &std::path::Path, module: &str) -> Abi {
    use wasmparser::{ExternalKind, Parser, Payload, TypeRef};
    let bytes = std::fs::read(wasm).unwrap_or_else(|e| panic!("cannot read {}: {e}", wasm.display()));
    let (mut types, mut functions, mut imported_functions) = (Vec::new(), Vec::new(), 0u32);
    let mut abi = Abi { imports: Vec::new(), exports: Vec::new() };
    let mut exported = Vec::new();
    for payload in Parser::new(0).parse_all(&bytes) {
        match payload.expect("a valid wasm module") {
            Payload::TypeSection(reader) => {
                for ty in reader.into_iter_err_on_gc_types() {
                    let ty = ty.unwrap();
                    types.push((ty.params().to_vec(), ty.results().to_vec()));
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.unwrap();
                    if let TypeRef::Func(index) = import.ty {
                        imported_functions += 1;
                        if import.module == module {
                            let (params, results) = types[index as usize].clone();
                            abi.imports.push((import.name.to_owned(), params, results));
                        }
                    }
                }
            }
            Payload::FunctionSection(reader) => functions.extend(reader.into_iter().map(Result::unwrap)),
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.unwrap();
                    if export.kind == ExternalKind::Func {
                        exported.push((export.name.to_owned(), export.index));
                    }
                }
            }
            _ => {}
        }
    }
    for (name, index) in exported {
        let ty = functions[(index - imported_functions) as usize];
        let (params, results) = types[ty as usize].clone();
        abi.exports.push((name, params, results));
    }
    abi
}

/// The ABI table's types as wasmparser spells them.
fn wasm_types(types: &[wasgi::sandbox::abi::WasmType]) -> Vec<wasmparser::ValType> {
    use wasgi::sandbox::abi::WasmType;
    types.iter().map(|t| match t {
        WasmType::I32 => wasmparser::ValType::I32,
        WasmType::I64 => wasmparser::ValType::I64,
    }).collect()
}

/// The host-call ABI as built into the interpreters, against the one table
/// the host links by (`sandbox::abi`; its unit tests hold the C
/// sources to the same table): our build imports exactly the host calls,
/// with their types, and its reactor exports what the host calls in it; the
/// pinned build imports none.
#[test]
fn the_built_interpreters_import_and_export_what_the_abi_table_says() {
    use wasgi::sandbox::abi::{all_imports, GUEST_EXPORTS, MODULE};
    let pinned = abi_of(&wasgi_tests::pinned_interpreter(), MODULE);
    assert!(pinned.imports.is_empty(), "the pinned 3.12 build imports {:?} from {MODULE}", pinned.imports);
    if !own_build() {
        return;
    }
    let python = wasgi_tests::own_interpreter();
    let ours = abi_of(&python, MODULE);
    let mut expected: Vec<_> = all_imports().map(|c| (c.name.to_owned(), wasm_types(c.params), wasm_types(c.results))).collect();
    let mut imported = ours.imports;
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    imported.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(imported, expected, "{} imports from {MODULE}", python.display());
    let reactor = python.with_file_name("python-reactor.wasm");
    let reactor_abi = abi_of(&reactor, MODULE);
    assert_eq!(reactor_abi.imports.len(), all_imports().count(), "{} imports the host calls too", reactor.display());
    for export in GUEST_EXPORTS {
        let found = reactor_abi.exports.iter().find(|(name, _, _)| name == export.name);
        let (_, params, results) = found.unwrap_or_else(|| panic!("{} does not export {}", reactor.display(), export.name));
        assert_eq!((params, results), (&wasm_types(export.params), &wasm_types(export.results)), "{}", export.name);
    }
}
