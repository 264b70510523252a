//! The suite passes the sandbox (of any province it is given), and its
//! SPEC.md names exactly the rules and cases it runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use lienthong_adapter_sandbox::{Sandbox, SandboxConfig};
use lienthong_contract_tests::{Level, Outcome, RULES, Target, all_cases, run_target};

#[tokio::test]
async fn the_sandbox_passes_every_case_with_no_warning_and_nothing_skipped() {
    // At the sandbox's own pace dossiers are still moving while the suite
    // runs: the citizens' dossiers differ in status, and one is watched move.
    let adapters = Sandbox::new(SandboxConfig::default()).unwrap().into_set();
    let target = Target::new(adapters, "79").with_demo_citizens().await;
    assert!(target.citizens.is_some(), "the sandbox mints tokens for its demo citizens");
    let report = run_target(&target).await;
    let (passed, failed, skipped) = report.counts();
    assert_eq!((failed, skipped, report.warnings().count()), (0, 0, 0), "{report}");
    assert_eq!(passed, all_cases().len());
}

#[tokio::test(start_paused = true)]
async fn the_living_sandbox_passes_every_case_days_after_its_start() {
    // Three and a half days in, every dataset dossier has long been final:
    // what the citizens have are renewals the sandbox submitted while it ran.
    // The clock stands still while the suite runs (it moves only while a
    // watch waits for the next change).
    let adapters = Sandbox::new(SandboxConfig::default()).unwrap().into_set();
    tokio::time::advance(std::time::Duration::from_secs(84 * 3_600 + 17)).await;
    let target = Target::new(adapters, "79").with_demo_citizens().await;
    let report = run_target(&target).await;
    let (passed, failed, skipped) = report.counts();
    assert_eq!((failed, skipped, report.warnings().count()), (0, 0, 0), "{report}");
    assert_eq!(passed, all_cases().len());
}

#[tokio::test]
async fn a_dossier_given_is_watched_to_its_final_status() {
    // Dossiers move every 100 ms, so the watched one reaches its final status
    // fast; none are renewed, so that two walks a few ms apart agree.
    let config = SandboxConfig {
        dossier_pace: std::time::Duration::from_millis(100),
        renew_dossiers: false,
        ..Default::default()
    };
    let adapters = Sandbox::new(config).unwrap().into_set();
    let mut target = Target::new(adapters, "79").with_demo_citizens().await;
    target.dossier_code = Some("000.30.67.H29-251114-0001".into());
    let report = run_target(&target).await;
    assert_eq!(report.counts().1, 0, "{report}");
    let watch = report.outcomes.iter().find(|(n, _)| n.contains("watch_dossier ordered")).unwrap();
    assert_eq!(watch.1, Outcome::Passed, "{report}");
}

#[tokio::test]
async fn without_test_citizens_the_personal_cases_are_skipped_naming_the_flags() {
    let adapters = Sandbox::new(SandboxConfig::default()).unwrap().into_set();
    let report = run_target(&Target::new(adapters, "79")).await;
    assert_eq!(report.counts().1, 0, "{report}");
    let skipped: Vec<(&str, &str)> = report
        .outcomes
        .iter()
        .filter_map(|(n, o)| match o {
            Outcome::Skipped(why) => Some((n.as_str(), why.as_str())),
            _ => None,
        })
        .collect();
    assert!(skipped.iter().any(|(n, _)| n.contains("only the citizen's own")), "{report}");
    assert!(skipped.iter().any(|(n, _)| n.contains("watch_dossier")), "{report}");
    for (name, why) in skipped {
        assert!(why.contains("--citizen-token") && why.contains("--other-citizen-token"), "{name}: {why}");
    }
}

/// The rules table of SPEC.md: id, level, and the case kinds it names.
fn spec_rules() -> Vec<(String, String, Vec<String>)> {
    let spec = include_str!("../SPEC.md");
    spec.lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| id") && !l.starts_with("|---"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            let kinds = cells.last().unwrap().split(", ").map(|k| k.trim_matches('`').to_owned()).collect();
            (cells[0].to_owned(), cells[1].to_owned(), kinds)
        })
        .collect()
}

#[test]
fn spec_md_names_every_rule_with_its_level_and_the_cases_that_check_it() {
    let spec = spec_rules();
    let ids: Vec<&str> = spec.iter().map(|(id, _, _)| id.as_str()).collect();
    let known: Vec<&str> = RULES.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, known, "SPEC.md's rules and the suite's RULES, in the same order");
    let cases = all_cases();
    for (id, level, kinds) in &spec {
        let want = if lienthong_contract_tests::level_of(id) == Level::Must { "MUST" } else { "SHOULD" };
        assert_eq!(level, want, "{id}'s level");
        let mut checked_by: Vec<&str> =
            cases.iter().filter(|c| c.rules.contains(&id.as_str())).map(|c| c.kind).collect();
        checked_by.sort_unstable();
        checked_by.dedup();
        let mut named: Vec<&str> = kinds.iter().map(String::as_str).collect();
        named.sort_unstable();
        assert_eq!(named, checked_by, "the cases SPEC.md says check {id}");
    }
    assert!(!include_str!("../SPEC.md").contains("first part"));
}
