//! Agencies, procedures, and demo dossiers that advance on a clock.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::stream;
use lienthong_adapter_core::{
    AdapterError, CallContext, Capabilities, DossierStream, Family, OwnedDossier, PublicServicesAdapter, api,
};
use tokio::time::Instant;

use crate::Sandbox;
use crate::calendar;
use crate::core::DossierPlan;
use lienthong_adapter_core::{filters_of, is_final_status};

use crate::listing::{ListQuery, list};

fn note(status: api::DossierStatus) -> &'static str {
    use api::DossierStatus::*;
    match status {
        Unspecified => "",
        Submitted => "Hồ sơ đã được nộp trực tuyến.",
        Received => "Hồ sơ đã được tiếp nhận.",
        Rejected => "Hồ sơ không đủ điều kiện tiếp nhận.",
        Processing => "Hồ sơ đang được xử lý.",
        MoreDocumentsRequired => "Đề nghị công dân bổ sung giấy tờ theo hướng dẫn.",
        FeesDue => "Đề nghị công dân thực hiện nghĩa vụ tài chính.",
        Withdrawn => "Công dân đã rút hồ sơ.",
        Stopped => "Dừng xử lý hồ sơ.",
        Completed => "Đã có kết quả, chờ trả cho công dân.",
        ResultReturned => "Đã trả kết quả.",
    }
}

/// A final renewal is kept at least this long (and 28 paces) after its end.
const RETENTION_AT_LEAST: Duration = Duration::from_secs(600);

/// The most renewals of one dataset dossier listed at once: the newest.
const MOST_KEPT: u64 = 32;

/// The sandbox's clock: when it started, and how fast dossiers move.
///
/// It reads tokio's clock, so tests on a paused clock move dossiers by
/// advancing time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DossierClock {
    started: Instant,
    started_wall: SystemTime,
    pace: Duration,
}

impl DossierClock {
    pub(crate) fn start(pace: Duration) -> Self {
        Self { started: Instant::now(), started_wall: SystemTime::now(), pace }
    }

    /// Wall-clock time, moving with tokio's clock.
    pub(crate) fn wall_now(&self) -> SystemTime {
        self.started_wall + self.started.elapsed()
    }

    /// When live step `j` of a dossier happens (step 0 is the first status
    /// after the ones already done when it arrived). Dossiers are staggered
    /// by a quarter of the pace so that changes spread out.
    fn step_at(&self, plan: &DossierPlan, j: usize) -> Instant {
        let stagger = self.pace.mul_f64(f64::from(plan.seq % 4) / 4.0);
        self.arrived_at(plan) + stagger + self.pace * (j as u32 + 1)
    }

    /// When the plan arrived: the sandbox's start for the dataset's dossiers,
    /// the submission of a renewal.
    fn arrived_at(&self, plan: &DossierPlan) -> Instant {
        self.started + plan.arrival.unwrap_or_default()
    }

    /// How many of the plan's statuses have happened by `now` (0: a renewal
    /// not yet submitted).
    fn steps_done(&self, plan: &DossierPlan, now: Instant) -> usize {
        if now < self.arrived_at(plan) {
            return 0;
        }
        let live = (0..plan.timeline.len() - plan.done).take_while(|j| self.step_at(plan, *j) <= now).count();
        plan.done + live
    }

    /// When status number `i` of the timeline happened (or happens).
    fn status_time(&self, plan: &DossierPlan, i: usize) -> SystemTime {
        if let (Some(arrival), 0) = (plan.arrival, i) {
            return self.started_wall + arrival;
        }
        if i < plan.done {
            // Past steps: a day apart, ending the day before the sandbox started.
            let days_ago = (plan.done - i) as u64;
            self.started_wall
                - Duration::from_secs((days_ago * 86_400).saturating_sub(u64::from(plan.seq % 48) * 1_800))
        } else {
            self.started_wall + (self.step_at(plan, i - plan.done) - self.started)
        }
    }

    /// The time a page token of a dossier list was issued at, and the offset
    /// token it wraps (`<ms since start, hex>~<offset token>`); now and the
    /// whole token for the first page.
    fn snapshot<'t>(&self, token: &'t str) -> Result<(Instant, &'t str), AdapterError> {
        if token.is_empty() {
            // Whole milliseconds, as the tokens carry it.
            let ms = Instant::now().saturating_duration_since(self.started).as_millis() as u64;
            return Ok((self.started + Duration::from_millis(ms), token));
        }
        let invalid = || AdapterError::invalid_field("page_token", "page_token is not a token this server issued");
        let (at, inner) = token.split_once('~').ok_or_else(invalid)?;
        let at = u64::from_str_radix(at, 16).map_err(|_| invalid())?;
        let at = self.started.checked_add(Duration::from_millis(at)).ok_or_else(invalid)?;
        if at > Instant::now() || at.duration_since(self.started) > Duration::from_secs(1 << 40) {
            return Err(invalid());
        }
        Ok((at, inner))
    }

    /// The page token for the page after one listed `at`.
    fn snapshot_token(&self, at: Instant, next: String) -> String {
        if next.is_empty() {
            return next;
        }
        format!("{:x}~{next}", at.duration_since(self.started).as_millis())
    }

    /// The dossier as it stands after `steps` statuses.
    fn dossier(&self, plan: &DossierPlan, steps: usize) -> OwnedDossier {
        let mut d = plan.base.clone();
        d.history = plan.timeline[..steps]
            .iter()
            .enumerate()
            .map(|(i, s)| api::DossierStatusChange {
                status: *s as i32,
                change_time: Some(calendar::timestamp(self.status_time(plan, i))),
                note: note(*s).to_owned(),
            })
            .collect();
        let status = plan.timeline[steps - 1];
        d.status = status as i32;
        d.r#final = is_final_status(status);
        if let Some(i) = plan.timeline[..steps].iter().position(|s| *s == api::DossierStatus::Received) {
            let received = self.status_time(plan, i);
            d.received_time = Some(calendar::timestamp(received));
            d.due_time = Some(calendar::timestamp(calendar::add_working_days(received, plan.processing_days)));
        }
        d.view = api::DossierView::Owner as i32;
        OwnedDossier { dossier: d, owner: plan.owner.clone() }
    }
}

impl Sandbox {
    fn plan(&self, code: &str) -> Result<DossierPlan, AdapterError> {
        let now = Instant::now();
        self.plans(now)
            .into_iter()
            .find(|p| p.base.dossier_code == code && self.clock.steps_done(p, now) > 0)
            .ok_or_else(|| AdapterError::not_found("dossier"))
    }

    /// Every dossier there is at `now`: the dataset's, and (when
    /// `renew_dossiers` is on) the renewals the sandbox submits while it
    /// runs, so that each demo citizen always has one in progress. A final
    /// renewal ages out [`RETENTION_AT_LEAST`] (or 28 paces, if longer)
    /// after its end, and at most [`MOST_KEPT`] of each dataset dossier are
    /// kept; the dataset's own stay. Includes renewals not yet submitted
    /// (zero steps done at `now`); callers skip them.
    pub(crate) fn plans(&self, now: Instant) -> Vec<DossierPlan> {
        if !self.config.renew_dossiers {
            return self.data.dossiers.clone();
        }
        let clock = self.clock;
        let elapsed = now.saturating_duration_since(clock.started);
        let retention = clock.pace.saturating_mul(28).max(RETENTION_AT_LEAST);
        // Each dataset dossier has its own block of sequence numbers, so
        // renewals of two never share a code; a renewal's number is its
        // generation within the block.
        let width = (9_000 / self.data.dossiers.len().max(1)).max(1) as u64;
        // At most `width` renewals of one dossier a day, so that a number
        // never comes back within one date of a code.
        let least_period = Duration::from_secs(86_400u64.div_ceil(width)).max(clock.pace.saturating_mul(4));
        let mut out = Vec::new();
        for (index, seed) in self.data.dossiers.iter().enumerate() {
            let steps = seed.timeline.len();
            // The dataset's own stay (the examples in the docs are theirs);
            // its last step lands at `ends` and the stagger.
            let ends = clock.pace.saturating_mul((steps - seed.done) as u32);
            out.push(seed.clone());
            if steps < 2 || elapsed < ends {
                continue;
            }
            // Renewals: the first when the dataset's dossier ends, then one
            // each time the last one ends (from its first status), at most
            // one every `least_period`.
            let period = clock.pace.saturating_mul((steps - 1) as u32).max(least_period);
            let since = (elapsed - ends).as_nanos();
            let arrived = u64::try_from(since / period.as_nanos()).unwrap_or(u64::MAX).saturating_add(1);
            let kept = u64::try_from(retention.as_nanos().div_ceil(period.as_nanos()))
                .unwrap_or(u64::MAX)
                .saturating_add(1)
                .min(MOST_KEPT);
            let agency = seed.base.dossier_code.rsplitn(3, '-').nth(2).unwrap_or_default();
            for generation in arrived.saturating_sub(kept).max(1)..=arrived {
                let Some(arrival) = u32::try_from(generation - 1).ok().and_then(|g| period.checked_mul(g)) else {
                    continue;
                };
                let arrival = ends.saturating_add(arrival);
                let mut plan = seed.clone();
                plan.arrival = Some(arrival);
                plan.done = 1;
                let date = calendar::yymmdd(clock.started_wall + arrival);
                let number = 1_000 + index as u64 * width + generation % width;
                plan.base.dossier_code = format!("{agency}-{date}-{number:04}");
                out.push(plan);
            }
        }
        out
    }

    /// How many dossiers `owner` has now (what ListMyDossiers counts).
    pub(crate) fn dossier_count(&self, owner: &lienthong_adapter_core::CitizenId) -> usize {
        let now = Instant::now();
        self.plans(now).iter().filter(|p| &p.owner == owner && self.clock.steps_done(p, now) > 0).count()
    }

    fn current(&self, plan: &DossierPlan) -> OwnedDossier {
        self.clock.dossier(plan, self.clock.steps_done(plan, Instant::now()))
    }
}

#[async_trait]
impl PublicServicesAdapter for Sandbox {
    fn capabilities(&self) -> Capabilities {
        Capabilities::family(Family::PublicServices)
    }

    async fn list_agencies(
        &self,
        _: &CallContext,
        req: api::ListAgenciesRequest,
    ) -> Result<api::ListAgenciesResponse, AdapterError> {
        let query = ListQuery::new(req.page_size, &req.page_token, &filters_of!(req), &req.text, None)?;
        let page = list(
            &self.data.agencies,
            &query,
            |a| {
                (req.level == 0 || a.level == req.level)
                    && (req.ward_code.is_empty() || a.address.as_ref().is_some_and(|x| x.ward_code == req.ward_code))
            },
            |_, _| {},
        );
        Ok(api::ListAgenciesResponse {
            agencies: page.items,
            next_page_token: page.next_page_token,
            total_size: page.total_size,
        })
    }

    async fn get_agency(&self, _: &CallContext, req: api::GetAgencyRequest) -> Result<api::Agency, AdapterError> {
        self.data
            .agencies
            .iter()
            .find(|a| a.item.agency_code == req.agency_code)
            .map(|a| a.item.clone())
            .ok_or_else(|| AdapterError::not_found("agency"))
    }

    async fn list_procedures(
        &self,
        _: &CallContext,
        req: api::ListProceduresRequest,
    ) -> Result<api::ListProceduresResponse, AdapterError> {
        let query = ListQuery::new(req.page_size, &req.page_token, &filters_of!(req), &req.text, None)?;
        let page = list(
            &self.data.procedures,
            &query,
            |p| {
                (req.field.is_empty() || p.field == req.field)
                    && (req.agency_code.is_empty() || p.agency_codes.contains(&req.agency_code))
                    && (req.level == 0 || p.level == req.level)
                    && (req.online_level == 0 || p.online_level == req.online_level)
            },
            |_, _| {},
        );
        Ok(api::ListProceduresResponse {
            procedures: page.items,
            next_page_token: page.next_page_token,
            total_size: page.total_size,
        })
    }

    async fn get_procedure(
        &self,
        _: &CallContext,
        req: api::GetProcedureRequest,
    ) -> Result<api::Procedure, AdapterError> {
        let code = req.procedure_code.as_str();
        self.data
            .procedures
            .iter()
            .find(|p| p.item.procedure_code == code || p.item.national_code == code)
            .map(|p| p.item.clone())
            .ok_or_else(|| AdapterError::not_found("procedure"))
    }

    async fn get_dossier(&self, _: &CallContext, req: api::GetDossierRequest) -> Result<OwnedDossier, AdapterError> {
        Ok(self.current(&self.plan(&req.dossier_code)?))
    }

    async fn list_my_dossiers(
        &self,
        ctx: &CallContext,
        req: api::ListMyDossiersRequest,
    ) -> Result<api::ListMyDossiersResponse, AdapterError> {
        let principal = ctx.require_principal()?;
        let filters = filters_of!(req);
        // New dossiers keep arriving: a walk lists the dossiers as they stood
        // at its first page, whose time the page tokens carry.
        let (at, inner) = self.clock.snapshot(&req.page_token)?;
        let window = lienthong_adapter_core::paging::PageWindow::resolve(req.page_size, inner, &filters)?;
        let mut mine: Vec<DossierPlan> = self
            .plans(at)
            .into_iter()
            .filter(|p| p.owner == principal.citizen_id && self.clock.steps_done(p, at) > 0)
            .collect();
        // Newest first: the latest renewals, then the dataset's by how far
        // back the submission lies, then by sequence.
        mine.sort_by(|a, b| b.arrival.cmp(&a.arrival).then(a.done.cmp(&b.done)).then(b.seq.cmp(&a.seq)));
        let matching: Vec<api::Dossier> = mine
            .iter()
            .map(|p| self.clock.dossier(p, self.clock.steps_done(p, at)).dossier)
            .filter(|d| req.status == 0 || d.status == req.status)
            .collect();
        let (dossiers, next) = window.slice(&matching);
        let next_page_token = self.clock.snapshot_token(at, next);
        Ok(api::ListMyDossiersResponse { dossiers, next_page_token, total_size: matching.len() as i32 })
    }

    async fn watch_dossier(
        &self,
        _: &CallContext,
        req: api::WatchDossierRequest,
    ) -> Result<DossierStream, AdapterError> {
        let plan = self.plan(&req.dossier_code)?;
        let clock = self.clock;
        let first = clock.steps_done(&plan, Instant::now());
        // State: how many steps the last message showed (None before the first).
        let updates = stream::unfold(None::<usize>, move |shown| {
            let plan = plan.clone();
            async move {
                let steps = match shown {
                    None => first,
                    Some(s) if s >= plan.timeline.len() || is_final_status(plan.timeline[s - 1]) => return None,
                    Some(s) => {
                        tokio::time::sleep_until(clock.step_at(&plan, s - plan.done)).await;
                        s + 1
                    }
                };
                Some((Ok(clock.dossier(&plan, steps)), Some(steps)))
            }
        });
        Ok(Box::pin(updates))
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use lienthong_adapter_core::{BearerToken, Principal};

    use super::*;
    use crate::SandboxConfig;

    fn lan(sandbox: &Sandbox) -> CallContext {
        let owner = sandbox.data.dossiers[0].owner.clone();
        let mut ctx = CallContext::anonymous("79");
        ctx.principal = Some(Principal {
            citizen_id: owner,
            identity_level: api::IdentityLevel::IdentityLevel2,
            token: BearerToken::new("test"),
        });
        ctx
    }

    #[tokio::test(start_paused = true)]
    async fn a_walk_lists_the_dossiers_as_they_stood_at_its_first_page() {
        let pace = Duration::from_secs(30);
        let sandbox = Sandbox::new(SandboxConfig { dossier_pace: pace, ..Default::default() }).unwrap();
        let ctx = lan(&sandbox);
        let list = |token: String| {
            let req = api::ListMyDossiersRequest { page_size: 1, page_token: token, ..Default::default() };
            sandbox.list_my_dossiers(&ctx, req)
        };
        let codes =
            |r: &api::ListMyDossiersResponse| r.dossiers.iter().map(|d| d.dossier_code.clone()).collect::<Vec<_>>();
        // A day in, renewals arrive every few minutes.
        tokio::time::advance(Duration::from_secs(86_400)).await;
        let before = list(String::new()).await.unwrap();
        assert!(before.total_size >= 2, "{}", before.total_size);
        // Walk one per page while time passes beyond the next arrivals.
        let mut walked = codes(&before);
        let mut token = before.next_page_token.clone();
        while !token.is_empty() {
            tokio::time::advance(pace * 7).await;
            let page = list(token).await.unwrap();
            assert_eq!(page.total_size, before.total_size);
            walked.extend(codes(&page));
            token = page.next_page_token;
        }
        let mut unique = walked.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!((unique.len(), walked.len()), (before.total_size as usize, before.total_size as usize));
        // Meanwhile the list moved on: a new first page differs.
        let after = list(String::new()).await.unwrap();
        assert_ne!(codes(&after), codes(&before));

        // A token from the future, or not ours, is refused.
        let forged =
            format!("{:x}~{}", 1u64 << 50, &before.next_page_token[before.next_page_token.find('~').unwrap() + 1..]);
        for token in [forged, "zz~00".to_owned(), "no-tilde".to_owned()] {
            let e = list(token).await.unwrap_err();
            assert_eq!((e.kind(), e.field()), (lienthong_adapter_core::ErrorKind::InvalidArgument, Some("page_token")));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_fastest_pace_renewals_stay_few_and_no_code_names_two_dossiers() {
        let pace = Duration::from_millis(100);
        let sandbox = Sandbox::new(SandboxConfig { dossier_pace: pace, ..Default::default() }).unwrap();
        let seeds = sandbox.data.dossiers.len();
        let mut arrivals: std::collections::HashMap<String, Option<Duration>> = std::collections::HashMap::new();
        // Two days, every 10 minutes (each renewal is listed for longer).
        for _ in 0..(2 * 24 * 6) {
            let plans = sandbox.plans(Instant::now());
            assert!(plans.len() <= seeds * (MOST_KEPT as usize + 1), "{} plans", plans.len());
            for p in plans {
                let first = *arrivals.entry(p.base.dossier_code.clone()).or_insert(p.arrival);
                assert_eq!(first, p.arrival, "{} names two dossiers", p.base.dossier_code);
            }
            tokio::time::advance(Duration::from_secs(600)).await;
        }
        assert!(arrivals.len() > seeds * 100, "{} codes", arrivals.len());
    }

    #[tokio::test(start_paused = true)]
    async fn without_renewals_the_dataset_stays_put() {
        let config = SandboxConfig { renew_dossiers: false, ..Default::default() };
        let sandbox = Sandbox::new(config).unwrap();
        let ctx = lan(&sandbox);
        let req = api::ListMyDossiersRequest { page_size: 100, ..Default::default() };
        let first = sandbox.list_my_dossiers(&ctx, req.clone()).await.unwrap();
        tokio::time::advance(Duration::from_secs(86_400)).await;
        let later = sandbox.list_my_dossiers(&ctx, req).await.unwrap();
        let codes =
            |r: &api::ListMyDossiersResponse| r.dossiers.iter().map(|d| d.dossier_code.clone()).collect::<Vec<_>>();
        assert_eq!(codes(&first), codes(&later));
        assert!(later.dossiers.iter().all(|d| d.r#final));
    }

    #[tokio::test(start_paused = true)]
    async fn for_a_week_every_demo_citizen_has_a_dossier_in_progress_to_watch() {
        let pace = Duration::from_secs(30);
        let sandbox = Sandbox::new(SandboxConfig { dossier_pace: pace, ..Default::default() }).unwrap();
        let owners: Vec<Principal> = sandbox
            .data
            .citizens
            .iter()
            .filter(|c| sandbox.data.dossiers.iter().any(|d| d.owner == c.id))
            .map(|c| Principal {
                citizen_id: c.id.clone(),
                identity_level: api::IdentityLevel::IdentityLevel2,
                token: BearerToken::new("test"),
            })
            .collect();
        assert!(owners.len() >= 2);
        for hour in 0..=7 * 24 {
            for owner in &owners {
                let mut ctx = CallContext::anonymous("79");
                ctx.principal = Some(owner.clone());
                let req = api::ListMyDossiersRequest { page_size: 100, ..Default::default() };
                let mine = sandbox.list_my_dossiers(&ctx, req).await.unwrap();
                let moving: Vec<&api::Dossier> = mine.dossiers.iter().filter(|d| !d.r#final).collect();
                assert!(!moving.is_empty(), "hour {hour}: a citizen with nothing in progress");
                // Old final ones age out: the list stays short.
                assert!(mine.dossiers.len() <= 60, "hour {hour}: {} dossiers", mine.dossiers.len());
                // Codes are unique, and each is got as listed.
                let mut codes: Vec<&str> = mine.dossiers.iter().map(|d| d.dossier_code.as_str()).collect();
                codes.sort_unstable();
                codes.dedup();
                assert_eq!(codes.len(), mine.dossiers.len(), "hour {hour}");
                if hour % 24 == 0 {
                    // One is watched move: its state now, then its next change.
                    let code = moving[0].dossier_code.clone();
                    let got = sandbox.get_dossier(&ctx, api::GetDossierRequest { dossier_code: code.clone() }).await;
                    assert_eq!(got.unwrap().dossier.dossier_code, code);
                    let mut watch =
                        sandbox.watch_dossier(&ctx, api::WatchDossierRequest { dossier_code: code }).await.unwrap();
                    let first = watch.next().await.unwrap().unwrap().dossier;
                    let next = watch
                        .next()
                        .await
                        .unwrap_or_else(|| {
                            panic!(
                                "hour {hour}: {} ended after {:?} of {}",
                                first.dossier_code,
                                first.history.iter().map(|h| h.status).collect::<Vec<_>>(),
                                first.r#final
                            )
                        })
                        .unwrap()
                        .dossier;
                    assert_eq!(next.history.len(), first.history.len() + 1, "hour {hour}");
                }
            }
            tokio::time::advance(Duration::from_secs(3_600)).await;
        }
    }
}
