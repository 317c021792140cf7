//! The ABI between the host and our CPython build, written once: each host
//! call's name, wasm types and contract ([`HOST_CALLS`]: frames and log,
//! defined in [`crate::sandbox::hostcalls`]; [`NET_CALLS`]: outbound
//! connections, defined in [`crate::sandbox::net`]), and what the reactor
//! build exports for the host to call ([`GUEST_EXPORTS`]). This module's
//! tests check the C sources' declarations (python-wasm/wasgi/_wasgimodule.c,
//! reactor.c) against these tables; `sandbox::net`'s check the linker's.

use wasmtime::{Caller, Memory};

/// The import module name.
pub const MODULE: &str = "wasgi";

/// A wasm value type of the ABI (wasm32: pointers and lengths are `i32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WasmType {
    I32,
    I64,
}

/// One function of the ABI between the host and our CPython build.
#[derive(Debug)]
pub struct AbiFunction {
    pub name: &'static str,
    pub params: &'static [WasmType],
    pub results: &'static [WasmType],
    /// The contract, for a person.
    pub what: &'static str,
}

use self::WasmType::{I32, I64};

/// `i64 recv()`.
pub const RECV: AbiFunction = AbiFunction {
    name: "recv",
    params: &[],
    results: &[I64],
    what: "wait for the next host -> guest frame: -1 when the host has closed the channel \
           (the guest exits), else (kind << 32) | payload length",
};
/// `i32 read(ptr, len)`.
pub const READ: AbiFunction = AbiFunction {
    name: "read",
    params: &[I32, I32],
    results: &[I32],
    what: "copy the payload recv announced to [ptr, ptr+len); len must be its length; \
           returns 0 (not called for an empty payload)",
};
/// `i32 send(kind, ptr, len)`.
pub const SEND: AbiFunction = AbiFunction {
    name: "send",
    params: &[I32, I32, I32],
    results: &[I32],
    what: "one guest -> host frame from [ptr, ptr+len): 0, or -1 when the host has closed the channel",
};
/// `log(level, ptr, len)`.
pub const LOG: AbiFunction = AbiFunction {
    name: "log",
    params: &[I32, I32, I32],
    results: &[],
    what: "one log record, UTF-8; level 0 error, 1 warn, 2 info; logged at once, tagged with \
           the request, cut to 16 KiB and rate-limited (stdio::LogTag)",
};

/// The frame and log calls, each imported from [`MODULE`] by `_wasgi`
/// (python-wasm/wasgi/_wasgimodule.c) and defined by
/// [`crate::sandbox::hostcalls::add_to_linker`]; the outbound-connection
/// calls are [`NET_CALLS`].
pub const HOST_CALLS: [AbiFunction; 4] = [RECV, READ, SEND, LOG];

/// Every import of module [`MODULE`]: the frame calls and the network calls.
pub fn all_imports() -> impl Iterator<Item = &'static AbiFunction> {
    HOST_CALLS.iter().chain(NET_CALLS.iter())
}

/// `wasgi_init()`: the bridge imports the app and returns (the snapshot is taken after it).
pub const WASGI_INIT: AbiFunction = AbiFunction {
    name: "wasgi_init",
    params: &[],
    results: &[],
    what: "initialise the interpreter from the WASI arguments and run the bridge, which \
           imports the app and returns without serving",
};
/// `wasgi_serve()`: a snapshot's entry point.
pub const WASGI_SERVE: AbiFunction = AbiFunction {
    name: "wasgi_serve",
    params: &[],
    results: &[],
    what: "run the bridge's serve loop (Ready, then requests) in the interpreter wasgi_init left",
};

/// What the reactor build (python-wasm/wasgi/reactor.c) exports for the
/// host to call, besides wasi-libc's `_initialize`.
pub const GUEST_EXPORTS: [AbiFunction; 2] = [WASGI_INIT, WASGI_SERVE];

pub const NET_RESOLVE: AbiFunction = AbiFunction {
    name: "net_resolve",
    params: &[I32, I32, I32, I32],
    results: &[I32],
    what: "net_resolve(name_ptr, name_len, out_ptr, out_cap): look up a name some grant names; writes the \
           addresses, one textual IP per line, as many as fit; returns the bytes written, -EACCES (no grant \
           names it), -ENOENT (it does not resolve)",
};
pub const NET_CONNECT: AbiFunction = AbiFunction {
    name: "net_connect",
    params: &[I32, I32, I32, I32],
    results: &[I32],
    what: "net_connect(addr_ptr, addr_len, port, timeout_ms): connect to a textual IP (or unix:/path) if a grant \
           allows it; returns a handle, or -errno (-EACCES denied, -EMFILE over max_connections); with \
           timeout_ms 0 the handle comes back at once with the connect in progress",
};
pub const NET_SEND: AbiFunction = AbiFunction {
    name: "net_send",
    params: &[I32, I32, I32, I32],
    results: &[I32],
    what: "net_send(handle, ptr, len, timeout_ms): bytes sent, or -errno (-EAGAIN with timeout 0, -ETIMEDOUT)",
};
pub const NET_RECV: AbiFunction = AbiFunction {
    name: "net_recv",
    params: &[I32, I32, I32, I32, I32],
    results: &[I32],
    what: "net_recv(handle, ptr, len, flags, timeout_ms): bytes received (0: end of stream), or -errno; \
           flags 1 = peek; len 0 with timeout 0 reports the connection's state (0, -EAGAIN connecting, its error)",
};
pub const NET_POLL: AbiFunction = AbiFunction {
    name: "net_poll",
    params: &[I32, I32, I32],
    results: &[I32],
    what: "net_poll(entries_ptr, count, timeout_ms): entries of (i32 handle, u16 events, u16 revents), little \
           endian; bits 1 readable, 2 writable, 4 error, 8 hang-up, 16 no such handle; revents written in \
           place; returns how many are ready",
};
pub const NET_CLOSE: AbiFunction = AbiFunction {
    name: "net_close",
    params: &[I32, I32],
    results: &[I32],
    what: "net_close(handle, how): shut down reading (0), writing (1), both (2), or close (3); 0 or -EBADF",
};
pub const NET_NAME: AbiFunction = AbiFunction {
    name: "net_name",
    params: &[I32, I32, I32, I32],
    results: &[I32],
    what: "net_name(handle, peer, out_ptr, out_cap): the local (peer 0) or remote address, 'ip port' or \
           unix:/path; returns its length or -errno",
};

/// The outbound-connection host calls, imported from [`MODULE`] by `_wasgi`
/// and defined by [`crate::sandbox::net::add_to_linker`].
pub const NET_CALLS: [AbiFunction; 7] = [NET_RESOLVE, NET_CONNECT, NET_SEND, NET_RECV, NET_POLL, NET_CLOSE, NET_NAME];

/// A store's data that keeps the guest's memory once a host call looked it
/// up (the sandbox's `GuestState`): both sets of host calls use it.
pub trait MemorySlot {
    fn memory_slot(&mut self) -> &mut Option<Memory>;
}

/// The guest's linear memory, looked up by name at the store's first host
/// call only (a lookup by name at every call showed in profiles).
pub(crate) fn memory<T: MemorySlot>(caller: &mut Caller<'_, T>) -> wasmtime::Result<Memory> {
    if let Some(memory) = *caller.data_mut().memory_slot() {
        return Ok(memory);
    }
    let found = caller
        .get_export("memory")
        .and_then(|e| e.into_memory())
        .ok_or_else(|| wasmtime::format_err!("python.wasm exports no memory"))?;
    *caller.data_mut().memory_slot() = Some(found);
    Ok(found)
}

pub(crate) fn guest_bytes<'m>(memory: &'m [u8], ptr: u32, len: u32, call: &str) -> wasmtime::Result<&'m [u8]> {
    let start = ptr as usize;
    memory
        .get(start..start + len as usize)
        .ok_or_else(|| wasmtime::format_err!("wasgi.{call}: [{ptr}, +{len}) is outside the guest's memory"))
}

/// The C sources of our CPython build checked against [`HOST_CALLS`],
/// [`NET_CALLS`] and [`GUEST_EXPORTS`] (the linker's definitions are checked
/// in `sandbox::net`, which links both sets).
#[cfg(test)]
mod c_sources {
    use super::*;

    /// A function a C source declares as a wasm import or export.
    #[derive(Debug, Clone)]
    struct Declared {
        /// `import_module`; `None` for an export.
        module: Option<String>,
        name: String,
        params: Vec<WasmType>,
        results: Vec<WasmType>,
        /// `file:line`, for the failure message.
        at: String,
    }

    const C_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../python-wasm/wasgi");
    const C_FILES: [&str; 2] = ["_wasgimodule.c", "reactor.c"];

    /// The source with comments blanked out (newlines kept, so lines still count).
    fn without_comments(source: &str) -> String {
        let b = source.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        let blank = |c: u8| if c == b'\n' { b'\n' } else { b' ' };
        while i < b.len() {
            if b[i..].starts_with(b"/*") {
                let end = source[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
                out.extend(b[i..end].iter().map(|c| blank(*c)));
                i = end;
            } else if b[i..].starts_with(b"//") {
                while i < b.len() && b[i] != b'\n' {
                    out.push(b' ');
                    i += 1;
                }
            } else if b[i] == b'"' || b[i] == b'\'' {
                let quote = b[i];
                out.push(b[i]);
                i += 1;
                while i < b.len() && b[i] != quote {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        out.push(b[i]);
                        i += 1;
                    }
                    out.push(b[i]);
                    i += 1;
                }
                if i < b.len() {
                    out.push(b[i]);
                    i += 1;
                }
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).expect("blanking keeps UTF-8")
    }

    /// The string literal `"x"` at the start of `text` (after blanks).
    fn literal(text: &str) -> Option<&str> {
        let rest = text.trim_start().strip_prefix('"')?;
        rest.find('"').map(|end| &rest[..end])
    }

    /// The index of the `)` that closes the `(` at `open`.
    fn closing(text: &str, open: usize) -> Option<usize> {
        let mut depth = 0;
        for (i, c) in text[open..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 1 => return Some(open + i),
                ')' => depth -= 1,
                _ => {}
            }
        }
        None
    }

    /// The argument of `key(...)` inside an attribute list, a literal or a macro parameter.
    fn attribute_arg<'a>(attribute: &'a str, key: &str) -> Option<&'a str> {
        let start = attribute.find(&format!("{key}("))? + key.len() + 1;
        let end = attribute[start..].find(')')? + start;
        Some(attribute[start..end].trim())
    }

    /// The wasm type of a C type on wasm32 (pointers, `int`, `long` and
    /// smaller integers are `i32`); `Err` for what the ABI does not use.
    fn wasm_type(c: &str) -> Result<WasmType, String> {
        if c.contains('*') {
            return Ok(I32);
        }
        let words: Vec<&str> = c.split_whitespace().filter(|w| !matches!(*w, "const" | "volatile" | "signed" | "unsigned")).collect();
        match words.join(" ").as_str() {
            "int64_t" | "uint64_t" | "long long" => Ok(I64),
            "" | "int" | "long" | "short" | "char" | "_Bool" | "bool" | "size_t" | "int32_t" | "uint32_t" | "int16_t" | "uint16_t" | "int8_t" | "uint8_t" => Ok(I32),
            other => Err(format!("C type {other:?} has no wasm type in this ABI")),
        }
    }

    /// `RET NAME(PARAMS)` → (params, results); parameter names are dropped.
    fn signature(text: &str) -> Result<(Vec<WasmType>, Vec<WasmType>), String> {
        let open = text.find('(').ok_or_else(|| format!("no parameter list in {text:?}"))?;
        let close = text.rfind(')').ok_or_else(|| format!("no parameter list in {text:?}"))?;
        let head = text[..open].trim();
        let name_at = head.rfind(|c: char| !(c.is_alphanumeric() || c == '_')).map_or(0, |i| i + 1);
        let ret = head[..name_at].trim();
        if ret.is_empty() || head[name_at..].is_empty() {
            return Err(format!("cannot read a return type and name in {text:?}"));
        }
        let results = if ret == "void" { Vec::new() } else { vec![wasm_type(ret)?] };
        let params_text = text[open + 1..close].trim();
        let mut params = Vec::new();
        if params_text != "void" && !params_text.is_empty() {
            for param in params_text.split(',') {
                let param = param.trim();
                // Drop the parameter's name: the last word, unless the
                // declaration is a type alone (`uint32_t`, `void *`).
                let ty = match param.rfind(|c: char| !(c.is_alphanumeric() || c == '_')) {
                    Some(i) if wasm_type(&param[i + 1..]).is_err() => &param[..=i],
                    None if wasm_type(param).is_err() => return Err(format!("cannot read parameter {param:?}")),
                    _ => param,
                };
                params.push(wasm_type(ty)?);
            }
        }
        Ok((params, results))
    }

    /// Every wasm import and export `source` declares, by `import_module` /
    /// `import_name` / `export_name` attributes, written out or through a
    /// `#define`d macro of one parameter.
    fn declared(file: &str, source: &str) -> Result<Vec<Declared>, String> {
        let code = without_comments(source);
        let line_of = |at: usize| format!("{file}:{}", code[..at].matches('\n').count() + 1);
        // Macros that stand for an import attribute: name → module.
        let mut macros = Vec::new();
        let mut body = String::with_capacity(code.len());
        for line in code.split_inclusive('\n') {
            let directive = line.trim_start();
            if let Some(define) = directive.strip_prefix('#').map(str::trim_start).and_then(|d| d.strip_prefix("define")) {
                if define.contains("import_name") || define.contains("export_name") {
                    let define = define.trim();
                    let name_end = define.find('(').ok_or_else(|| format!("{file}: cannot read the macro in {line:?}"))?;
                    let module = attribute_arg(define, "import_module").and_then(literal).ok_or_else(|| format!("{file}: macro {line:?} names no import_module"))?;
                    macros.push((define[..name_end].trim().to_owned(), module.to_owned()));
                }
                body.extend(line.chars().map(|c| if c == '\n' { '\n' } else { ' ' }));
            } else {
                body.push_str(line);
            }
        }
        let mut found = Vec::new();
        // Written-out attributes: `__attribute__((...))`.
        let mut written_out = 0;
        let mut from = 0;
        while let Some(at) = body[from..].find("__attribute__").map(|i| i + from) {
            let open = body[at..].find('(').map(|i| at + i).ok_or_else(|| format!("{}: cannot read the attribute", line_of(at)))?;
            let close = closing(&body, open).ok_or_else(|| format!("{}: unclosed attribute", line_of(at)))?;
            from = close + 1;
            let attribute = &body[open + 1..close];
            let (module, name) = if let Some(name) = attribute_arg(attribute, "export_name") {
                (None, name)
            } else if let Some(name) = attribute_arg(attribute, "import_name") {
                let module = attribute_arg(attribute, "import_module").and_then(literal).ok_or_else(|| format!("{}: an import without import_module", line_of(at)))?;
                (Some(module.to_owned()), name)
            } else {
                continue;
            };
            written_out += 1;
            let name = literal(name).ok_or_else(|| format!("{}: the name is not a string literal", line_of(at)))?;
            let end = body[from..].find([';', '{']).map_or(body.len(), |i| from + i);
            let (params, results) = signature(&body[from..end]).map_err(|e| format!("{}: {e}", line_of(at)))?;
            found.push(Declared { module, name: name.to_owned(), params, results, at: line_of(at) });
        }
        // Declarations through a macro.
        for (mac, module) in &macros {
            let mut from = 0;
            while let Some(at) = body[from..].find(mac.as_str()).map(|i| i + from) {
                from = at + mac.len();
                let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                if is_word(body[..at].chars().next_back()) || is_word(body[from..].chars().next()) {
                    continue;
                }
                let open = from + body[from..].find(|c: char| !c.is_whitespace()).unwrap_or(0);
                if !body[open..].starts_with('(') {
                    return Err(format!("{}: {mac} without arguments", line_of(at)));
                }
                let after = closing(&body, open).ok_or_else(|| format!("{}: unclosed {mac}(", line_of(at)))? + 1;
                let name = literal(&body[open + 1..after - 1]).ok_or_else(|| format!("{}: {mac}'s argument is not a string literal", line_of(at)))?;
                let end = body[after..].find([';', '{']).map_or(body.len(), |i| after + i);
                let (params, results) = signature(&body[after..end]).map_err(|e| format!("{}: {e}", line_of(at)))?;
                found.push(Declared { module: Some(module.clone()), name: name.to_owned(), params, results, at: line_of(at) });
            }
        }
        // Nothing that names a wasm import or export went unread.
        let named = ["import_name", "export_name"].iter().map(|k| body.matches(k).count()).sum::<usize>();
        if named != written_out {
            return Err(format!("{file}: {named} import/export attributes, {written_out} read"));
        }
        Ok(found)
    }

    /// What is wrong between the C declarations and a table of the ABI.
    fn mismatches(declared: &[Declared], table: &[AbiFunction], module: Option<&str>) -> Vec<String> {
        let mut wrong = Vec::new();
        for d in declared {
            if d.module.as_deref() != module {
                wrong.push(format!("{}: {} is declared with import module {:?}, the ABI's is {module:?}", d.at, d.name, d.module));
                continue;
            }
            match table.iter().find(|f| f.name == d.name) {
                None => wrong.push(format!("{}: {} is not in the ABI table", d.at, d.name)),
                Some(f) if f.params != d.params.as_slice() || f.results != d.results.as_slice() => wrong.push(format!(
                    "{}: {} is {:?} -> {:?} in C, {:?} -> {:?} in the ABI table",
                    d.at, d.name, d.params, d.results, f.params, f.results
                )),
                Some(_) => {}
            }
            if declared.iter().filter(|o| o.name == d.name && o.module == d.module).count() > 1 {
                wrong.push(format!("{}: {} is declared more than once", d.at, d.name));
            }
        }
        for f in table {
            if !declared.iter().any(|d| d.name == f.name && d.module.as_deref() == module) {
                wrong.push(format!("{} is in the ABI table but the C sources do not declare it", f.name));
            }
        }
        wrong
    }

    fn c_declarations() -> Vec<Declared> {
        let mut all = Vec::new();
        for file in C_FILES {
            let path = format!("{C_DIR}/{file}");
            let source = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
            all.extend(declared(file, &source).unwrap_or_else(|e| panic!("{e}")));
        }
        all
    }

    #[test]
    fn the_c_imports_are_the_host_calls() {
        let imports: Vec<Declared> = c_declarations().into_iter().filter(|d| d.module.is_some()).collect();
        let table: Vec<AbiFunction> = all_imports().map(|f| AbiFunction { ..*f }).collect();
        assert_eq!(imports.len(), table.len(), "{imports:#?}");
        let wrong = mismatches(&imports, &table, Some(MODULE));
        assert!(wrong.is_empty(), "the C side and HOST_CALLS disagree:\n{}", wrong.join("\n"));
    }

    #[test]
    fn the_c_exports_are_what_the_host_calls() {
        let exports: Vec<Declared> = c_declarations().into_iter().filter(|d| d.module.is_none()).collect();
        let wrong = mismatches(&exports, &GUEST_EXPORTS, None);
        assert!(wrong.is_empty(), "the C side and GUEST_EXPORTS disagree:\n{}", wrong.join("\n"));
    }

    /// The check reads what it must, and fails where C and the table part.
    #[test]
    fn the_check_sees_each_kind_of_disagreement() {
        let source = r#"
            /* IMPORT("comment") int ignored(void); */
            #define IMPORT(name) __attribute__((import_module("wasgi"), import_name(name)))
            IMPORT("recv") int64_t wasgi_recv(void);
            IMPORT("read") int32_t wasgi_read(void *buf);
            __attribute__((import_module("env"), import_name("send"))) int32_t s(uint32_t kind, const void *buf, uint32_t len);
            IMPORT("spare") void wasgi_spare(uint32_t);
            __attribute__((export_name("wasgi_serve")))
            void
            wasgi_serve(void)
            {
                exit(0);
            }
        "#;
        let all = declared("test.c", source).unwrap();
        let imports: Vec<Declared> = all.iter().filter(|d| d.module.is_some()).cloned().collect();
        assert_eq!(imports.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["send", "recv", "read", "spare"]);
        assert_eq!(imports[0].at, "test.c:6");
        assert_eq!((imports[0].params.as_slice(), imports[0].results.as_slice()), (&[I32, I32, I32][..], &[I32][..]));
        let wrong = mismatches(&imports, &HOST_CALLS, Some(MODULE));
        let expect = [
            "test.c:6: send is declared with import module Some(\"env\")",
            "test.c:5: read is [I32] -> [I32] in C, [I32, I32] -> [I32] in the ABI table",
            "test.c:7: spare is not in the ABI table",
            "send is in the ABI table but the C sources do not declare it",
            "log is in the ABI table but the C sources do not declare it",
        ];
        assert_eq!(wrong.len(), expect.len(), "{wrong:#?}");
        for (got, want) in wrong.iter().zip(expect) {
            assert!(got.starts_with(want), "{got:?} should start with {want:?}");
        }
        let exports: Vec<&Declared> = all.iter().filter(|d| d.module.is_none()).collect();
        assert_eq!(exports.len(), 1);
        assert_eq!((exports[0].name.as_str(), exports[0].params.len(), exports[0].results.len()), ("wasgi_serve", 0, 0));
        assert!(signature("float f(double x)").is_err(), "a type outside the ABI is an error, not a guess");
    }
}
