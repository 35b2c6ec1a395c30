//! Content addressing: every immutable object in d402 is named by a CIDv1 with a BLAKE3 multihash.
//!
//! We use the raw codec (0x55) for every object, bytes and JSON alike, so every CID prints as an
//! ordinary `bafkr4i…` string that IPFS tooling can read. JSON objects are hashed in their RFC 8785
//! canonical form (see [`canonical_json`]), so two nodes that serialise the same value differently
//! still agree on its CID.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Multicodec code of the BLAKE3 hash function.
const BLAKE3: u64 = 0x1e;
/// Multicodec code of raw bytes.
const RAW: u64 = 0x55;

/// The name of an immutable object: a CIDv1 (raw codec) over the BLAKE3 hash of its bytes.
///
/// ```
/// use d402_core::ContentId;
/// let cid = ContentId::of(b"hello");
/// assert!(cid.to_string().starts_with("bafkr4i"));
/// assert!(cid.verify(b"hello").is_ok());
/// assert!(cid.verify(b"hellO").is_err());
/// ```
///
/// Every d402 CID has the same version, codec and hash function, so only the 32-byte BLAKE3 digest
/// is kept; the `cid` crate builds and parses the textual and binary forms.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentId([u8; 32]);

/// Bytes that do not hash to the CID they were presented under.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("content hashes to {actual}, not to the expected {expected}")]
pub struct CidMismatch {
    pub expected: ContentId,
    pub actual: ContentId,
}

/// A string that is not a d402 CID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidParseError {
    #[error("not a CID: {0}")]
    Syntax(String),
    #[error("CID {0} does not use the BLAKE3 hash d402 requires")]
    WrongHash(String),
}

impl ContentId {
    /// The CID of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// The BLAKE3 digest this CID names.
    pub fn digest(&self) -> &[u8; 32] {
        &self.0
    }

    fn to_cid(self) -> cid::Cid {
        // A 32-byte digest always fits the 64-byte multihash.
        let mh = multihash::Multihash::<64>::wrap(BLAKE3, &self.0)
            .unwrap_or_else(|_| unreachable!("a 32-byte digest fits a 64-byte multihash"));
        cid::Cid::new_v1(RAW, mh)
    }

    /// Checks that `bytes` hash to this CID.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), CidMismatch> {
        let actual = Self::of(bytes);
        if actual == *self {
            Ok(())
        } else {
            Err(CidMismatch {
                expected: *self,
                actual,
            })
        }
    }

    /// The binary form, used as the key in the content store.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_cid().to_bytes()
    }

    /// Parses the binary form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CidParseError> {
        let cid = cid::Cid::try_from(bytes).map_err(|e| CidParseError::Syntax(e.to_string()))?;
        Self::checked(cid)
    }

    fn checked(cid: cid::Cid) -> Result<Self, CidParseError> {
        if cid.version() != cid::Version::V1 || cid.codec() != RAW {
            return Err(CidParseError::Syntax(format!(
                "{cid} is not a CIDv1 with the raw codec"
            )));
        }
        let digest: [u8; 32] = cid
            .hash()
            .digest()
            .try_into()
            .ok()
            .filter(|_| cid.hash().code() == BLAKE3)
            .ok_or_else(|| CidParseError::WrongHash(cid.to_string()))?;
        Ok(Self(digest))
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_cid(), f)
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({self})")
    }
}

impl FromStr for ContentId {
    type Err = CidParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let cid =
            cid::Cid::from_str(s).map_err(|e| CidParseError::Syntax(format!("{s:?}: {e}")))?;
        let parsed = Self::checked(cid)?;
        // One spelling per CID: other multibases, upper case, or base32 with stray padding bits
        // in the last character all decode to the same digest, and would let the text of a
        // signed document change without changing what it says.
        if parsed.to_string() != s {
            return Err(CidParseError::Syntax(format!(
                "{s:?} is not in canonical form (expected {parsed})"
            )));
        }
        Ok(parsed)
    }
}

impl Serialize for ContentId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ContentId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A value that cannot be put in canonical form (for example a number JCS cannot represent).
#[derive(Debug, thiserror::Error)]
#[error("cannot canonicalise JSON: {0}")]
pub struct CanonicalJsonError(String);

/// RFC 8785 (JCS) bytes of a serialisable value: the form d402 hashes and signs.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>, CanonicalJsonError> {
    serde_json_canonicalizer::to_vec(value).map_err(|e| CanonicalJsonError(e.to_string()))
}

/// The canonical bytes of `value` and their CID.
pub fn cid_of_json<T: Serialize>(value: &T) -> Result<(ContentId, Vec<u8>), CanonicalJsonError> {
    let bytes = canonical_json(value)?;
    Ok((ContentId::of(&bytes), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text_and_bytes() {
        let cid = ContentId::of(b"d402");
        let text = cid.to_string();
        assert!(text.starts_with("bafkr4i"), "{text}");
        assert_eq!(text.parse::<ContentId>().unwrap(), cid);
        assert_eq!(ContentId::from_bytes(&cid.to_bytes()).unwrap(), cid);
    }

    #[test]
    fn refuses_other_hashes_and_garbage() {
        // A sha2-256 CIDv1 (raw): valid CID, wrong hash function for d402.
        let sha = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
        assert!(matches!(
            sha.parse::<ContentId>(),
            Err(CidParseError::WrongHash(_))
        ));
        assert!(matches!(
            "not-a-cid".parse::<ContentId>(),
            Err(CidParseError::Syntax(_))
        ));
        assert!(ContentId::from_bytes(&[0xff, 0x00]).is_err());
    }

    #[test]
    fn only_the_canonical_text_parses() {
        let cid = ContentId::of(b"d402");
        let text = cid.to_string();
        let last = text.chars().last().unwrap();
        // The last base32 character carries padding bits: a neighbour may decode the same.
        let alphabet = "abcdefghijklmnopqrstuvwxyz234567";
        for c in alphabet.chars().filter(|c| *c != last) {
            let other = format!("{}{c}", &text[..text.len() - 1]);
            // Either another CID or an error: never the same CID under a second spelling.
            assert_ne!(other.parse::<ContentId>().ok(), Some(cid), "{other}");
        }
        assert!(text.to_uppercase().parse::<ContentId>().is_err());
    }

    #[test]
    fn canonical_json_ignores_key_order_and_spacing() {
        let a: serde_json::Value = serde_json::from_str(r#"{"b":1,"a":[1,2]}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{ "a" : [1, 2], "b" : 1 }"#).unwrap();
        assert_eq!(cid_of_json(&a).unwrap(), cid_of_json(&b).unwrap());
        assert_eq!(canonical_json(&a).unwrap(), br#"{"a":[1,2],"b":1}"#);
    }
}
