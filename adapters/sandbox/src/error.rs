//! The sandbox's refusals. It has no upstream to fail: its errors are the
//! citizen's token refused, a record not found, and a dataset that does not
//! load (at start).

use lienthong_adapter_core::{AdapterError, ErrorKind};

/// A refusal of the citizen's token, with why.
pub(crate) fn unauthenticated(why: &str) -> AdapterError {
    AdapterError::new(ErrorKind::Unauthenticated, format!("the citizen token is not valid: {why}"))
}

/// The dataset failed its checks at load: every problem, one per line.
pub(crate) fn invalid_dataset(problems: &[String]) -> AdapterError {
    AdapterError::new(ErrorKind::Unexpected, format!("the sandbox dataset is invalid:\n  {}", problems.join("\n  ")))
}
