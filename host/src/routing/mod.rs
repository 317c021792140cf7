//! Which app serves a request: the Host header (exact names, then `*.`
//! wildcards, then `*`) and the longest mount prefix, and whether the
//! client's address may reach it (`allow` / `deny`, [`crate::spec::access`]).
//!
//! May use: `pool` (a route leads to its group), `spec`.

pub mod router;
