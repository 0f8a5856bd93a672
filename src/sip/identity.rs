//! Who drhub is on a flow: the transport it runs on and the name, port and header style it
//! writes into every Via and Contact it originates. One [`LocalIdentity`] per listener (and
//! per outbound connection) builds all of them, so that the plain-TCP listener says
//! `transport=tcp`, the endpoint side its IP address, and the SBC side its FQDN.

use std::fmt;
use std::sync::Arc;

use super::build::Style;

/// The transport a flow runs on: one vocabulary for config, transport, transactions and
/// calls. (The Via header's own token, with SCTP, WS and the rest, is
/// [`super::ViaTransport`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP: lab SIP endpoints.
    Udp,
    /// Plain TCP: SIP endpoints, and the SBC-side lab listener (DR-TLS-5).
    Tcp,
    /// TLS: the SBC leg (DR-TLS-1).
    Tls,
}

impl Transport {
    /// Whether the transport delivers reliably (RFC 3261 §17: no retransmission timers).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The token of a Via sent-protocol (`SIP/2.0/TLS`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// The value of a URI `transport=` parameter, lower case.
    pub fn param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// The port a URI without one means (RFC 3261 §19.1.2: 5061 for TLS).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            Transport::Udp | Transport::Tcp => 5060,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.param())
    }
}

/// The proxy as one flow sees it. Cheap to clone (one allocation per listener, shared),
/// so every dialog keeps the identity it was created under and builds its requests from
/// it. Its Contact and Via prefix are written once, when it is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalIdentity(Arc<Identity>);

#[derive(Debug, PartialEq, Eq)]
struct Identity {
    host: Box<str>,
    port: u16,
    transport: Transport,
    server: Arc<str>,
    style: Style,
    /// `<sip:host:port;transport=tls>`.
    contact: Box<str>,
    /// `SIP/2.0/TLS host:port;branch=`.
    via_prefix: Box<str>,
}

impl LocalIdentity {
    /// `host` is the listener's FQDN on the SBC side, its IP address on the endpoint side
    /// (lab phones need not resolve the proxy's names); `port` the listener's (an outbound
    /// connection names the listener's port, not its own); `server` the Server and
    /// User-Agent text; `style` the header spelling of responses drhub answers itself.
    pub fn new(
        host: impl Into<Box<str>>,
        port: u16,
        transport: Transport,
        server: impl Into<Arc<str>>,
        style: Style,
    ) -> LocalIdentity {
        let host = host.into();
        LocalIdentity(Arc::new(Identity {
            contact: format!("<sip:{host}:{port};transport={}>", transport.param()).into(),
            via_prefix: format!("SIP/2.0/{} {host}:{port};branch=", transport.via_token()).into(),
            host,
            port,
            transport,
            server: server.into(),
            style,
        }))
    }

    /// The same identity on another transport (the endpoint side's TCP twin of its UDP).
    pub fn with_transport(&self, transport: Transport) -> LocalIdentity {
        let i = &self.0;
        LocalIdentity::new(i.host.clone(), i.port, transport, i.server.clone(), i.style)
    }

    /// The host of Via and Contact.
    pub fn host(&self) -> &str {
        &self.0.host
    }

    /// The listener's port.
    pub fn port(&self) -> u16 {
        self.0.port
    }

    /// The transport of the flows this identity speaks on.
    pub fn transport(&self) -> Transport {
        self.0.transport
    }

    /// The `Server` / `User-Agent` text.
    pub fn server(&self) -> &str {
        &self.0.server
    }

    /// Header spelling of the responses drhub answers itself (DR-OPT-1).
    pub fn style(&self) -> Style {
        self.0.style
    }

    /// A top Via for a request drhub sends: `SIP/2.0/TLS host:port;branch=...`.
    pub fn via(&self, branch: &str) -> String {
        let mut v = String::with_capacity(self.0.via_prefix.len() + branch.len());
        v.push_str(&self.0.via_prefix);
        v.push_str(branch);
        v
    }

    /// The proxy's Contact: `<sip:host:port;transport=tls>`.
    pub fn contact(&self) -> &str {
        &self.0.contact
    }

    /// The proxy as a URI for a Record-Route or Route: `<sip:host:port;transport=tls;lr>`.
    pub fn route(&self) -> String {
        let i = &self.0;
        format!(
            "<sip:{}:{};transport={};lr>",
            i.host,
            i.port,
            i.transport.param()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{Limits, Message, Status, Via, ViaTransport};

    fn id(transport: Transport) -> LocalIdentity {
        LocalIdentity::new(
            "sip.pstnhub.microsoft.com",
            5061,
            transport,
            "drhub",
            Style::Rfc3261,
        )
    }

    #[test]
    fn via_and_contact_name_the_transport_they_run_on() {
        let tls = id(Transport::Tls);
        assert_eq!(
            tls.via("z9hG4bKx"),
            "SIP/2.0/TLS sip.pstnhub.microsoft.com:5061;branch=z9hG4bKx"
        );
        assert_eq!(
            tls.contact(),
            "<sip:sip.pstnhub.microsoft.com:5061;transport=tls>"
        );
        let tcp = id(Transport::Tcp);
        assert_eq!(
            tcp.contact(),
            "<sip:sip.pstnhub.microsoft.com:5061;transport=tcp>"
        );
        let via = tcp.via("z9hG4bK1");
        assert_eq!(
            Via::parse(&via).map(|v| v.transport()),
            Ok(ViaTransport::Tcp)
        );
        assert!(tls.route().ends_with(";lr>"));
        assert_eq!(tcp.with_transport(Transport::Tls), tls);
    }

    #[test]
    fn a_request_built_from_an_identity_parses() {
        let udp = LocalIdentity::new("127.0.0.1", 5070, Transport::Udp, "drhub", Style::Rfc3261);
        let text = format!(
            "OPTIONS sip:a@b.c SIP/2.0\r\nVia: {}\r\nFrom: <sip:x@y.z>;tag=1\r\nTo: <sip:a@b.c>\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\nContact: {}\r\nContent-Length: 0\r\n\r\n",
            udp.via("z9hG4bK2"),
            udp.contact()
        );
        let Ok(Status::Complete(m)) = Message::parse(text.as_bytes(), &Limits::default()) else {
            panic!("{text}")
        };
        m.check_request().expect("valid");
        assert_eq!(Transport::Udp.default_port(), 5060);
        assert!(!Transport::Udp.is_reliable() && Transport::Tls.is_reliable());
    }
}
