//! Codecs: how typed values become the bytes that stores keep.
//!
//! Every value is written in a small versioned envelope:
//!
//! ```text
//! byte 0     0x6D ('m'), the envelope marker
//! byte 1     envelope format version (1)
//! byte 2     codec id (1 = MessagePack, 2 = JSON)
//! bytes 3-4  the cache's schema version, little-endian u16 (see CacheBuilder::schema_version)
//! bytes 5..  the codec's payload
//! ```
//!
//! Bytes that do not open (another codec, another schema version, a truncated or corrupted value,
//! a type that changed between deploys) are a miss for the [`Cache`](crate::Cache), which removes
//! the entry and logs it; never a panic.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

const MARKER: u8 = 0x6D;
const FORMAT: u8 = 1;
const HEADER_LEN: usize = 5;

/// A serialization format for cached values.
///
/// # Examples
///
/// ```
/// use matroska_core::codec::{Codec, MsgPack};
///
/// let mut out = Vec::new();
/// MsgPack.encode(&vec![1, 2, 3], &mut out)?;
/// let back: Vec<i32> = MsgPack.decode(&out)?;
/// assert_eq!(back, [1, 2, 3]);
/// # Ok::<(), matroska_core::Error>(())
/// ```
pub trait Codec: fmt::Debug + Send + Sync + 'static {
    /// The id written in the envelope; distinct for each codec.
    const ID: u8;

    /// Appends the encoding of `value` to `out`.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if the value cannot be represented.
    fn encode<T: Serialize + ?Sized>(&self, value: &T, out: &mut Vec<u8>) -> Result<()>;

    /// Decodes a value.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if the bytes are not a valid encoding of a `T`.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T>;
}

/// MessagePack with named fields (the default): compact, and tolerant of added or reordered
/// struct fields in the way serde's defaults allow.
///
/// # Examples
///
/// ```
/// use matroska_core::codec::{Codec, MsgPack};
///
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Article { id: u64, title: String }
///
/// let mut out = Vec::new();
/// MsgPack.encode(&Article { id: 1, title: "a".into() }, &mut out)?;
/// assert_eq!(MsgPack.decode::<Article>(&out)?, Article { id: 1, title: "a".into() });
/// # Ok::<(), matroska_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct MsgPack;

impl Codec for MsgPack {
    const ID: u8 = 1;

    fn encode<T: Serialize + ?Sized>(&self, value: &T, out: &mut Vec<u8>) -> Result<()> {
        let mut ser = rmp_serde::Serializer::new(out).with_struct_map();
        value
            .serialize(&mut ser)
            .map_err(|e| Error::Encode(Arc::new(e)))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        let mut rest = bytes;
        let value = T::deserialize(&mut rmp_serde::Deserializer::new(&mut rest))
            .map_err(|e| Error::Decode(Arc::new(e)))?;
        if rest.is_empty() {
            Ok(value)
        } else {
            Err(Error::Decode(Arc::new(TrailingBytes(rest.len()))))
        }
    }
}

/// Bytes left over after a complete value: the bytes were not a value of the requested type.
#[derive(Debug, thiserror::Error)]
#[error("{0} bytes left over after the value")]
struct TrailingBytes(usize);

/// JSON (feature `json`): readable in `redis-cli` and `psql`, larger and slower than MessagePack.
///
/// # Examples
///
/// ```
/// use matroska_core::codec::{Codec, Json};
///
/// let mut out = Vec::new();
/// Json.encode(&[1, 2], &mut out)?;
/// assert_eq!(out, b"[1,2]");
/// # Ok::<(), matroska_core::Error>(())
/// ```
#[cfg(feature = "json")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

#[cfg(feature = "json")]
impl Codec for Json {
    const ID: u8 = 2;

    fn encode<T: Serialize + ?Sized>(&self, value: &T, out: &mut Vec<u8>) -> Result<()> {
        serde_json::to_writer(out, value).map_err(|e| Error::Encode(Arc::new(e)))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| Error::Decode(Arc::new(e)))
    }
}

/// Why bytes did not open as an envelope.
#[derive(Debug, thiserror::Error)]
enum EnvelopeError {
    #[error("not a Matroska envelope")]
    NotAnEnvelope,
    #[error("envelope format {0} is not supported")]
    Format(u8),
    #[error("written by codec {found}, read with codec {expected}")]
    Codec { found: u8, expected: u8 },
    #[error("written with schema version {found}, read with {expected}")]
    Schema { found: u16, expected: u16 },
}

/// Encodes `value` in an envelope.
pub(crate) fn seal<C: Codec, T: Serialize + ?Sized>(
    codec: &C,
    schema: u16,
    value: &T,
) -> Result<Bytes> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[MARKER, FORMAT, C::ID]);
    out.extend_from_slice(&schema.to_le_bytes());
    codec.encode(value, &mut out)?;
    Ok(Bytes::from(out))
}

/// Decodes an envelope written by [`seal`] with the same codec and schema version.
pub(crate) fn open<C: Codec, T: DeserializeOwned>(
    codec: &C,
    schema: u16,
    bytes: &[u8],
) -> Result<T> {
    let bad = |e: EnvelopeError| Error::Decode(Arc::new(e));
    if bytes.len() < HEADER_LEN || bytes[0] != MARKER {
        return Err(bad(EnvelopeError::NotAnEnvelope));
    }
    if bytes[1] != FORMAT {
        return Err(bad(EnvelopeError::Format(bytes[1])));
    }
    if bytes[2] != C::ID {
        return Err(bad(EnvelopeError::Codec {
            found: bytes[2],
            expected: C::ID,
        }));
    }
    let found = u16::from_le_bytes([bytes[3], bytes[4]]);
    if found != schema {
        return Err(bad(EnvelopeError::Schema {
            found,
            expected: schema,
        }));
    }
    codec.decode(&bytes[HEADER_LEN..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V1 {
        id: u64,
        title: String,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Changed {
        id: String,
        body: Vec<u8>,
    }

    #[test]
    fn round_trip_in_both_codecs() {
        let v = V1 {
            id: 1,
            title: "t".into(),
        };
        let bytes = seal(&MsgPack, 0, &v).unwrap();
        assert_eq!(open::<_, V1>(&MsgPack, 0, &bytes).unwrap(), v);
        let bytes = seal(&Json, 0, &v).unwrap();
        assert_eq!(open::<_, V1>(&Json, 0, &bytes).unwrap(), v);
    }

    #[test]
    fn everything_that_does_not_open_is_a_decode_error() {
        let v = V1 {
            id: 1,
            title: "t".into(),
        };
        let bytes = seal(&MsgPack, 3, &v).unwrap();
        let cases: Vec<(&str, Result<V1>)> = vec![
            ("empty", open(&MsgPack, 3, b"")),
            ("garbage", open(&MsgPack, 3, b"\xff\x00garbage")),
            ("truncated", open(&MsgPack, 3, &bytes[..bytes.len() - 2])),
            ("other codec", open(&Json, 3, &bytes)),
            ("other schema", open(&MsgPack, 4, &bytes)),
        ];
        for (what, result) in cases {
            assert!(
                matches!(result, Err(Error::Decode(_))),
                "{what}: {result:?}"
            );
        }
        let changed: Result<Changed> = open(&MsgPack, 3, &bytes);
        assert!(matches!(changed, Err(Error::Decode(_))), "type changed");
        let trailing = [bytes.as_ref(), b"\x01"].concat();
        assert!(
            open::<_, V1>(&MsgPack, 3, &trailing).is_err(),
            "trailing bytes"
        );
    }
}
