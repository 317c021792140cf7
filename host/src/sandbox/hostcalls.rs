//! The bridge's host calls: frames through wasm imports instead of stdio.
//!
//! wasgi's own CPython 3.13 build carries a built-in module `_wasgi`
//! (python-wasm/wasgi/_wasgimodule.c, which documents the same contract)
//! whose functions are these imports from module `wasgi`. The frames are
//! those of [`crate::protocol::frames`]; only the way they travel changes: the host
//! reads a guest frame's payload straight from linear memory and writes a
//! host frame's payload straight into a `bytes` object the guest allocated,
//! with no encoding, pipe or Python-level buffering in between. The frames
//! still go through the instance's channels, so [`crate::sandbox::instance::GuestIo`]
//! and everything above it see no difference.
//!
//! The ABI is written once, in [`crate::sandbox::abi`]; [`add_to_linker`]
//! defines the calls of its [`HOST_CALLS`](crate::sandbox::abi::HOST_CALLS) by their entries.
//!
//! `recv` and `send` are async: a guest waiting for a frame, or for room in a
//! full channel, is a parked future. Misuse (a `read` with no frame pending or
//! of the wrong length, a pointer outside memory, an oversized frame) traps,
//! which ends the instance like a broken frame on stdout does.
//!
//! `WASGI_FRAMES=stdio` in the host's environment makes such a module use
//! stdio anyway (the bridge is told so), to compare the two.
//!
//! A module that imports these gets no frames on stdio: its stdin is empty
//! and its stdout goes to the log like its stderr, so raw writes to fd 1
//! cannot corrupt a response. Modules that do not import them (the pinned
//! 3.12 build) link the same way and keep the stdio path.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::mpsc;
use wasmtime::{Caller, Linker};

use crate::protocol::frames::MAX_GUEST_FRAME;
use crate::sandbox::abi::{guest_bytes, memory, MemorySlot, LOG, MODULE, READ, RECV, SEND};
use crate::sandbox::stdio::{LogTag, MAX_LOG_RECORD};

/// The guest's ends of the instance's channels, used by the host calls.
pub struct HostEnd {
    /// Encoded frames from the host, one frame per message.
    from_host: mpsc::Receiver<Bytes>,
    /// Encoded frames to the host.
    to_host: mpsc::Sender<Bytes>,
    /// The payload `recv` announced, until `read` takes it.
    pending: Option<Bytes>,
    tag: LogTag,
}

impl HostEnd {
    pub fn new(from_host: mpsc::Receiver<Bytes>, to_host: mpsc::Sender<Bytes>, tag: LogTag) -> HostEnd {
        HostEnd { from_host, to_host, pending: None, tag }
    }
}

/// True if `module` imports the host calls (it is our own build).
pub fn imported_by(module: &wasmtime::Module) -> bool {
    module.imports().any(|i| i.module() == MODULE)
}

/// True if `WASGI_FRAMES=stdio` asks for the stdio path even where the host
/// calls are available (to compare the two); `hostcalls` or unset is the
/// default.
pub fn stdio_requested() -> anyhow::Result<bool> {
    match std::env::var("WASGI_FRAMES") {
        Err(std::env::VarError::NotPresent) => Ok(false),
        Ok(v) if v.is_empty() || v == "hostcalls" => Ok(false),
        Ok(v) if v == "stdio" => Ok(true),
        Ok(v) => anyhow::bail!("WASGI_FRAMES={v:?}: expected `hostcalls` (the default where the interpreter has them) or `stdio`"),
        Err(e) => anyhow::bail!("WASGI_FRAMES: {e}"),
    }
}

/// A store's data that can hold the guest's ends of the channels (the
/// sandbox's `GuestState`).
pub trait HostCalls: MemorySlot + Send + 'static {
    fn host_end(&mut self) -> Option<&mut HostEnd>;
}

/// Defines the host calls of [`HOST_CALLS`](crate::sandbox::abi::HOST_CALLS) in `linker`.
pub fn add_to_linker<T: HostCalls>(linker: &mut Linker<T>) -> anyhow::Result<()> {
    linker.func_wrap_async(MODULE, RECV.name, |mut caller: Caller<'_, T>, (): ()| {
        Box::new(async move {
            let end = host_end(&mut caller)?;
            end.pending = None;
            let Some(frame) = end.from_host.recv().await else {
                return Ok(-1i64);
            };
            let (kind, payload) = split_frame(frame)?;
            let len = payload.len() as i64;
            if !payload.is_empty() {
                end.pending = Some(payload);
            }
            Ok((i64::from(kind) << 32) | len)
        })
    })?;
    linker.func_wrap(MODULE, READ.name, |mut caller: Caller<'_, T>, ptr: u32, len: u32| -> wasmtime::Result<i32> {
        let Some(payload) = host_end(&mut caller)?.pending.take() else {
            wasmtime::bail!("wasgi.read: no frame is pending (call recv first)");
        };
        if payload.len() != len as usize {
            wasmtime::bail!("wasgi.read: the pending frame has {} bytes, not {len}", payload.len());
        }
        let memory = memory(&mut caller)?;
        memory
            .write(&mut caller, ptr as usize, &payload)
            .map_err(|_| wasmtime::format_err!("wasgi.read: [{ptr}, +{len}) is outside the guest's memory"))?;
        Ok(0)
    })?;
    linker.func_wrap_async(MODULE, SEND.name, |mut caller: Caller<'_, T>, (kind, ptr, len): (u32, u32, u32)| {
        Box::new(async move {
            if len as usize > MAX_GUEST_FRAME {
                wasmtime::bail!("wasgi.send: a {len}-byte frame is over the {MAX_GUEST_FRAME}-byte limit");
            }
            let kind = u8::try_from(kind).map_err(|_| wasmtime::format_err!("wasgi.send: frame kind {kind} is not a byte"))?;
            let memory = memory(&mut caller)?;
            let payload = guest_bytes(memory.data(&caller), ptr, len, "send")?;
            let mut frame = BytesMut::with_capacity(5 + payload.len());
            frame.put_u8(kind);
            frame.put_u32(len);
            frame.extend_from_slice(payload);
            let to_host = &host_end(&mut caller)?.to_host;
            Ok(if to_host.send(frame.freeze()).await.is_ok() { 0i32 } else { -1 })
        })
    })?;
    linker.func_wrap(MODULE, LOG.name, |mut caller: Caller<'_, T>, level: u32, ptr: u32, len: u32| -> wasmtime::Result<()> {
        let memory = memory(&mut caller)?;
        let tag = host_end(&mut caller)?.tag.clone();
        let message = guest_bytes(memory.data(&caller), ptr, len, "log")?;
        // Only the part that will be logged is looked at (and copied).
        let kept = message.len().min(MAX_LOG_RECORD);
        let level: &[u8] = match level {
            0 => b"error",
            1 => b"warn",
            _ => b"info",
        };
        tag.record(level, &message[..kept], message.len() - kept);
        Ok(())
    })?;
    Ok(())
}

fn host_end<'a, T: HostCalls>(caller: &'a mut Caller<'_, T>) -> wasmtime::Result<&'a mut HostEnd> {
    caller
        .data_mut()
        .host_end()
        .ok_or_else(|| wasmtime::format_err!("the wasgi host calls are not connected for this instance"))
}

/// A host frame's kind and payload; the host sends exactly one encoded frame
/// per channel message.
fn split_frame(frame: Bytes) -> wasmtime::Result<(u8, Bytes)> {
    if frame.len() < 5 {
        wasmtime::bail!("a host frame of {} bytes has no header", frame.len());
    }
    let len = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
    if frame.len() != 5 + len {
        wasmtime::bail!("a host frame declares {len} bytes but carries {}", frame.len() - 5);
    }
    Ok((frame[0], frame.slice(5..)))
}
