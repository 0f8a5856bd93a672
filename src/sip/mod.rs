//! SIP messages as bytes on the wire: stream framing, the borrowed message view, URIs and
//! typed header views, and the RFC 3261 message-level checks. No I/O, no tokio, no heap
//! allocation on the parse path; everything borrows from the transport's read buffer and is
//! copied out only by the layers that need it to outlive the read.
//!
//! Entry points: [`Message::parse`] (stream framing, RFC 3261 §18.3),
//! [`Message::parse_head`] (header block only, for error responses), [`recover`] and
//! [`salvage`] (what becomes of a message the parser rejected), then
//! [`Message::checked_request`] / [`Message::checked_response`] (the RFC 3261 checks,
//! returning the typed From, To, Call-ID, CSeq, top Via and Contact they parsed) before any
//! layer acts on it.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod lex;

pub mod build;
pub mod header;
pub mod identity;
pub mod parse;
pub mod recover;
pub mod stored;
pub mod uri;

pub use header::{
    unescape_quoted, unquote, CSeq, CallId, Contact, ContentLength, HeaderName, MaxForwards,
    Method, NameAddr, Param, ParamIter, Params, SipDate, SyntaxError, Via, ViaTransport,
    MAGIC_COOKIE,
};
pub use identity::{LocalIdentity, Transport};
pub use parse::{
    Checked, Header, Headers, Invalid, Limits, Message, ParseError, StartLine, Status, Values,
    Version, MAX_HEADERS,
};
pub use recover::{recover, salvage, Recovery, Unanswerable, Unanswered};
pub use stored::{StoreError, Stored, UNLIMITED};
pub use uri::{
    decode_into, pct_eq, pct_eq_ignore_case, DecodeError, Host, Scheme, Uri, UriHeaders,
};
