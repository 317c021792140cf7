//! End-to-end tests live in tests/*.rs; this crate holds no code.
