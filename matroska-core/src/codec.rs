//! Codecs: how typed values become the bytes that stores keep.
//!
//! Every value is written in a small versioned envelope (format 2):
//!
//! ```text
//! byte 0       0x6D ('m'), the envelope marker
//! byte 1       envelope format version (2; format 1 still decodes)
//! byte 2       codec id (1 = MessagePack, 2 = JSON)
//! bytes 3-4    the cache's schema version, little-endian u16 (see CacheBuilder::schema_version)
//! bytes 5-12   last_retrieved: when the value was loaded, ms since the Unix epoch, LE u64
//! bytes 13-20  last_modified: when its encoded content last changed, ms since the epoch
//! bytes 21-28  refresh_at: the refresh point, ms since the epoch (0: none)
//! bytes 29-36  expires_at: the logical expiry, ms since the epoch (0: none); with fail-safe the
//!              store keeps the entry longer, as a fallback
//! bytes 37..   the codec's payload
//! ```
//!
//! Format 1 (written before item history existed) has the payload from byte 5 and no times.
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
/// The format written.
const FORMAT: u8 = 2;
/// The format written before item history; still decoded.
const FORMAT_V1: u8 = 1;
const HEADER_LEN_V1: usize = 5;
const HEADER_LEN: usize = 37;

/// The times an envelope carries, in milliseconds since the Unix epoch (0: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(clippy::struct_field_names)] // Milliseconds, said in each name.
pub(crate) struct Meta {
    /// When the value was loaded (or put).
    pub(crate) last_retrieved_ms: u64,
    /// When the encoded value last changed.
    pub(crate) last_modified_ms: u64,
    /// When a read should start a refresh (0: never).
    pub(crate) refresh_at_ms: u64,
    /// When the value expires logically (0: never, or the store's TTL is the expiry).
    pub(crate) expires_at_ms: u64,
}

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
    #[error("envelope of format {format} is truncated")]
    Truncated { format: u8 },
}

/// Encodes `value` in an envelope, with `meta`'s times.
pub(crate) fn seal<C: Codec, T: Serialize + ?Sized>(
    codec: &C,
    schema: u16,
    meta: Meta,
    value: &T,
) -> Result<Bytes> {
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(&[MARKER, FORMAT, C::ID]);
    out.extend_from_slice(&schema.to_le_bytes());
    for ms in [
        meta.last_retrieved_ms,
        meta.last_modified_ms,
        meta.refresh_at_ms,
        meta.expires_at_ms,
    ] {
        out.extend_from_slice(&ms.to_le_bytes());
    }
    codec.encode(value, &mut out)?;
    Ok(Bytes::from(out))
}

/// Rewrites the times of an envelope written by [`seal`] (format 2).
pub(crate) fn restamp(bytes: &mut [u8], meta: Meta) {
    if bytes.len() < HEADER_LEN || bytes[1] != FORMAT {
        return;
    }
    for (i, ms) in [
        meta.last_retrieved_ms,
        meta.last_modified_ms,
        meta.refresh_at_ms,
        meta.expires_at_ms,
    ]
    .into_iter()
    .enumerate()
    {
        bytes[5 + 8 * i..13 + 8 * i].copy_from_slice(&ms.to_le_bytes());
    }
}

/// Splits an envelope written with codec `C` and schema `schema` into its times (all zero for
/// format 1) and its payload.
pub(crate) fn split<C: Codec>(schema: u16, bytes: &[u8]) -> Result<(Meta, &[u8])> {
    let bad = |e: EnvelopeError| Error::Decode(Arc::new(e));
    if bytes.len() < HEADER_LEN_V1 || bytes[0] != MARKER {
        return Err(bad(EnvelopeError::NotAnEnvelope));
    }
    let format = bytes[1];
    if format != FORMAT && format != FORMAT_V1 {
        return Err(bad(EnvelopeError::Format(format)));
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
    if format == FORMAT_V1 {
        return Ok((Meta::default(), &bytes[HEADER_LEN_V1..]));
    }
    if bytes.len() < HEADER_LEN {
        return Err(bad(EnvelopeError::Truncated { format }));
    }
    let ms = |i: usize| {
        let mut word = [0; 8];
        word.copy_from_slice(&bytes[5 + 8 * i..13 + 8 * i]);
        u64::from_le_bytes(word)
    };
    let meta = Meta {
        last_retrieved_ms: ms(0),
        last_modified_ms: ms(1),
        refresh_at_ms: ms(2),
        expires_at_ms: ms(3),
    };
    Ok((meta, &bytes[HEADER_LEN..]))
}

/// Decodes an envelope written by [`seal`] with the same codec and schema version.
#[cfg(test)]
pub(crate) fn open<C: Codec, T: DeserializeOwned>(
    codec: &C,
    schema: u16,
    bytes: &[u8],
) -> Result<T> {
    open_meta(codec, schema, bytes).map(|(value, _)| value)
}

/// [`open`], also returning the envelope's times.
pub(crate) fn open_meta<C: Codec, T: DeserializeOwned>(
    codec: &C,
    schema: u16,
    bytes: &[u8],
) -> Result<(T, Meta)> {
    let (meta, payload) = split::<C>(schema, bytes)?;
    Ok((codec.decode(payload)?, meta))
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
        let bytes = seal(&MsgPack, 0, Meta::default(), &v).unwrap();
        assert_eq!(open::<_, V1>(&MsgPack, 0, &bytes).unwrap(), v);
        let bytes = seal(&Json, 0, Meta::default(), &v).unwrap();
        assert_eq!(open::<_, V1>(&Json, 0, &bytes).unwrap(), v);
    }

    #[test]
    fn everything_that_does_not_open_is_a_decode_error() {
        let v = V1 {
            id: 1,
            title: "t".into(),
        };
        let bytes = seal(&MsgPack, 3, Meta::default(), &v).unwrap();
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

    /// Bytes of format 1, as a release before item history stored them: `u64` 7 in MessagePack
    /// under schema 0, and a struct under schema 3.
    #[test]
    fn envelopes_of_format_1_still_decode_without_times() {
        let old: &[u8] = &[0x6D, 0x01, 0x01, 0x00, 0x00, 0x07];
        let (value, meta) = open_meta::<_, u64>(&MsgPack, 0, old).unwrap();
        assert_eq!((value, meta), (7, Meta::default()));
        // {"id": 1, "title": "t"} with named fields, schema 3.
        let old: &[u8] = &[
            0x6D, 0x01, 0x01, 0x03, 0x00, 0x82, 0xA2, b'i', b'd', 0x01, 0xA5, b't', b'i', b't',
            b'l', b'e', 0xA1, b't',
        ];
        let v: V1 = open(&MsgPack, 3, old).unwrap();
        assert_eq!(
            v,
            V1 {
                id: 1,
                title: "t".into()
            }
        );
        assert!(
            open::<_, V1>(&MsgPack, 2, old).is_err(),
            "schema still checked"
        );
    }

    #[test]
    fn format_2_carries_the_times_and_restamps_in_place() {
        let meta = Meta {
            last_retrieved_ms: 1,
            last_modified_ms: 2,
            refresh_at_ms: 3,
            expires_at_ms: u64::MAX,
        };
        let bytes = seal(&MsgPack, 0, meta, &9_u8).unwrap();
        assert_eq!(&bytes[..2], &[0x6D, 0x02]);
        assert_eq!(open_meta::<_, u8>(&MsgPack, 0, &bytes).unwrap(), (9, meta));
        let mut copy = bytes.to_vec();
        let later = Meta {
            last_retrieved_ms: 10,
            ..meta
        };
        restamp(&mut copy, later);
        assert_eq!(open_meta::<_, u8>(&MsgPack, 0, &copy).unwrap(), (9, later));
        assert!(
            open::<_, u8>(&MsgPack, 0, &bytes[..20]).is_err(),
            "a truncated header is an error"
        );
    }
}
