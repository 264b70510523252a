//! Offset page tokens bound to the filters they were issued for.
//!
//! A token encodes the offset of the next record and a fingerprint of the
//! request's filters, so a token reused with other filters is refused instead
//! of silently returning a wrong page.

use prost::Message;

use crate::AdapterError;

/// A list request with its paging fields (`page_size`, `page_token`)
/// cleared: the filters a page token is bound to.
#[macro_export]
macro_rules! filters_of {
    ($req:expr) => {{
        let mut f = $req.clone();
        f.page_size = 0;
        f.page_token.clear();
        f
    }};
}

/// The page size used when a request says 0.
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// The largest page size served.
pub const MAX_PAGE_SIZE: usize = 100;

/// A page request resolved to an offset and a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageWindow {
    /// Index of the first record of the page.
    pub offset: usize,
    /// Most records on the page.
    pub size: usize,
    fingerprint: u64,
}

impl PageWindow {
    /// Resolves `page_size` and `page_token` for a request whose filters are
    /// `filters` (the request with its paging fields cleared).
    pub fn resolve(page_size: i32, page_token: &str, filters: &impl Message) -> Result<Self, AdapterError> {
        let fingerprint = filters_fingerprint(filters);
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 => return Err(AdapterError::invalid_field("page_size", "page_size must not be negative")),
            n => (n as usize).min(MAX_PAGE_SIZE),
        };
        let offset = if page_token.is_empty() { 0 } else { decode(page_token, fingerprint)? };
        Ok(Self { offset, size, fingerprint })
    }

    /// The token of the page after this one, for an upstream that served
    /// `returned` records of `total` from this window's offset; empty when
    /// this is the last page.
    pub fn next_token(&self, returned: usize, total: usize) -> String {
        let end = self.offset.saturating_add(returned);
        if returned > 0 && end < total { encode(end, self.fingerprint) } else { String::new() }
    }

    /// Cuts this page out of `items` and returns it with the next page token
    /// (empty when this is the last page).
    pub fn slice<T: Clone>(&self, items: &[T]) -> (Vec<T>, String) {
        let start = self.offset.min(items.len());
        let end = start.saturating_add(self.size).min(items.len());
        let next = if end < items.len() { encode(end, self.fingerprint) } else { String::new() };
        (items[start..end].to_vec(), next)
    }
}

/// A stable fingerprint of a request's filters (the request with its paging
/// fields cleared), for binding page tokens to them.
pub fn filters_fingerprint(filters: &impl Message) -> u64 {
    fingerprint(&filters.encode_to_vec())
}

fn fingerprint(bytes: &[u8]) -> u64 {
    // FNV-1a: stable across processes and releases, unlike std's hasher.
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

fn encode(offset: usize, fingerprint: u64) -> String {
    format!("{fingerprint:016x}{offset:x}")
}

fn decode(token: &str, fingerprint: u64) -> Result<usize, AdapterError> {
    let invalid = || AdapterError::invalid_field("page_token", "page_token is not a token this server issued");
    if token.len() <= 16 || token.len() > 32 || !token.is_ascii() {
        return Err(invalid());
    }
    let (fp, offset) = token.split_at(16);
    let fp = u64::from_str_radix(fp, 16).map_err(|_| invalid())?;
    let offset = usize::from_str_radix(offset, 16).map_err(|_| invalid())?;
    if fp != fingerprint {
        return Err(AdapterError::invalid_field(
            "page_token",
            "page_token was issued for other filters; repeat the call with the filters of the first page",
        ));
    }
    Ok(offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ListSchoolsRequest;

    fn filters(text: &str) -> ListSchoolsRequest {
        ListSchoolsRequest { text: text.into(), ..Default::default() }
    }

    #[test]
    fn walks_every_item_once() {
        let items: Vec<u32> = (0..45).collect();
        let mut token = String::new();
        let mut seen = Vec::new();
        loop {
            let w = PageWindow::resolve(20, &token, &filters("a")).unwrap();
            let (page, next) = w.slice(&items);
            assert!(page.len() <= 20);
            seen.extend(page);
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(seen, items);
    }

    #[test]
    fn token_is_bound_to_filters() {
        let items: Vec<u32> = (0..45).collect();
        let (_, next) = PageWindow::resolve(10, "", &filters("a")).unwrap().slice(&items);
        let err = PageWindow::resolve(10, &next, &filters("b")).unwrap_err();
        assert_eq!(err.field(), Some("page_token"));
        assert!(PageWindow::resolve(10, "garbage", &filters("a")).is_err());
        assert!(PageWindow::resolve(10, "zzzzzzzzzzzzzzzzzz", &filters("a")).is_err());
    }

    #[test]
    fn sizes_default_and_cap() {
        assert_eq!(PageWindow::resolve(0, "", &filters("")).unwrap().size, DEFAULT_PAGE_SIZE);
        assert_eq!(PageWindow::resolve(1000, "", &filters("")).unwrap().size, MAX_PAGE_SIZE);
        assert!(PageWindow::resolve(-1, "", &filters("")).is_err());
    }

    proptest::proptest! {
        /// Any page size and token: a window within bounds or a clear
        /// INVALID_ARGUMENT naming the field, never a panic; the tokens we
        /// hand out resolve back to their offset.
        #[test]
        fn page_sizes_and_tokens_resolve_or_are_refused(size in proptest::prelude::any::<i32>(), token in ".{0,64}") {
            match PageWindow::resolve(size, &token, &filters("x")) {
                Ok(w) => proptest::prop_assert!(w.size >= 1 && w.size <= MAX_PAGE_SIZE),
                Err(e) => {
                    proptest::prop_assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
                    proptest::prop_assert!(e.field().is_some());
                }
            }
        }

        #[test]
        fn our_tokens_round_trip(offset in 0usize..1_000_000) {
            let token = encode(offset, filters_fingerprint(&filters("x")));
            proptest::prop_assert_eq!(PageWindow::resolve(20, &token, &filters("x")).unwrap().offset, offset);
        }
    }
}
