//! SDP offer/answer: reading the SBC's offer, the media processor's and a virtual
//! endpoint's answers, and the ICE restart of DR-ICE-1.
//!
//! drhub emulates signalling only: no RTP flows, so every address, port, key and
//! ICE credential here only has to look real and follow the RFCs. Keys and ICE
//! credentials still come from a CSPRNG (aws-lc-rs through rustls), because lab
//! SBCs are real devices that may log, reuse or validate them.
//!
//! Parsing and printing is done by the `sdp` crate (webrtc-rs); the offer/answer
//! rules are ours: RFC 3264 §6 (answer), §8 (origin version), RFC 4568 (SDES
//! `a=crypto`), RFC 8839 / RFC 5245 (ICE attributes and restart), RFC 3551
//! (static payload types), RFC 3605 (`a=rtcp`), RFC 5761 (`a=rtcp-mux`).

use std::fmt;
use std::io::Cursor;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use sdp::description::common::{Address, Attribute, ConnectionInformation};
use sdp::description::media::{MediaDescription, MediaName, RangedPort};
use sdp::description::session::{Origin, SessionDescription, TimeDescription, Timing};

/// The longest piece of peer-supplied text an error carries. Diagnostics end up in
/// logs, the conformance report and SIP headers; an SBC must not be able to make
/// them arbitrarily long.
const MAX_DIAGNOSTIC: usize = 160;

/// SRTP suites drhub answers, in drhub's preference order (RFC 4568 §6.2). The
/// offer's order decides between them (RFC 4568 §7.1.2: first acceptable line).
const SRTP_SUITES: [&str; 2] = ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"];

/// Both supported suites use a 128-bit master key and a 112-bit master salt
/// (RFC 4568 §6.2.1): 30 bytes, 40 base64 characters.
const SRTP_KEY_SALT_LEN: usize = 30;

/// Why an SDP body cannot be answered. Every variant but [`SdpError::Unparseable`]
/// and [`SdpError::RandomUnavailable`] means "no acceptable media": the call maps
/// it to `488 Not Acceptable Here` (531000), with the `Display` text as the
/// diagnostic. Peer-supplied text inside is bounded and free of control characters,
/// so it can go into a header as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is not SDP, or the `sdp` crate rejected it.
    #[error("the body is not valid SDP: {reason}")]
    Unparseable {
        /// The parser's reason, sanitised and bounded.
        reason: String,
    },
    /// No `m=audio` line, or every audio stream is disabled (port 0).
    #[error("the offer has no audio stream (media offered: {offered})")]
    NoAudio {
        /// The media types offered, e.g. `video, application`, or `none`.
        offered: String,
    },
    /// The first active audio stream offers no codec drhub supports.
    #[error("no codec drhub supports; offered: {offered}")]
    NoCommonCodec {
        /// The formats offered, e.g. `G729/8000, iLBC/8000`.
        offered: String,
    },
    /// `RTP/SAVP` without an `a=crypto` line drhub can accept.
    #[error("RTP/SAVP without a supported a=crypto line; offered: {offered}")]
    NoCommonCrypto {
        /// The crypto suites offered, or `none`.
        offered: String,
    },
    /// The audio stream uses a transport drhub does not answer (e.g. DTLS-SRTP).
    #[error("unsupported audio transport {offered}; drhub answers RTP/AVP and RTP/SAVP")]
    UnsupportedTransport {
        /// The offered transport, e.g. `UDP/TLS/RTP/SAVPF`.
        offered: String,
    },
    /// The system CSPRNG failed; no key or ICE credential can be made.
    #[error("the system random number generator failed")]
    RandomUnavailable,
    /// An active audio stream with `c=0.0.0.0`: RFC 2543's way to hold, which RFC 3264
    /// §8.4 replaced with `a=inactive`/`a=sendonly` and Direct Routing refuses
    /// (DR-HOLD-1, 488 with 531052).
    #[error("c=0.0.0.0 (RFC 2543 hold) is not supported; hold with a=inactive (RFC 3264 §8.4)")]
    ZeroConnection,
}

impl SdpError {
    /// True for the "no acceptable media" errors the call answers with 488 (531000).
    pub fn is_not_acceptable(&self) -> bool {
        matches!(
            self,
            SdpError::NoAudio { .. }
                | SdpError::NoCommonCodec { .. }
                | SdpError::NoCommonCrypto { .. }
                | SdpError::UnsupportedTransport { .. }
        )
    }
}

/// An RTP payload format by encoding name, clock rate and channel count
/// (`a=rtpmap`, RFC 4566 §6). Names compare case-insensitively (RFC 4855 §3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Codec {
    /// Encoding name as registered, e.g. `PCMU`, `opus`, `telephone-event`.
    pub name: String,
    /// RTP clock rate in Hz.
    pub clock_rate: u32,
    /// Audio channels; 1 when the rtpmap omits it (RFC 4566 §6).
    pub channels: u16,
}

impl Codec {
    /// A codec from its name, clock rate and channel count.
    pub fn new(name: &str, clock_rate: u32, channels: u16) -> Codec {
        Codec {
            name: name.to_owned(),
            clock_rate,
            channels,
        }
    }

    /// The emulated media processor's codecs in preference order: PCMU, PCMA, G722,
    /// opus/48000/2, SILK/16000, and telephone-event/8000 (kept when offered, never
    /// chosen as the audio codec).
    pub fn defaults() -> Vec<Codec> {
        vec![
            Codec::new("PCMU", 8000, 1),
            Codec::new("PCMA", 8000, 1),
            Codec::new("G722", 8000, 1),
            Codec::new("opus", 48000, 2),
            Codec::new("SILK", 16000, 1),
            Codec::new("telephone-event", 8000, 1),
        ]
    }

    /// Same encoding: name (ignoring ASCII case), clock rate and channels.
    pub fn matches(&self, other: &Codec) -> bool {
        self.name.eq_ignore_ascii_case(&other.name)
            && self.clock_rate == other.clock_rate
            && self.channels == other.channels
    }

    /// RFC 4733 DTMF events: negotiated alongside an audio codec, never instead.
    pub fn is_telephone_event(&self) -> bool {
        self.name.eq_ignore_ascii_case("telephone-event")
    }

    /// The static payload types of RFC 3551 §6 (audio), usable without `a=rtpmap`.
    pub fn from_static_payload_type(payload_type: u8) -> Option<Codec> {
        let (name, rate, channels) = match payload_type {
            0 => ("PCMU", 8000, 1),
            3 => ("GSM", 8000, 1),
            4 => ("G723", 8000, 1),
            5 => ("DVI4", 8000, 1),
            6 => ("DVI4", 16000, 1),
            7 => ("LPC", 8000, 1),
            8 => ("PCMA", 8000, 1),
            // RFC 3551 §4.5.2: G722's RTP clock rate is 8000 although it samples at 16 kHz.
            9 => ("G722", 8000, 1),
            10 => ("L16", 44100, 2),
            11 => ("L16", 44100, 1),
            12 => ("QCELP", 8000, 1),
            13 => ("CN", 8000, 1),
            14 => ("MPA", 90000, 1),
            15 => ("G728", 8000, 1),
            16 => ("DVI4", 11025, 1),
            17 => ("DVI4", 22050, 1),
            18 => ("G729", 8000, 1),
            _ => return None,
        };
        Some(Codec::new(name, rate, channels))
    }
}

/// The `a=rtpmap` encoding: `name/rate` or `name/rate/channels`.
impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.channels == 1 {
            write!(f, "{}/{}", self.name, self.clock_rate)
        } else {
            write!(f, "{}/{}/{}", self.name, self.clock_rate, self.channels)
        }
    }
}

/// The emulated media processor: where its media would be and what it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// Address put in `c=`, `o=` and the host candidates.
    pub address: IpAddr,
    /// Lowest RTP port handed out (see [`PortPool`]).
    pub port_min: u16,
    /// Highest port in the range; RTCP of the last RTP port must fit too.
    pub port_max: u16,
    /// Accepted codecs in preference order; see [`Codec::defaults`].
    pub codecs: Vec<Codec>,
}

impl MediaConfig {
    /// The defaults for `address`: the Teams media processor's published port range
    /// 49152-53247 and [`Codec::defaults`].
    pub fn new(address: IpAddr) -> MediaConfig {
        MediaConfig {
            address,
            port_min: 49152,
            port_max: 53247,
            codecs: Codec::defaults(),
        }
    }
}

/// Media direction (RFC 3264 §5.1, §6.1); `sendrecv` when the SDP names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// `a=sendrecv`
    #[default]
    SendRecv,
    /// `a=sendonly` (the usual hold offer)
    SendOnly,
    /// `a=recvonly`
    RecvOnly,
    /// `a=inactive`
    Inactive,
}

impl Direction {
    /// The answer's direction for an offered one (RFC 3264 §6.1).
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn from_attribute(key: &str) -> Option<Direction> {
        match key {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }
}

/// An ICE username fragment and password (RFC 8839 §5.4). Equality is what tells an
/// ICE restart from a repeated offer: see [`IceCredentials::is_restart_of`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    ufrag: String,
    pwd: String,
}

impl IceCredentials {
    /// Credentials as received or configured.
    pub fn new(ufrag: &str, pwd: &str) -> IceCredentials {
        IceCredentials {
            ufrag: ufrag.to_owned(),
            pwd: pwd.to_owned(),
        }
    }

    /// Fresh credentials: 8-character ufrag (48 random bits, RFC 8839 asks 24) and
    /// 24-character pwd (144 bits, RFC 8839 asks 128), all `ice-char`s.
    fn generate() -> Result<IceCredentials, SdpError> {
        let mut ufrag = [0u8; 6];
        let mut pwd = [0u8; 18];
        fill_random(&mut ufrag)?;
        fill_random(&mut pwd)?;
        // The standard base64 alphabet is exactly ALPHA / DIGIT / "+" / "/" = ice-char,
        // and 6 and 18 bytes need no '=' padding.
        Ok(IceCredentials {
            ufrag: base64(&ufrag),
            pwd: base64(&pwd),
        })
    }

    /// `a=ice-ufrag`
    pub fn ufrag(&self) -> &str {
        &self.ufrag
    }

    /// `a=ice-pwd`
    pub fn pwd(&self) -> &str {
        &self.pwd
    }

    /// RFC 5245 §9.2.1.1: a changed ufrag or pwd compared to the previous SDP from
    /// the same agent means ICE restarts. Moving an attribute between session and
    /// media level does not change the values, so it is not a restart.
    pub fn is_restart_of(&self, previous: &IceCredentials) -> bool {
        self != previous
    }
}

/// One `a=crypto` line of an offer (RFC 4568 §9.1), as offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoOffer {
    /// The tag the answer must repeat (RFC 4568 §5.1).
    pub tag: u32,
    /// The crypto suite, e.g. `AES_CM_128_HMAC_SHA1_80`.
    pub suite: String,
    /// Whether the key parameters use the `inline:` method, the only one defined.
    pub inline: bool,
    /// Session parameters after the key parameters (e.g. `UNENCRYPTED_SRTCP`).
    pub session_params: Vec<String>,
}

/// One payload type of an offered m-line and, where known, its codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadFormat {
    /// The RTP payload type number (0-127).
    pub payload_type: u8,
    /// From `a=rtpmap`, else from RFC 3551's static table; `None` for a dynamic
    /// payload type without (a parseable) rtpmap.
    pub codec: Option<Codec>,
    /// The `a=fmtp` parameters, if any.
    pub fmtp: Option<String>,
}

impl fmt::Display for PayloadFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.codec {
            Some(codec) => codec.fmt(f),
            None => write!(f, "PT {} (no rtpmap)", self.payload_type),
        }
    }
}

/// One offered m-line, with the attributes the answer depends on resolved
/// (media level first, then session level, per RFC 4566 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedStream {
    /// `audio`, `video`, `image`, ...
    pub media: String,
    /// The m-line port; 0 means the stream is disabled (RFC 3264 §5.1).
    pub port: u16,
    /// The transport, e.g. `RTP/AVP`, `RTP/SAVP`.
    pub proto: String,
    /// The m-line formats exactly as offered (kept for rejecting the stream).
    pub formats: Vec<String>,
    /// The RTP payload formats among `formats`, in offer (= preference) order.
    pub payload_formats: Vec<PayloadFormat>,
    /// `a=crypto` lines in offer order.
    pub crypto: Vec<CryptoOffer>,
    /// ICE credentials, if the stream (or the session) carries them.
    pub ice: Option<IceCredentials>,
    /// Number of `a=candidate` lines.
    pub candidates: usize,
    /// `a=rtcp-mux` offered (RFC 5761).
    pub rtcp_mux: bool,
    /// The offered direction.
    pub direction: Direction,
    /// `a=ptime`, if offered.
    pub ptime: Option<String>,
    /// The `c=` address (media level, else session level); `None` when absent or
    /// not an IP literal.
    pub connection: Option<IpAddr>,
}

/// A parsed SDP offer from an SBC (or any SDP drhub receives). Owns its data, so it
/// outlives the SIP message; `parse` never panics, whatever the input.
#[derive(Debug, Clone)]
pub struct Offer {
    session: SessionDescription,
    streams: Vec<OfferedStream>,
    body_len: usize,
}

impl Offer {
    /// Parses an SDP body. Fails with [`SdpError::Unparseable`] when the `sdp` crate
    /// rejects it or it holds a NUL or a CR that does not end a line, and with
    /// [`SdpError::NoAudio`] when it has no `m=audio` line.
    /// Bodies of any size are accepted (DR-FORK-10); the SIP layer bounds them.
    pub fn parse(body: &[u8]) -> Result<Offer, SdpError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            // The crate reports this as a syntax error with an empty token.
            return Err(SdpError::Unparseable {
                reason: "empty body".to_owned(),
            });
        }
        // RFC 4566 §9: no field holds NUL, and CR only ends a line. The crate keeps both
        // inside values, and an answer repeats some values of the offer (fmtp, ptime,
        // crypto session parameters, a rejected m-line's formats), so they would reach
        // the SBC as broken lines.
        if let Some(at) = stray_line_break(body) {
            return Err(SdpError::Unparseable {
                reason: format!("NUL or CR without LF at byte {at}"),
            });
        }
        let session = SessionDescription::unmarshal(&mut Cursor::new(body)).map_err(|e| {
            SdpError::Unparseable {
                reason: sanitize(&e.to_string()),
            }
        })?;
        let streams: Vec<OfferedStream> = session
            .media_descriptions
            .iter()
            .map(|m| OfferedStream::read(&session, m))
            .collect();
        if !streams.iter().any(|s| s.media == "audio") {
            return Err(SdpError::NoAudio {
                offered: media_list(&streams),
            });
        }
        Ok(Offer {
            session,
            streams,
            body_len: body.len(),
        })
    }

    /// Every m-line, in order.
    pub fn streams(&self) -> &[OfferedStream] {
        &self.streams
    }

    /// The audio m-lines, in order (at least one).
    pub fn audio(&self) -> impl Iterator<Item = &OfferedStream> {
        self.streams.iter().filter(|s| s.media == "audio")
    }

    /// The stream the offer/answer is about: the first enabled audio stream, else the
    /// first audio stream.
    pub fn main_audio(&self) -> Option<&OfferedStream> {
        self.audio()
            .find(|s| s.port != 0)
            .or_else(|| self.audio().next())
    }

    /// The main audio stream is `RTP/SAVP` with at least one `a=crypto` line.
    pub fn is_srtp(&self) -> bool {
        self.main_audio()
            .is_some_and(|s| s.is_srtp() && !s.crypto.is_empty())
    }

    /// The crypto suites of the main audio stream, in offer order.
    pub fn crypto_suites(&self) -> Vec<&str> {
        self.main_audio()
            .map(|s| s.crypto.iter().map(|c| c.suite.as_str()).collect())
            .unwrap_or_default()
    }

    /// The offer carries ICE (`a=ice-ufrag`, at session or media level).
    pub fn has_ice(&self) -> bool {
        self.streams.iter().any(|s| s.ice.is_some())
    }

    /// ICE credentials of the main audio stream.
    pub fn ice(&self) -> Option<&IceCredentials> {
        self.main_audio().and_then(|s| s.ice.as_ref())
    }

    /// The main audio stream's connection address.
    pub fn connection_address(&self) -> Option<IpAddr> {
        self.main_audio().and_then(|s| s.connection)
    }

    /// `o=` session id and version: an unchanged version means an unchanged session
    /// (RFC 3264 §8).
    pub fn origin(&self) -> (u64, u64) {
        (
            self.session.origin.session_id,
            self.session.origin.session_version,
        )
    }

    /// Size of the body as received (the conformance report flags SDP over 1500
    /// bytes towards UDP legs).
    pub fn body_len(&self) -> usize {
        self.body_len
    }

    /// The full parsed description, for what this module does not interpret.
    pub fn session(&self) -> &SessionDescription {
        &self.session
    }
}

impl OfferedStream {
    /// `RTP/SAVP` (or `RTP/SAVPF`): SRTP keyed by SDES.
    pub fn is_srtp(&self) -> bool {
        matches!(self.proto.as_str(), "RTP/SAVP" | "RTP/SAVPF")
    }

    fn offered_formats(&self) -> String {
        bounded_list(self.payload_formats.iter().map(ToString::to_string))
    }

    fn read(session: &SessionDescription, m: &MediaDescription) -> OfferedStream {
        // Media-level attributes override session-level ones (RFC 4566 §5).
        let attr = |key: &str| -> Option<&str> {
            m.attributes
                .iter()
                .chain(session.attributes.iter())
                .find(|a| a.key == key)
                .map(|a| a.value.as_deref().unwrap_or(""))
        };

        let mut payload_formats: Vec<PayloadFormat> = Vec::new();
        if m.media_name.protos.iter().any(|p| p == "RTP") {
            for f in &m.media_name.formats {
                let Ok(pt) = f.parse::<u8>() else { continue };
                if pt > 127 || payload_formats.iter().any(|p| p.payload_type == pt) {
                    continue;
                }
                payload_formats.push(PayloadFormat {
                    payload_type: pt,
                    codec: Codec::from_static_payload_type(pt),
                    fmtp: None,
                });
            }
            for a in &m.attributes {
                let Some(value) = a.value.as_deref() else {
                    continue;
                };
                match a.key.as_str() {
                    "rtpmap" => {
                        if let Some((pt, codec)) = parse_rtpmap(value) {
                            if let Some(p) =
                                payload_formats.iter_mut().find(|p| p.payload_type == pt)
                            {
                                p.codec = Some(codec);
                            }
                        }
                    }
                    "fmtp" => {
                        if let Some((pt, params)) = split_payload_type(value) {
                            if let Some(p) =
                                payload_formats.iter_mut().find(|p| p.payload_type == pt)
                            {
                                p.fmtp = Some(params.to_owned());
                            }
                        }
                    }
                    _ => {}
                }
            }
        }

        let crypto = m
            .attributes
            .iter()
            .filter(|a| a.key == "crypto")
            .filter_map(|a| a.value.as_deref().and_then(parse_crypto))
            .collect();

        let ice = match (attr("ice-ufrag"), attr("ice-pwd")) {
            (Some(u), Some(p)) => Some(IceCredentials::new(u, p)),
            (Some(u), None) => Some(IceCredentials::new(u, "")),
            _ => None,
        };

        let direction = m
            .attributes
            .iter()
            .find_map(|a| Direction::from_attribute(&a.key))
            .or_else(|| {
                session
                    .attributes
                    .iter()
                    .find_map(|a| Direction::from_attribute(&a.key))
            })
            .unwrap_or_default();

        let connection = m
            .connection_information
            .as_ref()
            .or(session.connection_information.as_ref())
            .and_then(|c| c.address.as_ref())
            .and_then(|a| {
                // `c=IN IP4 224.2.1.1/127` keeps the TTL in the address string.
                let host = a.address.split('/').next().unwrap_or_default();
                host.parse::<IpAddr>().ok()
            });

        OfferedStream {
            media: m.media_name.media.clone(),
            port: u16::try_from(m.media_name.port.value).unwrap_or(0),
            proto: m.media_name.protos.join("/"),
            formats: m.media_name.formats.clone(),
            payload_formats,
            crypto,
            ice,
            candidates: m.attributes.iter().filter(|a| a.key == "candidate").count(),
            rtcp_mux: m.attributes.iter().any(|a| a.key == "rtcp-mux"),
            direction,
            ptime: m
                .attributes
                .iter()
                .chain(session.attributes.iter())
                .find(|a| a.key == "ptime")
                .and_then(|a| a.value.clone()),
            connection,
        }
    }
}

/// Who an answer speaks for. On non-bypass trunks the SBC must only ever see the
/// media processor; on bypass trunks it sees endpoints (DR-FORK-3, DR-FORK-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerSource {
    /// The proxy's emulated media processor.
    MediaProcessor,
    /// A (virtual) Teams endpoint answering directly (media bypass).
    Endpoint,
}

/// An SDP drhub sends, rendered and ready for a message body, plus what later
/// exchanges need: the chosen codec and the ICE credentials (so a re-INVITE can tell
/// an ICE restart from a repeat). Exactly one audio stream is accepted; every other
/// m-line of the offer is answered with port 0.
#[derive(Debug, Clone)]
pub struct Answer {
    text: String,
    session: SessionDescription,
    source: AnswerSource,
    /// Index of the accepted m-line in `session.media_descriptions`.
    accepted: usize,
    codec: Codec,
    payload_type: u8,
    telephone_event: Option<u8>,
    srtp_suite: Option<&'static str>,
    ice: IceCredentials,
    address: IpAddr,
    port: u16,
    rtcp_mux: bool,
    /// What the next SDP of this session keeps (RFC 3264 §8).
    continuity: Continuity,
    /// The direction answered for the accepted stream.
    direction: Direction,
}

/// What drhub's next SDP in a session keeps from its last one (RFC 3264 §8): the `o=`
/// session id and version (the version moves only when the SDP changes), the ICE
/// credentials unless the peer restarts ICE (RFC 8839 §4.4.1.1.1), the SRTP key while
/// the suite stays (RFC 4568 §7.1.4), the media address and port, and who speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Continuity {
    session_id: u64,
    version: u64,
    /// The SDP last sent, to tell an unchanged one (same version) from a changed one.
    text: String,
    ice: IceCredentials,
    /// The peer's ICE credentials in the SDP this one answered (or was answered by).
    remote_ice: Option<IceCredentials>,
    /// The SRTP suite and `inline:` key (base64) last sent.
    srtp: Option<(String, String)>,
    address: IpAddr,
    port: u16,
    source: AnswerSource,
}

impl Continuity {
    /// The SDP last sent in this session: what a session refresh offers again,
    /// unchanged (RFC 4028 §7.4, RFC 3264 §8).
    pub fn sdp(&self) -> &str {
        &self.text
    }

    /// Who speaks in this session: the media processor or a Teams client.
    pub fn source(&self) -> AnswerSource {
        self.source
    }

    /// The media address and port drhub's side announces.
    pub fn media_address(&self) -> (IpAddr, u16) {
        (self.address, self.port)
    }

    /// A new offer in this session that changes only the audio stream's direction (a
    /// hold with `inactive`, a resume with `sendrecv`; DR-HOLD-2), the `o=` version one
    /// on (RFC 3264 §8), and the session as it stands once the peer accepts it. ICE
    /// credentials, key, address and port stay.
    pub fn reoffer(&self, direction: Direction) -> Result<(String, Continuity), SdpError> {
        let mut session = SessionDescription::unmarshal(&mut Cursor::new(self.text.as_bytes()))
            .map_err(|e| SdpError::Unparseable {
                reason: sanitize(&e.to_string()),
            })?;
        session.origin.session_version = self.version.wrapping_add(1);
        let names = ["sendrecv", "sendonly", "recvonly", "inactive"];
        for m in session
            .media_descriptions
            .iter_mut()
            .filter(|m| m.media_name.media == "audio" && m.media_name.port.value != 0)
        {
            m.attributes.retain(|a| !names.contains(&a.key.as_str()));
            m.attributes
                .push(Attribute::new(direction.as_str().to_owned(), None));
        }
        let text = session.marshal();
        let next = Continuity {
            version: session.origin.session_version,
            text: text.clone(),
            ..self.clone()
        };
        Ok((text, next))
    }

    /// The peer answered an offer of drhub's in this session with `answer`: its ICE
    /// credentials are the ones a later offer of the peer's is compared with.
    pub fn answered_with(&mut self, answer: &[u8]) {
        if let Some(ice) = Offer::parse(answer)
            .ok()
            .and_then(|o| o.main_audio().and_then(|s| s.ice.clone()))
        {
            self.remote_ice = Some(ice);
        }
    }

    /// The continuity of an offer drhub made ([`offer`]) once `remote` (the SDP that
    /// answered it, if any) came back: for answering the peer's later offers.
    /// `None` when `own` is not an SDP drhub wrote.
    pub fn of_offer(own: &str, remote: Option<&[u8]>) -> Option<Continuity> {
        let ours = Offer::parse(own.as_bytes()).ok()?;
        let audio = ours.streams.iter().find(|s| s.media == "audio")?;
        let origin = &ours.session.origin;
        let srtp = own.lines().find_map(|l| {
            let rest = l.strip_prefix("a=crypto:")?;
            let mut f = rest.split_whitespace().skip(1);
            let suite = f.next()?;
            let key = f.next()?.strip_prefix("inline:")?;
            Some((suite.to_owned(), key.to_owned()))
        });
        let remote_ice = remote
            .and_then(|r| Offer::parse(r).ok())
            .and_then(|o| {
                o.streams
                    .into_iter()
                    .find(|s| s.media == "audio" && s.port != 0)
            })
            .and_then(|s| s.ice);
        let source = if ours.session.attributes.iter().any(|a| a.key == "ice-lite") {
            AnswerSource::MediaProcessor
        } else {
            AnswerSource::Endpoint
        };
        Some(Continuity {
            session_id: origin.session_id,
            version: origin.session_version,
            text: own.to_owned(),
            ice: audio.ice.clone()?,
            remote_ice,
            srtp,
            address: audio.connection?,
            port: audio.port,
            source,
        })
    }
}

impl Answer {
    /// The SDP text (CRLF line ends), for a message body.
    pub fn as_bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }

    /// The SDP text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Media processor or endpoint.
    pub fn source(&self) -> AnswerSource {
        self.source
    }

    /// The audio codec chosen from the offer.
    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    /// Its payload type, the offer's number (RFC 3264 §6.1).
    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// The telephone-event payload type, when the offer had one drhub accepts.
    pub fn telephone_event(&self) -> Option<u8> {
        self.telephone_event
    }

    /// The SRTP suite answered, for SAVP streams.
    pub fn srtp_suite(&self) -> Option<&str> {
        self.srtp_suite
    }

    /// The ICE credentials this SDP carries.
    pub fn ice(&self) -> &IceCredentials {
        &self.ice
    }

    /// The address in `c=` and the candidates.
    pub fn address(&self) -> IpAddr {
        self.address
    }

    /// The RTP port of the accepted audio stream.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What the next SDP of this session keeps.
    pub fn continuity(&self) -> &Continuity {
        &self.continuity
    }

    /// The direction answered for the audio stream (`inactive` while on hold).
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// `o=` session id and version.
    pub fn origin(&self) -> (u64, u64) {
        (
            self.session.origin.session_id,
            self.session.origin.session_version,
        )
    }
}

/// The media processor's answer to an SBC offer (RFC 3264 §6): what the SBC sees in
/// 183 and 200 on non-bypass trunks (DR-FORK-3, DR-FORK-5). `port` is the RTP port
/// (even, see [`PortPool`]); RTCP uses `port + 1` unless rtcp-mux is offered.
/// `session_id` goes into `o=` with version 1.
pub fn media_processor_answer(
    offer: &Offer,
    cfg: &MediaConfig,
    port: u16,
    session_id: u64,
) -> Result<Answer, SdpError> {
    build_answer(
        offer,
        &cfg.codecs,
        cfg.address,
        port,
        session_id,
        AnswerSource::MediaProcessor,
        None,
    )
}

/// A (virtual) Teams endpoint's own answer, what the SBC sees on bypass trunks
/// (DR-FORK-3, DR-FORK-5): same negotiation over [`Codec::defaults`], with the
/// endpoint's address, ICE credentials and host candidate.
pub fn endpoint_answer(
    offer: &Offer,
    endpoint_addr: IpAddr,
    port: u16,
    session_id: u64,
) -> Result<Answer, SdpError> {
    build_answer(
        offer,
        &Codec::defaults(),
        endpoint_addr,
        port,
        session_id,
        AnswerSource::Endpoint,
        None,
    )
}

/// The answer to a new offer in a session drhub already answered or offered in (a
/// re-INVITE or UPDATE: hold, resume, a codec change, an ICE restart; RFC 3264 §8),
/// from the same address and port, over `codecs`. It keeps what `prior` says stays
/// (session id, ICE credentials unless the offer restarts ICE, the SRTP key for the same
/// suite); the `o=` version moves only when the SDP changes. `a=inactive` is answered
/// `a=inactive` (DR-HOLD-1); `a=sendonly` and `a=recvonly`, which the real service is
/// documented not to understand, are answered `a=inactive` too, a valid answer to either
/// (RFC 3264 §6.1; an emulator choice). `c=0.0.0.0` on an active audio stream is
/// [`SdpError::ZeroConnection`]; an offer with no acceptable codec is refused as the
/// first offer would be, and the call keeps its media (RFC 3264 §8.3.2).
pub fn reanswer(
    offer: &Offer,
    codecs: &[Codec],
    prior: &Continuity,
    rule: HoldRule,
) -> Result<Answer, SdpError> {
    if offer.streams.iter().any(|s| {
        s.media == "audio" && s.port != 0 && s.connection.is_some_and(|a| a.is_unspecified())
    }) {
        return Err(SdpError::ZeroConnection);
    }
    build_answer(
        offer,
        codecs,
        prior.address,
        prior.port,
        prior.session_id,
        prior.source,
        Some((prior, rule)),
    )
}

/// How a re-offer's one-way directions are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldRule {
    /// As the SBC interface of Direct Routing: `a=sendonly`/`a=recvonly` are not
    /// understood and answered `a=inactive` (DR-HOLD-1).
    DirectRouting,
    /// RFC 3264 §6.1: `a=sendonly` answered `a=recvonly` and the reverse (endpoints).
    Rfc3264,
}

/// The SDP for the re-INVITE of DR-ICE-1 (RFC 5245 §9.1.1.1): `previous` with new
/// `ice-ufrag`/`ice-pwd`, new host candidates at `address`:`port` (with `m=`,
/// `c=` and `a=rtcp` following them, as the default candidate must match), and the
/// `o=` version incremented (RFC 3264 §8). Everything else, SRTP key included, is
/// unchanged.
pub fn ice_restart(previous: &Answer, address: IpAddr, port: u16) -> Result<Answer, SdpError> {
    let ice = IceCredentials::generate()?;
    let mut session = previous.session.clone();
    session.origin.session_version = session.origin.session_version.wrapping_add(1);
    if address != previous.address {
        session.connection_information = Some(connection(address));
    }
    if let Some(m) = session.media_descriptions.get_mut(previous.accepted) {
        m.media_name.port = ranged_port(port);
        let first_candidate = m.attributes.iter().position(|a| a.key == "candidate");
        m.attributes.retain(|a| a.key != "candidate");
        for a in &mut m.attributes {
            match a.key.as_str() {
                "ice-ufrag" => a.value = Some(ice.ufrag.clone()),
                "ice-pwd" => a.value = Some(ice.pwd.clone()),
                "rtcp" => a.value = Some(rtcp_port(port).to_string()),
                _ => {}
            }
        }
        let at = first_candidate.unwrap_or(m.attributes.len());
        let new = host_candidates(address, port, previous.rtcp_mux);
        m.attributes.splice(at..at, new);
    }
    let text = session.marshal();
    let continuity = Continuity {
        version: session.origin.session_version,
        text: text.clone(),
        ice: ice.clone(),
        address,
        port,
        ..previous.continuity.clone()
    };
    Ok(Answer {
        text,
        session,
        ice,
        address,
        port,
        continuity,
        ..previous.clone()
    })
}

/// The payload type drhub offers a codec with: its static one (RFC 3551 §6), else a
/// dynamic one in the range Teams' own offers use (opus 111, SILK 104,
/// telephone-event 101), else the next free dynamic number from 96.
fn offer_payload_type(codec: &Codec, taken: &[u8]) -> Option<u8> {
    // RFC 3551 §6's audio types drhub may offer, without building a Codec for each.
    const STATIC: [(u8, &str, u32, u16); 6] = [
        (0, "PCMU", 8000, 1),
        (3, "GSM", 8000, 1),
        (8, "PCMA", 8000, 1),
        (9, "G722", 8000, 1),
        (13, "CN", 8000, 1),
        (18, "G729", 8000, 1),
    ];
    if let Some((pt, ..)) = STATIC.iter().find(|(_, name, rate, ch)| {
        codec.name.eq_ignore_ascii_case(name) && codec.clock_rate == *rate && codec.channels == *ch
    }) {
        return Some(*pt);
    }
    let name = codec.name.as_str();
    let preferred = if name.eq_ignore_ascii_case("opus") {
        Some(111)
    } else if name.eq_ignore_ascii_case("SILK") {
        Some(104)
    } else if codec.is_telephone_event() {
        Some(101)
    } else {
        None
    };
    preferred
        .filter(|pt| !taken.contains(pt))
        .or_else(|| (96..=127).find(|pt| !taken.contains(pt)))
}

/// The SDP offer of a call drhub places (DR-OUT-1, DR-MEDIA-1): one audio stream over
/// `RTP/SAVP` with an SDES key for `AES_CM_128_HMAC_SHA1_80` (RFC 4568), `codecs` in
/// their order with telephone-event, `a=rtcp-mux` offered (RFC 5761) with the RTCP
/// port and candidate kept for an SBC that declines it (RFC 5761 §5.1.1), ICE
/// credentials and host candidates (RFC 8839). The media processor is ICE-lite
/// (`a=ice-lite` at session level); an endpoint on a bypass trunk is a full agent.
pub fn offer(
    codecs: &[Codec],
    address: IpAddr,
    port: u16,
    session_id: u64,
    source: AnswerSource,
) -> Result<String, SdpError> {
    use std::fmt::Write as _;
    // One draw for the ICE ufrag (6 bytes), pwd (18) and the SRTP key and salt (30); see
    // `IceCredentials::generate` for the sizes.
    let mut random = [0u8; 6 + 18 + SRTP_KEY_SALT_LEN];
    fill_random(&mut random)?;
    let (ufrag, rest) = random.split_at(6);
    let (pwd, key) = rest.split_at(18);
    let mut formats: Vec<(u8, &Codec)> = Vec::with_capacity(codecs.len());
    let mut taken: Vec<u8> = Vec::with_capacity(codecs.len());
    for c in codecs {
        if let Some(pt) = offer_payload_type(c, &taken) {
            formats.push((pt, c));
            taken.push(pt);
        }
    }
    if !formats.iter().any(|(_, c)| !c.is_telephone_event()) {
        return Err(SdpError::NoCommonCodec {
            offered: "none configured".to_owned(),
        });
    }
    let ip = address_type(address);
    let mut t = String::with_capacity(768);
    // Writing to a String cannot fail.
    let _ = write!(
        t,
        "v=0\r\no=- {session_id} 1 IN {ip} {address}\r\ns=-\r\nc=IN {ip} {address}\r\nt=0 0\r\n"
    );
    if source == AnswerSource::MediaProcessor {
        t.push_str("a=ice-lite\r\n");
    }
    let _ = write!(t, "m=audio {port} RTP/SAVP");
    for (pt, _) in &formats {
        let _ = write!(t, " {pt}");
    }
    t.push_str("\r\n");
    for (pt, c) in &formats {
        let _ = write!(t, "a=rtpmap:{pt} {c}\r\n");
        if c.is_telephone_event() {
            let _ = write!(t, "a=fmtp:{pt} 0-16\r\n");
        }
    }
    t.push_str("a=ptime:20\r\na=sendrecv\r\n");
    let _ = write!(
        t,
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}\r\n",
        base64(key)
    );
    let _ = write!(
        t,
        "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\n",
        base64(ufrag),
        base64(pwd)
    );
    // Host candidates for RTP and RTCP, as `host_candidates` writes them.
    for (component, p) in [(1u32, port), (2, rtcp_port(port))] {
        let priority = (126u32 << 24) + (65535u32 << 8) + (256 - component);
        let _ = write!(
            t,
            "a=candidate:1 {component} UDP {priority} {address} {p} typ host\r\n"
        );
    }
    let _ = write!(t, "a=rtcp:{}\r\na=rtcp-mux\r\n", rtcp_port(port));
    Ok(t)
}

/// Hands out even RTP ports (RFC 3550 §11) from a range, round-robin. No socket is
/// opened: drhub emulates signalling, so a port only has to look real, and reuse
/// after a full turn is harmless. Lock-free, so calls can share one pool.
#[derive(Debug)]
pub struct PortPool {
    first: u16,
    slots: u32,
    next: AtomicU32,
}

impl PortPool {
    /// A pool over `[min, max]`: even ports `p` with `p + 1 <= max`, so RTCP fits too.
    /// `None` when no such port exists (an empty or one-port range).
    pub fn new(min: u16, max: u16) -> Option<PortPool> {
        let first = min.checked_add(min % 2)?;
        let last = max.checked_sub(1)?;
        let last = last - last % 2;
        if first > last {
            return None;
        }
        Some(PortPool {
            first,
            slots: u32::from((last - first) / 2) + 1,
            next: AtomicU32::new(0),
        })
    }

    /// The pool for a media processor's configured range.
    pub fn from_config(cfg: &MediaConfig) -> Option<PortPool> {
        PortPool::new(cfg.port_min, cfg.port_max)
    }

    /// The next port. Always even and inside the range.
    pub fn allocate(&self) -> u16 {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.slots;
        // n < slots <= 32768 and first + 2 * n <= last, so this fits in u16.
        let offset = u16::try_from(n * 2).unwrap_or(0);
        self.first + offset
    }
}

// ---------------------------------------------------------------------------------
// Building answers

/// What the answer does with the accepted audio stream.
struct Plan {
    index: usize,
    codec: PayloadFormat,
    codec_name: Codec,
    telephone_event: Option<PayloadFormat>,
    crypto: Option<ChosenCrypto>,
}

/// The offered `a=crypto` line the answer accepts.
struct ChosenCrypto {
    suite: &'static str,
    tag: u32,
    session_params: Vec<String>,
}

fn build_answer(
    offer: &Offer,
    codecs: &[Codec],
    address: IpAddr,
    port: u16,
    session_id: u64,
    source: AnswerSource,
    prior: Option<(&Continuity, HoldRule)>,
) -> Result<Answer, SdpError> {
    // RFC 3264 §6: drhub answers the first acceptable audio stream; if none is
    // acceptable, the first enabled audio stream's problem is the diagnostic.
    let mut first_error = None;
    let mut plan = None;
    for (index, stream) in offer.streams.iter().enumerate() {
        if stream.media != "audio" || stream.port == 0 {
            continue;
        }
        match plan_stream(index, stream, codecs) {
            Ok(p) => {
                plan = Some(p);
                break;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let plan = match (plan, first_error) {
        (Some(p), _) => p,
        (None, Some(e)) => return Err(e),
        (None, None) => {
            return Err(SdpError::NoAudio {
                offered: media_list(&offer.streams),
            })
        }
    };

    let stream = &offer.streams[plan.index];
    // RFC 8839 §4.4.1.1.1: new credentials from the peer restart ICE; drhub's change too.
    let (prior, rule) = prior.unzip();
    let ice = match prior {
        Some(p) if p.remote_ice == stream.ice => p.ice.clone(),
        _ => IceCredentials::generate()?,
    };
    let key = match (prior.and_then(|p| p.srtp.as_ref()), &plan.crypto) {
        (Some((suite, key)), Some(c)) if suite == c.suite => key.clone(),
        _ => {
            let mut key = [0u8; SRTP_KEY_SALT_LEN];
            fill_random(&mut key)?;
            base64(&key)
        }
    };
    // DR-HOLD-1: the real service understands hold as `a=inactive` only.
    let direction = match (rule, stream.direction) {
        (Some(HoldRule::DirectRouting), Direction::SendOnly | Direction::RecvOnly) => {
            Direction::Inactive
        }
        (_, offered) => offered.answer(),
    };
    let mut media = Vec::with_capacity(offer.streams.len());
    for (i, s) in offer.streams.iter().enumerate() {
        if i == plan.index {
            let accepted = Accepted {
                ice: &ice,
                key: &key,
                direction,
                address,
                port,
            };
            media.push(accepted_media(stream, &plan, &accepted));
        } else {
            media.push(rejected_media(s));
        }
    }

    let mut session = SessionDescription {
        version: 0,
        origin: Origin {
            username: "-".to_owned(),
            session_id,
            session_version: prior.map_or(1, |p| p.version),
            network_type: "IN".to_owned(),
            address_type: address_type(address).to_owned(),
            unicast_address: address.to_string(),
        },
        session_name: "-".to_owned(),
        session_information: None,
        uri: None,
        email_address: None,
        phone_number: None,
        connection_information: Some(connection(address)),
        bandwidth: vec![],
        time_descriptions: vec![TimeDescription {
            timing: Timing {
                start_time: 0,
                stop_time: 0,
            },
            repeat_times: vec![],
        }],
        time_zones: vec![],
        encryption_key: None,
        // RFC 8839 §5.3: the media processor is an ICE-lite agent, in answers as in
        // its offers.
        attributes: match source {
            AnswerSource::MediaProcessor => vec![Attribute::new("ice-lite".to_owned(), None)],
            AnswerSource::Endpoint => vec![],
        },
        media_descriptions: media,
    };

    let mut text = session.marshal();
    if let Some(p) = prior {
        // RFC 3264 §8: the same SDP keeps its version; any change moves it by one.
        if text != p.text {
            session.origin.session_version = p.version.wrapping_add(1);
            text = session.marshal();
        }
    }
    let continuity = Continuity {
        session_id,
        version: session.origin.session_version,
        text: text.clone(),
        ice: ice.clone(),
        remote_ice: stream.ice.clone(),
        srtp: plan
            .crypto
            .as_ref()
            .map(|c| (c.suite.to_owned(), key.clone())),
        address,
        port,
        source,
    };
    Ok(Answer {
        text,
        session,
        source,
        accepted: plan.index,
        codec: plan.codec_name,
        payload_type: plan.codec.payload_type,
        telephone_event: plan.telephone_event.map(|t| t.payload_type),
        srtp_suite: plan.crypto.map(|c| c.suite),
        ice,
        address,
        port,
        rtcp_mux: stream.rtcp_mux,
        continuity,
        direction,
    })
}

fn plan_stream(index: usize, stream: &OfferedStream, codecs: &[Codec]) -> Result<Plan, SdpError> {
    let supported = |f: &&PayloadFormat| -> bool {
        f.codec
            .as_ref()
            .is_some_and(|c| codecs.iter().any(|ours| ours.matches(c)))
    };
    let srtp = match stream.proto.as_str() {
        "RTP/AVP" | "RTP/AVPF" => false,
        "RTP/SAVP" | "RTP/SAVPF" => true,
        other => {
            return Err(SdpError::UnsupportedTransport {
                offered: sanitize(other),
            })
        }
    };
    // RFC 3264 §6.1: the offer's order is its preference; take the first we support.
    let codec = stream
        .payload_formats
        .iter()
        .filter(supported)
        .find(|f| f.codec.as_ref().is_some_and(|c| !c.is_telephone_event()))
        .ok_or_else(|| SdpError::NoCommonCodec {
            offered: stream.offered_formats(),
        })?;
    let codec_name = codec.codec.clone().ok_or_else(|| SdpError::NoCommonCodec {
        offered: stream.offered_formats(),
    })?;
    let telephone_event = stream
        .payload_formats
        .iter()
        .filter(supported)
        .find(|f| f.codec.as_ref().is_some_and(Codec::is_telephone_event))
        .cloned();

    let crypto = if srtp {
        // RFC 4568 §7.1.2: the first acceptable line, same tag, our own key.
        let chosen = stream.crypto.iter().find_map(|c| {
            let ours = SRTP_SUITES.iter().find(|s| **s == c.suite)?;
            c.inline.then(|| ChosenCrypto {
                suite: ours,
                tag: c.tag,
                session_params: c.session_params.clone(),
            })
        });
        let chosen = chosen.ok_or_else(|| SdpError::NoCommonCrypto {
            offered: if stream.crypto.is_empty() {
                "none".to_owned()
            } else {
                bounded_list(stream.crypto.iter().map(|c| c.suite.clone()))
            },
        })?;
        Some(chosen)
    } else {
        None
    };

    Ok(Plan {
        index,
        codec: codec.clone(),
        codec_name,
        telephone_event,
        crypto,
    })
}

/// What drhub puts on the stream it accepts.
struct Accepted<'a> {
    ice: &'a IceCredentials,
    /// The SRTP key and salt, base64, for an `RTP/SAVP` stream.
    key: &'a str,
    direction: Direction,
    address: IpAddr,
    port: u16,
}

fn accepted_media(stream: &OfferedStream, plan: &Plan, our: &Accepted<'_>) -> MediaDescription {
    let (ice, address, port) = (our.ice, our.address, our.port);
    let mut formats = vec![&plan.codec];
    formats.extend(plan.telephone_event.as_ref());

    let mut attributes = Vec::new();
    for f in &formats {
        if let Some(codec) = &f.codec {
            attributes.push(attr("rtpmap", format!("{} {codec}", f.payload_type)));
        }
        if let Some(fmtp) = &f.fmtp {
            attributes.push(attr("fmtp", format!("{} {fmtp}", f.payload_type)));
        }
    }
    if let Some(ptime) = &stream.ptime {
        attributes.push(attr("ptime", ptime.clone()));
    }
    attributes.push(Attribute::new(our.direction.as_str().to_owned(), None));
    if let Some(crypto) = &plan.crypto {
        let mut value = format!("{} {} inline:{}", crypto.tag, crypto.suite, our.key);
        for p in &crypto.session_params {
            value.push(' ');
            value.push_str(p);
        }
        attributes.push(attr("crypto", value));
    }
    attributes.push(attr("ice-ufrag", ice.ufrag.clone()));
    attributes.push(attr("ice-pwd", ice.pwd.clone()));
    attributes.extend(host_candidates(address, port, stream.rtcp_mux));
    if stream.rtcp_mux {
        // RFC 5761 §5.1.1: accepting mux is repeating the attribute.
        attributes.push(Attribute::new("rtcp-mux".to_owned(), None));
    } else {
        // RFC 3605: RTCP on the next port, stated explicitly.
        attributes.push(attr("rtcp", rtcp_port(port).to_string()));
    }

    MediaDescription {
        media_name: MediaName {
            media: stream.media.clone(),
            port: ranged_port(port),
            protos: stream.proto.split('/').map(str::to_owned).collect(),
            formats: formats.iter().map(|f| f.payload_type.to_string()).collect(),
        },
        media_title: None,
        connection_information: None,
        bandwidth: vec![],
        encryption_key: None,
        attributes,
    }
}

/// RFC 3264 §6: a rejected stream keeps its m-line with port 0 and the offered
/// transport and formats, and nothing else.
fn rejected_media(stream: &OfferedStream) -> MediaDescription {
    MediaDescription {
        media_name: MediaName {
            media: stream.media.clone(),
            port: ranged_port(0),
            protos: stream.proto.split('/').map(str::to_owned).collect(),
            formats: stream.formats.clone(),
        },
        media_title: None,
        connection_information: None,
        bandwidth: vec![],
        encryption_key: None,
        attributes: vec![],
    }
}

/// Host candidates for RTP and, without rtcp-mux, RTCP (RFC 8839 §5.1). Priority per
/// RFC 8445 §5.1.2.1 with type preference 126 (host) and local preference 65535.
fn host_candidates(address: IpAddr, port: u16, rtcp_mux: bool) -> Vec<Attribute> {
    let components: &[(u32, u16)] = if rtcp_mux {
        &[(1, port)]
    } else {
        &[(1, port), (2, rtcp_port(port))]
    };
    components
        .iter()
        .map(|&(component, port)| {
            let priority = (126u32 << 24) + (65535u32 << 8) + (256 - component);
            attr(
                "candidate",
                format!("1 {component} UDP {priority} {address} {port} typ host"),
            )
        })
        .collect()
}

/// An m-line port. The crate stores ports as `isize`; every u16 fits on the 32- and
/// 64-bit targets drhub builds for.
fn ranged_port(port: u16) -> RangedPort {
    RangedPort {
        value: isize::try_from(port).unwrap_or(0),
        range: None,
    }
}

/// RTCP's port next to an RTP port. RTP ports are even (RFC 3550 §11), so this only
/// saturates for a caller passing 65535.
fn rtcp_port(port: u16) -> u16 {
    port.saturating_add(1)
}

fn attr(key: &str, value: String) -> Attribute {
    Attribute::new(key.to_owned(), Some(value))
}

fn connection(address: IpAddr) -> ConnectionInformation {
    ConnectionInformation {
        network_type: "IN".to_owned(),
        address_type: address_type(address).to_owned(),
        address: Some(Address {
            address: address.to_string(),
            ttl: None,
            range: None,
        }),
    }
}

fn address_type(address: IpAddr) -> &'static str {
    match address {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

// ---------------------------------------------------------------------------------
// Reading attributes

/// `<pt> <params>` of `a=rtpmap` and `a=fmtp`.
fn split_payload_type(value: &str) -> Option<(u8, &str)> {
    let (pt, rest) = value.trim_start().split_once([' ', '\t'])?;
    let pt = pt.parse::<u8>().ok().filter(|pt| *pt <= 127)?;
    Some((pt, rest.trim()))
}

/// `a=rtpmap:<pt> <name>/<rate>[/<channels>]` (RFC 4566 §6).
fn parse_rtpmap(value: &str) -> Option<(u8, Codec)> {
    let (pt, encoding) = split_payload_type(value)?;
    let mut parts = encoding.split('/');
    let name = parts.next()?.trim();
    let is_token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+!%*'~`".contains(&b));
    if !is_token {
        return None;
    }
    let clock_rate = parts.next()?.trim().parse::<u32>().ok()?;
    let channels = match parts.next() {
        Some(c) => c.trim().parse::<u16>().ok()?,
        None => 1,
    };
    Some((pt, Codec::new(name, clock_rate, channels)))
}

/// `a=crypto:<tag> <suite> <key-params> [<session-params>]` (RFC 4568 §9.1).
fn parse_crypto(value: &str) -> Option<CryptoOffer> {
    let mut fields = value.split_ascii_whitespace();
    let tag = fields.next()?;
    // RFC 4568 §9.1: tag = 1*9DIGIT.
    if tag.len() > 9 {
        return None;
    }
    let tag = tag.parse::<u32>().ok()?;
    let suite = fields.next()?.to_owned();
    let key_params = fields.next()?;
    Some(CryptoOffer {
        tag,
        suite,
        inline: key_params.starts_with("inline:"),
        session_params: fields.map(str::to_owned).collect(),
    })
}

/// Offset of the first NUL, or CR not followed by LF: bytes no SDP field may hold.
fn stray_line_break(body: &[u8]) -> Option<usize> {
    body.iter()
        .enumerate()
        .find(|&(i, &b)| b == 0 || (b == b'\r' && body.get(i + 1) != Some(&b'\n')))
        .map(|(i, _)| i)
}

fn media_list(streams: &[OfferedStream]) -> String {
    if streams.is_empty() {
        return "none".to_owned();
    }
    bounded_list(streams.iter().map(|s| s.media.clone()))
}

/// A comma-separated, deduplicated, sanitised and bounded list for diagnostics.
fn bounded_list(items: impl Iterator<Item = String>) -> String {
    let mut seen: Vec<String> = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    if seen.is_empty() {
        return "none".to_owned();
    }
    sanitize(&seen.join(", "))
}

/// Peer text made safe for a log line or a SIP header: control characters escaped,
/// at most [`MAX_DIAGNOSTIC`] characters.
fn sanitize(text: &str) -> String {
    let mut out = String::new();
    for (count, c) in text.chars().enumerate() {
        if count == MAX_DIAGNOSTIC {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// Randomness and encoding

/// Fills `buf` from aws-lc-rs's CSPRNG, through the provider passed explicitly (the
/// process-default provider is never relied on).
fn fill_random(buf: &mut [u8]) -> Result<(), SdpError> {
    static RNG: OnceLock<&'static dyn rustls::crypto::SecureRandom> = OnceLock::new();
    let rng = RNG.get_or_init(|| rustls::crypto::aws_lc_rs::default_provider().secure_random);
    rng.fill(buf).map_err(|_| SdpError::RandomUnavailable)
}

/// Standard base64 with padding (RFC 4648 §4), as `inline:` keys use (RFC 4568 §6.1).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let group = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                let index = (group >> (18 - 6 * i)) & 0x3f;
                out.push(char::from(ALPHABET[index as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// DR-OUT-1, DR-MEDIA-1: the offer of a call drhub places is SRTP with one SDES
    /// line for AES_CM_128_HMAC_SHA1_80, offers rtcp-mux with the RTCP fallback, has
    /// ICE credentials and host candidates, and drhub's own answerer accepts it (what
    /// an SBC running the same rules would do).
    #[test]
    fn dr_out_1_offer_is_srtp_with_ice_and_rtcp_mux() {
        let addr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
        for source in [AnswerSource::MediaProcessor, AnswerSource::Endpoint] {
            let text = offer(&Codec::defaults(), addr, 50000, 42, source).unwrap();
            let o = Offer::parse(text.as_bytes()).unwrap();
            assert!(o.is_srtp() && o.has_ice(), "{text}");
            assert_eq!(o.crypto_suites(), vec!["AES_CM_128_HMAC_SHA1_80"]);
            assert_eq!(o.streams().len(), 1);
            let s = &o.streams()[0];
            assert!(s.rtcp_mux);
            assert_eq!(s.port, 50000);
            let pts: Vec<u8> = s.payload_formats.iter().map(|f| f.payload_type).collect();
            assert_eq!(pts, vec![0, 8, 9, 111, 104, 101], "{text}");
            assert!(text.contains("a=rtcp:50001\r\n"), "{text}");
            assert!(text.contains("a=fmtp:101 0-16\r\n"), "{text}");
            assert_eq!(
                text.contains("a=ice-lite\r\n"),
                source == AnswerSource::MediaProcessor
            );
            let a = media_processor_answer(&o, &MediaConfig::new(addr), 52000, 7).unwrap();
            assert_eq!(a.codec().name, "PCMU");
            assert_eq!(a.srtp_suite(), Some("AES_CM_128_HMAC_SHA1_80"));
        }
        // Two offers never share a key or ICE credentials.
        let a = offer(&Codec::defaults(), addr, 50000, 1, AnswerSource::Endpoint).unwrap();
        let b = offer(&Codec::defaults(), addr, 50000, 1, AnswerSource::Endpoint).unwrap();
        assert_ne!(a, b);
        // No audio codec configured: no offer.
        let dtmf_only = [Codec::new("telephone-event", 8000, 1)];
        assert!(offer(&dtmf_only, addr, 50000, 1, AnswerSource::Endpoint).is_err());
    }

    /// Fixtures are written with `\n`; SIP bodies carry CRLF.
    fn crlf(text: &str) -> String {
        text.replace('\n', "\r\n")
    }

    /// An AudioCodes Mediant offer: SRTP with two crypto lines (the first one a suite
    /// drhub does not do), ICE lite candidates, rtcp-mux, ptime, G729 first.
    const AUDIOCODES: &str = "v=0
o=AudiocodesGW 1357924680 246813579 IN IP4 203.0.113.10
s=Phone-Call
c=IN IP4 203.0.113.10
t=0 0
m=audio 6010 RTP/SAVP 18 8 0 9 101
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:9 G722/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:Z3d0Zm9vYmFyYmF6cXV4cXV1eGZyb2J6b3Jrd2liYmxlcmZvb2Jhcg==|2^31
a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^31
a=ice-ufrag:Ab3x
a=ice-pwd:k4Yp0WzN7qR2sT5uV8wX1yZ3
a=ice-lite
a=candidate:1 1 UDP 2130706431 203.0.113.10 6010 typ host
a=rtcp-mux
a=rtcp:6010
";

    /// A Ribbon SBC offer: plain RTP, no ICE, separate RTCP port, maxptime.
    const RIBBON: &str = "v=0
o=Sonus_UAC 27394 18273 IN IP4 192.0.2.20
s=SIP Media Capabilities
c=IN IP4 192.0.2.20
t=0 0
m=audio 20004 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=rtcp:20005
a=ptime:20
a=maxptime:30
";

    /// What a Teams client offers: SILK first, many formats, Microsoft extensions,
    /// TCP relay candidates, three crypto lines.
    const TEAMS: &str = "v=0
o=- 0 0 IN IP4 52.114.14.70
s=session
c=IN IP4 52.114.14.70
b=CT:10000000
t=0 0
m=audio 52954 RTP/SAVP 104 9 103 111 18 0 8 97 101 13 118
c=IN IP4 52.114.14.70
a=rtcp:52955
a=ice-ufrag:q7Kb
a=ice-pwd:7cUxZ1ypsPxv3Xs9OnfVSk2I
a=candidate:1 1 UDP 2130706431 10.0.0.5 52954 typ host
a=candidate:1 2 UDP 2130705918 10.0.0.5 52955 typ host
a=candidate:2 1 tcp-pass 174455807 52.114.14.70 55203 typ relay raddr 52.114.14.70 rport 55203
a=candidate:2 2 tcp-pass 174455806 52.114.14.70 55203 typ relay raddr 52.114.14.70 rport 55203
a=candidate:3 1 UDP 184547839 52.114.14.70 52954 typ relay raddr 10.0.0.5 rport 52954
a=candidate:3 2 UDP 184547838 52.114.14.70 52955 typ relay raddr 10.0.0.5 rport 52955
a=cryptoscale:1 client AES_CM_128_HMAC_SHA1_80 inline:rJKt0/0gFDoGs2kVZvoXcm2T6OqZeB9VDYdTbR/y|2^31|1:1
a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:F8mxcvnqWrkrzKu6e6m1r2tbXoWSo1tUytcqbVtP|2^31|1:1
a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:9XYr1a8IuvElSG4Ew4W62VXcKoq7hSF1TJJ0hTkI|2^31
a=maxptime:200
a=rtpmap:104 SILK/16000
a=fmtp:104 useinbandfec=1; usedtx=0
a=rtpmap:9 G722/8000
a=rtpmap:103 SILK/8000
a=fmtp:103 useinbandfec=1; usedtx=0
a=rtpmap:111 SIREN/16000
a=fmtp:111 bitrate=16000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:97 RED/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=rtpmap:13 CN/8000
a=rtpmap:118 CN/16000
a=ptime:20
a=rtcp-fb:* x-message app send:dsh recv:dsh
a=x-ssrc-range:3489660928-3489660928
a=label:main-audio
a=mid:1
a=sendrecv
";

    /// Audio with static payload types and no rtpmap for them, plus video.
    const VIDEO: &str = "v=0
o=- 7 7 IN IP4 192.0.2.30
s=-
c=IN IP4 192.0.2.30
t=0 0
m=audio 30000 RTP/AVP 9 0 101
a=rtpmap:101 telephone-event/8000
m=video 30002 RTP/AVP 96 97
a=rtpmap:96 H264/90000
a=fmtp:96 profile-level-id=42e01f
a=rtpmap:97 VP8/90000
";

    /// A hold re-offer.
    const HOLD: &str = "v=0
o=- 9 10 IN IP4 192.0.2.40
s=-
c=IN IP4 192.0.2.40
t=0 0
m=audio 40000 RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=sendonly
";

    const G729_ONLY: &str = "v=0
o=- 1 1 IN IP4 192.0.2.50
s=-
c=IN IP4 192.0.2.50
t=0 0
m=audio 5000 RTP/AVP 18 97
a=rtpmap:18 G729/8000
a=rtpmap:97 iLBC/8000
a=fmtp:97 mode=30
";

    /// Upper-case opus, telephone-event at 48 kHz (not in drhub's list), session-level
    /// direction and ICE.
    const OPUS: &str = "v=0
o=- 2 2 IN IP6 2001:db8::1
s=-
c=IN IP6 2001:db8::1
t=0 0
a=inactive
a=ice-ufrag:sEsS
a=ice-pwd:sessionlevelpassword0123
m=audio 5004 RTP/AVP 111 110
a=rtpmap:111 OPUS/48000/2
a=fmtp:111 useinbandfec=1
a=rtpmap:110 telephone-event/48000
";

    /// Two audio streams, the first disabled.
    const SECOND_AUDIO: &str = "v=0
o=- 3 3 IN IP4 192.0.2.60
s=-
c=IN IP4 192.0.2.60
t=0 0
m=audio 0 RTP/AVP 0
m=audio 7000 RTP/AVP 8
";

    fn fixtures() -> Vec<(&'static str, String)> {
        [
            ("audiocodes", AUDIOCODES),
            ("ribbon", RIBBON),
            ("teams", TEAMS),
            ("video", VIDEO),
            ("hold", HOLD),
            ("g729", G729_ONLY),
            ("opus", OPUS),
            ("second_audio", SECOND_AUDIO),
        ]
        .into_iter()
        .map(|(name, text)| (name, crlf(text)))
        .collect()
    }

    /// A 3 KB offer: the Teams one with many more candidates (DR-FORK-10).
    fn large_offer() -> String {
        let mut text = crlf(TEAMS);
        let extra: String = (0..40)
            .map(|i| {
                format!(
                    "a=candidate:{} 1 UDP 1694498815 198.51.100.{i} {} typ srflx raddr 10.0.0.5 rport 52954\r\n",
                    10 + i,
                    50000 + i
                )
            })
            .collect();
        text.push_str(&extra);
        text
    }

    fn mp_config() -> MediaConfig {
        MediaConfig::new(IpAddr::V4(Ipv4Addr::new(52, 112, 0, 10)))
    }

    fn answer(text: &str) -> Answer {
        let offer = Offer::parse(text.as_bytes()).expect("fixture parses");
        media_processor_answer(&offer, &mp_config(), 49170, 4242).expect("fixture is answerable")
    }

    fn lines(text: &str) -> Vec<&str> {
        text.split("\r\n").filter(|l| !l.is_empty()).collect()
    }

    fn attr_values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
        let prefix = format!("a={key}");
        lines(text)
            .into_iter()
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            .filter(|rest| rest.is_empty() || rest.starts_with(':'))
            .map(|rest| rest.strip_prefix(':').unwrap_or(rest))
            .collect()
    }

    fn is_ice_char(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '+' || c == '/'
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in cases {
            assert_eq!(base64(input.as_bytes()), expected, "{input:?}");
        }
        assert_eq!(base64(&[0xfb, 0xff, 0xbf]), "+/+/");
    }

    #[test]
    fn offers_parse_into_streams() {
        struct Case {
            name: &'static str,
            text: &'static str,
            media: &'static [&'static str],
            payload_types: &'static [u8],
            codecs: &'static [&'static str],
            srtp: bool,
            suites: &'static [&'static str],
            ice: bool,
            rtcp_mux: bool,
            direction: Direction,
            ptime: Option<&'static str>,
            connection: &'static str,
        }
        let cases = [
            Case {
                name: "audiocodes",
                text: AUDIOCODES,
                media: &["audio"],
                payload_types: &[18, 8, 0, 9, 101],
                codecs: &[
                    "G729/8000",
                    "PCMA/8000",
                    "PCMU/8000",
                    "G722/8000",
                    "telephone-event/8000",
                ],
                srtp: true,
                suites: &["AES_256_CM_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_80"],
                ice: true,
                rtcp_mux: true,
                direction: Direction::SendRecv,
                ptime: Some("20"),
                connection: "203.0.113.10",
            },
            Case {
                name: "ribbon",
                text: RIBBON,
                media: &["audio"],
                payload_types: &[0, 8, 101],
                codecs: &["PCMU/8000", "PCMA/8000", "telephone-event/8000"],
                srtp: false,
                suites: &[],
                ice: false,
                rtcp_mux: false,
                direction: Direction::SendRecv,
                ptime: Some("20"),
                connection: "192.0.2.20",
            },
            Case {
                name: "teams",
                text: TEAMS,
                media: &["audio"],
                payload_types: &[104, 9, 103, 111, 18, 0, 8, 97, 101, 13, 118],
                codecs: &[
                    "SILK/16000",
                    "G722/8000",
                    "SILK/8000",
                    "SIREN/16000",
                    "G729/8000",
                    "PCMU/8000",
                    "PCMA/8000",
                    "RED/8000",
                    "telephone-event/8000",
                    "CN/8000",
                    "CN/16000",
                ],
                srtp: true,
                // `a=cryptoscale` is a different attribute and is not a crypto line.
                suites: &["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_80"],
                ice: true,
                rtcp_mux: false,
                direction: Direction::SendRecv,
                ptime: Some("20"),
                connection: "52.114.14.70",
            },
            Case {
                name: "video, static payload types without rtpmap",
                text: VIDEO,
                media: &["audio", "video"],
                payload_types: &[9, 0, 101],
                codecs: &["G722/8000", "PCMU/8000", "telephone-event/8000"],
                srtp: false,
                suites: &[],
                ice: false,
                rtcp_mux: false,
                direction: Direction::SendRecv,
                ptime: None,
                connection: "192.0.2.30",
            },
            Case {
                name: "hold",
                text: HOLD,
                media: &["audio"],
                payload_types: &[8, 101],
                codecs: &["PCMA/8000", "telephone-event/8000"],
                srtp: false,
                suites: &[],
                ice: false,
                rtcp_mux: false,
                direction: Direction::SendOnly,
                ptime: None,
                connection: "192.0.2.40",
            },
            Case {
                name: "session-level direction and ICE, IPv6",
                text: OPUS,
                media: &["audio"],
                payload_types: &[111, 110],
                codecs: &["OPUS/48000/2", "telephone-event/48000"],
                srtp: false,
                suites: &[],
                ice: true,
                rtcp_mux: false,
                direction: Direction::Inactive,
                ptime: None,
                connection: "2001:db8::1",
            },
        ];
        for case in cases {
            let offer = Offer::parse(crlf(case.text).as_bytes())
                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            let media: Vec<&str> = offer.streams().iter().map(|s| s.media.as_str()).collect();
            assert_eq!(media, case.media, "{}", case.name);
            let audio = offer.main_audio().expect("audio");
            let pts: Vec<u8> = audio
                .payload_formats
                .iter()
                .map(|p| p.payload_type)
                .collect();
            assert_eq!(pts, case.payload_types, "{}", case.name);
            let codecs: Vec<String> = audio
                .payload_formats
                .iter()
                .map(|p| p.to_string())
                .collect();
            assert_eq!(codecs, case.codecs, "{}", case.name);
            assert_eq!(offer.is_srtp(), case.srtp, "{}", case.name);
            assert_eq!(offer.crypto_suites(), case.suites, "{}", case.name);
            assert_eq!(offer.has_ice(), case.ice, "{}", case.name);
            assert_eq!(audio.rtcp_mux, case.rtcp_mux, "{}", case.name);
            assert_eq!(audio.direction, case.direction, "{}", case.name);
            assert_eq!(audio.ptime.as_deref(), case.ptime, "{}", case.name);
            assert_eq!(
                offer.connection_address(),
                case.connection.parse().ok(),
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn offer_exposes_origin_ice_and_crypto_details() {
        let offer = Offer::parse(crlf(AUDIOCODES).as_bytes()).expect("parses");
        assert_eq!(offer.origin(), (1357924680, 246813579));
        assert_eq!(
            offer.ice(),
            Some(&IceCredentials::new("Ab3x", "k4Yp0WzN7qR2sT5uV8wX1yZ3"))
        );
        let audio = offer.main_audio().expect("audio");
        assert_eq!(audio.candidates, 1);
        assert_eq!(audio.crypto[1].tag, 2);
        assert!(audio.crypto[1].inline);
        assert!(audio.crypto[1].session_params.is_empty());
        assert_eq!(audio.formats, ["18", "8", "0", "9", "101"]);
        assert_eq!(audio.payload_formats[0].fmtp.as_deref(), Some("annexb=no"));
        assert_eq!(offer.body_len(), crlf(AUDIOCODES).len());
    }

    #[test]
    fn media_processor_answers_rfc_3264() {
        struct Case {
            name: &'static str,
            text: &'static str,
            codec: &'static str,
            payload_type: u8,
            telephone_event: Option<u8>,
            m_lines: &'static [&'static str],
            crypto_tag_suite: Option<&'static str>,
            direction: &'static str,
            ptime: Option<&'static str>,
            rtcp_mux: bool,
        }
        let cases = [
            Case {
                name: "audiocodes: first supported in offer order, crypto tag 2",
                text: AUDIOCODES,
                codec: "PCMA/8000",
                payload_type: 8,
                telephone_event: Some(101),
                m_lines: &["m=audio 49170 RTP/SAVP 8 101"],
                crypto_tag_suite: Some("2 AES_CM_128_HMAC_SHA1_80"),
                direction: "sendrecv",
                ptime: Some("20"),
                rtcp_mux: true,
            },
            Case {
                name: "ribbon",
                text: RIBBON,
                codec: "PCMU/8000",
                payload_type: 0,
                telephone_event: Some(101),
                m_lines: &["m=audio 49170 RTP/AVP 0 101"],
                crypto_tag_suite: None,
                direction: "sendrecv",
                ptime: Some("20"),
                rtcp_mux: false,
            },
            Case {
                name: "teams: SILK/16000 first",
                text: TEAMS,
                codec: "SILK/16000",
                payload_type: 104,
                telephone_event: Some(101),
                m_lines: &["m=audio 49170 RTP/SAVP 104 101"],
                crypto_tag_suite: Some("2 AES_CM_128_HMAC_SHA1_80"),
                direction: "sendrecv",
                ptime: Some("20"),
                rtcp_mux: false,
            },
            Case {
                name: "video rejected with port 0",
                text: VIDEO,
                codec: "G722/8000",
                payload_type: 9,
                telephone_event: Some(101),
                m_lines: &["m=audio 49170 RTP/AVP 9 101", "m=video 0 RTP/AVP 96 97"],
                crypto_tag_suite: None,
                direction: "sendrecv",
                ptime: None,
                rtcp_mux: false,
            },
            Case {
                name: "hold: sendonly answered recvonly",
                text: HOLD,
                codec: "PCMA/8000",
                payload_type: 8,
                telephone_event: Some(101),
                m_lines: &["m=audio 49170 RTP/AVP 8 101"],
                crypto_tag_suite: None,
                direction: "recvonly",
                ptime: None,
                rtcp_mux: false,
            },
            Case {
                name: "opus matched case-insensitively, telephone-event/48000 not kept",
                text: OPUS,
                codec: "OPUS/48000/2",
                payload_type: 111,
                telephone_event: None,
                m_lines: &["m=audio 49170 RTP/AVP 111"],
                crypto_tag_suite: None,
                direction: "inactive",
                ptime: None,
                rtcp_mux: false,
            },
            Case {
                name: "disabled first audio stays rejected, second accepted",
                text: SECOND_AUDIO,
                codec: "PCMA/8000",
                payload_type: 8,
                telephone_event: None,
                m_lines: &["m=audio 0 RTP/AVP 0", "m=audio 49170 RTP/AVP 8"],
                crypto_tag_suite: None,
                direction: "sendrecv",
                ptime: None,
                rtcp_mux: false,
            },
        ];
        for case in cases {
            let a = answer(&crlf(case.text));
            let text = a.as_str();
            assert_eq!(a.codec().to_string(), case.codec, "{}", case.name);
            assert_eq!(a.payload_type(), case.payload_type, "{}", case.name);
            assert_eq!(a.telephone_event(), case.telephone_event, "{}", case.name);
            assert_eq!(a.source(), AnswerSource::MediaProcessor);
            let m: Vec<&str> = lines(text)
                .into_iter()
                .filter(|l| l.starts_with("m="))
                .collect();
            assert_eq!(m, case.m_lines, "{}", case.name);
            assert!(text.starts_with("v=0\r\no=- 4242 1 IN IP4 52.112.0.10\r\ns=-\r\nc=IN IP4 52.112.0.10\r\nt=0 0\r\n"), "{}: {text}", case.name);
            let crypto = attr_values(text, "crypto");
            match case.crypto_tag_suite {
                Some(prefix) => {
                    assert_eq!(crypto.len(), 1, "{}: one crypto line", case.name);
                    assert!(
                        crypto[0].starts_with(&format!("{prefix} inline:")),
                        "{}",
                        case.name
                    );
                    assert_eq!(a.srtp_suite(), prefix.split(' ').nth(1));
                }
                None => {
                    assert!(crypto.is_empty(), "{}", case.name);
                    assert_eq!(a.srtp_suite(), None);
                }
            }
            assert_eq!(attr_values(text, case.direction).len(), 1, "{}", case.name);
            assert_eq!(
                attr_values(text, "ptime").first().copied(),
                case.ptime,
                "{}",
                case.name
            );
            let candidates = attr_values(text, "candidate");
            if case.rtcp_mux {
                assert_eq!(attr_values(text, "rtcp-mux").len(), 1, "{}", case.name);
                assert!(attr_values(text, "rtcp").is_empty(), "{}", case.name);
                assert_eq!(
                    candidates,
                    ["1 1 UDP 2130706431 52.112.0.10 49170 typ host"]
                );
            } else {
                assert!(attr_values(text, "rtcp-mux").is_empty(), "{}", case.name);
                assert_eq!(attr_values(text, "rtcp"), ["49171"], "{}", case.name);
                assert_eq!(
                    candidates,
                    [
                        "1 1 UDP 2130706431 52.112.0.10 49170 typ host",
                        "1 2 UDP 2130706430 52.112.0.10 49171 typ host"
                    ],
                    "{}",
                    case.name
                );
            }
            assert_eq!(attr_values(text, "ice-ufrag"), [a.ice().ufrag()]);
            assert_eq!(attr_values(text, "ice-pwd"), [a.ice().pwd()]);
        }
    }

    #[test]
    fn answer_keeps_offered_fmtp_and_payload_numbers() {
        let a = answer(&crlf(TEAMS));
        assert_eq!(
            attr_values(a.as_str(), "rtpmap"),
            ["104 SILK/16000", "101 telephone-event/8000"]
        );
        assert_eq!(
            attr_values(a.as_str(), "fmtp"),
            ["104 useinbandfec=1; usedtx=0", "101 0-16"]
        );
    }

    #[test]
    fn unacceptable_offers_are_diagnosed() {
        let cases: [(&str, String, SdpError, &str); 7] = [
            (
                "only G729 and iLBC",
                crlf(G729_ONLY),
                SdpError::NoCommonCodec {
                    offered: "G729/8000, iLBC/8000".to_owned(),
                },
                "no codec drhub supports; offered: G729/8000, iLBC/8000",
            ),
            (
                "telephone-event alone",
                crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 5000 RTP/AVP 101 96\na=rtpmap:101 telephone-event/8000\n"),
                SdpError::NoCommonCodec {
                    offered: "telephone-event/8000, PT 96 (no rtpmap)".to_owned(),
                },
                "no codec drhub supports; offered: telephone-event/8000, PT 96 (no rtpmap)",
            ),
            (
                "SAVP without crypto",
                crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 5000 RTP/SAVP 0\n"),
                SdpError::NoCommonCrypto {
                    offered: "none".to_owned(),
                },
                "RTP/SAVP without a supported a=crypto line; offered: none",
            ),
            (
                "SAVP with only AES-256 and a non-inline key",
                crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 5000 RTP/SAVP 0\na=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:abcd\na=crypto:2 AES_CM_128_HMAC_SHA1_80 uri:http://example.com\n"),
                SdpError::NoCommonCrypto {
                    offered: "AES_256_CM_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_80".to_owned(),
                },
                "RTP/SAVP without a supported a=crypto line; offered: AES_256_CM_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_80",
            ),
            (
                "DTLS-SRTP",
                crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 5000 UDP/TLS/RTP/SAVPF 0\n"),
                SdpError::UnsupportedTransport {
                    offered: "UDP/TLS/RTP/SAVPF".to_owned(),
                },
                "unsupported audio transport UDP/TLS/RTP/SAVPF; drhub answers RTP/AVP and RTP/SAVP",
            ),
            (
                "every audio stream disabled",
                crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 0 RTP/AVP 0\nm=video 0 RTP/AVP 96\n"),
                SdpError::NoAudio {
                    offered: "audio, video".to_owned(),
                },
                "the offer has no audio stream (media offered: audio, video)",
            ),
            (
                "first active stream's problem wins",
                crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 5000 RTP/AVP 18\nm=audio 5002 RTP/SAVP 0\n"),
                SdpError::NoCommonCodec {
                    offered: "G729/8000".to_owned(),
                },
                "no codec drhub supports; offered: G729/8000",
            ),
        ];
        for (name, text, expected, message) in cases {
            let offer = Offer::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
            let err = media_processor_answer(&offer, &mp_config(), 49170, 1).expect_err(name);
            assert_eq!(err, expected, "{name}");
            assert_eq!(err.to_string(), message, "{name}");
            assert!(err.is_not_acceptable(), "{name}");
            let err =
                endpoint_answer(&offer, IpAddr::V4(Ipv4Addr::LOCALHOST), 5000, 1).expect_err(name);
            assert_eq!(err, expected, "{name}: endpoint");
        }
    }

    #[test]
    fn bodies_that_are_not_sdp_are_unparseable() {
        let mut junk = vec![0xffu8, 0xfe, 0x00, b'=', 0x80, b'\n'];
        junk.extend(std::iter::repeat_n(0xc3u8, 500));
        // Found by the `sdp` fuzz target: the answer repeated these into its own lines.
        let audio = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 1 RTP/AVP 0 101\r\n";
        let cases: [(&str, Vec<u8>); 12] = [
            ("empty", Vec::new()),
            ("only CRLF", b"\r\n\r\n".to_vec()),
            ("CRLF then junk", b"\r\n\r\nINVITE sip:x SIP/2.0".to_vec()),
            ("text", b"hello, this is not SDP".to_vec()),
            ("non-UTF-8 junk", junk),
            ("version 1", b"v=1\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n".to_vec()),
            ("no t= line", b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\n".to_vec()),
            ("bad port", b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 70000 RTP/AVP 0\r\n".to_vec()),
            ("unknown line", b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\ny=what\r\n".to_vec()),
            ("bare CR in ptime", format!("{audio}a=ptime:20\ra=sendrecv\r\n").into_bytes()),
            ("NUL in fmtp", format!("{audio}a=fmtp:101 0-16\0a=ptime:20\r\n").into_bytes()),
            ("CR ending the body", format!("{audio}a=ptime:20\r").into_bytes()),
        ];
        for (name, body) in cases {
            if name == "empty" || name == "only CRLF" {
                let err = Offer::parse(&body).expect_err(name);
                assert_eq!(err.to_string(), "the body is not valid SDP: empty body");
            }
            match Offer::parse(&body) {
                Err(SdpError::Unparseable { reason }) => {
                    assert!(
                        reason.chars().count() <= MAX_DIAGNOSTIC + 3,
                        "{name}: {reason}"
                    );
                    assert!(!reason.chars().any(char::is_control), "{name}: {reason:?}");
                    let err = SdpError::Unparseable { reason };
                    assert!(!err.is_not_acceptable());
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn sdp_without_audio_is_no_audio() {
        let text = crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=video 5000 RTP/AVP 96\nm=application 5002 UDP/DTLS/SCTP webrtc-datachannel\n");
        let err = Offer::parse(text.as_bytes()).expect_err("no audio");
        assert_eq!(
            err.to_string(),
            "the offer has no audio stream (media offered: video, application)"
        );
        let text = crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\n");
        let err = Offer::parse(text.as_bytes()).expect_err("no media");
        assert_eq!(
            err,
            SdpError::NoAudio {
                offered: "none".to_owned()
            }
        );
    }

    #[test]
    fn answers_re_parse_with_the_sdp_crate_and_as_offers() {
        let mut bodies: Vec<String> = fixtures()
            .into_iter()
            .filter(|(name, _)| *name != "g729")
            .map(|(_, text)| text)
            .collect();
        bodies.push(large_offer());
        for body in bodies {
            let a = answer(&body);
            let parsed = SessionDescription::unmarshal(&mut Cursor::new(a.as_bytes()))
                .unwrap_or_else(|e| panic!("{e}: {}", a.as_str()));
            assert_eq!(
                parsed.marshal(),
                a.as_str(),
                "the answer is in canonical form"
            );
            let again = Offer::parse(a.as_bytes()).expect("the answer parses as an offer");
            let audio = again.main_audio().expect("audio");
            assert_eq!(audio.port, 49170);
            assert_eq!(audio.payload_formats[0].codec.as_ref(), Some(a.codec()));
            assert_eq!(again.ice(), Some(a.ice()));
            let offer = Offer::parse(body.as_bytes()).expect("parses");
            assert_eq!(
                again.streams().len(),
                offer.streams().len(),
                "RFC 3264 §6: one m-line per offered m-line"
            );
            assert!(a.as_str().ends_with("\r\n"));
            assert!(!a.as_str().replace("\r\n", "").contains('\n'));
        }
    }

    #[test]
    fn crypto_key_is_fresh_40_base64_chars() {
        let offer_text = crlf(AUDIOCODES);
        let first = answer(&offer_text);
        let second = answer(&offer_text);
        let key = |a: &Answer| -> String {
            let line = attr_values(a.as_str(), "crypto")[0].to_owned();
            let key = line.split("inline:").nth(1).expect("inline key").to_owned();
            assert!(!key.contains('|'), "no lifetime or MKI");
            key
        };
        let (k1, k2) = (key(&first), key(&second));
        for k in [&k1, &k2] {
            assert_eq!(k.len(), 40, "{k}");
            assert!(
                k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/'),
                "{k}"
            );
        }
        assert_ne!(k1, k2);
        assert!(!offer_text.contains(&k1), "never echo the SBC's key");
        assert!(!first
            .as_str()
            .contains("WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"));
    }

    #[test]
    fn crypto_session_params_are_echoed() {
        let text = crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 5000 RTP/SAVP 0\na=crypto:7 AES_CM_128_HMAC_SHA1_32 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz UNENCRYPTED_SRTCP\n");
        let a = answer(&text);
        let crypto = attr_values(a.as_str(), "crypto");
        assert_eq!(crypto.len(), 1);
        assert!(crypto[0].starts_with("7 AES_CM_128_HMAC_SHA1_32 inline:"));
        assert!(crypto[0].ends_with(" UNENCRYPTED_SRTCP"));
    }

    #[test]
    fn ice_credentials_are_fresh_and_long_enough() {
        let offer_text = crlf(AUDIOCODES);
        let offer = Offer::parse(offer_text.as_bytes()).expect("parses");
        let a = answer(&offer_text);
        let b = answer(&offer_text);
        for ice in [a.ice(), b.ice()] {
            assert!(ice.ufrag().len() >= 4 && ice.ufrag().chars().all(is_ice_char));
            assert!(ice.pwd().len() >= 22 && ice.pwd().chars().all(is_ice_char));
        }
        assert_ne!(a.ice().ufrag(), b.ice().ufrag());
        assert_ne!(a.ice().pwd(), b.ice().pwd());
        assert_ne!(Some(a.ice()), offer.ice(), "not the SBC's credentials");
    }

    #[test]
    fn endpoint_answer_is_distinguishable_from_the_media_processor() {
        let offer = Offer::parse(crlf(TEAMS).as_bytes()).expect("parses");
        let endpoint = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
        let mp = media_processor_answer(&offer, &mp_config(), 49170, 1).expect("mp");
        let ep = endpoint_answer(&offer, endpoint, 50040, 2).expect("endpoint");
        assert_eq!(ep.source(), AnswerSource::Endpoint);
        assert_eq!(mp.source(), AnswerSource::MediaProcessor);
        assert_eq!(ep.address(), endpoint);
        assert!(ep.as_str().contains("c=IN IP4 10.1.2.3\r\n"));
        assert!(ep.as_str().contains("o=- 2 1 IN IP4 10.1.2.3\r\n"));
        assert!(!ep.as_str().contains("52.112.0.10"));
        assert_eq!(
            attr_values(ep.as_str(), "candidate")[0],
            "1 1 UDP 2130706431 10.1.2.3 50040 typ host"
        );
        assert_ne!(ep.ice(), mp.ice());
        assert_eq!(ep.codec(), mp.codec());
    }

    #[test]
    fn answers_use_ip6_for_ipv6_addresses() {
        let offer = Offer::parse(crlf(OPUS).as_bytes()).expect("parses");
        let addr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10));
        let a = endpoint_answer(&offer, addr, 5000, 9).expect("answer");
        assert!(a.as_str().contains("o=- 9 1 IN IP6 2001:db8::10\r\n"));
        assert!(a.as_str().contains("c=IN IP6 2001:db8::10\r\n"));
        assert!(a
            .as_str()
            .contains("a=candidate:1 1 UDP 2130706431 2001:db8::10 5000 typ host\r\n"));
        Offer::parse(a.as_bytes()).expect("re-parses");
    }

    #[test]
    fn config_codec_list_limits_the_choice() {
        let offer = Offer::parse(crlf(AUDIOCODES).as_bytes()).expect("parses");
        let mut cfg = mp_config();
        cfg.codecs = vec![Codec::new("g722", 8000, 1)];
        let a = media_processor_answer(&offer, &cfg, 49170, 1).expect("answer");
        assert_eq!(a.payload_type(), 9);
        assert_eq!(a.telephone_event(), None, "telephone-event not configured");
        cfg.codecs = vec![Codec::new("telephone-event", 8000, 1)];
        let err = media_processor_answer(&offer, &cfg, 49170, 1).expect_err("never alone");
        assert!(matches!(err, SdpError::NoCommonCodec { .. }));
    }

    /// DR-ICE-1: a restart changes ufrag and pwd, and (with a new port or address) the
    /// candidates and what follows them; every other line stays.
    #[test]
    fn dr_ice_1_restart_changes_only_credentials_and_candidates() {
        let mp = mp_config().address;
        let other = IpAddr::V4(Ipv4Addr::new(52, 112, 0, 99));
        let cases: [(&str, &str, IpAddr, u16, &[&str]); 4] = [
            (
                "same transport",
                AUDIOCODES,
                mp,
                49170,
                &["o=", "a=ice-ufrag", "a=ice-pwd"],
            ),
            (
                "new port, rtcp-mux",
                AUDIOCODES,
                mp,
                49200,
                &["o=", "m=audio", "a=ice-ufrag", "a=ice-pwd", "a=candidate"],
            ),
            (
                "new port, separate RTCP",
                RIBBON,
                mp,
                49200,
                &[
                    "o=",
                    "m=audio",
                    "a=ice-ufrag",
                    "a=ice-pwd",
                    "a=candidate",
                    "a=rtcp",
                ],
            ),
            (
                "media processor inserted at a new address",
                TEAMS,
                other,
                49200,
                &[
                    "o=",
                    "c=",
                    "m=audio",
                    "a=ice-ufrag",
                    "a=ice-pwd",
                    "a=candidate",
                    "a=rtcp",
                ],
            ),
        ];
        for (name, text, address, port, expected) in cases {
            let before = answer(&crlf(text));
            let after = ice_restart(&before, address, port).expect(name);
            assert_ne!(after.ice().ufrag(), before.ice().ufrag(), "{name}");
            assert_ne!(after.ice().pwd(), before.ice().pwd(), "{name}");
            assert!(after.ice().is_restart_of(before.ice()), "{name}");
            assert_eq!(
                after.origin().0,
                before.origin().0,
                "{name}: same session id"
            );
            assert_eq!(
                after.origin().1,
                before.origin().1 + 1,
                "{name}: RFC 3264 §8"
            );
            assert_eq!(after.codec(), before.codec());
            assert_eq!(after.port(), port);
            let (old, new) = (lines(before.as_str()), lines(after.as_str()));
            assert_eq!(old.len(), new.len(), "{name}");
            let mut changed: Vec<String> = Vec::new();
            for (o, n) in old.iter().zip(&new) {
                if o != n {
                    let kind = if o.starts_with("a=") || o.starts_with("m=") {
                        o.split([':', ' ']).next().unwrap_or_default()
                    } else {
                        o.get(..2).unwrap_or_default()
                    };
                    let kind = kind.to_owned();
                    if !changed.contains(&kind) {
                        changed.push(kind);
                    }
                }
            }
            assert_eq!(
                changed,
                expected,
                "{name}\n{}\n{}",
                before.as_str(),
                after.as_str()
            );
            if port != before.port() {
                assert!(attr_values(after.as_str(), "candidate")
                    .iter()
                    .all(|c| c.contains(&format!(" {address} "))));
            }
            Offer::parse(after.as_bytes()).expect("restart SDP re-parses");
            // A second restart keeps counting.
            let again = ice_restart(&after, address, port).expect(name);
            assert_eq!(again.origin().1, before.origin().1 + 2);
        }
    }

    #[test]
    fn ice_restart_is_told_from_a_repeat() {
        let a = IceCredentials::new("abcd", "0123456789012345678901");
        let cases = [
            (IceCredentials::new("abcd", "0123456789012345678901"), false),
            (IceCredentials::new("abce", "0123456789012345678901"), true),
            (IceCredentials::new("abcd", "0123456789012345678902"), true),
            (IceCredentials::new("wxyz", "zzzzzzzzzzzzzzzzzzzzzz"), true),
        ];
        for (b, restart) in cases {
            assert_eq!(b.is_restart_of(&a), restart, "{b:?}");
        }
        // Session-level vs media-level is a representation change, not a restart.
        let session_level = Offer::parse(crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\na=ice-ufrag:abcd\na=ice-pwd:0123456789012345678901\nm=audio 5000 RTP/AVP 0\n").as_bytes()).expect("parses");
        let media_level = Offer::parse(crlf("v=0\no=- 1 2 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 5000 RTP/AVP 0\na=ice-ufrag:abcd\na=ice-pwd:0123456789012345678901\n").as_bytes()).expect("parses");
        let (s, m) = (
            session_level.ice().expect("ice"),
            media_level.ice().expect("ice"),
        );
        assert!(!m.is_restart_of(s));
    }

    /// The value of the first `a=<key>:` line.
    fn first_attr<'a>(text: &'a str, key: &str) -> &'a str {
        let prefix = format!("a={key}:");
        text.split("\r\n")
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no a={key} in {text}"))
    }

    /// The direction attribute of the (only) accepted stream.
    fn direction_of(text: &str) -> &str {
        text.split("\r\n")
            .find(|l| {
                matches!(
                    *l,
                    "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive"
                )
            })
            .unwrap_or("none")
    }

    /// DR-HOLD-1, RFC 3264 §8: each re-offer of an AudioCodes SBC in a call the media
    /// processor answered gets an answer from the same session, address and port; the
    /// version moves only when the SDP does; the ICE credentials and SRTP key stay
    /// unless the SBC restarts ICE; hold is answered `a=inactive`.
    #[test]
    fn dr_hold_1_reanswer_table() {
        let first = answer(&crlf(AUDIOCODES));
        let codecs = mp_config().codecs;
        let with = |from: &str, to: &str| crlf(&AUDIOCODES.replace(from, to));
        struct Case {
            name: &'static str,
            offer: String,
            direction: &'static str,
            version_step: u64,
            ice_restart: bool,
        }
        let cases = [
            Case {
                name: "the same offer again (a session refresh)",
                offer: crlf(AUDIOCODES),
                direction: "a=sendrecv",
                version_step: 0,
                ice_restart: false,
            },
            Case {
                name: "hold: inactive",
                offer: with("a=sendrecv", "a=inactive"),
                direction: "a=inactive",
                version_step: 1,
                ice_restart: false,
            },
            Case {
                name: "hold: sendonly, which the real service does not understand",
                offer: with("a=sendrecv", "a=sendonly"),
                direction: "a=inactive",
                version_step: 1,
                ice_restart: false,
            },
            Case {
                name: "recvonly",
                offer: with("a=sendrecv", "a=recvonly"),
                direction: "a=inactive",
                version_step: 1,
                ice_restart: false,
            },
            Case {
                name: "a codec change to one drhub supports",
                offer: with(
                    "m=audio 6010 RTP/SAVP 18 8 0 9 101",
                    "m=audio 6010 RTP/SAVP 0 101",
                ),
                direction: "a=sendrecv",
                version_step: 1,
                ice_restart: false,
            },
            Case {
                name: "the SBC restarts ICE",
                offer: with("a=ice-ufrag:Ab3x", "a=ice-ufrag:Zz9q"),
                direction: "a=sendrecv",
                version_step: 1,
                ice_restart: true,
            },
        ];
        for case in cases {
            let offer = Offer::parse(case.offer.as_bytes()).expect(case.name);
            let again = reanswer(&offer, &codecs, first.continuity(), HoldRule::DirectRouting)
                .expect(case.name);
            let text = again.as_str();
            assert_eq!(direction_of(text), case.direction, "{}: {text}", case.name);
            let (id, version) = again.origin();
            assert_eq!(id, first.origin().0, "{}: same session", case.name);
            assert_eq!(
                version,
                first.origin().1 + case.version_step,
                "{}",
                case.name
            );
            assert_eq!(
                (again.address(), again.port()),
                (first.address(), first.port()),
                "{}",
                case.name
            );
            assert_eq!(
                again.ice() != first.ice(),
                case.ice_restart,
                "{}: {text}",
                case.name
            );
            assert_eq!(
                first_attr(text, "crypto"),
                first_attr(first.as_str(), "crypto"),
                "{}: the SRTP key stays",
                case.name
            );
            Offer::parse(again.as_bytes()).expect("the answer re-parses");
        }
    }

    /// DR-HOLD-1: hold then resume moves the version twice; an unchanged repeat of the
    /// hold keeps it.
    #[test]
    fn dr_hold_1_hold_and_resume_count_versions() {
        let codecs = mp_config().codecs;
        let first = answer(&crlf(AUDIOCODES));
        let hold =
            Offer::parse(crlf(&AUDIOCODES.replace("a=sendrecv", "a=inactive")).as_bytes()).unwrap();
        let resume = Offer::parse(crlf(AUDIOCODES).as_bytes()).unwrap();
        let held = reanswer(&hold, &codecs, first.continuity(), HoldRule::DirectRouting).unwrap();
        assert_eq!(held.direction(), Direction::Inactive);
        let still = reanswer(&hold, &codecs, held.continuity(), HoldRule::DirectRouting).unwrap();
        assert_eq!(still.as_str(), held.as_str());
        let back = reanswer(
            &resume,
            &codecs,
            still.continuity(),
            HoldRule::DirectRouting,
        )
        .unwrap();
        assert_eq!(back.direction(), Direction::SendRecv);
        assert_eq!(back.origin().1, first.origin().1 + 2);
    }

    /// Endpoints (not the SBC) get RFC 3264 §6.1's answers to one-way offers.
    #[test]
    fn reanswer_for_endpoints_follows_rfc_3264() {
        let codecs = mp_config().codecs;
        let first = answer(&crlf(AUDIOCODES));
        for (offered, answered) in [
            ("a=sendonly", "a=recvonly"),
            ("a=recvonly", "a=sendonly"),
            ("a=inactive", "a=inactive"),
        ] {
            let o =
                Offer::parse(crlf(&AUDIOCODES.replace("a=sendrecv", offered)).as_bytes()).unwrap();
            let a = reanswer(&o, &codecs, first.continuity(), HoldRule::Rfc3264).unwrap();
            assert_eq!(direction_of(a.as_str()), answered, "{offered}");
        }
    }

    /// DR-HOLD-1 bad input: `c=0.0.0.0` hold, and a re-offer with no codec drhub
    /// supports, are refused; the call keeps its media (the caller keeps `first`).
    #[test]
    fn dr_hold_1_reanswer_refusals() {
        let codecs = mp_config().codecs;
        let first = answer(&crlf(AUDIOCODES));
        let zero = crlf(&AUDIOCODES.replace("c=IN IP4 203.0.113.10", "c=IN IP4 0.0.0.0"));
        let offer = Offer::parse(zero.as_bytes()).unwrap();
        assert_eq!(
            reanswer(&offer, &codecs, first.continuity(), HoldRule::DirectRouting).unwrap_err(),
            SdpError::ZeroConnection
        );
        let ilbc = crlf(
            &AUDIOCODES
                .replace(
                    "m=audio 6010 RTP/SAVP 18 8 0 9 101",
                    "m=audio 6010 RTP/SAVP 97",
                )
                .replace("a=rtpmap:18 G729/8000", "a=rtpmap:97 iLBC/8000"),
        );
        let offer = Offer::parse(ilbc.as_bytes()).unwrap();
        let e = reanswer(&offer, &codecs, first.continuity(), HoldRule::DirectRouting).unwrap_err();
        assert!(e.is_not_acceptable(), "{e}");
    }

    /// RFC 3264 §8 on an outbound call: the SBC's later offer is answered from drhub's
    /// own offer's session, port, ICE credentials and key.
    #[test]
    fn reanswer_continues_a_call_drhub_offered() {
        let cfg = mp_config();
        let own = offer(
            &cfg.codecs,
            cfg.address,
            49300,
            77,
            AnswerSource::MediaProcessor,
        )
        .unwrap();
        let sbc_answer = crlf(AUDIOCODES);
        let c = Continuity::of_offer(&own, Some(sbc_answer.as_bytes())).expect("our own offer");
        let hold =
            Offer::parse(crlf(&AUDIOCODES.replace("a=sendrecv", "a=inactive")).as_bytes()).unwrap();
        let a = reanswer(&hold, &cfg.codecs, &c, HoldRule::DirectRouting).unwrap();
        assert_eq!(a.origin(), (77, 2));
        assert_eq!(a.port(), 49300);
        assert_eq!(
            first_attr(a.as_str(), "ice-ufrag"),
            first_attr(&own, "ice-ufrag")
        );
        let key = |t: &str| {
            first_attr(t, "crypto")
                .split_whitespace()
                .nth(2)
                .map(str::to_owned)
        };
        assert_eq!(key(a.as_str()), key(&own));
        assert_eq!(direction_of(a.as_str()), "a=inactive");
        assert!(a.as_str().contains("a=ice-lite"), "{}", a.as_str());
    }

    /// DR-HOLD-2: drhub's own hold offer changes the direction and the version only;
    /// resuming moves the version again.
    #[test]
    fn dr_hold_2_reoffer_changes_direction_and_version_only() {
        let first = answer(&crlf(AUDIOCODES));
        let c = first.continuity();
        let (hold, held) = c.reoffer(Direction::Inactive).unwrap();
        assert_eq!(direction_of(&hold), "a=inactive", "{hold}");
        let same = |a: &str, b: &str| {
            let strip = |t: &str| {
                t.split("\r\n")
                    .filter(|l| !l.starts_with("o=") && direction_of(l) == "none")
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            };
            assert_eq!(strip(a), strip(b));
        };
        same(&hold, first.as_str());
        let version = |t: &str| {
            let o = t
                .split("\r\n")
                .find(|l| l.starts_with("o="))
                .unwrap()
                .to_owned();
            o.split_whitespace().nth(2).unwrap().parse::<u64>().unwrap()
        };
        assert_eq!(version(&hold), first.origin().1 + 1);
        let (resume, _) = held.reoffer(Direction::SendRecv).unwrap();
        assert_eq!(direction_of(&resume), "a=sendrecv");
        assert_eq!(version(&resume), first.origin().1 + 2);
        same(&resume, first.as_str());
    }

    #[test]
    fn dr_fork_10_large_offers_work() {
        let body = large_offer();
        assert!(body.len() > 3000, "{}", body.len());
        let offer = Offer::parse(body.as_bytes()).expect("parses");
        assert_eq!(offer.main_audio().map(|s| s.candidates), Some(46));
        let a = answer(&body);
        assert_eq!(a.codec().to_string(), "SILK/16000");
    }

    #[test]
    fn port_pool_hands_out_even_ports_round_robin() {
        let cases: [(u16, u16, &[u16]); 5] = [
            (49152, 49157, &[49152, 49154, 49156, 49152]),
            (49153, 49158, &[49154, 49156, 49154]),
            (10000, 10001, &[10000, 10000]),
            (65530, 65535, &[65530, 65532, 65534, 65530]),
            (0, 3, &[0, 2, 0]),
        ];
        for (min, max, expected) in cases {
            let pool = PortPool::new(min, max).expect("non-empty range");
            let got: Vec<u16> = expected.iter().map(|_| pool.allocate()).collect();
            assert_eq!(got, expected, "{min}-{max}");
        }
        for (min, max) in [
            (10001, 10001),
            (10000, 10000),
            (20000, 10000),
            (65535, 65535),
            (65534, 65534),
        ] {
            assert!(PortPool::new(min, max).is_none(), "{min}-{max}");
        }
        let cfg = mp_config();
        let pool = PortPool::from_config(&cfg).expect("default range");
        for _ in 0..5000 {
            let p = pool.allocate();
            assert!(p % 2 == 0 && p >= cfg.port_min && p < cfg.port_max, "{p}");
        }
    }

    /// No input panics: every prefix of every fixture, and every fixture with each
    /// byte replaced by a few troublesome ones, either parses and answers or fails
    /// with an error.
    #[test]
    fn no_panics_on_truncated_or_mangled_offers() {
        let cfg = mp_config();
        let try_all = |body: &[u8]| {
            if let Ok(offer) = Offer::parse(body) {
                if let Ok(a) = media_processor_answer(&offer, &cfg, 49170, 1) {
                    Offer::parse(a.as_bytes()).expect("our own answer always re-parses");
                    ice_restart(&a, cfg.address, 49172).expect("restart");
                }
                let _ = endpoint_answer(&offer, cfg.address, 49170, 1);
            }
        };
        let mut bodies: Vec<String> = fixtures().into_iter().map(|(_, t)| t).collect();
        bodies.push(large_offer());
        for body in &bodies {
            let bytes = body.as_bytes();
            for end in 0..=bytes.len() {
                try_all(&bytes[..end]);
            }
        }
        for (_, body) in fixtures() {
            let bytes = body.as_bytes();
            for i in 0..bytes.len() {
                for b in [0x00, 0xff, b'=', b'\n', b' ', b'/', b':', b'9', b'a'] {
                    let mut mangled = bytes.to_vec();
                    mangled[i] = b;
                    try_all(&mangled);
                }
            }
        }
    }

    /// What drhub relies on in the `sdp` crate: a canonical CRLF SDP (Teams' included)
    /// prints back byte for byte, unknown attributes included; LF-only input is
    /// accepted and printed with CRLF.
    #[test]
    fn sdp_crate_round_trips_canonical_sdp() {
        for (name, text) in fixtures() {
            let parsed = SessionDescription::unmarshal(&mut Cursor::new(text.as_bytes()))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(parsed.marshal(), text, "{name}");
        }
        let lf = TEAMS;
        let parsed = SessionDescription::unmarshal(&mut Cursor::new(lf.as_bytes())).expect("LF");
        assert_eq!(parsed.marshal(), crlf(TEAMS));
        // Not byte for byte: surrounding whitespace of a value is trimmed.
        let spaced = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\na=x-foo:bar \r\n";
        let parsed =
            SessionDescription::unmarshal(&mut Cursor::new(spaced.as_bytes())).expect("parses");
        assert_eq!(parsed.marshal(), spaced.replace("bar ", "bar"));
    }
}
