//! Housing projects and practicing certificates.

use async_trait::async_trait;
use lienthong_adapter_core::{AdapterError, CallContext, Capabilities, ConstructionAdapter, Family, api, text};

use crate::Sandbox;
use crate::calendar;
use lienthong_adapter_core::filters_of;

use crate::listing::{ListQuery, list};

#[async_trait]
impl ConstructionAdapter for Sandbox {
    fn capabilities(&self) -> Capabilities {
        Capabilities::family(Family::Construction)
    }

    async fn list_housing_projects(
        &self,
        _: &CallContext,
        req: api::ListHousingProjectsRequest,
    ) -> Result<api::ListHousingProjectsResponse, AdapterError> {
        let query = ListQuery::new(req.page_size, &req.page_token, &filters_of!(req), &req.text, None)?;
        let investor = text::fold(req.investor.trim());
        let page = list(
            &self.data.housing,
            &query,
            |p| {
                (req.ward_code.is_empty() || p.address.as_ref().is_some_and(|a| a.ward_code == req.ward_code))
                    && (req.status == 0 || p.status == req.status)
                    && text::contains_folded(&p.investor, &investor)
            },
            |_, _| {},
        );
        Ok(api::ListHousingProjectsResponse {
            projects: page.items,
            next_page_token: page.next_page_token,
            total_size: page.total_size,
        })
    }

    async fn get_housing_project(
        &self,
        _: &CallContext,
        req: api::GetHousingProjectRequest,
    ) -> Result<api::HousingProject, AdapterError> {
        self.data
            .housing
            .iter()
            .find(|p| p.item.project_id == req.project_id)
            .map(|p| p.item.clone())
            .ok_or_else(|| AdapterError::not_found("housing project"))
    }

    async fn get_practicing_certificate(
        &self,
        _: &CallContext,
        req: api::GetPracticingCertificateRequest,
    ) -> Result<api::PracticingCertificate, AdapterError> {
        // Certificate numbers are matched ignoring case and diacritics (MGBĐS/MGBDS).
        let r = self
            .data
            .certificates
            .get(&text::fold(req.certificate_number.trim()))
            .ok_or_else(|| AdapterError::not_found("practicing certificate"))?;
        let issued = calendar::parse_date(&r.issued_date).map(|d| calendar::local_midnight(&d));
        let expiry = calendar::parse_date(&r.expiry_date).map(|d| calendar::local_midnight(&d));
        let now = calendar::timestamp(self.now()).seconds;
        let status = if r.revoked {
            api::CertificateStatus::Revoked
        } else if expiry.is_some_and(|e| e.seconds <= now) {
            api::CertificateStatus::Expired
        } else {
            api::CertificateStatus::Valid
        };
        Ok(api::PracticingCertificate {
            certificate_number: r.certificate_number.clone(),
            holder_name: r.holder_name.clone(),
            issuing_authority: r.issuing_authority.clone(),
            issued_time: issued,
            expiry_time: expiry,
            status: status as i32,
        })
    }
}
