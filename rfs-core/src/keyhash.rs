//! Key hashes: how rfsd and rfs-sync name a TLS key (SPEC section 2).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// The SHA-256 of a certificate's SubjectPublicKeyInfo, written as 64
/// lowercase hexadecimal digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash([u8; 32]);

/// Why text is not a key hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key hash must be 64 hexadecimal digits (or 40 or 64 zeros for none), got {0:?}")]
pub struct KeyHashError(String);

impl KeyHash {
    /// Returns the key hash of a DER-encoded SubjectPublicKeyInfo.
    pub fn of_spki(spki_der: &[u8]) -> Self {
        Self(Sha256::digest(spki_der).into())
    }

    /// Returns the key hash of a DER-encoded X.509 certificate, or `None`
    /// when it cannot be parsed.
    pub fn of_certificate(cert_der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
        Some(Self::of_spki(cert.public_key().raw))
    }

    /// Parses a key hash as operators write it: 64 hexadecimal digits, any
    /// case. Forty or sixty-four zeros (the vendor's "no key") give `None`.
    ///
    /// # Errors
    ///
    /// Returns [`KeyHashError`] for anything else.
    pub fn parse_optional(text: &str) -> Result<Option<Self>, KeyHashError> {
        let text = text.trim();
        if (text.len() == 40 || text.len() == 64) && text.bytes().all(|b| b == b'0') {
            return Ok(None);
        }
        text.parse().map(Some)
    }

    /// Returns the hash as 64 lowercase hexadecimal digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for KeyHash {
    type Err = KeyHashError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(text.trim()).map_err(|_| KeyHashError(text.to_owned()))?;
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyHashError(text.to_owned()))?;
        Ok(Self(array))
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({})", self.to_hex())
    }
}

impl Serialize for KeyHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for KeyHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_mean_no_key() {
        assert_eq!(KeyHash::parse_optional(&"0".repeat(40)), Ok(None));
        assert_eq!(KeyHash::parse_optional(&"0".repeat(64)), Ok(None));
    }

    #[test]
    fn upper_case_hex_is_normalised() {
        let hash = KeyHash::of_spki(b"spki");
        let upper = hash.to_hex().to_uppercase();
        assert_eq!(KeyHash::parse_optional(&upper), Ok(Some(hash)));
    }

    #[test]
    fn short_or_non_hex_text_is_rejected() {
        assert!(KeyHash::parse_optional("abc").is_err());
        assert!(KeyHash::parse_optional(&"g".repeat(64)).is_err());
    }
}
