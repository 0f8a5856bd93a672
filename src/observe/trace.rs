//! The protocol trace (issue 10): every SIP message the [`Tap`](crate::transport::Tap)
//! sees, decrypted, written as
//!
//! - a text log in the record format of the OCS/Lync protocol trace the spec's seed
//!   shows (`$$begin_record`, `Direction`, `Peer`, `Message-Type`, `Start-Line`, the
//!   headers, `Message-Body`, `$$end_record`), and
//! - a pcap whose packets carry each message as TCP or UDP between the real addresses
//!   and ports, so that sngrep (`sngrep -I`) and Wireshark draw ladders of calls on the
//!   mutual-TLS listener without any key, and
//! - HEP v3 datagrams to a Homer collector (or `sngrep -L`), one per message, with the
//!   same addresses and ports and the Call-ID as correlation id.
//!
//! Both rotate by size. Writing is synchronous under a lock, one message at a time, into
//! a buffer the daemon flushes every [`FLUSH_EVERY`] (a live `sngrep -I` or `tail -f`
//! sees a message within that) and when it stops; flushing each message instead cost
//! about 40 us per call at 2,000 calls/s. The trace is off unless the config turns it on.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::warn;

use crate::transport::tap::{Point, Way};
use crate::transport::Transport;

/// `[trace]`: where the trace goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceConfig {
    /// The text log in the seed's record format; `None`: off.
    pub text: Option<PathBuf>,
    /// The pcap; `None`: off.
    pub pcap: Option<PathBuf>,
    /// A file that reaches this size is renamed `<file>.1` (older ones shift up) and a
    /// new one begun.
    pub max_bytes: u64,
    /// How many rotated files are kept.
    pub keep: u32,
    /// A HEP v3 collector (Homer, `sngrep -L`); `None`: off.
    pub hep: Option<SocketAddr>,
    /// The capture agent id HEP packets carry.
    pub hep_id: u32,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            text: None,
            pcap: None,
            max_bytes: 100 * 1024 * 1024,
            keep: 5,
            hep: None,
            hep_id: 2001,
        }
    }
}

impl TraceConfig {
    pub fn is_on(&self) -> bool {
        self.text.is_some() || self.pcap.is_some() || self.hep.is_some()
    }
}

/// How often the daemon flushes the trace files ([`Trace::flush`]).
pub const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// The trace writers the tap feeds.
#[derive(Debug)]
pub struct Trace {
    text: Option<Mutex<TextLog>>,
    pcap: Option<Mutex<Pcap>>,
    hep: Option<Hep>,
}

impl Trace {
    /// Opens (appends to) the configured files; `Err` names the file that failed.
    pub fn open(config: &TraceConfig) -> Result<Trace, String> {
        let text = match &config.text {
            Some(p) => Some(Mutex::new(TextLog {
                file: Rotating::open(p, config, None)?,
                seq: 0,
            })),
            None => None,
        };
        let pcap = match &config.pcap {
            Some(p) => Some(Mutex::new(Pcap {
                file: Rotating::open(p, config, Some(&PCAP_HEADER))?,
                tcp: HashMap::new(),
                ip_id: 0,
            })),
            None => None,
        };
        let hep = match config.hep {
            Some(to) => {
                let any: SocketAddr = match to {
                    SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
                    SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
                };
                let socket = std::net::UdpSocket::bind(any)
                    .and_then(|s| s.set_nonblocking(true).map(|()| s))
                    .map_err(|e| format!("hep: a socket to send to {to}: {e}"))?;
                Some(Hep {
                    socket,
                    to,
                    id: config.hep_id,
                })
            }
            None => None,
        };
        Ok(Trace { text, pcap, hep })
    }

    /// Writes one message read or written at `point`.
    /// Writes what the files' buffers hold.
    pub fn flush(&self) {
        if let Some(t) = &self.text {
            let mut t = t.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = t.file.flush() {
                warn!(error = %e, "the text trace could not be written");
            }
        }
        if let Some(p) = &self.pcap {
            let mut p = p.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = p.file.flush() {
                warn!(error = %e, "the pcap could not be written");
            }
        }
    }

    pub fn record(&self, way: Way, point: &Point<'_>, bytes: &[u8]) {
        let now = SystemTime::now();
        if let Some(t) = &self.text {
            let mut t = t.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = t.write(way, point, bytes, now) {
                warn!(error = %e, "the text trace could not be written");
            }
        }
        if let Some(p) = &self.pcap {
            let mut p = p.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = p.write(way, point, bytes, now) {
                warn!(error = %e, "the pcap could not be written");
            }
        }
        if let Some(h) = &self.hep {
            let packet = hep_packet(h.id, way, point, bytes, now);
            if let Err(e) = h.socket.send_to(&packet, h.to) {
                crate::warn_limited!(error = %e, collector = %h.to, "a HEP packet could not be sent");
            }
        }
    }
}

/// Where HEP packets go.
#[derive(Debug)]
struct Hep {
    socket: std::net::UdpSocket,
    to: SocketAddr,
    id: u32,
}

/// One message as a HEP v3 packet (the sipcapture HEP3 specification): `HEP3`, the
/// total length, then generic chunks (vendor 0): IP family and protocol, source and
/// destination address and port, the time, protocol type 1 (SIP), the capture agent
/// id, the Call-ID as correlation id, and the message.
fn hep_packet(id: u32, way: Way, point: &Point<'_>, bytes: &[u8], now: SystemTime) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
        let len = (6 + value.len()).min(usize::from(u16::MAX)) as u16;
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&value[..usize::from(len) - 6]);
    }
    let (src, dst) = match way {
        Way::In => (point.peer, point.local),
        Way::Out => (point.local, point.peer),
    };
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut p = Vec::with_capacity(bytes.len() + 128);
    p.extend_from_slice(b"HEP3\0\0");
    let proto: u8 = if point.transport == Transport::Udp {
        17
    } else {
        6
    };
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            chunk(&mut p, 1, &[2]);
            chunk(&mut p, 2, &[proto]);
            chunk(&mut p, 3, &s.octets());
            chunk(&mut p, 4, &d.octets());
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a,
                IpAddr::V4(a) => a.to_ipv6_mapped(),
            };
            chunk(&mut p, 1, &[10]);
            chunk(&mut p, 2, &[proto]);
            chunk(&mut p, 5, &v6(s).octets());
            chunk(&mut p, 6, &v6(d).octets());
        }
    }
    chunk(&mut p, 7, &src.port().to_be_bytes());
    chunk(&mut p, 8, &dst.port().to_be_bytes());
    chunk(&mut p, 9, &(since.as_secs() as u32).to_be_bytes());
    chunk(&mut p, 10, &since.subsec_micros().to_be_bytes());
    chunk(&mut p, 11, &[1]);
    chunk(&mut p, 12, &id.to_be_bytes());
    if let Some(call_id) = call_id_of(bytes) {
        chunk(&mut p, 17, call_id.as_bytes());
    }
    chunk(&mut p, 15, bytes);
    let total = p.len().min(usize::from(u16::MAX)) as u16;
    p[4..6].copy_from_slice(&total.to_be_bytes());
    p
}

/// The Call-ID of a message, long or compact form.
fn call_id_of(bytes: &[u8]) -> Option<&str> {
    let end = memchr::memmem::find(bytes, b"\r\n\r\n").unwrap_or(bytes.len());
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    head.split("\r\n").skip(1).find_map(|l| {
        let (name, value) = l.split_once(':')?;
        let name = name.trim();
        (name.eq_ignore_ascii_case("call-id") || name.eq_ignore_ascii_case("i"))
            .then(|| value.trim())
    })
}

/// A file that rotates by size; `header` starts every new one (the pcap's).
#[derive(Debug)]
struct Rotating {
    path: PathBuf,
    out: BufWriter<File>,
    written: u64,
    max: u64,
    keep: u32,
    header: Option<&'static [u8]>,
}

impl Rotating {
    fn open(
        path: &Path,
        config: &TraceConfig,
        header: Option<&'static [u8]>,
    ) -> Result<Rotating, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let (out, written) =
            Self::create(path, header).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Rotating {
            path: path.to_owned(),
            out,
            written,
            max: config.max_bytes,
            keep: config.keep,
            header,
        })
    }

    /// Opens for appending; a new (or empty) file gets the header.
    fn create(path: &Path, header: Option<&[u8]>) -> io::Result<(BufWriter<File>, u64)> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let len = file.metadata()?.len();
        let mut out = BufWriter::with_capacity(64 * 1024, file);
        let mut written = len;
        if let (0, Some(h)) = (len, header) {
            out.write_all(h)?;
            written = h.len() as u64;
        }
        Ok((out, written))
    }

    fn write(&mut self, chunks: &[&[u8]]) -> io::Result<()> {
        let n: u64 = chunks.iter().map(|c| c.len() as u64).sum();
        if self.written > 0 && self.written + n > self.max {
            self.rotate()?;
        }
        for c in chunks {
            self.out.write_all(c)?;
        }
        self.written += n;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.out.flush()?;
        let name = |i: u32| {
            let mut s = self.path.clone().into_os_string();
            s.push(format!(".{i}"));
            PathBuf::from(s)
        };
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(name(self.keep));
            for i in (1..self.keep).rev() {
                let _ = std::fs::rename(name(i), name(i + 1));
            }
            std::fs::rename(&self.path, name(1))?;
        }
        let (out, written) = Self::create(&self.path, self.header)?;
        self.out = out;
        self.written = written;
        Ok(())
    }
}

// --- the text log -------------------------------------------------------------------

#[derive(Debug)]
struct TextLog {
    file: Rotating,
    seq: u64,
}

impl TextLog {
    fn write(
        &mut self,
        way: Way,
        point: &Point<'_>,
        bytes: &[u8],
        now: SystemTime,
    ) -> io::Result<()> {
        self.seq += 1;
        let record = text_record(self.seq, way, point, bytes, now);
        self.file.write(&[record.as_bytes()])
    }
}

/// One message as a record of the seed's protocol trace: the line that opens it, then
/// `Instance-Id`, `Direction`, `Peer`, `Message-Type`, `Start-Line`, the headers as they
/// were, `Message-Body` when there is one, `$$end_record`.
fn text_record(seq: u64, way: Way, point: &Point<'_>, bytes: &[u8], now: SystemTime) -> String {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = match text.find("\r\n\r\n") {
        Some(i) => (&text[..i], &text[i + 4..]),
        None => (text.trim_end_matches(['\r', '\n']), ""),
    };
    let mut lines = head.split("\r\n");
    let start = lines.next().unwrap_or("");
    let kind = if start.starts_with("SIP/2.0 ") {
        "response"
    } else {
        "request"
    };
    let t = time::OffsetDateTime::from(now);
    let mut s = String::with_capacity(text.len() + 256);
    s.push_str(&format!(
        "TL_INFO(TF_PROTOCOL) [0]0000.0000::{:02}/{:02}/{:04}-{:02}:{:02}:{:02}.{:03}.{seq:08x} (drhub,Tap::record:{})$$begin_record\n",
        u8::from(t.month()),
        t.day(),
        t.year(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond(),
        point.listener,
    ));
    s.push_str(&format!("Instance-Id: {seq:08X}\n"));
    s.push_str(match way {
        Way::In => "Direction: incoming\n",
        Way::Out => "Direction: outgoing\n",
    });
    s.push_str(&format!("Peer: {}\n", point.peer));
    s.push_str(&format!("Message-Type: {kind}\n"));
    s.push_str(&format!("Start-Line: {start}\n"));
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    if !body.is_empty() {
        s.push_str("Message-Body: ");
        s.push_str(&body.replace("\r\n", "\n"));
        if !s.ends_with('\n') {
            s.push('\n');
        }
    }
    s.push_str("$$end_record\n\n");
    s
}

// --- the pcap -----------------------------------------------------------------------

/// The classic pcap file header: microsecond timestamps, snapshot length 262144,
/// link type 1 (Ethernet).
const PCAP_HEADER: [u8; 24] = [
    0xd4, 0xc3, 0xb2, 0xa1, // magic, little-endian
    2, 0, 4, 0, // version 2.4
    0, 0, 0, 0, // this zone
    0, 0, 0, 0, // sigfigs
    0, 0, 4, 0, // snaplen 262144
    1, 0, 0, 0, // LINKTYPE_ETHERNET
];

/// How many TCP connections' sequence numbers the pcap keeps at most.
const MAX_TCP_FLOWS: usize = 65_536;

/// The largest payload one packet carries (an IPv4 datagram is at most 65,535 bytes).
const MAX_SEGMENT: usize = 65_000;

#[derive(Debug)]
struct Pcap {
    file: Rotating,
    /// Next sequence numbers of each TCP connection, (local, peer) → (ours, theirs).
    tcp: HashMap<(SocketAddr, SocketAddr), (u32, u32)>,
    ip_id: u16,
}

impl Pcap {
    fn write(
        &mut self,
        way: Way,
        point: &Point<'_>,
        bytes: &[u8],
        now: SystemTime,
    ) -> io::Result<()> {
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let (src, dst) = match way {
            Way::In => (point.peer, point.local),
            Way::Out => (point.local, point.peer),
        };
        let udp = point.transport == Transport::Udp;
        for chunk in bytes.chunks(MAX_SEGMENT) {
            let transport_header = if udp {
                udp_header(src.port(), dst.port(), chunk.len())
            } else {
                let key = (point.local, point.peer);
                if self.tcp.len() >= MAX_TCP_FLOWS && !self.tcp.contains_key(&key) {
                    // Connections come and go without the trace hearing of it: start the
                    // sequence numbers over rather than keep every one ever seen.
                    self.tcp.clear();
                }
                let seqs = self.tcp.entry(key).or_insert((1, 1));
                let (seq, ack) = match way {
                    Way::Out => (seqs.0, seqs.1),
                    Way::In => (seqs.1, seqs.0),
                };
                let len = chunk.len() as u32;
                match way {
                    Way::Out => seqs.0 = seqs.0.wrapping_add(len),
                    Way::In => seqs.1 = seqs.1.wrapping_add(len),
                }
                tcp_header(src.port(), dst.port(), seq, ack)
            };
            self.ip_id = self.ip_id.wrapping_add(1);
            let proto = if udp { 17 } else { 6 };
            let ip = ip_header(
                src.ip(),
                dst.ip(),
                proto,
                transport_header.len() + chunk.len(),
                self.ip_id,
            );
            let ether = ethernet_header(matches!(src.ip(), IpAddr::V6(_)), way);
            let len = (ether.len() + ip.len() + transport_header.len() + chunk.len()) as u32;
            let mut rec = [0u8; 16];
            rec[0..4].copy_from_slice(&(since.as_secs() as u32).to_le_bytes());
            rec[4..8].copy_from_slice(&since.subsec_micros().to_le_bytes());
            rec[8..12].copy_from_slice(&len.to_le_bytes());
            rec[12..16].copy_from_slice(&len.to_le_bytes());
            self.file
                .write(&[&rec, &ether, &ip, &transport_header, chunk])?;
        }
        Ok(())
    }
}

/// Made-up locally administered MAC addresses: drhub `02:00:00:00:00:01`, the peer
/// `02:00:00:00:00:02`.
fn ethernet_header(v6: bool, way: Way) -> [u8; 14] {
    let drhub = [2, 0, 0, 0, 0, 1];
    let peer = [2, 0, 0, 0, 0, 2];
    let (dst, src) = match way {
        Way::Out => (peer, drhub),
        Way::In => (drhub, peer),
    };
    let mut h = [0u8; 14];
    h[0..6].copy_from_slice(&dst);
    h[6..12].copy_from_slice(&src);
    let ethertype: u16 = if v6 { 0x86dd } else { 0x0800 };
    h[12..14].copy_from_slice(&ethertype.to_be_bytes());
    h
}

fn ip_header(src: IpAddr, dst: IpAddr, proto: u8, payload: usize, id: u16) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (20 + payload).min(usize::from(u16::MAX)) as u16;
            let mut h = vec![0u8; 20];
            h[0] = 0x45;
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h[4..6].copy_from_slice(&id.to_be_bytes());
            h[6] = 0x40; // don't fragment
            h[8] = 64;
            h[9] = proto;
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let sum = checksum(&h);
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            h
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a,
                IpAddr::V4(a) => a.to_ipv6_mapped(),
            };
            let mut h = vec![0u8; 40];
            h[0] = 0x60;
            h[4..6].copy_from_slice(&(payload.min(usize::from(u16::MAX)) as u16).to_be_bytes());
            h[6] = proto;
            h[7] = 64;
            h[8..24].copy_from_slice(&v6(s).octets());
            h[24..40].copy_from_slice(&v6(d).octets());
            h
        }
    }
}

/// The Internet checksum (RFC 1071) of an IPv4 header.
fn checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A TCP header with PSH and ACK: each message one segment. The checksum is left zero
/// (Wireshark does not check it by default; the bytes never crossed a wire as such).
fn tcp_header(src: u16, dst: u16, seq: u32, ack: u32) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0..2].copy_from_slice(&src.to_be_bytes());
    h[2..4].copy_from_slice(&dst.to_be_bytes());
    h[4..8].copy_from_slice(&seq.to_be_bytes());
    h[8..12].copy_from_slice(&ack.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = 0x18;
    h[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    h
}

fn udp_header(src: u16, dst: u16, payload: usize) -> Vec<u8> {
    let mut h = vec![0u8; 8];
    h[0..2].copy_from_slice(&src.to_be_bytes());
    h[2..4].copy_from_slice(&dst.to_be_bytes());
    h[4..6].copy_from_slice(&((8 + payload).min(usize::from(u16::MAX)) as u16).to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point<'a>(flow: &'a (dyn std::fmt::Display + Sync), transport: Transport) -> Point<'a> {
        Point {
            flow,
            listener: "sip",
            transport,
            local: "127.0.0.1:5061".parse().unwrap(),
            peer: "192.0.2.7:40000".parse().unwrap(),
            traced: true,
        }
    }

    const INVITE: &[u8] = b"INVITE sip:+18338006777@sip.pstnhub.microsoft.com SIP/2.0\r\nCall-ID: a\r\nContent-Length: 4\r\n\r\nv=0\n";
    const OK: &[u8] = b"SIP/2.0 200 OK\r\nCall-ID: a\r\nContent-Length: 0\r\n\r\n";

    /// The seed's record shape: the opening line with `$$begin_record`, the fixed
    /// fields, the headers, the body, `$$end_record`.
    #[test]
    fn text_records_have_the_seed_trace_shape() {
        let flow = "flow-1";
        let p = point(&flow, Transport::Tls);
        let r = text_record(10, Way::In, &p, INVITE, UNIX_EPOCH);
        let lines: Vec<&str> = r.lines().collect();
        assert!(
            lines[0]
                .starts_with("TL_INFO(TF_PROTOCOL) [0]0000.0000::01/01/1970-00:00:00.000.0000000a"),
            "{r}"
        );
        assert!(lines[0].ends_with("$$begin_record"), "{r}");
        assert_eq!(
            &lines[1..7],
            [
                "Instance-Id: 0000000A",
                "Direction: incoming",
                "Peer: 192.0.2.7:40000",
                "Message-Type: request",
                "Start-Line: INVITE sip:+18338006777@sip.pstnhub.microsoft.com SIP/2.0",
                "Call-ID: a",
            ]
        );
        assert_eq!(lines[8], "Message-Body: v=0");
        assert_eq!(lines[9], "$$end_record");
        let r = text_record(11, Way::Out, &p, OK, UNIX_EPOCH);
        assert!(r.contains("Direction: outgoing\nPeer: 192.0.2.7:40000\nMessage-Type: response\nStart-Line: SIP/2.0 200 OK\n"), "{r}");
        assert!(!r.contains("Message-Body"), "{r}");
    }

    /// Each message is one Ethernet/IPv4/TCP packet between the real addresses, the
    /// sequence numbers of each direction running on by the bytes sent, the other's as
    /// the acknowledgement; UDP datagrams are UDP packets.
    #[test]
    fn pcap_packets_carry_the_messages_between_the_real_addresses() {
        let dir = std::env::temp_dir().join(format!("drhub-pcap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = TraceConfig {
            pcap: Some(dir.join("t.pcap")),
            ..TraceConfig::default()
        };
        let trace = Trace::open(&config).unwrap();
        let flow = "flow-1";
        let tls = point(&flow, Transport::Tls);
        trace.record(Way::In, &tls, INVITE);
        trace.record(Way::Out, &tls, OK);
        trace.record(Way::Out, &point(&flow, Transport::Udp), OK);
        trace.flush();
        let bytes = std::fs::read(dir.join("t.pcap")).unwrap();
        assert_eq!(&bytes[..24], &PCAP_HEADER);
        let mut at = 24;
        let mut packets = Vec::new();
        while at < bytes.len() {
            let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
            packets.push(&bytes[at + 16..at + 16 + len]);
            at += 16 + len;
        }
        assert_eq!(packets.len(), 3);
        let invite = packets[0];
        assert_eq!(&invite[12..14], &[0x08, 0x00]);
        assert_eq!(invite[14 + 9], 6, "TCP");
        assert_eq!(&invite[14 + 12..14 + 16], &[192, 0, 2, 7], "from the SBC");
        assert_eq!(&invite[14 + 16..14 + 20], &[127, 0, 0, 1]);
        assert_eq!(checksum(&invite[14..34]), 0, "a valid IPv4 header checksum");
        let tcp = &invite[34..54];
        assert_eq!(u16::from_be_bytes([tcp[0], tcp[1]]), 40000);
        assert_eq!(u16::from_be_bytes([tcp[2], tcp[3]]), 5061);
        assert_eq!(u32::from_be_bytes(tcp[4..8].try_into().unwrap()), 1);
        assert_eq!(&invite[54..], INVITE);
        let ok = packets[1];
        let tcp = &ok[34..54];
        assert_eq!(u16::from_be_bytes([tcp[0], tcp[1]]), 5061, "from drhub");
        assert_eq!(u32::from_be_bytes(tcp[4..8].try_into().unwrap()), 1);
        assert_eq!(
            u32::from_be_bytes(tcp[8..12].try_into().unwrap()),
            1 + INVITE.len() as u32,
            "acknowledges the INVITE's bytes"
        );
        let udp = packets[2];
        assert_eq!(udp[14 + 9], 17, "UDP");
        assert_eq!(&udp[42..], OK);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// HEP v3 (sipcapture's specification): the header, then each generic chunk with
    /// its type and length, the addresses and ports of the message's direction, SIP as
    /// protocol type, the Call-ID as correlation id, the message whole.
    #[test]
    fn hep_packets_carry_the_message_and_its_addresses() {
        let flow = "flow-1";
        let p = point(&flow, Transport::Tls);
        let at = UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456);
        let b = hep_packet(2001, Way::In, &p, INVITE, at);
        assert_eq!(&b[..4], b"HEP3");
        assert_eq!(usize::from(u16::from_be_bytes([b[4], b[5]])), b.len());
        let mut chunks = std::collections::BTreeMap::new();
        let mut i = 6;
        while i < b.len() {
            assert_eq!(&b[i..i + 2], &[0, 0], "generic chunk");
            let kind = u16::from_be_bytes([b[i + 2], b[i + 3]]);
            let len = usize::from(u16::from_be_bytes([b[i + 4], b[i + 5]]));
            chunks.insert(kind, b[i + 6..i + len].to_vec());
            i += len;
        }
        assert_eq!(chunks[&1], [2], "IPv4");
        assert_eq!(chunks[&2], [6], "TCP");
        assert_eq!(chunks[&3], [192, 0, 2, 7], "from the SBC");
        assert_eq!(chunks[&4], [127, 0, 0, 1]);
        assert_eq!(chunks[&7], 40000u16.to_be_bytes());
        assert_eq!(chunks[&8], 5061u16.to_be_bytes());
        assert_eq!(chunks[&9], 1_700_000_000u32.to_be_bytes());
        assert_eq!(chunks[&10], 123_456u32.to_be_bytes());
        assert_eq!(chunks[&11], [1], "SIP");
        assert_eq!(chunks[&12], 2001u32.to_be_bytes());
        assert_eq!(chunks[&17], b"a", "the Call-ID");
        assert_eq!(chunks[&15], INVITE);
        let out = hep_packet(1, Way::Out, &p, OK, at);
        assert_eq!(
            &out[6 + 7 + 7 + 6..6 + 7 + 7 + 10],
            &[127, 0, 0, 1],
            "from drhub"
        );
    }

    /// A file that would pass `max_bytes` is renamed `.1` (the older `.1` to `.2` ...,
    /// at most `keep`) and a new one begun, with the pcap header again.
    #[test]
    fn files_rotate_by_size_and_keep_so_many() {
        let dir = std::env::temp_dir().join(format!("drhub-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = TraceConfig {
            pcap: Some(dir.join("r.pcap")),
            text: Some(dir.join("r.log")),
            max_bytes: 400,
            keep: 2,
            ..TraceConfig::default()
        };
        let trace = Trace::open(&config).unwrap();
        let flow = "flow-1";
        let p = point(&flow, Transport::Tcp);
        for _ in 0..12 {
            trace.record(Way::In, &p, INVITE);
        }
        trace.flush();
        for name in [
            "r.pcap", "r.pcap.1", "r.pcap.2", "r.log", "r.log.1", "r.log.2",
        ] {
            let f = dir.join(name);
            assert!(f.exists(), "{name}");
            assert!(std::fs::metadata(&f).unwrap().len() <= 400, "{name}");
        }
        assert!(!dir.join("r.pcap.3").exists() && !dir.join("r.log.3").exists());
        for name in ["r.pcap", "r.pcap.1", "r.pcap.2"] {
            let b = std::fs::read(dir.join(name)).unwrap();
            assert_eq!(&b[..24], &PCAP_HEADER, "{name}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
