//! Character classes and the few scanners (whitespace, quoted strings, list splitting) that
//! the framer, the URI parser and the header views share, so each rule of RFC 3261 §25.1
//! exists once.
//!
//! Every scanner works on `&str` slices of a header block that is already known to be UTF-8
//! and treats CR and LF as ordinary linear whitespace: a folded header value stays one
//! borrowed slice and nobody has to unfold it into a copy.

/// Character-class bits (RFC 3261 §25.1), one lookup per byte.
pub(crate) const TOKEN: u16 = 1;
/// `user` characters besides escapes: unreserved / user-unreserved.
pub(crate) const USER: u16 = 1 << 1;
/// `password` characters besides escapes.
pub(crate) const PASSWORD: u16 = 1 << 2;
/// `paramchar` besides escapes: param-unreserved / unreserved.
pub(crate) const PARAMCHAR: u16 = 1 << 3;
/// `hname` / `hvalue` characters besides escapes: hnv-unreserved / unreserved.
pub(crate) const HNV: u16 = 1 << 4;
/// `gen-value` characters outside quoted strings: token / host (`[` `]` `:`).
pub(crate) const GENVALUE: u16 = 1 << 5;
/// `word` (Call-ID).
pub(crate) const WORD: u16 = 1 << 6;
/// `uric` besides escapes, for opaque absolute URIs.
pub(crate) const URIC: u16 = 1 << 7;
/// alphanum.
pub(crate) const ALNUM: u16 = 1 << 8;
/// `hostname` characters: alphanum / "-" / "." (structure checked separately).
pub(crate) const HOST: u16 = 1 << 9;

const fn mark(t: &mut [u16; 256], chars: &[u8], bit: u16) {
    let mut i = 0;
    while i < chars.len() {
        t[chars[i] as usize] |= bit;
        i += 1;
    }
}

const fn build_classes() -> [u16; 256] {
    let mut t = [0u16; 256];
    let alnum_bits =
        TOKEN | USER | PASSWORD | PARAMCHAR | HNV | GENVALUE | WORD | URIC | ALNUM | HOST;
    let mut c = 0usize;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphanumeric() {
            t[c] = alnum_bits;
        }
        c += 1;
    }
    let mark_chars = b"-_.!~*'()";
    mark(&mut t, mark_chars, USER | PASSWORD | PARAMCHAR | HNV | URIC);
    mark(&mut t, b"&=+$,;?/", USER);
    mark(&mut t, b"&=+$,", PASSWORD);
    mark(&mut t, b"[]/:&+$", PARAMCHAR);
    mark(&mut t, b"[]/?:+$", HNV);
    mark(&mut t, b";/?:@&=+$,", URIC);
    mark(&mut t, b"-.!%*_+`'~", TOKEN | GENVALUE | WORD);
    mark(&mut t, b"[]:", GENVALUE);
    mark(&mut t, b"-.", HOST);
    mark(&mut t, b"()<>:\\\"/[]?{}", WORD);
    t
}

static CLASS: [u16; 256] = build_classes();

/// The class bits of byte `c` (a `u8` always indexes the table, so this never misses).
#[inline(always)]
fn class(c: u8) -> u16 {
    CLASS.get(usize::from(c)).copied().unwrap_or(0)
}

/// End of the run of class-`bits` bytes starting at `from`; `bits` must be a single class.
///
/// One table load and test per byte, four bytes per step: the runs of SIP (names, users,
/// hosts, parameters) are mostly short, and a byte-exact exit beats testing whole words.
#[inline(always)]
pub(crate) fn run(b: &[u8], from: usize, bits: u16) -> usize {
    let mut i = from;
    let out = |c: u8| class(c) & bits == 0;
    while let Some(&[c0, c1, c2, c3]) = b.get(i..i.wrapping_add(4)) {
        if out(c0) {
            return i;
        }
        if out(c1) {
            return i + 1;
        }
        if out(c2) {
            return i + 2;
        }
        if out(c3) {
            return i + 3;
        }
        i += 4;
    }
    while let Some(&c) = b.get(i) {
        if out(c) {
            break;
        }
        i += 1;
    }
    i
}

/// True if all eight bytes of `x` are ASCII letters or digits (SWAR, exact per byte: on
/// bytes below 0x80 none of the additions carries into the next byte).
#[inline(always)]
fn all_alnum(x: u64) -> bool {
    if x & HI != 0 {
        return false;
    }
    let l = x | LO.wrapping_mul(0x20);
    let letter = l.wrapping_add(LO.wrapping_mul(0x80 - 0x61))
        & !l.wrapping_add(LO.wrapping_mul(0x7f - 0x7a));
    let digit = x.wrapping_add(LO.wrapping_mul(0x80 - 0x30))
        & !x.wrapping_add(LO.wrapping_mul(0x7f - 0x39));
    (letter | digit) & HI == HI
}

/// [`run`] for runs that are usually long and mostly alphanumeric (tags, branches,
/// Call-IDs, phone numbers): eight bytes at a time are first tested for being all
/// alphanumeric, which every class contains, and only a word that is not is looked at
/// byte by byte.
#[inline]
pub(crate) fn run_long(b: &[u8], from: usize, bits: u16) -> usize {
    let mut i = from;
    let out = |c: u8| class(c) & bits == 0;
    while let Some(x) = word_at(b, i) {
        if !all_alnum(x) {
            for (k, c) in x.to_le_bytes().into_iter().enumerate() {
                if out(c) {
                    return i + k;
                }
            }
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if out(c) {
            break;
        }
        i += 1;
    }
    i
}

/// Index of the first non-LWS byte at or after `from`.
#[inline]
pub(crate) fn skip_lws_at(b: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(&c) = b.get(i) {
        if !is_lws(c) {
            break;
        }
        i += 1;
    }
    i
}

/// Scans a run of class-`bits` characters and `%` HEX HEX escapes from `from`; returns its
/// end, or `None` on a malformed escape.
#[inline(always)]
pub(crate) fn run_escaped(b: &[u8], from: usize, bits: u16) -> Option<usize> {
    let mut i = from;
    loop {
        i = run(b, i, bits);
        if b.get(i) != Some(&b'%') {
            return Some(i);
        }
        let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
        if !(hex(i + 1) && hex(i + 2)) {
            return None;
        }
        i += 3;
    }
}

/// True if `b` holds linear whitespace (SP, HT, CR or LF). Eight bytes are checked at a
/// time for anything up to SP, which holds all four; only such a byte is looked at.
#[inline]
pub(crate) fn has_lws(b: &[u8]) -> bool {
    let below = LO.wrapping_mul(0x21);
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let x = <[u8; 8]>::try_from(c).map_or(0, u64::from_le_bytes);
        // Flags some byte below 0x21 exactly when there is one.
        if x.wrapping_sub(below) & !x & HI != 0 && c.iter().any(|&c| is_lws(c)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&c| is_lws(c))
}

/// Linear whitespace as the value tokenizers see it: SP, HT and the CR LF of a fold.
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// True if `c` is in class `bits`.
#[inline(always)]
pub(crate) fn is_class(c: u8, bits: u16) -> bool {
    class(c) & bits != 0
}

/// True for a `token` character.
#[inline(always)]
pub(crate) fn is_token_char(c: u8) -> bool {
    class(c) & TOKEN != 0
}

/// A non-empty run of `token` characters.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && run(s.as_bytes(), 0, TOKEN) == s.len()
}

/// Strips leading and trailing LWS (folds included).
pub(crate) fn trim_lws(s: &str) -> &str {
    let b = s.as_bytes();
    let start = b.iter().position(|&c| !is_lws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| !is_lws(c)).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or("")
}

/// Strips leading LWS (folds included).
pub(crate) fn skip_lws(s: &str) -> &str {
    s.get(skip_lws_at(s.as_bytes(), 0)..).unwrap_or("")
}

/// Position of the first `b` in `s`.
pub(crate) fn find(s: &str, b: u8) -> Option<usize> {
    find_byte(s.as_bytes(), b)
}

pub(crate) const LO: u64 = 0x0101_0101_0101_0101;
pub(crate) const HI: u64 = 0x8080_8080_8080_8080;

/// Marks (high bit) the bytes of `x` equal to the byte repeated in `pat`; the lowest mark
/// is exact, which is all the searches need.
#[inline(always)]
fn eq_mask(x: u64, pat: u64) -> u64 {
    let y = x ^ pat;
    y.wrapping_sub(LO) & !y & HI
}

/// First `needle` in `b`, eight bytes per step (SWAR). Header values and URIs are short, so
/// this beats a SIMD `memchr` whose call and setup cost dominate at these lengths.
#[inline]
pub(crate) fn find_byte(b: &[u8], needle: u8) -> Option<usize> {
    let pat = LO.wrapping_mul(u64::from(needle));
    let mut i = 0;
    while let Some(chunk) = b.get(i..i + 8).and_then(|c| <[u8; 8]>::try_from(c).ok()) {
        let m = eq_mask(u64::from_le_bytes(chunk), pat);
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b.get(i..)?.iter().position(|&c| c == needle).map(|p| i + p)
}

/// The eight bytes of `b` at `i`, little-endian, if there are that many.
#[inline(always)]
pub(crate) fn word_at(b: &[u8], i: usize) -> Option<u64> {
    b.get(i..i.wrapping_add(8))
        .and_then(|c| <[u8; 8]>::try_from(c).ok())
        .map(u64::from_le_bytes)
}

/// Flags (high bit of each byte) the `:` bytes and the bytes below 0x0E of `x`; the
/// lowest flag is exact.
#[inline(always)]
pub(crate) fn colon_or_control(x: u64) -> u64 {
    let y = x ^ LO.wrapping_mul(u64::from(b':'));
    ((x.wrapping_sub(LO.wrapping_mul(0x0e)) & !x) | (y.wrapping_sub(LO) & !y)) & HI
}

/// First CR or LF at or after `from` (SWAR).
///
/// Each step flags the bytes below 0x0E, a class holding CR and LF but nothing that occurs
/// in ordinary header text (HT and other controls are stepped over when they do occur), so
/// one subtraction and two masks test eight bytes, sixteen per iteration.
#[inline]
pub(crate) fn find_eol(b: &[u8], from: usize) -> Option<usize> {
    find_line_byte::<false>(b, from)
}

/// First `:`, CR or LF at or after `from`: the colon of a header line or, if it has none,
/// the end of the line.
#[inline]
pub(crate) fn find_colon_or_eol(b: &[u8], from: usize) -> Option<usize> {
    find_line_byte::<true>(b, from)
}

#[inline(always)]
fn find_line_byte<const COLON: bool>(b: &[u8], from: usize) -> Option<usize> {
    const BELOW: u64 = LO.wrapping_mul(0x0e);
    const COLONS: u64 = LO.wrapping_mul(b':' as u64);
    let flags = |x: u64| {
        let low = x.wrapping_sub(BELOW) & !x;
        if COLON {
            let y = x ^ COLONS;
            (low | (y.wrapping_sub(LO) & !y)) & HI
        } else {
            low & HI
        }
    };
    let mut i = from;
    loop {
        let rest = b.get(i..)?;
        let mut chunks = rest.chunks_exact(16);
        let mut hit = None;
        for (k, c) in (&mut chunks).enumerate() {
            let (lo, hi) = c.split_at(8);
            let lo = <[u8; 8]>::try_from(lo).map_or(0, u64::from_le_bytes);
            let hi = <[u8; 8]>::try_from(hi).map_or(0, u64::from_le_bytes);
            let (ml, mh) = (flags(lo), flags(hi));
            if ml | mh != 0 {
                // The lowest flag of a word is exact (borrows only travel upwards).
                let at = if ml != 0 {
                    ml.trailing_zeros() / 8
                } else {
                    8 + mh.trailing_zeros() / 8
                };
                hit = Some(i + k * 16 + at as usize);
                break;
            }
        }
        let hit = match hit {
            Some(h) => h,
            None => {
                let tail = chunks.remainder();
                let at = tail
                    .iter()
                    .position(|&c| c < 0x0e || (COLON && c == b':'))?;
                i + (rest.len() - tail.len()) + at
            }
        };
        match b.get(hit) {
            Some(b'\r' | b'\n') => return Some(hit),
            Some(b':') if COLON => return Some(hit),
            _ => i = hit + 1,
        }
    }
}

/// First of any of three bytes in `b` (SWAR), like [`find_byte`].
#[inline]
pub(crate) fn find_byte3(b: &[u8], n1: u8, n2: u8, n3: u8) -> Option<usize> {
    let (p1, p2, p3) = (
        LO.wrapping_mul(u64::from(n1)),
        LO.wrapping_mul(u64::from(n2)),
        LO.wrapping_mul(u64::from(n3)),
    );
    let mut i = 0;
    while let Some(chunk) = b.get(i..i + 8).and_then(|c| <[u8; 8]>::try_from(c).ok()) {
        let x = u64::from_le_bytes(chunk);
        let m = eq_mask(x, p1) | eq_mask(x, p2) | eq_mask(x, p3);
        if m != 0 {
            // Each mask's lowest mark is exact, so the lowest of the union is too.
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b.get(i..)?
        .iter()
        .position(|&c| c == n1 || c == n2 || c == n3)
        .map(|p| i + p)
}

/// Splits `s` around the first `b` (which must be ASCII).
pub(crate) fn split_at_byte(s: &str, b: u8) -> Option<(&str, &str)> {
    let i = find(s, b)?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// Checks that `s` is entirely class-`bits` characters and well-formed `%` escapes.
pub(crate) fn is_escaped_run(s: &str, bits: u16) -> bool {
    run_escaped(s.as_bytes(), 0, bits) == Some(s.len())
}

/// Length of the quoted-string that `s` starts with, closing quote included.
///
/// `s` must start with `"`. Returns `None` when the string is unterminated or holds a
/// character RFC 3261 §25.1 forbids (a bare control character, or an escaped CR/LF).
pub(crate) fn quoted_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => return Some(i + 1),
            // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
            b'\\' => match b.get(i + 1) {
                Some(&n) if n != b'\r' && n != b'\n' && n < 0x80 => i += 2,
                _ => return None,
            },
            // qdtext = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            0x21..=0x7e | 0x80..=0xff => i += 1,
            _ => return None,
        }
    }
    None
}

/// Finds the first `needle` byte that is outside quoted strings and outside `<...>`.
///
/// Unterminated quotes or brackets simply run to the end of `s`; the typed views report
/// them, this only has to never split inside them.
pub(crate) fn find_unnested(s: &str, needle: u8) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        let j = find_byte3(b.get(i..)?, needle, b'<', b'"')?;
        i += j;
        match b.get(i) {
            Some(b'<') => {
                // URIs cannot hold `>` unescaped: the first one closes the bracket.
                i += find_byte(b.get(i..)?, b'>')?;
            }
            Some(b'"') => {
                // Skip the quoted string, honouring backslash escapes, without validating.
                i += 1;
                while let Some(&q) = b.get(i) {
                    if q == b'\\' {
                        i += 1;
                    } else if q == b'"' {
                        break;
                    }
                    i += 1;
                }
            }
            _ => return Some(i),
        }
        i += 1;
    }
}

/// Splits off the first comma-separated element of a list-valued header value.
///
/// Returns the trimmed element and the rest after the comma (`None` when it was the last).
pub(crate) fn split_list(s: &str) -> (&str, Option<&str>) {
    match find_unnested(s, b',') {
        Some(i) => (
            trim_lws(s.get(..i).unwrap_or("")),
            Some(s.get(i + 1..).unwrap_or("")),
        ),
        None => (trim_lws(s), None),
    }
}

/// ASCII case-insensitive comparison that does not allocate.
#[inline]
pub(crate) fn eq_ci(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Parses 1*DIGIT into a `u64`, `None` on an empty string, a non-digit or overflow.
pub(crate) fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for c in s.bytes() {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_strings() {
        let cases: &[(&str, Option<usize>)] = &[
            (r#""abc" x"#, Some(5)),
            (r#""a\"b""#, Some(6)),
            (r#""J Rosenberg \\\"" <sip:x>"#, Some(18)),
            ("\"fold\r\n here\"", Some(13)),
            ("\"unterminated", None),
            ("\"bad\\", None),
            ("\"ctl\x01\"", None),
            ("\"esc-ctl\\\x07\"", Some(11)),
            ("\"esc-cr\\\r\"", None),
            ("\"utf8 \u{44f}\"", Some(9)),
            ("noquote", None),
        ];
        for (s, want) in cases {
            assert_eq!(quoted_len(s), *want, "{s:?}");
        }
    }

    #[test]
    fn list_splitting_respects_quotes_and_brackets() {
        let v = r#""a, b" <sip:x,y@h>;p=1 , <sip:z>,,last"#;
        let (a, r) = split_list(v);
        assert_eq!(a, r#""a, b" <sip:x,y@h>;p=1"#);
        let (b, r) = split_list(r.unwrap());
        assert_eq!(b, "<sip:z>");
        let (c, r) = split_list(r.unwrap());
        assert_eq!(c, "");
        let (d, r) = split_list(r.unwrap());
        assert_eq!((d, r), ("last", None));
    }

    #[test]
    fn escapes_and_classes() {
        assert!(is_escaped_run("a%20b", USER));
        assert!(!is_escaped_run("a%2", USER));
        assert!(!is_escaped_run("a%zz", USER));
        assert!(!is_escaped_run("a b", USER));
        let is = |c: u8, bits: u16| class(c) & bits != 0;
        assert!(is(b'~', TOKEN) && !is(b'"', TOKEN) && is(b'"', WORD));
        assert!(is(b'[', GENVALUE) && is(b'?', USER) && !is(b'?', PASSWORD));
        assert_eq!(run(b"abc def", 0, TOKEN), 3);
        assert_eq!(run(b"abcdefghijklmnopq rs", 0, TOKEN), 17);
        assert_eq!(run(b"abcdefgh", 0, TOKEN), 8);
        assert_eq!(run(b"abcdefgh", 3, TOKEN), 8);
        assert_eq!(run(b"abcdefg<ijklmnop", 0, TOKEN), 7);
        assert_eq!(run(b"0123456789.example-x.com:5061", 0, HOST), 24);
        assert_eq!(run_escaped(b"a%41;", 0, PARAMCHAR), Some(4));
        assert_eq!(run_escaped(b"a%4", 0, PARAMCHAR), None);
        assert_eq!(skip_lws_at(b" \r\n x", 0), 4);
        for (hay, needle, want) in [
            (&b""[..], b'x', None),
            (b"x", b'x', Some(0)),
            (b"abcdefgh", b'h', Some(7)),
            (b"abcdefghi", b'i', Some(8)),
            (b"abcdefghijklmnop@q@", b'@', Some(16)),
            (b"\x80\x81\x7f@", b'@', Some(3)),
            (b"\x01\x00\x01\x00\x01\x00\x01\x00\x00", b'\0', Some(1)),
            (b"no match in here at all", b'@', None),
        ] {
            assert_eq!(find_byte(hay, needle), want, "{hay:?}");
            assert_eq!(hay.iter().position(|&c| c == needle), want);
        }
        assert_eq!(find_byte3(b"abcdefghij<kl\"", b',', b'<', b'"'), Some(10));
        assert_eq!(find_byte3(b"abcdefghij", b',', b'<', b'"'), None);
        assert_eq!(find_byte3(b"\x2b\x2c", b',', b'<', b'"'), Some(1));
        assert!(is_token("!interesting-Method0123456789_*+`.%indeed'~"));
        assert!(!is_token("a b"));
        assert!(!is_token(""));
        assert_eq!(trim_lws("\r\n  x y \r\n"), "x y");
        assert_eq!(parse_digits("0068"), Some(68));
        assert_eq!(parse_digits("99999999999999999999999"), None);
        assert_eq!(parse_digits("-1"), None);
    }
}
