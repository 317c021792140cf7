//! Why a request is refused before it reaches an app, from its head alone:
//! its path, its Host header, its framing, its declared length. Found by the
//! framing watcher and `framing::head_problem`, while decoding the path, and
//! against max_body_bytes; each is answered by [`HeadError::status`] and the
//! connection closed.

use http::StatusCode;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    #[error("the request path contains an encoded NUL byte")]
    NulInPath,
    #[error("the request target is not a path")]
    NotAPath,
    #[error("the request path has a malformed %-escape")]
    BadEscape,
    #[error("the request path climbs above the root with \"..\"")]
    AboveRoot,
    #[error("the request has both Content-Length and Transfer-Encoding (a request-smuggling pattern)")]
    AmbiguousLength,
    #[error("the request has more than one Host header")]
    TwoHosts,
    #[error("the HTTP/1.1 request has no Host header")]
    NoHost,
    #[error("the request's Transfer-Encoding applies chunked more than once or not last")]
    BadChunkedCoding,
    #[error("the request target has raw non-ASCII bytes (they must be %-escaped)")]
    NonAsciiTarget,
    #[error("the request target \"*\" is only for OPTIONS")]
    AsteriskNotOptions,
    /// The declared Content-Length is over the server's max_body_bytes.
    #[error("body of {declared} bytes is over max_body_bytes ({max})")]
    BodyTooLarge { declared: u64, max: u64 },
}

impl HeadError {
    /// The status the client gets: 413 for a body over the limit, else 400.
    pub fn status(&self) -> StatusCode {
        match self {
            HeadError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The response's body: the status's reason, nothing of the request.
    pub fn answer(&self) -> &'static str {
        match self {
            HeadError::BodyTooLarge { .. } => "Payload Too Large\n",
            _ => "Bad Request\n",
        }
    }
}
