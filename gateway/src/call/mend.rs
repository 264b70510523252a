//! What the gateway mends in an adapter's answer before it is cached or
//! sent, once per fetch: text not in Unicode NFC is composed
//! ([`lienthong_adapter_core::nfc`]), a page longer than `page_size` is cut. Each mend
//! is a contract violation of the adapter, counted against its instance
//! (`lienthong_adapter_contract_violations_total`, by rule) and logged.

use std::sync::Arc;

use prost::Message;

use crate::call::metadata::Encoded;
use crate::gateway::page_tokens::{Listing, Paging};
use crate::telemetry::metrics::Metrics;
use lienthong_adapter_core::nfc::normalize;

/// Mends the answers of one adapter instance. Cheap to clone, for fills
/// that outlive the call.
#[derive(Clone)]
pub struct Mender {
    metrics: Arc<Metrics>,
    instance: String,
}

impl std::fmt::Debug for Mender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mender").field("instance", &self.instance).finish_non_exhaustive()
    }
}

impl Mender {
    /// For the answers of `instance`.
    pub fn new(metrics: Arc<Metrics>, instance: &str) -> Self {
        Self { metrics, instance: instance.to_owned() }
    }

    fn violated(&self, rule: &'static str) {
        self.metrics.contract_violation(&self.instance, rule);
    }

    /// `message` (an encoded `name`, when known), framed for the wire, its
    /// text in NFC.
    pub fn frame(&self, message: &impl Message, name: Option<&str>) -> Encoded {
        let encoded = Encoded::frame(message);
        match encoded.0.get(5..).zip(name).and_then(|(bytes, name)| normalize(bytes, name)) {
            Some(fixed) => {
                self.violated("NFC");
                Encoded::frame_bytes(&fixed)
            }
            None => encoded,
        }
    }

    /// `value` (a `name`) with its text in NFC: re-encoded only when some is
    /// not.
    pub fn compose<T: Message + Default>(&self, value: T, name: &str) -> T {
        match normalize(&value.encode_to_vec(), name).map(|fixed| T::decode(&*fixed)) {
            Some(Ok(fixed)) => {
                self.violated("NFC");
                fixed
            }
            _ => value,
        }
    }

    /// `list` cut to `paging`'s `page_size` when it is longer, its next
    /// page token sealed.
    pub fn page<T: Listing>(&self, paging: &Paging, list: T) -> T {
        let (page, oversized) = paging.seal_page(list);
        if oversized {
            self.violated("PAGE-SIZE");
        }
        page
    }
}

#[cfg(test)]
mod tests {
    use lienthong_adapter_core::api;

    use super::*;

    #[test]
    fn a_mender_composes_a_decoded_record_and_counts_it() {
        let metrics = Arc::new(Metrics::new(&crate::telemetry::TelemetryConfig::default()).unwrap());
        let mender = Mender::new(metrics.clone(), "portal");
        let decomposed: String = unicode_normalization::UnicodeNormalization::nfd("Đăng ký kết hôn").collect();
        let dossier = api::Dossier { procedure_name: decomposed, ..Default::default() };
        let fixed = mender.compose(dossier, "lienthong.v1.Dossier");
        assert_eq!(fixed.procedure_name, "Đăng ký kết hôn");
        // Already composed: left as it is, not counted.
        let again = mender.compose(fixed.clone(), "lienthong.v1.Dossier");
        assert_eq!(again, fixed);
        let scraped = metrics.scrape().unwrap();
        let counted = scraped
            .lines()
            .find(|l| l.starts_with("lienthong_adapter_contract_violations_total") && l.contains("NFC"))
            .unwrap_or_default()
            .to_owned();
        assert!(counted.ends_with(" 1"), "{scraped}");
    }
}
