//! Call forwarding (DR-FWD): a Teams user's rules forward an inbound call to a number, to
//! another user or to voicemail. What forwarding writes on the wire lives here as pure
//! functions: the `cause` of the forwarded INVITE's Request-URI (RFC 4458), the
//! History-Info it carries to trunks with `forward_call_history` (RFC 7044, DR-FWD-4),
//! and the loop check on the History-Info that came in (DR-FWD-5).
//!
//! A forward to a number is the inbound [`super::Call`] handing its SBC leg over
//! ([`Handoff`]) to an [`super::outbound::Outbound`] call, which places the forwarded
//! INVITE through the forwarding user's voice routing with failover, and relays its
//! progress and answer back to the caller's SBC.

use std::fmt::Write as _;

use crate::sip::{HeaderName, Message, NameAddr};

/// Why a call is forwarded: the RFC 4458 `cause` (DR-FWD-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Forward immediately (or a client's 3xx, DR-FORK-9): 302.
    Unconditional,
    /// Every client busy: 486.
    Busy,
    /// Unanswered: 408.
    NoAnswer,
    /// No client to ring, or every one failed: 480.
    Unavailable,
}

impl Cause {
    /// The `cause` value, an RFC 4458 status.
    pub fn code(self) -> u16 {
        match self {
            Cause::Unconditional => 302,
            Cause::Busy => 486,
            Cause::NoAnswer => 408,
            Cause::Unavailable => 480,
        }
    }

    /// The reason phrase in the History-Info entry's `Reason`.
    pub fn text(self) -> &'static str {
        match self {
            Cause::Unconditional => "Moved temporarily",
            Cause::Busy => "Busy Here",
            Cause::NoAnswer => "Request Timeout",
            Cause::Unavailable => "Temporarily Unavailable",
        }
    }

    /// The rule's name, for the log and the call record.
    pub fn rule(self) -> &'static str {
        match self {
            Cause::Unconditional => "immediate",
            Cause::Busy => "busy",
            Cause::NoAnswer => "no_answer",
            Cause::Unavailable => "unavailable",
        }
    }
}

/// The phone number of a History-Info (or any) URI's user part: `+` and digits, visual
/// separators dropped, user parameters (`;phone-context=...`) cut; `None` for a name.
pub fn phone_number(user: &str) -> Option<String> {
    let user = user.split(';').next().unwrap_or_default();
    let digits: String = user
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | '(' | ')'))
        .collect();
    let bare = digits.strip_prefix('+').unwrap_or(&digits);
    (!bare.is_empty() && bare.len() <= 15 && bare.bytes().all(|b| b.is_ascii_digit()))
        .then_some(digits)
}

/// Who called, as an INVITE from an SBC says: the From number (`+E164`), its display
/// name, and whether the caller ID is withheld (an anonymous or non-numeric From, or
/// `Privacy: id`/`header`). Forwarded, simultaneous-ring and transfer INVITEs show this
/// caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerId {
    pub number: Option<String>,
    pub display: Option<String>,
    pub private: bool,
}

impl CallerId {
    pub fn of(msg: &Message<'_>) -> CallerId {
        let from = msg.from().and_then(Result::ok);
        let number = from
            .as_ref()
            .and_then(|f| f.uri().user())
            .and_then(phone_number)
            .filter(|n| n.starts_with('+'));
        let display = from
            .as_ref()
            .and_then(|f| f.display_name())
            .map(|d| d.trim_matches('"').replace(['"', '\\'], ""));
        let private = number.is_none()
            || msg.values(HeaderName::Privacy).any(|v| {
                let v = v.trim();
                v.eq_ignore_ascii_case("id") || v.eq_ignore_ascii_case("header")
            });
        CallerId {
            number,
            display,
            private,
        }
    }

    /// The From of an INVITE drhub sends on the caller's behalf, at `host`.
    pub fn from_header(&self, host: &str) -> String {
        match (
            &self.number,
            self.display.as_deref().filter(|d| !d.is_empty()),
        ) {
            (Some(n), Some(name)) if !self.private => {
                format!("\"{name}\" <sip:{n}@{host};user=phone>")
            }
            (Some(n), None) if !self.private => format!("<sip:{n}@{host};user=phone>"),
            _ => "\"Anonymous\" <sip:anonymous@anonymous.invalid>".to_owned(),
        }
    }
}

/// One History-Info entry as drhub passes it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's phone number (`None`: a private entry passed as it came).
    pub number: Option<String>,
    /// The whole entry as it goes on the wire, `<uri>;params`.
    pub text: String,
    /// Its `index`, when it has one.
    pub index: Option<String>,
}

/// The History-Info of an INVITE from an SBC as drhub keeps it (DR-FWD-4/5): entries in
/// their order; each with a phone number rewritten to that number at `host`
/// (`sip:+1...@host:5061;user=phone`) with its URI headers (`?Reason=...`) and its
/// parameters kept but a `phone-context`; private ones (`Privacy=history`, RFC 4244
/// §3.3) as they came; the rest (no phone number) dropped.
pub fn incoming(msg: &Message<'_>, host: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for value in msg.values(HeaderName::HistoryInfo) {
        let Ok(na) = NameAddr::parse(value.trim()) else {
            continue;
        };
        let uri = na.uri();
        let index = na.param("index").and_then(|p| p.value).map(str::to_owned);
        let private = uri
            .headers()
            .any(|(n, v)| n.eq_ignore_ascii_case("Privacy") && v.eq_ignore_ascii_case("history"));
        if private {
            out.push(Entry {
                number: None,
                text: value.trim().to_owned(),
                index,
            });
            continue;
        }
        let Some(number) = uri.user().and_then(phone_number) else {
            continue;
        };
        let mut text = format!("<sip:{number}@{host}:5061;user=phone");
        if let Some((_, headers)) = uri.as_str().split_once('?') {
            text.push('?');
            text.push_str(headers);
        }
        text.push('>');
        for p in na.params() {
            if p.name.eq_ignore_ascii_case("phone-context") {
                continue;
            }
            text.push(';');
            text.push_str(p.name);
            if let Some(v) = p.value {
                text.push('=');
                text.push_str(v);
            }
        }
        out.push(Entry {
            number: Some(number),
            text,
            index,
        });
    }
    out
}

/// DR-FWD-5: whether forwarding to `target` would loop: the History-Info that came in
/// already names it.
pub fn loops(history: &[Entry], target: &str) -> bool {
    history.iter().any(|e| e.number.as_deref() == Some(target))
}

/// The History-Info header value of a forwarded INVITE (DR-FWD-4), entries in
/// chronological order: the ones that came in (see [`incoming`]), then the forwarding
/// user's number with the `Reason` it was retargeted for, then the forward's target one
/// level below it. The forwarding user's entry continues the hierarchy under the last
/// incoming index (`1` with none), the target's under the forwarding user's (emulator
/// choice: the seed's example shows `1` and `1.1`).
pub fn history_info(
    came_in: &[Entry],
    host: &str,
    forwarder: &str,
    target: &str,
    cause: Cause,
) -> String {
    let mut out = String::new();
    for e in came_in {
        out.push_str(&e.text);
        out.push_str(", ");
    }
    let index = match came_in.iter().rev().find_map(|e| e.index.as_deref()) {
        Some(last) => format!("{last}.1"),
        None => "1".to_owned(),
    };
    // RFC 3261 §19.1.1 URI headers: `;`, `=`, `"` and space escaped in the Reason value.
    let reason = format!("SIP;cause={};text=\"{}\"", cause.code(), cause.text());
    let mut escaped = String::new();
    for b in reason.bytes() {
        match b {
            b';' | b'=' | b'"' | b' ' | b'%' | b'&' | b'?' => {
                let _ = write!(escaped, "%{b:02X}");
            }
            _ => escaped.push(char::from(b)),
        }
    }
    let _ = write!(
        out,
        "<sip:{forwarder}@{host}:5061;user=phone?Reason={escaped}>;index={index}, <sip:{target}@{host}:5061;user=phone>;index={index}.1"
    );
    out
}

/// What an inbound call hands over when it forwards to a number: the SBC's leg, still
/// pending, and what the outbound call needs to carry it on.
#[derive(Debug)]
pub struct Handoff {
    /// The SBC's leg as the outbound call's caller: how requests reach the SBC (its
    /// Record-Route, else its Contact), and the media processor's answer to its offer
    /// (what it gets unless both trunks bypass).
    pub caller: super::outbound::Caller,
    /// The caller's trunk has media bypass: its offer may go on to a bypass trunk.
    pub bypass: bool,
    /// The forwarding (or transferring) user's SIP address: their voice routing places
    /// the call.
    pub user: String,
    /// The target, `+E164`.
    pub target: String,
    /// Why the call goes on, and what its INVITE says of it.
    pub carry: Carry,
    /// The inbound call's last request id: the outbound call numbers its requests after
    /// it, so that late answers to the inbound call's (a cancelled fork's 487) are not
    /// taken for its own.
    pub last_request: u32,
    /// The inbound call's SIP forks, cancelled for the forward: their answers still
    /// come, and a 2xx among them needs ACK and BYE.
    pub cancelled: Vec<super::leg::UacLeg>,
}

/// What a forwarded outbound call writes into its INVITEs.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub cause: Cause,
    /// The forwarding user's number (their History-Info entry).
    pub forwarder: String,
    /// The History-Info that came in, as kept (empty when the caller's trunk does not
    /// keep it).
    pub history: Vec<Entry>,
}

/// Why an SBC's call goes on to a number as an outbound call of a user's.
#[derive(Debug, Clone)]
pub enum Carry {
    /// Forwarded (DR-FWD-2/4: `cause`, History-Info).
    Forward(Forwarded),
    /// The SBC's INVITE back for a transfer to a number (DR-XFER-4: `Referred-By`, a
    /// consultative transfer's `Replaces`; no History-Info, DR-XFER-5).
    Transfer(super::transfer::Transferred),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{Limits, Status};

    fn parse(b: &[u8]) -> Message<'_> {
        match Message::parse(b, &Limits::default()) {
            Ok(Status::Complete(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    fn invite(history: &[&str]) -> Vec<u8> {
        let mut m = String::from(
            "INVITE sip:+14255550100@sip.pstnhub.microsoft.com SIP/2.0\r\n\
             Via: SIP/2.0/TLS sbc1.adatum.biz:5061;branch=z9hG4bK1\r\n\
             From: <sip:+12065550123@sbc1.adatum.biz;user=phone>;tag=a\r\n\
             To: <sip:+14255550100@sip.pstnhub.microsoft.com;user=phone>\r\n\
             Call-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n",
        );
        for h in history {
            m.push_str("History-Info: ");
            m.push_str(h);
            m.push_str("\r\n");
        }
        m.push_str("Content-Length: 0\r\n\r\n");
        m.into_bytes()
    }

    #[test]
    fn dr_fwd_2_causes_are_rfc_4458() {
        let cases = [
            (Cause::Unconditional, 302),
            (Cause::Busy, 486),
            (Cause::NoAnswer, 408),
            (Cause::Unavailable, 480),
        ];
        for (cause, code) in cases {
            assert_eq!(cause.code(), code);
        }
    }

    #[test]
    fn dr_fwd_4_history_info_entries_and_escaping() {
        let h = history_info(
            &[],
            "sip.pstnhub.microsoft.com",
            "+14255550100",
            "+14255550123",
            Cause::Unconditional,
        );
        assert_eq!(
            h,
            "<sip:+14255550100@sip.pstnhub.microsoft.com:5061;user=phone?Reason=SIP%3Bcause%3D302%3Btext%3D%22Moved%20temporarily%22>;index=1, \
             <sip:+14255550123@sip.pstnhub.microsoft.com:5061;user=phone>;index=1.1"
        );
        let busy = history_info(&[], "h", "+1", "+2", Cause::Busy);
        assert!(
            busy.contains("?Reason=SIP%3Bcause%3D486%3Btext%3D%22Busy%20Here%22>;index=1,"),
            "{busy}"
        );
    }

    /// DR-FWD-4: entries that came in are kept in order before drhub's; those without a
    /// phone number are dropped; private ones pass as they are; other parameters are kept
    /// but `phone-context`; the host becomes the proxy's with `user=phone`.
    #[test]
    fn dr_fwd_4_incoming_history_info_is_kept_filtered_and_rewritten() {
        let bytes = invite(&[
            "<sip:+12065550123@carrier.example;user=phone?Reason=SIP%3Bcause%3D302>;index=1;mp=1",
            "<sip:alice@carrier.example>;index=1.1, <sip:+14255550100@10.0.0.1;user=phone>;index=1.1.1;phone-context=+1",
            "<sip:+14255550999@carrier.example?Privacy=history>;index=1.1.1.1",
        ]);
        let msg = parse(&bytes);
        let kept = incoming(&msg, "sip.pstnhub.microsoft.com");
        let texts: Vec<&str> = kept.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "<sip:+12065550123@sip.pstnhub.microsoft.com:5061;user=phone?Reason=SIP%3Bcause%3D302>;index=1;mp=1",
                "<sip:+14255550100@sip.pstnhub.microsoft.com:5061;user=phone>;index=1.1.1",
                "<sip:+14255550999@carrier.example?Privacy=history>;index=1.1.1.1",
            ]
        );
        assert_eq!(kept[2].number, None, "private entries pass untouched");
        let h = history_info(
            &kept,
            "sip.pstnhub.microsoft.com",
            "+14255550100",
            "+14255550123",
            Cause::Busy,
        );
        assert!(h.starts_with(texts[0]), "{h}");
        assert!(h.contains(">;index=1.1.1.1.1, <sip:+14255550123@"), "{h}");
        assert!(h.ends_with(";index=1.1.1.1.1.1"), "{h}");
    }

    /// DR-FWD-5: a forward to a number the History-Info already names loops.
    #[test]
    fn dr_fwd_5_a_target_in_the_history_loops() {
        let bytes = invite(&["<sip:+14255550123@carrier.example;user=phone>;index=1"]);
        let msg = parse(&bytes);
        let kept = incoming(&msg, "h");
        assert!(loops(&kept, "+14255550123"));
        assert!(!loops(&kept, "+14255550124"));
        assert!(!loops(&[], "+14255550123"));
    }

    #[test]
    fn phone_numbers_of_user_parts() {
        let cases = [
            ("+14255550100", Some("+14255550100")),
            ("+1-425-555-0100", Some("+14255550100")),
            ("4255550100;phone-context=+1", Some("4255550100")),
            ("alice", None),
            ("", None),
            ("+", None),
        ];
        for (user, want) in cases {
            assert_eq!(phone_number(user).as_deref(), want, "{user}");
        }
    }
}
