//! Property tests: arbitrary and adversarial input to every parser and
//! validator of the gateway — request fields, metadata, config files,
//! credential digests, audit lines — gives a clear answer, never a panic.

use proptest::prelude::*;
use tonic::Code;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic_types::StatusExt;

use crate::errors::Violations;
use crate::services::validate::{self, CodeKind};

/// Strings with the shapes that break parsers: empty, huge, control
/// characters, combining marks, Vietnamese, digits, separators.
fn nasty() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "[0-9.\\-/H]{0,30}",
        "[\\x00-\\x1f\\u{202e}\\u{0301}\\u{feff}a-zđĐơƯ]{0,20}",
        Just(String::new()),
        Just("a".repeat(5000)),
        Just("../../etc/passwd?x=1#f".to_owned()),
    ]
}

const KINDS: [CodeKind; 7] = [
    CodeKind::Facility,
    CodeKind::RecordId,
    CodeKind::RouteNumber,
    CodeKind::Certificate,
    CodeKind::Agency,
    CodeKind::Procedure,
    CodeKind::Dossier,
];

fn violated(v: Violations) -> Option<Vec<String>> {
    let status = v.into_result().err()?;
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields = status.get_details_bad_request().map(|b| b.field_violations.into_iter().map(|f| f.field).collect());
    Some(fields.unwrap_or_default())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// An adapter's answer is walked for its text whatever its bytes: any
    /// input gives an answer or none, never a panic; a rewritten answer
    /// decodes and is in NFC.
    #[test]
    fn the_nfc_walk_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512), nfd in nasty()) {
        let name = lienthong_adapter_core::nfc::output_of(lienthong_adapter_core::Method::ListFacilities).unwrap();
        let _ = lienthong_adapter_core::nfc::normalize(&bytes, name);
        let answer = lienthong_adapter_core::api::ListFacilitiesResponse {
            facilities: vec![lienthong_adapter_core::api::Facility { name: nfd, ..Default::default() }],
            ..Default::default()
        };
        use prost::Message;
        if let Some(fixed) = lienthong_adapter_core::nfc::normalize(&answer.encode_to_vec(), name) {
            let fixed = lienthong_adapter_core::api::ListFacilitiesResponse::decode(&*fixed).unwrap();
            prop_assert!(unicode_normalization::is_nfc(&fixed.facilities[0].name));
        }
    }

    #[test]
    fn request_validators_answer_with_field_violations(
        value in nasty(),
        page_size in any::<i32>(),
        lat in any::<f64>(),
        lng in any::<f64>(),
        radius in any::<f64>(),
        enum_value in any::<i32>(),
    ) {
        for kind in KINDS {
            let mut v = Violations::new();
            validate::code(&mut v, "id", &value, kind);
            validate::optional_code(&mut v, "other", &value, kind);
            if let Some(fields) = violated(v) {
                prop_assert!(fields.iter().all(|f| f == "id" || f == "other"), "{fields:?}");
            }
        }
        let mut v = Violations::new();
        validate::page(&mut v, page_size, &value);
        validate::text(&mut v, "text", &value);
        validate::ward(&mut v, "ward_code", &value, "79");
        let near = lienthong_adapter_core::api::NearFilter {
            center: Some(lienthong_adapter_core::api::GeoPoint { latitude: lat, longitude: lng }),
            radius_meters: radius,
        };
        validate::near(&mut v, "near", Some(&near), true);
        validate::enum_value::<lienthong_adapter_core::api::FacilityType>(&mut v, "type", enum_value);
        if let Some(fields) = violated(v) {
            prop_assert!(!fields.is_empty());
        }
    }

    #[test]
    fn config_files_parse_or_report_problems(text in ".{0,400}") {
        let registry = crate::server::adapter_registry();
        if let Ok(config) = crate::Config::from_toml(&text) {
            let _ = config.validate(&registry);
        }
    }

    #[test]
    fn structured_config_files_parse_or_report_problems(
        section in prop_oneof![Just("server"), Just("cache"), Just("limits"), Just("breaker"), Just("bulkhead"),
                               Just("retry"), Just("admin"), Just("audit"), Just("apps.x"), Just("provinces.\"79\""),
                               Just("adapters.sandbox"), Just("anonymous")],
        key in "[a-z_]{1,24}",
        value in prop_oneof![Just("0".to_owned()), Just("-1".to_owned()), Just("\"1ms\"".to_owned()),
                             Just("\"999999h\"".to_owned()), Just("[\"*\"]".to_owned()), Just("true".to_owned()),
                             Just("{ per_second = 0, burst = 0 }".to_owned()), "\"[a-z0-9 ]{0,12}\"",
                             any::<i64>().prop_map(|n| n.to_string()), any::<f64>().prop_map(|n| format!("{n:?}"))],
    ) {
        let text = format!("{}\n[{section}]\n{key} = {value}\n", crate::config::SANDBOX_DEFAULT);
        let registry = crate::server::adapter_registry();
        match crate::Config::from_toml(&text) {
            Ok(config) => { let _ = config.validate(&registry); }
            Err(errors) => prop_assert!(errors.0.iter().all(|e| !e.path.is_empty() && !e.message.is_empty())),
        }
    }

    #[test]
    fn metadata_and_credentials_parse_or_are_refused(value in "[ -~]{0,100}") {
        let mut m = MetadataMap::new();
        if let Ok(v) = MetadataValue::try_from(value.as_str()) {
            m.insert("grpc-timeout", v.clone());
            m.insert("traceparent", v.clone());
            m.insert("x-lienthong-api-key", v.clone());
            m.insert("x-lienthong-purpose", v);
        }
        let _ = crate::call::parse_metadata_for_tests(&m);
        let _ = crate::crypto::parse_digest(&value);
        let _ = crate::gateway::apps::allowed_methods(&value);
        let _ = crate::audit::AuditRecord::parse(&value);
        let _ = crate::audit::verify::verify(value.as_bytes(), None);
        let _ = crate::crypto::pem_fingerprint(&value);
    }
}
