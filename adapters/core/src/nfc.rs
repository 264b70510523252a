//! Text in answers is in Unicode NFC, whatever the adapter sent.
//!
//! Vietnamese can be written composed (`ệ`, one code point) or decomposed
//! (`e` + two combining marks); the contract says NFC, and apps compare,
//! sort and search on it. An answer is checked on its encoded bytes, once,
//! when it is fetched: every string field of every message, as the public
//! API's descriptors say (no hand-picked fields). An answer already in NFC
//! (the usual case) is left as it is, without an allocation; otherwise the
//! strings are composed and the messages around them re-encoded.

use std::collections::HashMap;
use std::sync::LazyLock;

use crate::Method;
use prost::Message;
use prost_types::field_descriptor_proto::Type;

/// A field of a message, as far as this check cares.
#[derive(Debug, Clone)]
enum Field {
    Text,
    Message(String),
}

#[derive(Debug, Default)]
struct Index {
    /// Message full name (no leading dot) → field number → kind.
    messages: HashMap<String, HashMap<u32, Field>>,
    /// `package.Service/Method` → its output message's full name.
    outputs: HashMap<String, String>,
}

static INDEX: LazyLock<Index> = LazyLock::new(|| {
    let mut index = Index::default();
    let Ok(set) = prost_types::FileDescriptorSet::decode(lienthong_proto::FILE_DESCRIPTOR_SET) else {
        return index;
    };
    for file in &set.file {
        let package = file.package();
        for message in &file.message_type {
            add(&mut index, package, message);
        }
        for service in &file.service {
            for method in &service.method {
                index.outputs.insert(
                    format!("{package}.{}/{}", service.name(), method.name()),
                    method.output_type().trim_start_matches('.').to_owned(),
                );
            }
        }
    }
    index
});

fn add(index: &mut Index, scope: &str, message: &prost_types::DescriptorProto) {
    let name = format!("{scope}.{}", message.name());
    let fields = message
        .field
        .iter()
        .filter_map(|f| {
            let kind = match f.r#type() {
                Type::String => Field::Text,
                Type::Message => Field::Message(f.type_name().trim_start_matches('.').to_owned()),
                _ => return None,
            };
            Some((u32::try_from(f.number()).ok()?, kind))
        })
        .collect();
    for nested in &message.nested_type {
        add(index, &name, nested);
    }
    index.messages.insert(name, fields);
}

/// The full name of the message `method` answers with.
pub fn output_of(method: Method) -> Option<&'static str> {
    INDEX.outputs.get(method.full_name()).map(String::as_str)
}

/// `bytes` (an encoded `message`) with every string in NFC: `None` when it
/// already is (or cannot be read: then it is passed on as it is).
pub fn normalize(bytes: &[u8], message: &str) -> Option<Vec<u8>> {
    walk(bytes, INDEX.messages.get(message)?, 0).ok().flatten()
}

/// Every string field of `bytes` (an encoded `message`), at every depth, in
/// the order met: what a check of all of a record's text reads. Empty when
/// the message is unknown or the bytes cannot be read.
pub fn texts(bytes: &[u8], message: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(fields) = INDEX.messages.get(message) {
        let _ = collect(bytes, fields, 0, &mut out);
    }
    out
}

fn collect(bytes: &[u8], fields: &HashMap<u32, Field>, depth: usize, out: &mut Vec<String>) -> Result<(), ()> {
    if depth > MAX_DEPTH {
        return Err(());
    }
    length_delimited(bytes, |number, _, value| {
        let value = &bytes[value];
        match fields.get(&number) {
            Some(Field::Text) => out.push(String::from_utf8_lossy(value).into_owned()),
            Some(Field::Message(name)) => {
                if let Some(inner) = INDEX.messages.get(name) {
                    collect(value, inner, depth + 1, out)?;
                }
            }
            None => {}
        }
        Ok(())
    })
}

/// Reads `bytes` (an encoded message) field by field and calls `visit` with
/// each length-delimited one: its number, where its tag ends, and where its
/// value lies. Other fields are stepped over; bytes that do not read are
/// `Err`.
fn length_delimited(
    bytes: &[u8],
    mut visit: impl FnMut(u32, usize, std::ops::Range<usize>) -> Result<(), ()>,
) -> Result<(), ()> {
    let mut at = 0;
    while at < bytes.len() {
        let tag = varint(bytes, &mut at)?;
        let tag_end = at;
        match tag & 7 {
            0 => {
                varint(bytes, &mut at)?;
            }
            1 => at = at.checked_add(8).ok_or(())?,
            5 => at = at.checked_add(4).ok_or(())?,
            2 => {
                let len = usize::try_from(varint(bytes, &mut at)?).map_err(|_| ())?;
                let end = at.checked_add(len).filter(|e| *e <= bytes.len()).ok_or(())?;
                visit(u32::try_from(tag >> 3).map_err(|_| ())?, tag_end, at..end)?;
                at = end;
            }
            _ => return Err(()),
        }
        if at > bytes.len() {
            return Err(());
        }
    }
    Ok(())
}

/// Nesting deeper than this is not walked (the API nests a few levels).
const MAX_DEPTH: usize = 32;

/// One length-delimited field met in a walk, and what replaces its value.
struct Replaced {
    /// Where its tag ends (its length follows) and where its value ends.
    tag_end: usize,
    end: usize,
    value: Vec<u8>,
}

fn walk(bytes: &[u8], fields: &HashMap<u32, Field>, depth: usize) -> Result<Option<Vec<u8>>, ()> {
    if depth > MAX_DEPTH {
        return Err(());
    }
    let mut replaced: Vec<Replaced> = Vec::new();
    length_delimited(bytes, |number, tag_end, range| {
        let value = &bytes[range.clone()];
        let fixed = match fields.get(&number) {
            Some(Field::Text) => match std::str::from_utf8(value) {
                Ok(text) if !unicode_normalization::is_nfc(text) => {
                    Some(unicode_normalization::UnicodeNormalization::nfc(text).collect::<String>().into_bytes())
                }
                _ => None,
            },
            Some(Field::Message(name)) => match INDEX.messages.get(name) {
                Some(inner) => walk(value, inner, depth + 1)?,
                None => None,
            },
            None => None,
        };
        if let Some(value) = fixed {
            replaced.push(Replaced { tag_end, end: range.end, value });
        }
        Ok(())
    })?;
    if replaced.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(bytes.len() + 16);
    let mut copied = 0;
    for r in replaced {
        out.extend_from_slice(&bytes[copied..r.tag_end]);
        prost::encoding::encode_varint(r.value.len() as u64, &mut out);
        out.extend_from_slice(&r.value);
        copied = r.end;
    }
    out.extend_from_slice(&bytes[copied..]);
    Ok(Some(out))
}

fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, ()> {
    let mut rest = bytes.get(*at..).ok_or(())?;
    let before = rest.len();
    let value = prost::encoding::decode_varint(&mut rest).map_err(|_| ())?;
    *at += before - rest.len();
    Ok(value)
}

#[cfg(test)]
mod tests {
    use crate::api;

    use super::*;

    const COMPOSED: &str = "Bệnh viện Chợ Rẫy";

    fn decomposed(s: &str) -> String {
        unicode_normalization::UnicodeNormalization::nfd(s).collect()
    }

    #[test]
    fn every_string_at_every_depth_is_composed_and_the_rest_kept() {
        let nfd = decomposed(COMPOSED);
        assert_ne!(nfd, COMPOSED);
        let answer = api::ListFacilitiesResponse {
            facilities: vec![
                api::Facility {
                    facility_code: "79001".into(),
                    name: nfd.clone(),
                    address: Some(api::Address {
                        street: decomposed("Đường Nguyễn Chí Thanh"), ..Default::default()
                    }),
                    location: Some(api::GeoPoint { latitude: 10.75, longitude: 106.66 }),
                    ..Default::default()
                },
                api::Facility { facility_code: "79002".into(), name: COMPOSED.into(), ..Default::default() },
            ],
            total_size: 2,
            next_page_token: "abc".into(),
        };
        let name = output_of(Method::ListFacilities).unwrap();
        assert_eq!(name, "lienthong.v1.ListFacilitiesResponse");
        let fixed = normalize(&answer.encode_to_vec(), name).expect("the NFD strings are found");
        let fixed = api::ListFacilitiesResponse::decode(&*fixed).unwrap();
        let mut want = answer.clone();
        want.facilities[0].name = COMPOSED.into();
        want.facilities[0].address.as_mut().unwrap().street = "Đường Nguyễn Chí Thanh".into();
        assert_eq!(fixed, want);
    }

    #[test]
    fn texts_reads_every_string_at_every_depth() {
        let facility = api::Facility {
            facility_code: "79001".into(),
            name: COMPOSED.into(),
            address: Some(api::Address { street: "201B Nguyễn Chí Thanh".into(), ..Default::default() }),
            specialties: vec!["Nhi".into(), "Ngoại".into()],
            ..Default::default()
        };
        let all = texts(&facility.encode_to_vec(), "lienthong.v1.Facility");
        assert_eq!(all, ["79001", COMPOSED, "201B Nguyễn Chí Thanh", "Nhi", "Ngoại"]);
        assert!(texts(&facility.encode_to_vec(), "lienthong.v1.NoSuchMessage").is_empty());
    }

    #[test]
    fn an_answer_in_nfc_or_unreadable_is_left_alone() {
        let answer =
            api::GetFacilityResponse { facility: Some(api::Facility { name: COMPOSED.into(), ..Default::default() }) };
        let name = output_of(Method::GetFacility).unwrap();
        assert_eq!(normalize(&answer.encode_to_vec(), name), None);
        assert_eq!(normalize(&[0x0a, 0xff], name), None, "a truncated answer is not this check's business");
        assert_eq!(normalize(&answer.encode_to_vec(), "lienthong.v1.NoSuchMessage"), None);
    }
}
