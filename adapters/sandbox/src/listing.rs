//! The one list algorithm every sandbox list method uses: filter, optionally
//! restrict to a circle and sort by distance, then cut a page.

use lienthong_adapter_core::paging::PageWindow;
use lienthong_adapter_core::{AdapterError, api, geo, text};

use crate::core::Indexed;

/// A page of records with its paging facts.
#[derive(Debug)]
pub(crate) struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: String,
    pub total_size: i32,
}

/// What a list request asks for, beyond its record-specific filters.
pub(crate) struct ListQuery<'a> {
    pub window: PageWindow,
    pub text: &'a str,
    pub near: Option<&'a api::NearFilter>,
}

impl<'a> ListQuery<'a> {
    /// Resolves paging for a request whose filters (paging fields cleared)
    /// are `filters`.
    pub fn new(
        page_size: i32,
        page_token: &str,
        filters: &impl prost::Message,
        text: &'a str,
        near: Option<&'a api::NearFilter>,
    ) -> Result<Self, AdapterError> {
        Ok(Self { window: PageWindow::resolve(page_size, page_token, filters)?, text, near })
    }
}

/// Lists `items` matching `keep` and the query's text and circle. Records keep
/// their dataset order, or are sorted by distance (ties by dataset order) when
/// the query has a circle; then `set_distance` records each one's distance.
pub(crate) fn list<T: Clone>(
    items: &[Indexed<T>],
    query: &ListQuery<'_>,
    keep: impl Fn(&T) -> bool,
    set_distance: impl Fn(&mut T, f64),
) -> Page<T> {
    let needle = text::fold(query.text.trim());
    let matching = items.iter().filter(|i| (needle.is_empty() || i.search.contains(&needle)) && keep(&i.item));
    let selected: Vec<T> = match query.near {
        Some(near) => {
            let center = near.center.unwrap_or_default();
            let mut within: Vec<(f64, usize, &Indexed<T>)> = matching
                .enumerate()
                .filter_map(|(n, i)| {
                    let d = geo::distance_m(&center, i.location.as_ref()?);
                    (d <= near.radius_meters).then_some((d, n, i))
                })
                .collect();
            within.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            within
                .into_iter()
                .map(|(d, _, i)| {
                    let mut item = i.item.clone();
                    set_distance(&mut item, (d * 10.0).round() / 10.0);
                    item
                })
                .collect()
        }
        None => matching.map(|i| i.item.clone()).collect(),
    };
    let (page, next_page_token) = query.window.slice(&selected);
    Page { items: page, next_page_token, total_size: selected.len() as i32 }
}
