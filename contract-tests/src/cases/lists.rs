//! The cases every paged list gets, written once over [`Listing`].

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use lienthong_adapter_core::{AdapterError, CallContext, ErrorKind, api, geo, nfc, text};
use prost::Message;
use tokio::time::Instant;

use super::listing::{Listing, Match, Query, Value};
use super::{bounded, failed_under};
use crate::{CaseFuture, Target, Violation, ensure};

/// The page size the pagination cases walk with: small, and odd, so that
/// page boundaries fall everywhere.
const PAGE: i32 = 7;
/// The page size of walks that only need every record.
const FULL: i32 = 100;
/// A walk past this many records is taken as an endless loop.
const MAX_RECORDS: usize = 50_000;
/// Near searches happen within 2 km of one of the adapter's own records
/// (wherever its province is), which must then come first, at 0 m.
pub(crate) const RADIUS_M: f64 = 2_000.0;
/// How many listed records are fetched again by id (GET-MATCHES-LIST).
const GETS: usize = 20;
/// How late past its deadline a call may answer (DEADLINE): a remote
/// adapter's round trip, a busy machine.
const LATE: Duration = Duration::from_millis(250);

/// The context a listing is called with: a test citizen's for a personal
/// list (the case is skipped without one), else anonymous.
fn ctx_for<L: Listing>(t: &Target) -> Result<CallContext, Violation> {
    if L::PERSONAL {
        t.citizen_ctx(0).ok_or_else(|| Violation {
            rule: "SETUP",
            detail: "no test citizens (--citizen-token and --other-citizen-token)".to_owned(),
        })
    } else {
        Ok(t.ctx())
    }
}

fn near(centre: api::GeoPoint) -> Option<api::NearFilter> {
    Some(api::NearFilter { center: Some(centre), radius_meters: RADIUS_M })
}

/// The query every call of the list starts from: for a list only served
/// near a point, around one of the adapter's own records.
async fn base<L: Listing>(l: &L, t: &Target) -> Result<Query, Violation> {
    let near = if L::NEEDS_NEAR { l.centre(t).await?.and_then(near) } else { None };
    Ok(Query { near, ..Default::default() })
}

async fn call<L: Listing>(
    l: &L,
    t: &Target,
    ctx: &CallContext,
    q: Query,
) -> Result<super::listing::Page<L::Record>, AdapterError> {
    // Each call has the whole call deadline, however long the walk.
    let ctx = t.renewed(ctx);
    bounded(&ctx, l.list(t, &ctx, q)).await
}

/// Walks every page of `q` at `page_size`; checks PAGE-SIZE and
/// PAGE-COMPLETE; returns the records.
pub(crate) async fn walk<L: Listing>(
    l: &L,
    t: &Target,
    ctx: &CallContext,
    q: &Query,
    page_size: i32,
    rule: &'static str,
) -> Result<Vec<L::Record>, Violation> {
    let mut records: Vec<L::Record> = Vec::new();
    let mut token = String::new();
    let max_pages = MAX_RECORDS / page_size.max(1) as usize + 1;
    for _ in 0..max_pages {
        let asked = Query { page_size, page_token: token, ..q.clone() };
        let page = call(l, t, ctx, asked).await.map_err(|e| failed_under(rule, e))?;
        ensure(page.items.len() <= page_size as usize, "PAGE-SIZE", || {
            format!("{}: a page of {} records for page_size {page_size}", L::NAME, page.items.len())
        })?;
        records.extend(page.items);
        if page.next.is_empty() {
            let unique: HashSet<String> = records.iter().map(|r| l.id(r)).collect();
            ensure(unique.len() == records.len(), "PAGE-COMPLETE", || {
                format!("{}: {} duplicate records across pages", L::NAME, records.len() - unique.len())
            })?;
            let total = page.total;
            ensure(total == 0 || total as usize == records.len(), "PAGE-COMPLETE", || {
                format!("{}: total_size says {total} but the pages held {}", L::NAME, records.len())
            })?;
            return Ok(records);
        }
        token = page.next;
    }
    Err(Violation {
        rule: "PAGE-COMPLETE",
        detail: format!("{}: still not at the last page after {max_pages} pages of {page_size}", L::NAME),
    })
}

fn ids<L: Listing>(l: &L, records: &[L::Record]) -> Vec<String> {
    records.iter().map(|r| l.id(r)).collect()
}

/// PAGE-STABLE, PAGE-COMPLETE, PAGE-SIZE: the same first page twice; a
/// walk at 7 twice, the same records in the same order; a walk at 100
/// finding the same records.
pub(crate) fn pages<L: Listing>(t: &Target) -> CaseFuture<'_> {
    Box::pin(async move {
        let l = L::default();
        let ctx = ctx_for::<L>(t)?;
        let q = base(&l, t).await?;
        let first = |ctx: CallContext, q: Query| {
            let l = &l;
            async move { call(l, t, &ctx, Query { page_size: PAGE, ..q }).await.map_err(|e| failed_under("PAGE-STABLE", e)) }
        };
        let (a, b) = (first(ctx.clone(), q.clone()).await?, first(ctx.clone(), q.clone()).await?);
        ensure(ids(&l, &a.items) == ids(&l, &b.items), "PAGE-STABLE", || {
            format!("{}: the same first page asked twice came back with other records or another order", L::NAME)
        })?;
        let walked = ids(&l, &walk(&l, t, &ctx, &q, PAGE, "PAGE-COMPLETE").await?);
        let again = ids(&l, &walk(&l, t, &ctx, &q, PAGE, "PAGE-COMPLETE").await?);
        ensure(walked == again, "PAGE-STABLE", || {
            format!("{}: two walks returned different records or orders", L::NAME)
        })?;
        if walked.is_empty() && L::PERSONAL {
            return Err(crate::skip("the test citizen has no records here: give a citizen who has some"));
        }
        ensure(!walked.is_empty(), "PAGE-COMPLETE", || {
            format!("{}: no records at all: the case cannot check anything", L::NAME)
        })?;
        let mut large = ids(&l, &walk(&l, t, &ctx, &q, FULL, "PAGE-COMPLETE").await?);
        let mut small = walked;
        large.sort_unstable();
        small.sort_unstable();
        ensure(large == small, "PAGE-COMPLETE", || {
            format!(
                "{}: walking at page_size {FULL} found {} records, at {PAGE} {}: pages skip or repeat records",
                L::NAME,
                large.len(),
                small.len()
            )
        })
    })
}

/// PAGE-SIZE: 0 means 20, above 100 means 100, and a page followed by more
/// (a next token) is full at that size.
pub(crate) fn page_sizes<L: Listing>(t: &Target) -> CaseFuture<'_> {
    Box::pin(async move {
        let l = L::default();
        let ctx = ctx_for::<L>(t)?;
        let q = base(&l, t).await?;
        for (asked, size) in [(0, 20), (1, 1), (100, 100), (101, 100), (1000, 100)] {
            let page = call(&l, t, &ctx, Query { page_size: asked, ..q.clone() })
                .await
                .map_err(|e| failed_under("PAGE-SIZE", e))?;
            let got = page.items.len();
            ensure(got <= size, "PAGE-SIZE", || {
                format!("{}: page_size {asked} gave {got} records (at most {size})", L::NAME)
            })?;
            ensure(page.next.is_empty() || got == size, "PAGE-SIZE", || {
                format!(
                    "{}: page_size {asked} gave {got} records and a next page: a page followed by more holds {size}",
                    L::NAME
                )
            })?;
        }
        Ok(())
    })
}

/// How many of `records` match `value` under `matches`.
fn count_matching<R>(records: &[R], matches: fn(&R, &Value) -> bool, value: &Value) -> usize {
    records.iter().filter(|r| matches(r, value)).count()
}

/// The value to filter by, and the record it was taken from: the one
/// matching the fewest records (so that a filter ignored shows), among the
/// values the first records carry.
fn pick<R>(records: &[R], values: fn(&R) -> Vec<Value>, matches: fn(&R, &Value) -> bool) -> Option<(Value, usize)> {
    let mut best: Option<(Value, usize, usize)> = None;
    let mut seen = HashSet::new();
    for (at, r) in records.iter().enumerate().take(40) {
        for v in values(r) {
            if !seen.insert(v.clone()) {
                continue;
            }
            // A value every record carries cannot tell a filter ignored
            // from one applied.
            let n = count_matching(records, matches, &v);
            if n > 0 && n < records.len() && best.as_ref().is_none_or(|(_, _, fewest)| n < *fewest) {
                best = Some((v, at, n));
            }
        }
    }
    best.map(|(v, at, _)| (v, at))
}

/// FILTER-EXACT, for every filter of the list: filtered by a value its own
/// records carry, every record returned matches, and (for an exact filter)
/// every record that matches is returned.
pub(crate) fn filters<L: Listing>(t: &Target) -> CaseFuture<'_> {
    Box::pin(async move {
        let l = L::default();
        let ctx = ctx_for::<L>(t)?;
        let q = base(&l, t).await?;
        let mut checked = 0;
        for filter in l.filters() {
            // Records that move (a dossier's status) may change between the
            // two walks: a mismatch is checked once more before it counts.
            let mut outcome = Ok(false);
            for _ in 0..2 {
                outcome = filter_once(&l, t, &ctx, &q, &filter).await;
                if outcome.is_ok() {
                    break;
                }
            }
            if outcome? {
                checked += 1;
            }
        }
        if checked == 0 {
            return Err(crate::skip(
                "every record carries the same value of every filter: nothing tells a filter ignored",
            ));
        }
        Ok(())
    })
}

/// One filter checked against a fresh walk: `Ok(false)` when no value of
/// the records can check it.
async fn filter_once<L: Listing>(
    l: &L,
    t: &Target,
    ctx: &CallContext,
    q: &Query,
    filter: &super::listing::Filter<L::Record>,
) -> Result<bool, Violation> {
    let all = walk(l, t, ctx, q, FULL, "FILTER-EXACT").await?;
    let Some((value, from)) = pick(&all, filter.values, filter.matches) else { return Ok(false) };
    let filtered = Query { filter: Some((filter.field, value.clone())), ..q.clone() };
    let got = walk(l, t, ctx, &filtered, FULL, "FILTER-EXACT").await?;
    let field = filter.field;
    if let Some(wrong) = got.iter().find(|r| !(filter.matches)(r, &value)) {
        return Err(Violation {
            rule: "FILTER-EXACT",
            detail: format!("{}: {field} = {value} returned {}, which does not match it", L::NAME, l.id(wrong)),
        });
    }
    let returned: HashSet<String> = ids(l, &got).into_iter().collect();
    let missing: Vec<String> = match filter.how {
        Match::Exact => all
            .iter()
            .filter(|r| (filter.matches)(r, &value))
            .map(|r| l.id(r))
            .filter(|id| !returned.contains(id))
            .collect(),
        Match::Contains => Some(l.id(&all[from])).filter(|id| !returned.contains(id)).into_iter().collect(),
    };
    ensure(missing.is_empty(), "FILTER-EXACT", || {
        format!(
            "{}: {field} = {value} left out {} record(s) that match it, {} among them",
            L::NAME,
            missing.len(),
            missing[0]
        )
    })?;
    Ok(true)
}

/// TEXT-NFC-IN (a SHOULD): a word of a record's name, written without its
/// diacritics and in capitals, still finds the record.
pub(crate) fn text_folded<L: Listing>(t: &Target) -> CaseFuture<'_> {
    Box::pin(async move {
        let l = L::default();
        let ctx = ctx_for::<L>(t)?;
        let q = base(&l, t).await?;
        let Some(filter) = l.filters().into_iter().find(|f| f.field == "text") else {
            return Err(crate::skip("the list has no text filter"));
        };
        let all = walk(&l, t, &ctx, &q, FULL, "FILTER-EXACT").await?;
        // A word that folding changes (it has diacritics), else any word.
        let candidates: Vec<(String, String)> =
            all.iter().take(40).flat_map(|r| (filter.values)(r).into_iter().map(|v| (v.text(), l.id(r)))).collect();
        let chosen = candidates.iter().find(|(w, _)| text::fold(w) != w.to_lowercase()).or(candidates.first()).cloned();
        let Some((word, id)) = chosen else { return Err(crate::skip("no record has a word to search for")) };
        let asked = text::fold(&word).to_uppercase();
        let filtered = Query { filter: Some(("text", Value::Text(asked.clone()))), ..q.clone() };
        let got = walk(&l, t, &ctx, &filtered, FULL, "FILTER-EXACT").await?;
        ensure(got.iter().any(|r| l.id(r) == id), "TEXT-NFC-IN", || {
            format!("{}: text {asked:?} did not find {id}, whose name has {word:?}", L::NAME)
        })
    })
}

/// NEAR-SORTED: around one of the adapter's own records, every record within
/// the radius, with its true distance, nearest first, that record among
/// them.
pub(crate) fn near_sorted<L: Listing>(t: &Target) -> CaseFuture<'_> {
    Box::pin(async move {
        let l = L::default();
        let ctx = ctx_for::<L>(t)?;
        let centre = if L::NEEDS_NEAR {
            l.centre(t).await?
        } else {
            let first = call(&l, t, &ctx, Query { page_size: FULL, ..Default::default() })
                .await
                .map_err(|e| failed_under("NEAR-SORTED", e))?;
            first.items.iter().find_map(|r| l.located(r).0)
        };
        let centre = centre.ok_or_else(|| Violation {
            rule: "NEAR-SORTED",
            detail: format!(
                "{}: no listed record has a location to search around; the case cannot check anything",
                L::NAME
            ),
        })?;
        let q = Query { near: near(centre), page_size: FULL, ..Default::default() };
        let found = call(&l, t, &ctx, q).await.map_err(|e| failed_under("NEAR-SORTED", e))?.items;
        ensure(!found.is_empty(), "NEAR-SORTED", || {
            format!(
                "{}: nothing within {RADIUS_M} m of one of its own records, at the record's own coordinates",
                L::NAME
            )
        })?;
        // The record searched around is found, first, at its own place.
        let first = found.first().and_then(|r| l.located(r).1);
        ensure(first.is_some_and(|d| d <= 5.0), "NEAR-SORTED", || {
            format!(
                "{}: the search around one of its own records did not give that record first, at 0 m (first at {:?} m)",
                L::NAME,
                first.map(|d| d.round())
            )
        })?;
        let mut last = 0.0;
        for r in &found {
            let (location, distance) = l.located(r);
            let d = distance.ok_or_else(|| Violation {
                rule: "NEAR-SORTED",
                detail: format!("{}: {} has no distance_meters", L::NAME, l.id(r)),
            })?;
            let actual = location.map(|at| geo::distance_m(&centre, &at)).unwrap_or(f64::INFINITY);
            ensure(actual <= RADIUS_M * 1.01 + 1.0, "NEAR-SORTED", || {
                format!("{}: {} is {actual:.0} m away, outside the {RADIUS_M} m radius", L::NAME, l.id(r))
            })?;
            // 5 m, or 1% further off: an ellipsoidal distance (WGS 84) differs
            // from the haversine one by up to about 0.5%.
            ensure((actual - d).abs() <= 5.0 + actual * 0.01, "NEAR-SORTED", || {
                format!(
                    "{}: {} has distance_meters {d:.0} but is {actual:.0} m away (great-circle, haversine)",
                    L::NAME,
                    l.id(r)
                )
            })?;
            ensure(d <= RADIUS_M * 1.01 + 5.0, "NEAR-SORTED", || {
                format!("{}: {} is {d:.0} m away, outside the {RADIUS_M} m radius", L::NAME, l.id(r))
            })?;
            ensure(d >= last, "NEAR-SORTED", || format!("{}: {d:.0} m after {last:.0} m: not nearest first", L::NAME))?;
            last = d;
        }
        Ok(())
    })
}

/// TEXT-NFC: every string of every record, at every depth, in NFC.
pub(crate) fn nfc_text<L: Listing>(t: &Target) -> CaseFuture<'_> {
    Box::pin(async move {
        let l = L::default();
        let ctx = ctx_for::<L>(t)?;
        let q = base(&l, t).await?;
        let all = walk(&l, t, &ctx, &q, FULL, "TEXT-NFC").await?;
        if all.is_empty() {
            return Err(crate::skip("nothing listed to read"));
        }
        for r in all {
            let texts = nfc::texts(&r.encode_to_vec(), L::RECORD);
            // The text is not shown: a record may hold personal data.
            ensure(texts.iter().all(|s| text::is_nfc_text(s)), "TEXT-NFC", || {
                format!("{}: {} has text not in NFC", L::NAME, l.id(&r))
            })?;
        }
        Ok(())
    })
}

/// The top-level fields of an encoded message: number → the raw bytes of
/// each occurrence, in order.
fn fields(mut bytes: &[u8]) -> BTreeMap<u32, Vec<Vec<u8>>> {
    use prost::encoding::{DecodeContext, decode_key, skip_field};
    let mut out: BTreeMap<u32, Vec<Vec<u8>>> = BTreeMap::new();
    while !bytes.is_empty() {
        let before = bytes;
        let Ok((number, wire)) = decode_key(&mut bytes) else { break };
        if skip_field(wire, number, &mut bytes, DecodeContext::default()).is_err() {
            break;
        }
        out.entry(number).or_default().push(before[..before.len() - bytes.len()].to_vec());
    }
    out
}

/// GET-MATCHES-LIST: the first listed records, fetched by their id, carry
/// the same value in every field the list gave (a list may leave fields out).
pub(crate) fn get_matches_list<L: Listing>(t: &Target) -> CaseFuture<'_> {
    Box::pin(async move {
        let l = L::default();
        let ctx = ctx_for::<L>(t)?;
        let q = base(&l, t).await?;
        let listed = call(&l, t, &ctx, Query { page_size: GETS as i32, ..q })
            .await
            .map_err(|e| failed_under("GET-MATCHES-LIST", e))?
            .items;
        if listed.is_empty() {
            return Err(crate::skip("nothing listed to get"));
        }
        for record in listed {
            let id = l.id(&record);
            let ctx = t.renewed(&ctx);
            let got = match bounded(&ctx, l.get(t, &ctx, &id)).await {
                Ok(got) => got,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(Violation {
                        rule: "GET-MATCHES-LIST",
                        detail: format!("{}: {id} is listed, but its get answers not_found", L::NAME),
                    });
                }
                Err(e) => return Err(failed_under("GET-MATCHES-LIST", e)),
            };
            let (listed, got) = (fields(&record.encode_to_vec()), fields(&got.encode_to_vec()));
            for (number, values) in listed.iter().filter(|(n, _)| !L::VOLATILE.contains(n)) {
                ensure(got.get(number) == Some(values), "GET-MATCHES-LIST", || {
                    format!("{}: {id} has another value in field {number} of {} when got by id", L::NAME, L::RECORD)
                })?;
            }
        }
        Ok(())
    })
}

/// NOT-FOUND: the get of an id no record can have.
pub(crate) fn unknown_id<L: Listing>(t: &Target) -> CaseFuture<'_> {
    Box::pin(async move {
        let l = L::default();
        let ctx = ctx_for::<L>(t)?;
        let name = L::GET.map(super::get_name).unwrap_or_default();
        super::expect_not_found(&name, bounded(&ctx, l.get(t, &ctx, L::UNKNOWN_ID)).await)
    })
}

/// PAGE-STABLE and CONCURRENT-SAFE: the same call twice, then 16 at once,
/// all answer the same.
pub(crate) fn concurrent<L: Listing>(t: &Target) -> CaseFuture<'_> {
    Box::pin(async move {
        let l = L::default();
        let ctx = ctx_for::<L>(t)?;
        let q = Query { page_size: PAGE, ..base(&l, t).await? };
        let one = || call(&l, t, &ctx, q.clone());
        let expected = ids(&l, &one().await.map_err(|e| failed_under("CONCURRENT-SAFE", e))?.items);
        let again = ids(&l, &one().await.map_err(|e| failed_under("CONCURRENT-SAFE", e))?.items);
        ensure(expected == again, "PAGE-STABLE", || {
            format!("{}: the same call made twice answered differently", L::NAME)
        })?;
        for r in futures_util::future::join_all((0..16).map(|_| one())).await {
            let got = r.map_err(|e| failed_under("CONCURRENT-SAFE", e))?;
            ensure(ids(&l, &got.items) == expected, "CONCURRENT-SAFE", || {
                format!("{}: 16 concurrent calls did not all answer as one call does", L::NAME)
            })?;
        }
        Ok(())
    })
}

/// DEADLINE: a call whose deadline has passed, and one whose deadline is
/// half the adapter's own latency, answer by their deadline (give or take
/// [`LATE`]): from memory, or `DeadlineExceeded`.
pub(crate) fn deadlines<L: Listing>(t: &Target) -> CaseFuture<'_> {
    Box::pin(async move {
        let l = L::default();
        let ctx = ctx_for::<L>(t)?;
        let q = Query { page_size: PAGE, ..base(&l, t).await? };
        let mut latency = Duration::MAX;
        for _ in 0..3 {
            let started = Instant::now();
            call(&l, t, &ctx, q.clone()).await.map_err(|e| failed_under("DEADLINE", e))?;
            latency = latency.min(started.elapsed());
        }
        for (said, within) in [("already passed", Duration::ZERO), ("half the adapter's latency", latency / 2)] {
            let deadline = Instant::now() + within;
            let mut short = ctx.clone();
            short.deadline = Some(deadline);
            let answer = tokio::time::timeout_at(deadline + Duration::from_secs(5), l.list(t, &short, q.clone())).await;
            let late = Instant::now().saturating_duration_since(deadline);
            let Ok(answer) = answer else {
                return Err(Violation {
                    rule: "DEADLINE",
                    detail: format!("{}: a call whose deadline had {said} was still running 5 s after it", L::NAME),
                });
            };
            ensure(late <= LATE, "DEADLINE", || {
                format!("{}: a call whose deadline had {said} answered {} ms after it", L::NAME, late.as_millis())
            })?;
            if let Err(e) = answer {
                ensure(e.kind() == ErrorKind::DeadlineExceeded, "DEADLINE", || {
                    format!(
                        "{}: a call whose deadline had {said} failed with {} instead of deadline_exceeded ({e})",
                        L::NAME,
                        e.kind()
                    )
                })?;
            }
        }
        Ok(())
    })
}

/// ERROR-KINDS: a page token the adapter did not issue is
/// `InvalidArgument` naming `page_token`.
pub(crate) fn forged_token<L: Listing>(t: &Target) -> CaseFuture<'_> {
    Box::pin(async move {
        let l = L::default();
        let ctx = ctx_for::<L>(t)?;
        let q = Query { page_token: "0123456789abcdefXYZ".into(), ..base(&l, t).await? };
        match call(&l, t, &ctx, q).await {
            Err(e) if e.kind() == ErrorKind::InvalidArgument && e.field() == Some("page_token") => Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::DeadlineExceeded) => {
                Err(failed_under("ERROR-KINDS", e))
            }
            Err(e) => Err(Violation {
                rule: "ERROR-KINDS",
                detail: format!(
                    "{}: a forged page_token gave {} (field {:?}) instead of invalid_argument on page_token",
                    L::NAME,
                    e.kind(),
                    e.field()
                ),
            }),
            Ok(_) => {
                Err(Violation { rule: "ERROR-KINDS", detail: format!("{}: a forged page_token was accepted", L::NAME) })
            }
        }
    })
}
