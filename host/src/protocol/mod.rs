//! The wire format between the host and the bridge (guest/bridge/):
//! frames of a kind byte, a length and a payload, the same whether they
//! travel over the guest's stdin and stdout or through host calls.
//!
//! May use: nothing else in the crate (a leaf: the pool speaks it to the
//! bridge, the sandbox carries it).

pub mod frames;
