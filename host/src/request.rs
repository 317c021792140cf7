//! One request's trip through an instance: the host side of the bridge protocol.
//!
//! The exchange runs in its own task, apart from the HTTP handler, so that a
//! client that disconnects mid-response cannot leave the guest out of step:
//! the task keeps reading the guest's frames until `End`, tells it `Cancel`
//! at the next flow-control point so it stops and calls `close()`, and only
//! then gives the instance back.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{mpsc, oneshot};

use crate::frames::{self, Kind, ACK_BYTES, ACK_FRAMES};
use crate::group::{Group, Lease, Unavailable};
use crate::instance::Gone;

/// What the HTTP handler gets back first: the response head, or an error the
/// handler turns into a plain response.
pub enum Head {
    Response(StatusCode, HeaderMap),
    Error(StatusCode, &'static str),
}

/// The response body, fed by the exchange task.
pub struct ChannelBody(pub mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Per-request facts for the access log.
pub struct RequestInfo {
    pub id: u64,
    pub method: http::Method,
    pub target: String,
    pub started: Instant,
}

/// The request body, handed out in the slices the guest asks for.
struct BodyReader {
    body: Incoming,
    leftover: Bytes,
    ended: bool,
}

impl BodyReader {
    /// Up to `max` bytes; empty at the end of the body.
    async fn read(&mut self, max: usize) -> Result<Bytes, String> {
        while self.leftover.is_empty() && !self.ended {
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.leftover = data;
                    }
                }
                Some(Err(e)) => {
                    self.ended = true;
                    return Err(format!("{e}"));
                }
                None => self.ended = true,
            }
        }
        let n = max.min(self.leftover.len());
        Ok(self.leftover.split_to(n))
    }
}

/// Hop-by-hop headers belong to one connection, not to the app's response;
/// PEP 3333 forbids them, and HTTP/2 refuses them outright.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade" | "te" | "trailer"
    )
}

/// Parses the `Start` frame: `status\0name\0value\0…`.
fn parse_head(payload: &[u8]) -> Result<(StatusCode, HeaderMap), String> {
    let mut fields = frames::fields(payload);
    let status_line = fields.next().unwrap_or_default();
    let code = status_line.get(..3).ok_or("empty status")?;
    let status = StatusCode::from_bytes(code).map_err(|_| format!("bad status {:?}", String::from_utf8_lossy(status_line)))?;
    let mut headers = HeaderMap::new();
    while let Some(name) = fields.next() {
        let value = fields.next().ok_or("a header without a value")?;
        let name = HeaderName::from_bytes(name).map_err(|_| format!("bad header name {:?}", String::from_utf8_lossy(name)))?;
        if hop_by_hop(&name) {
            tracing::debug!("dropped hop-by-hop response header {name}");
            continue;
        }
        let value = HeaderValue::from_bytes(value).map_err(|_| format!("bad value for header {name}"))?;
        headers.append(name, value);
    }
    Ok((status, headers))
}

/// How an exchange ended, for the access log.
struct Outcome {
    status: Option<StatusCode>,
    bytes: u64,
    note: &'static str,
}

/// Serves one request on `group`: waits for an instance, runs the exchange,
/// reports the head through `head_tx` and streams the body into `body_tx`.
pub async fn serve(
    group: std::sync::Arc<Group>,
    info: RequestInfo,
    environ: Bytes,
    body: Incoming,
    head_tx: oneshot::Sender<Head>,
    body_tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let mut head_tx = head_tx;
    let checked_out = tokio::select! {
        lease = group.check_out() => lease,
        // A client that gives up while queued costs no instance time.
        _ = head_tx.closed() => {
            access_log(&group, &info, None, 0, "client gone while queued");
            return;
        }
    };
    let mut lease = match checked_out {
        Ok(lease) => lease,
        Err(e @ Unavailable::QueueFull(..)) => {
            tracing::warn!(group = %group.name, request = info.id, "{e}");
            let _ = head_tx.send(Head::Error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable: the server is overloaded\n"));
            access_log(&group, &info, Some(StatusCode::SERVICE_UNAVAILABLE), 0, "queue full");
            return;
        }
    };
    lease.instance().set_request(info.id);
    let mut head_tx = Some(head_tx);
    let reader = BodyReader { body, leftover: Bytes::new(), ended: false };
    match exchange(&mut lease, environ, reader, &mut head_tx, &body_tx).await {
        Ok(outcome) => {
            access_log(&group, &info, outcome.status, outcome.bytes, outcome.note);
            lease.release();
        }
        Err((Gone(reason), outcome)) => {
            let instance = lease.instance().id;
            tracing::error!(group = %group.name, instance, request = info.id, "instance lost during {} {}: {reason}", info.method, info.target);
            let status = match head_tx.take() {
                Some(tx) => {
                    let _ = tx.send(Head::Error(StatusCode::BAD_GATEWAY, "Bad Gateway: the application instance stopped\n"));
                    Some(StatusCode::BAD_GATEWAY)
                }
                None => {
                    // The head went out already: cut the body short so the
                    // client sees a broken response, not a complete one.
                    let _ = body_tx.send(Err(std::io::Error::other("the application instance stopped"))).await;
                    outcome.status
                }
            };
            access_log(&group, &info, status, outcome.bytes, "instance lost");
            drop(lease); // discards the instance and starts a replacement
        }
    }
}

async fn exchange(
    lease: &mut Lease,
    environ: Bytes,
    mut body: BodyReader,
    head_tx: &mut Option<oneshot::Sender<Head>>,
    body_tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<Outcome, (Gone, Outcome)> {
    let instance = lease.instance();
    let mut outcome = Outcome { status: None, bytes: 0, note: "" };
    let mut client_gone = false;
    // The app's head was unusable: the client got a 500, drop its body.
    let mut discard = false;
    let (mut unacked_bytes, mut unacked_frames) = (0usize, 0usize);

    macro_rules! send {
        ($frame:expr) => {
            if let Err(gone) = instance.send($frame).await {
                return Err((gone, outcome));
            }
        };
    }

    send!(frames::encode(Kind::Request, &environ));
    loop {
        let (kind, payload) = match instance.recv().await {
            Ok(frame) => frame,
            Err(gone) => return Err((gone, outcome)),
        };
        match kind {
            Kind::Read => {
                let max = payload.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0);
                match body.read(max as usize).await {
                    Ok(data) => send!(frames::encode(Kind::Body, &data)),
                    Err(e) => send!(frames::encode(Kind::BodyError, e.as_bytes())),
                }
            }
            Kind::Start => match parse_head(&payload) {
                Ok((status, headers)) => {
                    outcome.status = Some(status);
                    if let Some(tx) = head_tx.take() {
                        client_gone |= tx.send(Head::Response(status, headers)).is_err();
                    }
                }
                Err(why) => {
                    tracing::error!(request = instance.id, "the application sent an invalid response head: {why}");
                    outcome.status = Some(StatusCode::INTERNAL_SERVER_ERROR);
                    discard = true;
                    if let Some(tx) = head_tx.take() {
                        let _ = tx.send(Head::Error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n"));
                    }
                }
            },
            Kind::Data => {
                unacked_bytes += payload.len();
                unacked_frames += 1;
                if !client_gone && !discard {
                    outcome.bytes += payload.len() as u64;
                    client_gone = body_tx.send(Ok(payload)).await.is_err();
                }
                if unacked_bytes >= ACK_BYTES || unacked_frames >= ACK_FRAMES {
                    unacked_bytes = 0;
                    unacked_frames = 0;
                    send!(frames::encode(if client_gone { Kind::Cancel } else { Kind::Continue }, b""));
                }
            }
            Kind::End => {
                if client_gone {
                    outcome.note = "client gone";
                }
                return Ok(outcome);
            }
            Kind::Failed => {
                let message = String::from_utf8_lossy(&payload).into_owned();
                let _ = body_tx.send(Err(std::io::Error::other(message))).await;
                outcome.note = "app failed mid-response";
                return Ok(outcome);
            }
            other => return Err((Gone(format!("protocol error: unexpected {other:?} frame during a request")), outcome)),
        }
    }
}

fn access_log(group: &Group, info: &RequestInfo, status: Option<StatusCode>, bytes: u64, note: &str) {
    tracing::info!(
        target: "wasgi::access",
        group = %group.name,
        request = info.id,
        status = status.map(|s| s.as_u16()).unwrap_or(0),
        bytes,
        ms = format_args!("{:.1}", info.started.elapsed().as_secs_f64() * 1000.0),
        note,
        "{} {}",
        info.method,
        info.target,
    );
}
