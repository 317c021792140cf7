//! A process group's pool of instances, and one request's exchange with one
//! of them.
//!
//! - [`group`]: the bounded queue, the workers that each own an instance
//!   (one kind per isolation mode), their replacement (maximum_requests,
//!   crashes, reloads) with backoff, inactivity stops and reload_on_change.
//! - [`exchange`]: a request's frames to the bridge and its response back,
//!   the body streamed both ways.
//! - [`accounting`]: what each instance is doing and what the group has
//!   used (CPU, memory, restarts, limits hit), for /metrics and /status.
//!
//! May use: `sandbox`, `engine`, `protocol`, `spec`.

pub mod accounting;
pub mod exchange;
pub mod group;
