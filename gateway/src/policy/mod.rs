//! Policy: what stands between a routed call and its adapter, in the order a
//! call meets it.
//!
//! 1. [`cache`]: the response cache (fresh, stale-while-revalidate,
//!    stale-if-error, negative answers; one fill per key, coalesced).
//! 2. Only a fill reaches the upstream, through the instance's [`guard`]
//!    (`crate::call::fetch` drives both for a call):
//!    its upstream budget ([`limits`]), [`breaker`], [`bulkhead`], the
//!    caller's deadline, and [`retry`].
//!
//! [`limits`] also holds the app and citizen rate limits that `Call::begin`
//! and the citizen check apply (`crate::call`).

pub mod cache;
pub mod guard;

pub mod breaker;
pub mod bulkhead;
pub mod limits;
pub mod retry;
