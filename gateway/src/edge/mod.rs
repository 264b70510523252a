//! The edge: what happens to a connection and a call before the gateway does
//! any work for it. Outermost first:
//!
//! 1. [`listener`]: connections are accepted, TLS-terminated and bounded
//!    (count, streams each, header read, idle, age, keepalive).
//! 2. gRPC-Web and CORS (in `server.rs`), so a browser's call is a gRPC call
//!    from here on, and refusals reach browsers in a form they read.
//! 3. [`admit`]: the call's headers, message and deadline are checked and it
//!    takes one of the shared slots, or is shed; a gzip-compressed message is
//!    inflated and an answer gzipped for a caller that accepts it
//!    ([`compression`]).
//! 4. [`encoded`], innermost: an answer the call left as stored bytes (a
//!    cache hit) is written to the wire as it is.
//!
//! [`framing`] holds the checks of a request's shape, [`streams`] the stream
//! wrappers admission needs, [`overload`] the watch that readiness follows.
//! Beside the gRPC path, [`webhooks`] takes the portals' signed pushes
//! (`POST /webhooks/<instance>`) and [`except_paths`] routes them around the
//! gRPC layers.

pub mod listener;

pub mod admit;
pub mod compression;
pub mod framing;
pub mod overload;
pub mod streams;

pub mod encoded;

pub mod except_paths;
pub mod webhooks;
