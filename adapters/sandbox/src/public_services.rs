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
    /// after the ones already done at start). Dossiers are staggered by a
    /// quarter of the pace so that changes spread out.
    fn step_at(&self, plan: &DossierPlan, j: usize) -> Instant {
        let stagger = self.pace.mul_f64(f64::from(plan.seq % 4) / 4.0);
        self.started + stagger + self.pace * (j as u32 + 1)
    }

    /// How many of the plan's statuses have happened by `now`.
    fn steps_done(&self, plan: &DossierPlan, now: Instant) -> usize {
        let live = (0..plan.timeline.len() - plan.done).take_while(|j| self.step_at(plan, *j) <= now).count();
        plan.done + live
    }

    /// When status number `i` of the timeline happened (or happens).
    fn status_time(&self, plan: &DossierPlan, i: usize) -> SystemTime {
        if i < plan.done {
            // Past steps: a day apart, ending the day before the sandbox started.
            let days_ago = (plan.done - i) as u64;
            self.started_wall - Duration::from_secs(days_ago * 86_400 - u64::from(plan.seq) * 1_800)
        } else {
            self.started_wall + (self.step_at(plan, i - plan.done) - self.started)
        }
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
    fn plan(&self, code: &str) -> Result<&DossierPlan, AdapterError> {
        self.data
            .dossiers
            .iter()
            .find(|p| p.base.dossier_code == code)
            .ok_or_else(|| AdapterError::not_found("dossier"))
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
        Ok(self.current(self.plan(&req.dossier_code)?))
    }

    async fn list_my_dossiers(
        &self,
        ctx: &CallContext,
        req: api::ListMyDossiersRequest,
    ) -> Result<api::ListMyDossiersResponse, AdapterError> {
        let principal = ctx.require_principal()?;
        let filters = filters_of!(req);
        let window = lienthong_adapter_core::paging::PageWindow::resolve(req.page_size, &req.page_token, &filters)?;
        let mut mine: Vec<&DossierPlan> =
            self.data.dossiers.iter().filter(|p| p.owner == principal.citizen_id).collect();
        // Newest first: by how far back the submission lies, then by sequence.
        mine.sort_by(|a, b| a.done.cmp(&b.done).then(b.seq.cmp(&a.seq)));
        let matching: Vec<api::Dossier> = mine
            .into_iter()
            .map(|p| self.current(p).dossier)
            .filter(|d| req.status == 0 || d.status == req.status)
            .collect();
        let (dossiers, next_page_token) = window.slice(&matching);
        Ok(api::ListMyDossiersResponse { dossiers, next_page_token, total_size: matching.len() as i32 })
    }

    async fn watch_dossier(
        &self,
        _: &CallContext,
        req: api::WatchDossierRequest,
    ) -> Result<DossierStream, AdapterError> {
        let plan = self.plan(&req.dossier_code)?.clone();
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
