//! Why a request's head is refused with 400 before it reaches an app: its
//! path, its Host header or its framing. Found by the framing watcher
//! (`framing::head_problem`) and while building the environ.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvironError {
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
}
