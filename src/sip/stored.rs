//! A SIP message kept past its read buffer: in a transaction, a call, an event.
//!
//! [`Stored`] is framed and parsed once, when it is made; that proof is its type, so a
//! layer that holds one reads it with [`Stored::message`] and never meets a parse failure
//! it would have to hide.

use bytes::Bytes;

use super::{Limits, Message, ParseError, Status};

/// Messages drhub keeps were framed once already under the stream's limits (or built by
/// drhub itself); no limit applies to reading them again.
pub const UNLIMITED: Limits = Limits {
    max_header_bytes: usize::MAX,
    max_body_bytes: usize::MAX,
};

/// Exactly one complete SIP message (start line, headers, Content-Length body), shared
/// bytes, cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub struct Stored(Bytes);

/// Why bytes are not one stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The bytes do not frame as a message.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The message is cut short.
    #[error("incomplete message")]
    Partial,
    /// Bytes follow the message.
    #[error("{0} bytes after the message")]
    Trailing(usize),
}

impl Stored {
    /// Frames `bytes` as exactly one message.
    pub fn new(bytes: Bytes) -> Result<Stored, StoreError> {
        match Message::parse(&bytes, &UNLIMITED)? {
            Status::Complete(m) if m.len() == bytes.len() => Ok(Stored(bytes)),
            Status::Complete(m) => Err(StoreError::Trailing(bytes.len() - m.len())),
            Status::Partial => Err(StoreError::Partial),
        }
    }

    /// The parsed view.
    pub fn message(&self) -> Message<'_> {
        match Message::parse(&self.0, &UNLIMITED) {
            Ok(Status::Complete(m)) => m,
            // Framing is a pure function of the bytes, and these framed in `new`.
            _ => unreachable!("a Stored message framed when it was made"),
        }
    }

    /// The wire bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// The wire bytes, owned.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The message's length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true for a stored message; here for the `len` convention.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl AsRef<[u8]> for Stored {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let first = self.0.split(|b| *b == b'\r').next().unwrap_or_default();
        write!(
            f,
            "Stored({:?}, {} bytes)",
            String::from_utf8_lossy(first),
            self.0.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a.b SIP/2.0\r\nVia: SIP/2.0/TLS a.b;branch=z9hG4bK1\r\nFrom: <sip:a.b>;tag=1\r\nTo: <sip:a.b>\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 2\r\n\r\nhi";

    #[test]
    fn exactly_one_message_is_stored_and_reads_back() {
        let s = Stored::new(Bytes::from_static(MSG)).expect("one message");
        assert_eq!(s.message().call_id(), Some("1"));
        assert_eq!(s.message().body(), b"hi");
        assert_eq!(s.len(), MSG.len());
        assert_eq!(
            Stored::new(Bytes::from_static(&MSG[..MSG.len() - 1])),
            Err(StoreError::Partial)
        );
        let two = [MSG, b"x"].concat();
        assert_eq!(Stored::new(Bytes::from(two)), Err(StoreError::Trailing(1)));
        assert!(matches!(
            Stored::new(Bytes::from_static(b"\x01\x02 nonsense\r\n\r\n")),
            Err(StoreError::Parse(_))
        ));
    }
}
