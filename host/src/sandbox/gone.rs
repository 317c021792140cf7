//! Why a guest ended: every way the host loses an instance, as a value.
//!
//! An instance that ended in any of these ways is spent: it is discarded
//! and its group starts a replacement. The exchange matches on the variant
//! to answer the client (a limit the request ran into is a 504, anything
//! else a 502) and the log prints it. Each variant prints the text the log
//! has always shown for it.
//!
//! Not among them: the memory limit. A guest whose linear memory may not
//! grow sees `memory.grow` fail (CPython raises `MemoryError`, the request
//! gets a 500) and the instance serves on.

use std::fmt;
use std::time::Duration;

use crate::protocol::frames::{FrameError, Kind};
use crate::sandbox::state::CpuLimitExceeded;

/// Why an instance can serve no more: how its guest's run ended, or why the
/// host stopped talking to it.
#[derive(Debug, thiserror::Error)]
pub enum Gone {
    /// The guest's entry point returned (the bridge left its serve loop
    /// without exiting).
    #[error("the guest returned from _start")]
    Returned,
    /// The guest exited (`sys.exit`, `os._exit`, the bridge after an error
    /// it cannot go on from) with this status.
    #[error("the guest exited with status {0}")]
    Exited(i32),
    /// A wasm trap: a bad memory access, `unreachable`, a stack overflow.
    #[error("the guest trapped: {trap} ({error:#})")]
    Trapped { trap: wasmtime::Trap, error: wasmtime::Error },
    /// The request used up its cpu_time_limit: the epoch callback stopped
    /// the guest ([`crate::sandbox::state::CpuBudget`]).
    #[error("the guest failed: {0:#}")]
    CpuLimit(wasmtime::Error),
    /// Any other error that ended the guest's run: a host call the guest
    /// misused (see [`crate::sandbox::hostcalls`]), or one that failed.
    #[error("the guest failed: {0:#}")]
    Failed(wasmtime::Error),
    /// The deadline passed (request_timeout, startup_timeout): the guest was
    /// stopped wherever it was and is never resumed.
    #[error("stopped after {:.1}s (deadline)", .0.as_secs_f64())]
    Deadline(Duration),
    /// The guest's frames do not decode: something other than the bridge
    /// wrote to them, or the bridge declared an oversized frame.
    #[error(transparent)]
    Frames(#[from] FrameError),
    /// The guest sent a frame the exchange does not expect during a request.
    #[error("protocol error: unexpected {0:?} frame during a request")]
    UnexpectedFrame(Kind),
    /// The guest's end of a frame channel closed.
    #[error("the guest closed its {0}")]
    Closed(Channel),
    /// The instance was asked to run after its guest had ended.
    #[error("the guest had already stopped")]
    AlreadyStopped,
}

impl Gone {
    /// A short name for why, as the metrics count instance ends.
    pub fn reason(&self) -> &'static str {
        match self {
            Gone::Returned => "returned",
            Gone::Exited(_) => "exited",
            Gone::Trapped { .. } => "trapped",
            Gone::CpuLimit(_) => "cpu_time_limit",
            Gone::Failed(_) => "failed",
            Gone::Deadline(_) => "request_timeout",
            Gone::Frames(_) | Gone::UnexpectedFrame(_) => "protocol_error",
            Gone::Closed(_) => "closed",
            Gone::AlreadyStopped => "already_stopped",
        }
    }
}

/// One direction of the frames between host and guest. With host calls
/// they are the channels `recv` and `send` use; the log names them stdin
/// and stdout either way, as it always has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Host → guest (the guest's stdin).
    ToGuest,
    /// Guest → host (the guest's stdout).
    FromGuest,
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Channel::ToGuest => "stdin",
            Channel::FromGuest => "stdout",
        })
    }
}

impl Gone {
    /// How the guest's run (its entry point, called to the end) ended.
    pub(crate) fn from_run(outcome: wasmtime::Result<()>) -> Gone {
        let Err(error) = outcome else { return Gone::Returned };
        if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Gone::Exited(exit.0)
        } else if error.downcast_ref::<CpuLimitExceeded>().is_some() {
            Gone::CpuLimit(error)
        } else if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
            Gone::Trapped { trap: *trap, error }
        } else {
            Gone::Failed(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_told_apart_by_what_ended_it() {
        assert!(matches!(Gone::from_run(Ok(())), Gone::Returned));
        let exit = wasmtime::Error::new(wasmtime_wasi::I32Exit(3)).context("error while executing");
        assert!(matches!(Gone::from_run(Err(exit)), Gone::Exited(3)));
        let cpu = wasmtime::Error::new(CpuLimitExceeded).context("error while executing at wasm backtrace");
        assert!(matches!(Gone::from_run(Err(cpu)), Gone::CpuLimit(_)));
        let trap = wasmtime::Error::new(wasmtime::Trap::UnreachableCodeReached);
        assert!(matches!(Gone::from_run(Err(trap)), Gone::Trapped { trap: wasmtime::Trap::UnreachableCodeReached, .. }));
        let other = wasmtime::format_err!("wasgi.read: no frame is pending (call recv first)");
        assert!(matches!(Gone::from_run(Err(other)), Gone::Failed(_)));
    }

    /// The log lines that print a `Gone` read as they did when it was a string.
    #[test]
    fn each_prints_the_text_the_log_always_had() {
        let cases: Vec<(Gone, String)> = vec![
            (Gone::from_run(Ok(())), "the guest returned from _start".into()),
            (Gone::from_run(Err(wasmtime::Error::new(wasmtime_wasi::I32Exit(1)))), "the guest exited with status 1".into()),
            (
                Gone::from_run(Err(wasmtime::Error::new(wasmtime::Trap::StackOverflow).context("wasm backtrace"))),
                format!("the guest trapped: {} (wasm backtrace: {})", wasmtime::Trap::StackOverflow, wasmtime::Trap::StackOverflow),
            ),
            (Gone::from_run(Err(wasmtime::Error::new(CpuLimitExceeded))), "the guest failed: cpu_time_limit exceeded".into()),
            (Gone::from_run(Err(wasmtime::format_err!("a host call failed"))), "the guest failed: a host call failed".into()),
            (Gone::Deadline(Duration::from_millis(2500)), "stopped after 2.5s (deadline)".into()),
            (Gone::from(FrameError::TooLong(5 << 20)), FrameError::TooLong(5 << 20).to_string()),
            (Gone::UnexpectedFrame(Kind::Ready), "protocol error: unexpected Ready frame during a request".into()),
            (Gone::Closed(Channel::ToGuest), "the guest closed its stdin".into()),
            (Gone::Closed(Channel::FromGuest), "the guest closed its stdout".into()),
            (Gone::AlreadyStopped, "the guest had already stopped".into()),
        ];
        for (gone, text) in cases {
            assert_eq!(gone.to_string(), text, "{gone:?}");
        }
    }
}
