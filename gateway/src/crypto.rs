//! Keys the gateway holds, and what it seals with them: page tokens (AES-256-GCM,
//! so a token is opaque and cannot be forged or moved to another call) and the
//! audit chain's HMAC-SHA-256. Keys come from config as 64 hex digits
//! (`lienthong secret-key` makes one); replicas that share a key accept each
//! other's tokens.

pub mod dev_certs;

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::Deserialize;

/// A 256-bit secret key; never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    /// A fresh random key.
    pub fn random() -> anyhow::Result<Self> {
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key).map_err(|_| anyhow::anyhow!("no randomness for a key"))?;
        Ok(Self(key))
    }

    /// Parses 64 hex digits.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let bytes = from_hex(hex.trim())?;
        Some(Self(bytes.try_into().ok()?))
    }

    /// The key as 64 hex digits (for `lienthong secret-key` only).
    pub fn to_hex(&self) -> String {
        crate::crypto::hex(&self.0)
    }

    /// The raw bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A key for one use only, derived from this one under `label`, so that
    /// one configured key serves several purposes without sharing a key
    /// between two primitives.
    pub fn derive(&self, label: &str) -> Self {
        Self(hmac_sha256(self, label.as_bytes()))
    }
}

impl<'de> Deserialize<'de> for SecretKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom("a key is 64 hex digits (make one with `lienthong secret-key`)"))
    }
}

/// Bytes from hex digits; none for anything else.
pub fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok()).collect()
}

/// Seals and opens values bound to a context (AES-256-GCM, random nonces):
/// what is sealed cannot be read, altered, or opened under another context.
pub struct Sealer {
    key: LessSafeKey,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer")
    }
}

impl Sealer {
    /// A sealer with `key`.
    pub fn new(key: &SecretKey) -> anyhow::Result<Self> {
        let unbound =
            UnboundKey::new(&AES_256_GCM, key.bytes()).map_err(|_| anyhow::anyhow!("AES-256-GCM refused the key"))?;
        Ok(Self { key: LessSafeKey::new(unbound) })
    }

    /// `value` sealed under `context`, in hex.
    pub fn seal(&self, context: &[u8], value: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        if aws_lc_rs::rand::fill(&mut nonce).is_err() {
            // Without randomness no token can be made safely; an empty token
            // ends the listing rather than risk a reused nonce.
            return String::new();
        }
        let mut sealed = value.to_vec();
        if self
            .key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context), &mut sealed)
            .is_err()
        {
            return String::new();
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        crate::crypto::hex(&out)
    }

    /// The value sealed in `token` under `context`; none when it was not
    /// sealed by this key under this context, or was altered.
    pub fn open(&self, context: &[u8], token: &str) -> Option<Vec<u8>> {
        let bytes = from_hex(token)?;
        if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut sealed = sealed.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(context), &mut sealed).ok()?;
        Some(plain.to_vec())
    }
}

/// HMAC-SHA-256 of `data` under `key`.
pub fn hmac_sha256(key: &SecretKey, data: &[u8]) -> [u8; 32] {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.bytes());
    let tag = aws_lc_rs::hmac::sign(&key, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Parses 64 hex digits.
pub fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// The SHA-256 digest of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref());
    out
}

/// The SHA-256 fingerprint (hex) of the first certificate in `pem`, as
/// `client_cert_sha256` takes it.
pub fn pem_fingerprint(pem: &str) -> Option<String> {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()).next()?.ok()?;
    Some(hex(&sha256(der.as_ref())))
}

/// `N` random bytes, in hex.
pub fn random_hex<const N: usize>() -> anyhow::Result<String> {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("no randomness"))?;
    Ok(hex(&bytes))
}

/// Hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `digest` equals any of `known`, looking at all of them.
pub fn any_equal(known: impl Iterator<Item = [u8; 32]>, digest: &[u8; 32]) -> bool {
    known.fold(false, |found, d| aws_lc_rs::constant_time::verify_slices_are_equal(&d, digest).is_ok() | found)
}

/// The SHA-256 digest of `token`, in hex.
pub fn digest_hex(token: &str) -> String {
    hex(&sha256(token.as_bytes()))
}

/// A fresh random admin token (256 bits, hex).
pub fn new_token() -> anyhow::Result<String> {
    random_hex::<32>()
}

/// Lower-case hex digits.
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Pseudonyms of citizens for cache keys: a keyed hash (HMAC-SHA-256 under a
/// key drawn at start, 128 bits kept, hex), so keys hold no ID number and one
/// citizen's key can never equal another's in practice.
pub struct CitizenScopes {
    key: aws_lc_rs::hmac::Key,
}

impl std::fmt::Debug for CitizenScopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CitizenScopes(..)")
    }
}

impl CitizenScopes {
    /// Draws a fresh key.
    pub fn new() -> anyhow::Result<Self> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let key = aws_lc_rs::hmac::Key::generate(aws_lc_rs::hmac::HMAC_SHA256, &rng)
            .map_err(|_| anyhow::anyhow!("no randomness for the cache's citizen pseudonyms"))?;
        Ok(Self { key })
    }

    /// Pseudonyms under `key` (at least 32 secret bytes): stable across
    /// restarts.
    pub fn with_key(key: &[u8]) -> Self {
        Self { key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key) }
    }

    /// The scope of `citizen`'s personal data.
    pub fn scope(&self, citizen: &lienthong_adapter_core::CitizenId) -> [u8; 32] {
        let tag = aws_lc_rs::hmac::sign(&self.key, citizen.expose().as_bytes());
        let mut hex = [0u8; 32];
        for (i, b) in tag.as_ref().iter().take(16).enumerate() {
            hex[2 * i] = HEX_DIGITS[usize::from(b >> 4)];
            hex[2 * i + 1] = HEX_DIGITS[usize::from(b & 15)];
        }
        hex
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_under_their_context_and_key() {
        let key = SecretKey::random().unwrap();
        let sealer = Sealer::new(&key).unwrap();
        let token = sealer.seal(b"ListSchools|filters", b"offset 20");
        assert!(!token.contains("offset"));
        assert_eq!(sealer.open(b"ListSchools|filters", &token).unwrap(), b"offset 20");
        assert!(sealer.open(b"ListFacilities|filters", &token).is_none());
        assert!(Sealer::new(&SecretKey::random().unwrap()).unwrap().open(b"ListSchools|filters", &token).is_none());
        // Any altered digit breaks it.
        let mut altered = token.clone().into_bytes();
        altered[40] = if altered[40] == b'0' { b'1' } else { b'0' };
        assert!(sealer.open(b"ListSchools|filters", std::str::from_utf8(&altered).unwrap()).is_none());
        assert!(sealer.open(b"ListSchools|filters", "cbf29ce48422232514").is_none());
        assert!(sealer.open(b"ListSchools|filters", "").is_none());
    }

    #[test]
    fn keys_parse_from_hex_and_hide_from_debug() {
        let key = SecretKey::random().unwrap();
        assert_eq!(SecretKey::from_hex(&key.to_hex()), Some(key.clone()));
        assert!(SecretKey::from_hex("abc").is_none());
        assert_eq!(format!("{key:?}"), "SecretKey(<redacted>)");
    }
}
