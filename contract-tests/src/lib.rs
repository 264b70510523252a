//! The adapter contract suite: one set of behaviour cases, written once, run
//! against any adapter's [`AdapterSet`]. See `SPEC.md` for the rules; every
//! failure names the rule it breaks.

#![forbid(unsafe_code)]

mod cases;
pub mod fakes;
pub mod interop;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use lienthong_adapter_core::{AdapterSet, Method};

/// What the suite runs against: the adapter, and facts about its data that
/// some cases need.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// The adapter instance under test.
    pub adapters: AdapterSet,
    /// A dossier that will reach a final status while watched (for the
    /// WatchDossier case); without it that case is skipped.
    pub dossier_code: Option<String>,
    /// The province every call is made for (`x-lienthong-province`):
    /// the one whose data the adapter holds.
    pub province: String,
}

impl Target {
    /// `adapters` for province `province`, without a dossier to watch.
    pub fn new(adapters: AdapterSet, province: impl Into<String>) -> Self {
        Self { adapters, dossier_code: None, province: province.into() }
    }

    /// A call's context: anonymous, for the target's province.
    pub fn ctx(&self) -> lienthong_adapter_core::CallContext {
        lienthong_adapter_core::CallContext::anonymous(self.province.clone())
    }
}

impl std::ops::Deref for Target {
    type Target = AdapterSet;

    fn deref(&self) -> &AdapterSet {
        &self.adapters
    }
}

pub use cases::all_cases;

/// A rule of `SPEC.md` broken, with what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule's id, for example `PAGE-COMPLETE`.
    pub rule: &'static str,
    /// What the adapter did.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rule == UNREACHABLE {
            // Not a rule broken: say what happened.
            return f.write_str(&self.detail);
        }
        write!(f, "violates {}: {}", self.rule, self.detail)
    }
}

/// Not a rule: the adapter could not be reached (connection refused, TLS
/// refused, the service down). The suite reports it once and runs nothing
/// more, rather than blame every rule.
pub const UNREACHABLE: &str = "UNREACHABLE";

/// Fails with `rule` unless `ok`.
pub fn ensure(ok: bool, rule: &'static str, detail: impl FnOnce() -> String) -> Result<(), Violation> {
    if ok { Ok(()) } else { Err(Violation { rule, detail: detail() }) }
}

/// The future a case runs.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Violation>> + Send + 'a>>;

/// One behaviour case.
pub struct Case {
    /// A readable name, for example `healthcare/list_facilities pages`.
    pub name: &'static str,
    /// The method the case needs; skipped when the adapter lacks it.
    pub method: Method,
    /// The check.
    pub run: for<'a> fn(&'a Target) -> CaseFuture<'a>,
    /// Whether the case needs [`Target::dossier_code`].
    pub needs_dossier: bool,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case").field("name", &self.name).field("method", &self.method).finish()
    }
}

/// How one case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Behaved as the contract says.
    Passed,
    /// Broke a rule.
    Failed(Violation),
    /// Not run, and why.
    Skipped(&'static str),
}

/// The outcome of every case.
#[derive(Debug, Default)]
pub struct Report {
    /// Case name and outcome, in run order.
    pub outcomes: Vec<(&'static str, Outcome)>,
}

impl Report {
    /// How many cases passed, failed and were skipped.
    pub fn counts(&self) -> (usize, usize, usize) {
        let count = |f: fn(&Outcome) -> bool| self.outcomes.iter().filter(|(_, o)| f(o)).count();
        (
            count(|o| *o == Outcome::Passed),
            count(|o| matches!(o, Outcome::Failed(_))),
            count(|o| matches!(o, Outcome::Skipped(_))),
        )
    }

    /// The violations found.
    pub fn violations(&self) -> impl Iterator<Item = (&'static str, &Violation)> {
        self.outcomes.iter().filter_map(|(n, o)| match o {
            Outcome::Failed(v) => Some((*n, v)),
            _ => None,
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, outcome) in &self.outcomes {
            match outcome {
                Outcome::Passed => writeln!(f, "ok       {name}")?,
                Outcome::Skipped(why) => writeln!(f, "skipped  {name} ({why})")?,
                Outcome::Failed(v) => writeln!(f, "FAILED   {name}: {v}")?,
            }
        }
        let (passed, failed, skipped) = self.counts();
        write!(f, "{passed} passed, {failed} failed, {skipped} skipped")
    }
}

/// Whether `adapters` supports `method` (the family is present and says so).
pub(crate) fn supports(adapters: &AdapterSet, method: Method) -> bool {
    use lienthong_adapter_core::Family::*;
    match method.family() {
        Identity => adapters.identity.as_ref().is_some_and(|a| a.capabilities().supports(method)),
        Healthcare => adapters.healthcare.as_ref().is_some_and(|a| a.capabilities().supports(method)),
        Education => adapters.education.as_ref().is_some_and(|a| a.capabilities().supports(method)),
        Transport => adapters.transport.as_ref().is_some_and(|a| a.capabilities().supports(method)),
        Construction => adapters.construction.as_ref().is_some_and(|a| a.capabilities().supports(method)),
        PublicServices => adapters.public_services.as_ref().is_some_and(|a| a.capabilities().supports(method)),
    }
}

/// Runs every case against `adapters`, holding Ho Chi Minh City's (79)
/// data.
pub async fn run(adapters: &AdapterSet) -> Report {
    run_target(&Target::new(adapters.clone(), "79")).await
}

/// Runs every case against `target`.
pub async fn run_target(target: &Target) -> Report {
    let mut report = Report::default();
    for case in all_cases() {
        let outcome = if !supports(target, case.method) {
            Outcome::Skipped("not supported by this adapter")
        } else if case.needs_dossier && target.dossier_code.is_none() {
            Outcome::Skipped("no dossier code given (--dossier-code)")
        } else {
            match (case.run)(target).await {
                Ok(()) => Outcome::Passed,
                Err(v) if v.rule == UNREACHABLE => {
                    report.outcomes.push((
                        "the adapter is reachable",
                        Outcome::Failed(Violation {
                            rule: UNREACHABLE,
                            detail: format!("cannot reach the adapter: {}", v.detail),
                        }),
                    ));
                    return report;
                }
                Err(v) => Outcome::Failed(v),
            }
        };
        report.outcomes.push((case.name, outcome));
    }
    report
}
