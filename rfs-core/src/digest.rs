//! SHA-256 digests of object content.

use std::fmt;
use std::io::{self, Read};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// The SHA-256 digest of an object's content.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

/// Why bytes or text are not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The input has the wrong length.
    #[error("digest must be 32 bytes, got {0}")]
    WrongLength(usize),
    /// The text is not hexadecimal.
    #[error("digest is not hexadecimal")]
    NotHex,
}

impl Digest {
    /// Returns the digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }

    /// Returns the digest of everything `reader` yields, and its length.
    ///
    /// # Errors
    ///
    /// Returns the reader's I/O error.
    pub fn of_reader(mut reader: impl Read) -> io::Result<(Self, u64)> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let read = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(read) => read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            hasher.update(&buf[..read]);
            total += read as u64;
        }
        Ok((Self(hasher.finalize().into()), total))
    }

    /// Returns the digest held in a 32-byte slice.
    ///
    /// # Errors
    ///
    /// Returns [`DigestError::WrongLength`] for any other length.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, DigestError> {
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| DigestError::WrongLength(bytes.len()))?;
        Ok(Self(array))
    }

    /// Returns the digest written as 64 hexadecimal digits.
    ///
    /// # Errors
    ///
    /// Returns an error when the text is not 64 hexadecimal digits.
    pub fn from_hex(text: &str) -> Result<Self, DigestError> {
        let bytes = hex::decode(text).map_err(|_| DigestError::NotHex)?;
        Self::from_slice(&bytes)
    }

    /// Returns the raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Returns the digest as 64 lowercase hexadecimal digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl From<[u8; 32]> for Digest {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", &self.to_hex()[..12])
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Digest::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector_matches() {
        let empty = Digest::of(b"");
        assert_eq!(
            empty.to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn reader_and_slice_digests_agree() {
        let data = vec![7u8; 200_000];
        let (from_reader, len) = Digest::of_reader(&data[..]).unwrap();
        assert_eq!(from_reader, Digest::of(&data));
        assert_eq!(len, 200_000);
    }

    #[test]
    fn hex_round_trips_and_bad_input_is_rejected() {
        let digest = Digest::of(b"world");
        assert_eq!(Digest::from_hex(&digest.to_hex()), Ok(digest));
        assert_eq!(Digest::from_hex("zz"), Err(DigestError::NotHex));
        assert_eq!(
            Digest::from_slice(&[0; 31]),
            Err(DigestError::WrongLength(31))
        );
    }
}
