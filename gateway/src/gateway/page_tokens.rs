//! Page tokens as callers see them. An adapter's own `next_page_token` (an
//! offset, an upstream cursor) never leaves the gateway as it is: it is
//! sealed (AES-256-GCM, [`crate::crypto::Sealer`]) under the call it belongs
//! to: the method, the request's filters and, for a citizen's own lists, the
//! citizen. A token is opaque; one altered, made by hand, or replayed on
//! another method, other filters or another citizen's list is refused with
//! INVALID_ARGUMENT naming `page_token`. Replicas that share
//! `server.page_token_key` accept each other's tokens.

use lienthong_adapter_core::{CitizenId, Method, api};
use tonic::Status;

use crate::crypto::Sealer;

/// The longest page token accepted (and issued): an adapter's cursor of up
/// to 996 bytes, sealed.
pub const MAX_SEALED_TOKEN: usize = 2048;

/// A list request: its paging fields.
pub trait Paged: prost::Message + Clone {
    /// `page_token`.
    fn page_token_mut(&mut self) -> &mut String;
    /// `page_size`.
    fn page_size_mut(&mut self) -> &mut i32;
}

/// A list answer: its records and the token of its next page.
pub trait Listing {
    /// `next_page_token`.
    fn next_page_token_mut(&mut self) -> &mut String;
    /// How many records the page holds.
    fn records(&self) -> usize;
    /// Keeps the first `n` records.
    fn truncate_records(&mut self, n: usize);
}

macro_rules! paged {
    ($($request:ident => $response:ident . $records:ident),* $(,)?) => {
        $(impl Paged for api::$request {
            fn page_token_mut(&mut self) -> &mut String {
                &mut self.page_token
            }
            fn page_size_mut(&mut self) -> &mut i32 {
                &mut self.page_size
            }
        }
        impl Listing for api::$response {
            fn next_page_token_mut(&mut self) -> &mut String {
                &mut self.next_page_token
            }
            fn records(&self) -> usize {
                self.$records.len()
            }
            fn truncate_records(&mut self, n: usize) {
                self.$records.truncate(n);
            }
        })*
    };
}

paged!(
    ListFacilitiesRequest => ListFacilitiesResponse.facilities,
    ListSchoolsRequest => ListSchoolsResponse.schools,
    ListBusRoutesRequest => ListBusRoutesResponse.routes,
    ListNearbyStopsRequest => ListNearbyStopsResponse.stops,
    ListTrafficCamerasRequest => ListTrafficCamerasResponse.cameras,
    ListHousingProjectsRequest => ListHousingProjectsResponse.projects,
    ListAgenciesRequest => ListAgenciesResponse.agencies,
    ListProceduresRequest => ListProceduresResponse.procedures,
    ListMyDossiersRequest => ListMyDossiersResponse.dossiers,
);

/// The gateway's page token sealer (cloned cheaply: one key, shared).
#[derive(Debug, Clone)]
pub struct PageTokens(std::sync::Arc<Sealer>);

impl PageTokens {
    /// Tokens sealed with `key`.
    pub fn new(key: &crate::crypto::SecretKey) -> anyhow::Result<Self> {
        Ok(Self(std::sync::Arc::new(Sealer::new(key)?)))
    }

    /// Opens the caller's token in `req` into the adapter's, and returns
    /// the call's paging, to seal the next token with.
    pub fn open<R: Paged>(
        &self,
        province: &str,
        method: Method,
        req: &mut R,
        citizen: Option<&CitizenId>,
    ) -> Result<Paging, Status> {
        let context = context(province, method, req, citizen);
        let size = match *req.page_size_mut() {
            n if n <= 0 => lienthong_adapter_core::paging::DEFAULT_PAGE_SIZE,
            n => usize::try_from(n).unwrap_or(usize::MAX).min(lienthong_adapter_core::paging::MAX_PAGE_SIZE),
        };
        let token = req.page_token_mut();
        if !token.is_empty() {
            let inner = self.0.open(&context, token).and_then(|b| String::from_utf8(b).ok()).ok_or_else(|| {
                let mut v = crate::errors::Violations::new();
                v.add(
                    "page_token",
                    "is not a next_page_token this gateway issued for this method, these filters and this caller; \
                     pass next_page_token back unchanged, with the same filters",
                );
                v.into_result().err().unwrap_or_else(|| Status::invalid_argument("page_token is not valid"))
            })?;
            *token = inner;
        }
        Ok(Paging { tokens: self.clone(), context, size })
    }
}

/// One list call's paging: seals the token of its next page. It owns what
/// it needs, so an answer can be sealed when it is fetched and cached.
#[derive(Debug, Clone)]
pub struct Paging {
    tokens: PageTokens,
    context: Vec<u8>,
    /// The most records the page may hold (`page_size`, or its default).
    size: usize,
}

impl Paging {
    /// [`Paging::seal`], after cutting a page longer than the caller asked
    /// for to `page_size` (an adapter's contract violation); says whether it
    /// was cut.
    pub fn seal_page<T: Listing>(&self, mut answer: T) -> (T, bool) {
        let oversized = answer.records() > self.size;
        if oversized {
            answer.truncate_records(self.size);
        }
        (self.seal(answer), oversized)
    }

    /// `answer` with the adapter's `next_page_token` sealed (empty stays
    /// empty: the last page).
    pub fn seal<T: Listing>(&self, mut answer: T) -> T {
        let next = answer.next_page_token_mut();
        if !next.is_empty() {
            *next = self.tokens.0.seal(&self.context, next.as_bytes());
            if next.len() > MAX_SEALED_TOKEN {
                // The adapter's cursor is too long to come back: end the
                // listing here rather than hand out a token refused later.
                tracing::warn!(len = next.len(), "an adapter's page token is too long to seal; the listing ends early");
                next.clear();
            }
        }
        answer
    }
}

/// What a token is bound to: the province (whose adapter made it), the
/// method, the SHA-256 of the filters (the request with its paging fields
/// cleared) and the citizen, if any.
fn context<R: Paged>(province: &str, method: Method, req: &R, citizen: Option<&CitizenId>) -> Vec<u8> {
    let mut filters = req.clone();
    filters.page_token_mut().clear();
    *filters.page_size_mut() = 0;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &filters.encode_to_vec());
    let mut context = province.as_bytes().to_vec();
    context.push(0);
    context.extend_from_slice(method.full_name().as_bytes());
    context.push(0);
    context.extend_from_slice(digest.as_ref());
    if let Some(citizen) = citizen {
        context.push(0);
        context.extend_from_slice(citizen.expose().as_bytes());
    }
    context
}
