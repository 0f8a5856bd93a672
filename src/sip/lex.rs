//! Character classes and the few scanners (whitespace, quoted strings, list splitting) that
//! the framer, the URI parser and the header views share, so each rule of RFC 3261 §25.1
//! exists once.
//!
//! Every scanner works on `&str` slices of a header block that is already known to be UTF-8
//! and treats CR and LF as ordinary linear whitespace: a folded header value stays one
//! borrowed slice and nobody has to unfold it into a copy.

/// Builds a 256-entry membership table from a list of ASCII bytes plus the alphanumerics.
const fn table(extra: &[u8], alphanum: bool) -> [bool; 256] {
    let mut t = [false; 256];
    if alphanum {
        let mut c = b'0';
        while c <= b'9' {
            t[c as usize] = true;
            c += 1;
        }
        let mut c = b'a';
        while c <= b'z' {
            t[c as usize] = true;
            t[(c - 32) as usize] = true;
            c += 1;
        }
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

/// `token` (RFC 3261 §25.1): alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~".
static TOKEN: [bool; 256] = table(b"-.!%*_+`'~", true);
/// `user` = 1*( unreserved / escaped / user-unreserved ), with unreserved = alphanum / mark;
/// `%` escapes are checked separately.
static USER: [bool; 256] = table(b"-_.!~*'()&=+$,;?/", true);
/// `password` characters besides escapes.
static PASSWORD: [bool; 256] = table(b"-_.!~*'()&=+$,", true);
/// `paramchar` = param-unreserved / unreserved (escapes checked separately).
static PARAMCHAR: [bool; 256] = table(b"[]/:&+$-_.!~*'()", true);
/// `hname` / `hvalue` characters: hnv-unreserved / unreserved.
static HNV: [bool; 256] = table(b"[]/?:+$-_.!~*'()", true);
/// `uric` = reserved / unreserved (escapes checked separately), for opaque absolute URIs.
static URIC: [bool; 256] = table(b";/?:@&=+$,-_.!~*'()", true);
/// `word` (Call-ID): token characters plus a handful of separators.
static WORD: [bool; 256] = table(b"-.!%*_+`'~()<>:\\\"/[]?{}", true);

pub(crate) fn is_token_byte(b: u8) -> bool {
    TOKEN[b as usize]
}
pub(crate) fn is_user_byte(b: u8) -> bool {
    USER[b as usize]
}
pub(crate) fn is_password_byte(b: u8) -> bool {
    PASSWORD[b as usize]
}
pub(crate) fn is_paramchar(b: u8) -> bool {
    PARAMCHAR[b as usize]
}
pub(crate) fn is_hnv(b: u8) -> bool {
    HNV[b as usize]
}
pub(crate) fn is_uric(b: u8) -> bool {
    URIC[b as usize]
}
pub(crate) fn is_word_byte(b: u8) -> bool {
    WORD[b as usize]
}

/// Linear whitespace as the value tokenizers see it: SP, HT and the CR LF of a fold.
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// A non-empty run of `token` characters.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// Strips leading and trailing LWS (folds included).
pub(crate) fn trim_lws(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_ascii() && is_lws(c as u8))
}

/// Strips leading LWS (folds included).
pub(crate) fn skip_lws(s: &str) -> &str {
    s.trim_start_matches(|c: char| c.is_ascii() && is_lws(c as u8))
}

/// Length of the leading run of bytes satisfying `pred`.
pub(crate) fn span(s: &str, pred: impl Fn(u8) -> bool) -> usize {
    s.bytes().position(|b| !pred(b)).unwrap_or(s.len())
}

/// Checks that every byte is either accepted by `pred` or starts a `%` HEX HEX escape.
pub(crate) fn is_escaped_run(s: &str, pred: impl Fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = |j: usize| b.get(j).is_some_and(|x| x.is_ascii_hexdigit());
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else if pred(c) {
            i += 1;
        } else {
            return false;
        }
    }
    true
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
    let mut angle = false;
    while let Some(&c) = b.get(i) {
        if angle {
            if c == b'>' {
                angle = false;
            }
        } else if c == needle {
            return Some(i);
        } else if c == b'<' {
            angle = true;
        } else if c == b'"' {
            // Skip the quoted string, honouring backslash escapes, without validating it.
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
        i += 1;
    }
    None
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
        assert!(is_escaped_run("a%20b", is_user_byte));
        assert!(!is_escaped_run("a%2", is_user_byte));
        assert!(!is_escaped_run("a%zz", is_user_byte));
        assert!(!is_escaped_run("a b", is_user_byte));
        assert!(is_token("!interesting-Method0123456789_*+`.%indeed'~"));
        assert!(!is_token("a b"));
        assert!(!is_token(""));
        assert_eq!(trim_lws("\r\n  x y \r\n"), "x y");
        assert_eq!(parse_digits("0068"), Some(68));
        assert_eq!(parse_digits("99999999999999999999999"), None);
        assert_eq!(parse_digits("-1"), None);
    }
}
