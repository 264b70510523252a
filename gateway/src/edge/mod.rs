//! The edge: what happens to a connection and a call before the gateway does
//! any work for it. Outermost first:
//!
//! 1. [`listener`]: connections are accepted, TLS-terminated and bounded
//!    (count, streams each, header read, idle, age, keepalive).
//! 2. gRPC-Web and CORS (in `server.rs`), so a browser's call is a gRPC call
//!    from here on, and refusals reach browsers in a form they read.
//! 3. [`admit`]: the call's headers, message and deadline are checked and it
//!    takes one of the shared slots, or is shed.
//!
//! [`framing`] holds the checks of a request's shape, [`streams`] the stream
//! wrappers admission needs, [`overload`] the watch that readiness follows.

pub mod admit;
pub mod framing;
pub mod listener;
pub mod overload;
pub mod streams;
