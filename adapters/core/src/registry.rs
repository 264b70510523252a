//! The registry of adapter kinds.
//!
//! Registration is explicit: each adapter crate exports
//! `pub fn register(registry: &mut AdapterRegistry)`, and the gateway calls
//! the ones it ships. Config names an instance's `kind`; an unknown kind is an
//! error listing the known ones.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::shared::{Alone, Shared};
use crate::{AdapterError, AdapterSet, Family};

/// Everything an adapter factory gets to build one instance.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The instance's name in config (`adapters.<name>`).
    pub instance: String,
    /// The instance's options: every key of its config table except `kind`.
    pub options: serde_json::Value,
    /// The instance's budget of upstream requests, for adapters that spend
    /// it themselves (see [`crate::AdapterSet::budgets_itself`]).
    pub budget: Arc<dyn UpstreamBudget>,
    /// What the instance shares with itself on the gateway's other replicas
    /// (see [`crate::shared`]); [`crate::Alone`] without them.
    pub shared: Arc<dyn Shared>,
}

impl BuildContext {
    /// The context of instance `instance` with `options`, and no budget.
    pub fn new(instance: impl Into<String>, options: serde_json::Value) -> Self {
        Self { instance: instance.into(), options, budget: Arc::new(Unlimited), shared: Arc::new(Alone::default()) }
    }

    /// With `budget` for the instance's upstream requests.
    pub fn with_budget(mut self, budget: Arc<dyn UpstreamBudget>) -> Self {
        self.budget = budget;
        self
    }

    /// With `shared` for what the instance shares with its replicas.
    pub fn with_shared(mut self, shared: Arc<dyn Shared>) -> Self {
        self.shared = shared;
        self
    }
}

/// A budget of requests to an adapter instance's upstream (the gateway's
/// `[limits] per_upstream`). An adapter that answers most calls without its
/// upstream (an identity provider's cached keys) spends it on each request
/// that does reach the upstream, and nowhere else.
pub trait UpstreamBudget: Send + Sync + fmt::Debug {
    /// Spends one request; refused with the time until one is available.
    fn spend(&self) -> Result<(), std::time::Duration>;
}

/// No limit.
#[derive(Debug)]
pub struct Unlimited;

impl UpstreamBudget for Unlimited {
    fn spend(&self) -> Result<(), std::time::Duration> {
        Ok(())
    }
}

/// Builds adapter instances of one kind.
#[async_trait]
pub trait AdapterFactory: Send + Sync + fmt::Debug {
    /// The kind's name in config, for example `sandbox`.
    fn kind(&self) -> &'static str;

    /// One line saying what the kind connects to.
    fn description(&self) -> &'static str;

    /// The families an instance of this kind can serve.
    fn families(&self) -> &'static [Family];

    /// Checks options without any I/O. Returns every problem found, each as
    /// `path: message` with the path relative to the instance's table.
    fn validate(&self, options: &serde_json::Value) -> Vec<String>;

    /// The families an instance with `options` serves, when its options
    /// narrow [`AdapterFactory::families`] (a remote adapter's `families`
    /// key); `None`: all of them. Config validation refuses a route to a
    /// family outside it.
    fn instance_families(&self, _options: &serde_json::Value) -> Option<Vec<Family>> {
        None
    }

    /// The provinces an instance with `options` may be routed for, when it
    /// holds one province's data (the sandbox); `None`: any. Config
    /// validation refuses a route for another province, with `why`.
    fn instance_provinces(&self, _options: &serde_json::Value) -> Option<(Vec<String>, String)> {
        None
    }

    /// Builds an instance: may read files and reach the network.
    async fn build(&self, ctx: BuildContext) -> Result<AdapterSet, AdapterError>;

    /// Calls an instance built from `ctx` a few times and reports what in its
    /// mapping finds nothing or does not filter, each finding as `path:
    /// what` (`lienthong check-config --probe`); `None`: this kind has
    /// nothing to probe.
    async fn probe(&self, ctx: BuildContext) -> Option<Vec<String>> {
        let _ = ctx;
        None
    }

    /// Whether `token` claims to be one this kind issues (a demo identity
    /// provider's, say). It proves nothing; it lets a gateway configured with
    /// another identity provider say clearly why it refuses the token, before
    /// asking that provider about a key it cannot know.
    fn recognizes_token(&self, _token: &str) -> bool {
        false
    }
}

/// Config named a kind nobody registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown adapter kind {kind:?}; known kinds: {}", known.join(", "))]
pub struct UnknownAdapterKind {
    /// The kind asked for.
    pub kind: String,
    /// The kinds that are registered.
    pub known: Vec<String>,
}

/// The adapter kinds this build knows.
#[derive(Debug, Default, Clone)]
pub struct AdapterRegistry {
    kinds: BTreeMap<&'static str, Arc<dyn AdapterFactory>>,
}

impl AdapterRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a kind; a later registration of the same name replaces it.
    pub fn register(&mut self, factory: Arc<dyn AdapterFactory>) {
        self.kinds.insert(factory.kind(), factory);
    }

    /// The factory for `kind`, or an error listing the known kinds.
    pub fn get(&self, kind: &str) -> Result<&Arc<dyn AdapterFactory>, UnknownAdapterKind> {
        self.kinds.get(kind).ok_or_else(|| UnknownAdapterKind {
            kind: kind.to_owned(),
            known: self.kinds.keys().map(|k| (*k).to_owned()).collect(),
        })
    }

    /// The kind, other than `except`, whose tokens `token` claims to be.
    pub fn token_kind(&self, token: &str, except: &str) -> Option<&'static str> {
        self.kinds().find(|f| f.kind() != except && f.recognizes_token(token)).map(|f| f.kind())
    }

    /// Every registered kind, by name.
    pub fn kinds(&self) -> impl Iterator<Item = &Arc<dyn AdapterFactory>> {
        self.kinds.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fake(&'static str);

    #[async_trait]
    impl AdapterFactory for Fake {
        fn kind(&self) -> &'static str {
            self.0
        }
        fn description(&self) -> &'static str {
            "fake"
        }
        fn families(&self) -> &'static [Family] {
            &[Family::Healthcare]
        }
        fn validate(&self, _: &serde_json::Value) -> Vec<String> {
            Vec::new()
        }
        async fn build(&self, _: BuildContext) -> Result<AdapterSet, AdapterError> {
            Ok(AdapterSet::default())
        }
    }

    #[test]
    fn unknown_kind_lists_the_known_ones() {
        let mut r = AdapterRegistry::new();
        r.register(Arc::new(Fake("sandbox")));
        r.register(Arc::new(Fake("vneid")));
        assert!(r.get("sandbox").is_ok());
        let err = r.get("sandbx").unwrap_err();
        assert_eq!(err.to_string(), "unknown adapter kind \"sandbx\"; known kinds: sandbox, vneid");
    }
}
