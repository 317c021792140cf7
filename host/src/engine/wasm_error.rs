//! wasmtime's errors as wasgi's: the one conversion, which keeps the cause
//! chain.
//!
//! wasmtime 48 has an error type of its own, `wasmtime::Error`, on which
//! anyhow's `.context()` does not work. With wasmtime's `anyhow` feature it
//! converts into an `anyhow::Error` whole: every cause stays in the chain
//! (`{:#}` prints them all, the text it always had) and what it can be
//! downcast to (a trap, a guest's exit status) stays reachable. A bare `?`
//! in a function that returns `anyhow::Result` makes that conversion;
//! [`WasmContext`] makes it with a context in front. Never format such an
//! error into a new message (`anyhow!("{e:#}")`): the text survives, the
//! causes do not.

use std::fmt::Display;

/// `.context()` for a `wasmtime::Result`, giving an `anyhow::Result`.
pub trait WasmContext<T> {
    /// The error, converted whole, under `context`.
    fn wasm_context<C>(self, context: C) -> anyhow::Result<T>
    where
        C: Display + Send + Sync + 'static;

    /// The error, converted whole, under the context `context()` makes
    /// (only on the error path).
    fn with_wasm_context<C, F>(self, context: F) -> anyhow::Result<T>
    where
        C: Display + Send + Sync + 'static,
        F: FnOnce() -> C;
}

impl<T> WasmContext<T> for wasmtime::Result<T> {
    fn wasm_context<C>(self, context: C) -> anyhow::Result<T>
    where
        C: Display + Send + Sync + 'static,
    {
        anyhow::Context::context(self.map_err(anyhow::Error::from), context)
    }

    fn with_wasm_context<C, F>(self, context: F) -> anyhow::Result<T>
    where
        C: Display + Send + Sync + 'static,
        F: FnOnce() -> C,
    {
        anyhow::Context::with_context(self.map_err(anyhow::Error::from), context)
    }
}

#[cfg(test)]
mod tests {
    use super::WasmContext;

    /// A cause of wasmtime's kind, below a context of wasmtime's.
    fn failing() -> wasmtime::Result<()> {
        let cause = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        wasmtime::error::Context::context(Err::<(), _>(cause), "cannot map the snapshot")
    }

    #[test]
    fn the_chain_prints_as_the_flattened_message_did() {
        let flattened = failing().map_err(|e| anyhow::anyhow!("cannot start: {e:#}")).unwrap_err();
        let converted = failing().wasm_context("cannot start").unwrap_err();
        assert_eq!(format!("{converted:#}"), format!("{flattened:#}"));
        assert_eq!(format!("{converted:#}"), "cannot start: cannot map the snapshot: no such file");
        let lazily = failing().with_wasm_context(|| format!("cannot start {}", 1)).unwrap_err();
        assert_eq!(format!("{lazily:#}"), "cannot start 1: cannot map the snapshot: no such file");
    }

    #[test]
    fn the_causes_stay_reachable() {
        let converted = failing().wasm_context("cannot start").unwrap_err();
        assert_eq!(converted.chain().count(), 3, "{converted:?}");
        let io = converted.downcast_ref::<std::io::Error>().expect("the root cause is still an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        // What the old conversion kept: the text only.
        let flattened = failing().map_err(|e| anyhow::anyhow!("{e:#}")).unwrap_err();
        assert!(flattened.downcast_ref::<std::io::Error>().is_none());
    }

    #[test]
    fn a_guest_exit_status_survives_a_bare_question_mark() {
        fn run() -> anyhow::Result<()> {
            Err::<(), _>(wasmtime::Error::new(wasmtime_wasi::I32Exit(3)))?;
            Ok(())
        }
        let e = run().unwrap_err();
        assert_eq!(e.downcast_ref::<wasmtime_wasi::I32Exit>().map(|x| x.0), Some(3));
    }
}
