//! Vietnam's administrative units since 1 July 2025: 34 provinces and 3,321
//! wards and communes, embedded from `data/` (see its PROVENANCE.md).

use std::collections::HashMap;
use std::sync::LazyLock;

/// A province or centrally-governed city.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Province {
    /// The 2-digit code, for example "79".
    pub code: &'static str,
    /// The full name, for example "Thành phố Hồ Chí Minh".
    pub full_name: &'static str,
}

/// A ward, commune or special zone (phường, xã, đặc khu).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ward {
    /// The 5-digit code, for example "26740".
    pub code: &'static str,
    /// The province it belongs to.
    pub province_code: &'static str,
    /// The full name, for example "Phường Sài Gòn".
    pub full_name: &'static str,
}

struct Units {
    provinces: Vec<Province>,
    wards: HashMap<&'static str, Ward>,
}

static PROVINCES_CSV: &str = include_str!("../data/provinces-2025.csv");
static WARDS_CSV: &str = include_str!("../data/wards-2025.csv");

static UNITS: LazyLock<Units> = LazyLock::new(|| {
    let rows =
        |csv: &'static str| csv.lines().skip(1).filter(|l| !l.is_empty()).map(|l| l.split(',').collect::<Vec<_>>());
    let provinces =
        rows(PROVINCES_CSV).filter_map(|c| Some(Province { code: c.first()?, full_name: c.get(1)? })).collect();
    let wards = rows(WARDS_CSV)
        .filter_map(|c| {
            let ward = Ward { code: c.first()?, province_code: c.get(1)?, full_name: c.get(2)? };
            Some((ward.code, ward))
        })
        .collect();
    Units { provinces, wards }
});

/// Every province, by code.
pub fn provinces() -> &'static [Province] {
    &UNITS.provinces
}

/// The province with this 2-digit code.
pub fn province(code: &str) -> Option<&'static Province> {
    UNITS.provinces.iter().find(|p| p.code == code)
}

/// The ward with this 5-digit code.
pub fn ward(code: &str) -> Option<&'static Ward> {
    UNITS.wards.get(code)
}

/// The wards of one province.
pub fn wards_of(province_code: &str) -> impl Iterator<Item = &'static Ward> {
    UNITS.wards.values().filter(move |w| w.province_code == province_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_2025_units() {
        assert_eq!(provinces().len(), 34);
        assert_eq!(UNITS.wards.len(), 3321);
        assert_eq!(province("79").map(|p| p.full_name), Some("Thành phố Hồ Chí Minh"));
        assert_eq!(province("01").map(|p| p.full_name), Some("Thành phố Hà Nội"));
        assert_eq!(wards_of("79").count(), 168);
        let w = ward("26740").unwrap();
        assert_eq!((w.province_code, w.full_name), ("79", "Phường Sài Gòn"));
        assert!(province("99").is_none());
        assert!(ward("99999").is_none());
    }
}
