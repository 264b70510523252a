//! The citizen behind a call: the bearer token checked by the province's
//! identity adapter (through its guard), the identity level the method
//! needs, the declared purpose, and the citizen's rate limit.

use lienthong_adapter_core::{BearerToken, Principal};
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::call::{Call, MAX_TOKEN_BYTES};

impl Call<'_> {
    /// Authenticates the citizen from `authorization: Bearer <token>`.
    ///
    /// Without the header: `Ok(None)` when `required` is false, else
    /// UNAUTHENTICATED. A header that is present is always verified.
    pub async fn authenticate(&mut self, metadata: &MetadataMap, required: bool) -> Result<Option<Principal>, Status> {
        let Some(value) = metadata.get("authorization") else {
            if required {
                return Err(Status::unauthenticated(
                    "this call needs the citizen's VNeID token in the authorization metadata: \"Bearer <token>\"",
                ));
            }
            return Ok(None);
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_BYTES)
            .ok_or_else(|| Status::unauthenticated("the authorization metadata must be \"Bearer <token>\""))?;
        let identity = self.identity()?;
        if let Some(kind) = self.gateway.registry.token_kind(token, &identity.kind) {
            return Err(Status::unauthenticated(format!(
                "this is a {kind} token; {kind} tokens are accepted only where the {kind} identity provider is configured"
            )));
        }
        // Through the identity provider's guard: its own budget (VNeID is the
        // fragile one), breaker, bulkhead and the caller's deadline.
        let token = BearerToken::new(token);
        let principal = self.guarded(identity, || identity.adapter.authenticate(&token)).await?;
        let level = match principal.identity_level {
            lienthong_adapter_core::api::IdentityLevel::IdentityLevel2 => 2,
            _ => 1,
        };
        let needed = self.gateway.identity.min_level(self.method);
        if level < needed {
            if !required {
                // Optional sign-in (a dossier's status): the public view, and
                // the handler tells an owner why.
                self.below_level = Some((principal.citizen_id.clone(), level, needed));
                return Ok(None);
            }
            let denied = Status::permission_denied(format!(
                "{} needs a level {needed} (verified) VNeID account; the citizen can upgrade in the VNeID app",
                self.method.rpc_name()
            ));
            // A refused attempt at personal data is audited too.
            self.purpose = Some(self.app.purpose(metadata)?);
            self.auditor_for(&principal).refused(denied.code());
            return Err(denied);
        }
        // Personal data may be touched from here on: its purpose is declared.
        self.purpose = Some(self.app.purpose(metadata)?);
        if let Err(refused) = self
            .gateway
            .limited(self.traced, "citizen", self.gateway.limits.citizen(&principal.citizen_id, self.method))
            .await
        {
            self.auditor_for(&principal).refused(refused.code());
            return Err(refused);
        }
        self.ctx.principal = Some(principal.clone());
        Ok(Some(principal))
    }

    /// Why `owner` gets the public view of their own record: they signed in
    /// below the level this method needs for personal data.
    pub fn public_view_reason(&self, owner: &lienthong_adapter_core::CitizenId) -> Option<String> {
        let (citizen, level, needed) = self.below_level.as_ref()?;
        (citizen == owner).then(|| {
            format!(
                "the owner's view needs a level {needed} (verified) VNeID account and this one is level {level}; \
                 the citizen can upgrade in the VNeID app"
            )
        })
    }
}
