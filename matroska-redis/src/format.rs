//! The formats the client reads without a script: the namespace state and the entry header
//! (`PROTOCOL.md` describes both; `lua/common.lua` parses them the same way, and the tests
//! `foreign_data` check that the two sides agree on what they refuse).

/// The length of the generation id: the seq it started at (20 digits), and 8 hex digits of the
/// nonce of the client that started it.
pub(crate) const GEN_LEN: usize = 28;
/// The fixed part of an entry: q (20 digits), the generation, the kind, the tags' length (8).
pub(crate) const HEADER_LEN: usize = 20 + GEN_LEN + 1 + 8;

/// The namespace state, `seq=<n> safe=<u> gen=<generation> inv=<seq> prev=<generation>:<seq>`
/// (`prev=-` when there is none). The plain read needs the first three.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct State<'a> {
    /// The sequence number: the namespace's clock.
    pub(crate) seq: u64,
    /// The safe mark: an entry of this generation filled at or after it may be served as it is.
    pub(crate) safe: u64,
    /// The generation: entries and fill tokens of another one are refused.
    pub(crate) gen_id: &'a str,
}

impl<'a> State<'a> {
    /// Parses the state; `None` for anything `read_state` in `lua/common.lua` refuses (the
    /// scripts then start a new generation).
    pub(crate) fn parse(text: &'a [u8]) -> Option<Self> {
        let text = std::str::from_utf8(text).ok()?;
        let mut fields = text.split(' ');
        let mut field = |name: &str| fields.next()?.strip_prefix(name);
        let seq = number(field("seq=")?.as_bytes(), 19)?;
        let safe = number(field("safe=")?.as_bytes(), 19)?;
        let gen_id = field("gen=").filter(|g| is_gen(g.as_bytes()))?;
        number(field("inv=")?.as_bytes(), 19)?;
        let prev = field("prev=")?;
        if prev != "-" {
            let (prev_gen, prev_inv) = prev.split_once(':')?;
            if !is_gen(prev_gen.as_bytes()) {
                return None;
            }
            number(prev_inv.as_bytes(), 19)?;
        }
        fields
            .next()
            .is_none()
            .then_some(Self { seq, safe, gen_id })
    }
}

/// An entry's header, as far as the plain read needs it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    /// The seq it was filled at (or last checked at).
    pub(crate) seq: u64,
    /// The generation it was filled in.
    pub(crate) gen_id: &'a [u8],
    /// Where the value starts.
    pub(crate) value_at: usize,
}

impl<'a> Entry<'a> {
    /// Parses an entry; `None` for anything `parse` in `lua/common.lua` refuses.
    pub(crate) fn parse(blob: &'a [u8]) -> Option<Self> {
        let header = blob.get(..HEADER_LEN)?;
        let seq = number(&header[..20], 20)?;
        let gen_id = &header[20..20 + GEN_LEN];
        if !is_gen(gen_id) || !matches!(header[20 + GEN_LEN], b'p' | b'e') {
            return None;
        }
        let tags_len = usize::try_from(number(&header[HEADER_LEN - 8..], 8)?).ok()?;
        let value_at = HEADER_LEN.checked_add(tags_len)?;
        let tags = blob.get(HEADER_LEN..value_at)?;
        if let (Some(first), Some(last)) = (tags.first(), tags.last())
            && (*first != 0 || *last != 0)
        {
            return None;
        }
        Some(Self {
            seq,
            gen_id,
            value_at,
        })
    }
}

/// Decimal digits only, at most `max` of them (and at least one).
fn number(digits: &[u8], max: usize) -> Option<u64> {
    if digits.is_empty() || digits.len() > max || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// 20 decimal digits, then 8 hex digits.
fn is_gen(text: &[u8]) -> bool {
    text.len() == GEN_LEN
        && text[..20].iter().all(u8::is_ascii_digit)
        && text[20..].iter().all(u8::is_ascii_hexdigit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen_id() -> &'static str {
        "000001733000000000001234abcd"
    }

    fn entry(q: &str, kind: &str, tags: &[u8], value: &[u8]) -> Vec<u8> {
        let mut blob = format!("{q}{}{kind}{:08}", gen_id(), tags.len()).into_bytes();
        blob.extend_from_slice(tags);
        blob.extend_from_slice(value);
        blob
    }

    #[test]
    fn entries_parse_and_foreign_ones_do_not() {
        let good = entry("00000000000000000042", "e", b"\0g:a\0g:b\0", b"value");
        let parsed = Entry::parse(&good).unwrap();
        assert_eq!(parsed.seq, 42);
        assert_eq!(parsed.gen_id, gen_id().as_bytes());
        assert_eq!(&good[parsed.value_at..], b"value");
        let empty = entry("00000000000000000007", "p", b"", b"");
        assert_eq!(Entry::parse(&empty).unwrap().value_at, HEADER_LEN);
        let bad = [
            Vec::new(),
            b"x".to_vec(),
            good[..HEADER_LEN - 1].to_vec(),
            entry("0000000000000000004x", "e", b"", b"v"),
            entry("-0000000000000000042", "e", b"", b"v"),
            entry("00000000000000000042", "x", b"", b"v"),
            entry("00000000000000000042", "e", b"g:a\0", b"v"),
            entry("00000000000000000042", "e", b"\0g:a", b"v"),
            // The tags' length runs past the end.
            {
                let mut b = entry("00000000000000000042", "e", b"", b"");
                b[HEADER_LEN - 1] = b'9';
                b
            },
            // Not a generation.
            {
                let mut b = good.clone();
                b[20 + GEN_LEN - 1] = b'g';
                b
            },
            // 20 digits above u64.
            entry("99999999999999999999", "e", b"", b"v"),
        ];
        for blob in bad {
            assert_eq!(Entry::parse(&blob), None, "{blob:?}");
        }
    }

    #[test]
    fn the_state_parses_and_foreign_ones_do_not() {
        let g = gen_id();
        let text = format!("seq=17 safe=12 gen={g} inv=15 prev=-");
        let state = State::parse(text.as_bytes()).unwrap();
        assert_eq!((state.seq, state.safe, state.gen_id), (17, 12, g));
        let with_prev = format!("seq=17 safe=12 gen={g} inv=15 prev={g}:3");
        assert!(State::parse(with_prev.as_bytes()).is_some());
        for bad in [
            String::new(),
            "17 12 3 0 1700-abcd".to_owned(),
            format!("seq=17 safe=12 gen={g}"),
            format!("seq=x safe=12 gen={g} inv=1 prev=-"),
            format!("seq=17 safe=12 gen={g}x inv=1 prev=-"),
            format!("seq=17 safe=12 gen={g} inv=1 prev=- extra"),
            format!("seq=17 safe=12 gen={g} inv=1 prev=x:1"),
            format!("seq=17 safe=12 gen={g} inv=1 prev={g}"),
            format!("seq=17 gen={g} safe=12 inv=1 prev=-"),
            format!("seq=99999999999999999999 safe=1 gen={g} inv=1 prev=-"),
        ] {
            assert_eq!(State::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
