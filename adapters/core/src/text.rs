//! Text matching for Vietnamese: case- and diacritic-insensitive.

use unicode_normalization::{UnicodeNormalization, char::is_combining_mark, is_nfc};

/// Folds text for matching: decomposes, drops combining marks, maps đ/Đ to d,
/// lowercases. "Chợ Rẫy" and "cho ray" fold to the same string.
pub fn fold(text: &str) -> String {
    text.nfd()
        .filter(|c| !is_combining_mark(*c))
        .map(|c| match c {
            'đ' | 'Đ' => 'd',
            c => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether `haystack` contains `needle` once both are folded. `needle` must
/// already be folded (fold once per request, not once per record).
pub fn contains_folded(haystack: &str, folded_needle: &str) -> bool {
    folded_needle.is_empty() || fold(haystack).contains(folded_needle)
}

/// Whether `text` is in Unicode normalisation form C.
pub fn is_nfc_text(text: &str) -> bool {
    is_nfc(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_ignores_case_and_diacritics() {
        assert_eq!(fold("Bệnh viện Chợ Rẫy"), "benh vien cho ray");
        assert_eq!(fold("ĐẠI HỌC"), "dai hoc");
        // NFD input folds the same as NFC input.
        let nfd: String = "Thủ Đức".nfd().collect();
        assert_eq!(fold(&nfd), fold("Thủ Đức"));
        assert!(contains_folded("Trường THPT Lê Hồng Phong", &fold("le hong")));
        assert!(!contains_folded("Trường THPT Lê Hồng Phong", &fold("lê lợi")));
    }

    #[test]
    fn nfc_check() {
        assert!(is_nfc_text("Phường Sài Gòn"));
        let nfd: String = "Phường Sài Gòn".nfd().collect();
        assert!(!is_nfc_text(&nfd));
    }
}
