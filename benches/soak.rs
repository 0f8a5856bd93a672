//! Soak: inbound calls at a steady rate for minutes against the release `drhub` binary,
//! with faults injected on both sides of it: SBC connections dropped mid-call and
//! softphones vanishing mid-call. Every 10 s it reports the calls and the daemon's
//! resident memory and `status` line; at the end, whether the call table emptied, memory
//! stayed flat and every failed call is explained by a fault (issue 7 item 8).
//!
//! `cargo bench --bench soak`
//!   the defaults: 1,000 calls/s for 600 s (`--rate 1000 --seconds 600`); over 10 minutes
//!   and both cores of a small machine.
//! `cargo bench --bench soak -- --seconds 60 --rate 200`
//!   a smoke run.
//!
//! Options: `--hold-ms` how long a call is up before the SBC hangs up (2000);
//! `--connections` SBC connections, calls round robin over them (4); `--drop-every`
//! seconds between connection drops, 0 for none (15); `--phones` softphones (4);
//! `--phone-share` fraction of calls to a softphone (0.05); `--vanish-every` seconds
//! between vanishing phones, 0 for none (20).
//!
//! - **The SBC** holds `--connections` mutual-TLS 1.2 connections presenting
//!   sbc1.adatum.biz. A call is INVITE, 100, 180, 200, ACK, then after the holding time
//!   BYE, 200. Most calls go to a user whose one virtual endpoint answers at once.
//! - **Dropped connections.** Every `--drop-every` s one connection with calls up is
//!   closed abruptly: a TCP reset, no TLS close_notify. The SBC opens a replacement at
//!   once, and the ACKs and BYEs of the calls that were on the dropped one go over it
//!   (DR-NH-5: the daemon takes them from any connection of the SBC's certificate). A
//!   BYE still unanswered when its connection dropped is sent again over the replacement
//!   (CSeq 3); a 481 to that one means the first had arrived.
//! - **Vanishing phones.** `--phones` UDP softphones register with digest, one per bench
//!   user `phoneN@adatum.biz` (a SIP endpoint only), each with its own `+sip.instance`,
//!   and answer every INVITE at once (180, 200 with SDP). Every `--vanish-every` s one
//!   phone with calls up falls silent for good, as a phone gone from the network: it
//!   answers nothing, not even the BYE the proxy sends when the SBC hangs up, which
//!   times out after 64*T1. A new phone registers at once from another port with the
//!   same instance and becomes the user's only fork target (RFC 5626 §7).
//! - **Failed calls**: a final response >= 300, no final response within 64*T1 + 8 s, a
//!   BYE answered other than 200 or not within that time, a BYE from the proxy. The
//!   failure of a call whose SBC connection dropped or whose phone vanished while it
//!   was up (or before its INVITE was answered) is explained by the fault; any other
//!   counts against the daemon.
//! - **The end.** Offering stops; the bench waits until each of its calls has ended,
//!   then until the daemon's `status` line says `calls=0` (up to 60 s + 64*T1 later).
//!   PASS/FAIL: the call table is empty; the RSS at the end is within max(10 %, 4 MiB)
//!   of the RSS after the first 60 s; no failed call is unexplained.

mod support;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use drhub::sip::{Limits, Message, Status};
use support::*;

const SBC: &str = "sbc1.adatum.biz";
const PHONE_PASSWORD: &str = "soak-phone-password";
const PHONE_SDP: &str = "v=0\r\no=- 7 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
/// 64*T1 with the lab's T1 of 0.5 s: how long the daemon tries an unanswered request.
const T1X64: Duration = Duration::from_secs(32);
/// How long the SBC here waits for a final response (to INVITE or BYE) before giving
/// up: 64*T1 and a margin for the daemon's own 64*T1 towards a silent phone.
const GIVE_UP: Duration = Duration::from_secs(40);
const REPORT_EVERY: Duration = Duration::from_secs(10);

struct Opts {
    rate: u64,
    seconds: u64,
    hold: Duration,
    connections: usize,
    drop_every: Option<Duration>,
    phones: usize,
    phone_share: f64,
    vanish_every: Option<Duration>,
}

impl Opts {
    fn parse() -> Opts {
        let every =
            |name, default| Some(Duration::from_secs(arg(name, default))).filter(|d| !d.is_zero());
        let phones = arg("--phones", 4) as usize;
        assert!(phones < 1000, "--phones: at most 999");
        let phone_share = str_arg("--phone-share")
            .map(|v| {
                v.parse::<f64>()
                    .unwrap_or_else(|_| panic!("--phone-share: not a number: {v}"))
            })
            .unwrap_or(0.05)
            .clamp(0.0, 1.0);
        Opts {
            rate: arg("--rate", 1000).max(1),
            seconds: arg("--seconds", 600).max(1),
            hold: Duration::from_millis(arg("--hold-ms", 2000)),
            connections: (arg("--connections", 4) as usize).max(1),
            drop_every: every("--drop-every", 15),
            phones,
            phone_share: if phones == 0 { 0.0 } else { phone_share },
            vanish_every: every("--vanish-every", 20).filter(|_| phones > 0),
        }
    }

    /// The softphone that call `n` (from 1) goes to, if any: `phone_share` of the calls,
    /// spread evenly, round robin over the phones.
    fn phone_of(&self, n: u64) -> Option<usize> {
        if self.phone_share <= 0.0 {
            return None;
        }
        let k = (n as f64 * self.phone_share).floor() as u64;
        let before = ((n - 1) as f64 * self.phone_share).floor() as u64;
        (k > before).then_some((k % self.phones as u64) as usize)
    }

    fn number(&self, n: u64) -> String {
        match self.phone_of(n) {
            Some(p) => phone_number(p),
            None => INSTANT_NUMBER.to_owned(),
        }
    }

    fn invite(&self, n: u64) -> String {
        invite_numbered(SBC, &self.number(n), n, &[])
    }
}

fn phone_number(p: usize) -> String {
    format!("+1833800{}", 9000 + p)
}

/// The lab config with the instant-answer user of the shared harness, one user per softphone (a SIP endpoint only), the
/// call limits out of the way and a `status` line every 10 s.
fn config(text: String, phones: usize) -> String {
    let mut users = INSTANT_USER.to_owned();
    for p in 0..phones {
        users.push_str(&format!(
            r#"
  [[tenant.user]]
  sip_address = "phone{p}@adatum.biz"
  display_name = "Soak phone {p}"
  line_uri = "tel:{}"
  password = "{PHONE_PASSWORD}"

    [[tenant.user.endpoint]]
    name = "softphone"
    kind = "sip"
"#,
            phone_number(p)
        ));
    }
    let text = text
        .replace(
            "[[tenant]]\nid = \"contoso\"",
            &format!("{users}\n[[tenant]]\nid = \"contoso\""),
        )
        .replace("max_per_second = 5000", "max_per_second = 1000000")
        .replace("max_concurrent = 20000", "max_concurrent = 1000000")
        .replace(
            "level = \"warn,drhub::daemon=info\"",
            "level = \"error,drhub::daemon=info\"",
        );
    set_key(&text, "log", "status_interval_seconds", "10")
}

// --- the SBC's connections -----------------------------------------------------------

/// One message from the daemon, as a connection's reader hands it over.
struct Incoming {
    /// The call number of `Call-ID: invite-<n>@...`, when it is one of ours.
    n: Option<u64>,
    /// A response's status; `None` for a request.
    status: Option<u16>,
    /// The CSeq method.
    method: String,
    to_tag: Option<String>,
    /// A request's text, to answer it.
    request: Option<String>,
}

enum Event {
    /// A message on the connection in this slot.
    Sip(usize, Incoming),
    /// The connection in slot `.0` (epoch `.1`) is up.
    Connected(usize, u64),
    /// The connection in slot `.0` (epoch `.1`) ended without the bench dropping it.
    Lost(usize, u64, String),
    /// A softphone registered (slot, generation).
    PhoneUp(usize, u64),
    PhoneFailed(usize, u64, String),
}

/// One SBC connection for its whole life: connect, then read and write until it fails or
/// the task is aborted (the abrupt drop: the socket is reset, nothing more is sent).
async fn connection(
    slot: usize,
    epoch: u64,
    addr: SocketAddr,
    connector: TlsConnector,
    mut outbox: UnboundedReceiver<String>,
    events: UnboundedSender<Event>,
) {
    let connected = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        // Closing with a zero linger resets the connection: no close_notify, no FIN.
        tcp.set_zero_linger().map_err(|e| format!("linger: {e}"))?;
        connector
            .connect(server_name(), tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))
    };
    let tls = match connected.await {
        Ok(tls) => tls,
        Err(why) => {
            let _ = events.send(Event::Lost(slot, epoch, why));
            return;
        }
    };
    let _ = events.send(Event::Connected(slot, epoch));
    let (mut rd, mut wr) = tokio::io::split(tls);
    let writer = async {
        while let Some(first) = outbox.recv().await {
            let mut batch = first;
            while let Ok(more) = outbox.try_recv() {
                batch.push_str(&more);
            }
            if let Err(e) = wr.write_all(batch.as_bytes()).await {
                return format!("write: {e}");
            }
        }
        "outbox closed".to_owned()
    };
    let reader = async {
        let mut buf = BytesMut::with_capacity(1 << 16);
        let limits = Limits::default();
        loop {
            match rd.read_buf(&mut buf).await {
                Ok(0) => return "closed by the daemon".to_owned(),
                Err(e) => return format!("read: {e}"),
                Ok(_) => {}
            }
            loop {
                while buf.starts_with(b"\r\n") {
                    buf.advance(2);
                }
                let m = match Message::parse(&buf, &limits) {
                    Ok(Status::Complete(m)) => m,
                    Ok(Status::Partial) => break,
                    Err(e) => return format!("unparsable message from the daemon: {e:?}"),
                };
                let len = m.len();
                let status = m.status_code();
                let incoming = Incoming {
                    n: m.call_id()
                        .and_then(|c| c.strip_prefix("invite-"))
                        .and_then(|c| c.split('@').next())
                        .and_then(|c| c.parse().ok()),
                    status,
                    method: m
                        .cseq()
                        .and_then(Result::ok)
                        .map(|c| c.method.as_str().to_owned())
                        .unwrap_or_default(),
                    to_tag: m
                        .to()
                        .and_then(Result::ok)
                        .and_then(|t| t.tag().map(str::to_owned)),
                    request: status
                        .is_none()
                        .then(|| String::from_utf8_lossy(&buf[..len]).into_owned()),
                };
                buf.advance(len);
                let _ = events.send(Event::Sip(slot, incoming));
            }
        }
    };
    let why = tokio::select! {
        w = writer => w,
        r = reader => r,
    };
    let _ = events.send(Event::Lost(slot, epoch, why));
}

/// The SBC connection in one slot; a replacement takes the slot of the one it replaces.
struct Slot {
    /// Messages to write; queued while the connection is being set up.
    tx: UnboundedSender<String>,
    task: JoinHandle<()>,
    epoch: u64,
    connected: bool,
}

// --- softphones ----------------------------------------------------------------------

#[derive(Default)]
struct PhoneCounts {
    invites: AtomicU64,
    byes: AtomicU64,
    /// Datagrams a vanished phone got and left unanswered.
    ignored: AtomicU64,
}

/// A response of a softphone: Via, From, To (with `tag` if it has none), Call-ID and
/// CSeq of `req`, then Contact and the body.
fn phone_response(req: &str, status: &str, tag: &str, contact: &str, sdp: Option<&str>) -> String {
    let mut s = format!("SIP/2.0 {status}\r\n");
    for line in req.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" => s.push_str(line),
            "to" | "t" if !line.contains("tag=") => s.push_str(&format!("{line};tag={tag}")),
            "to" | "t" => s.push_str(line),
            _ => continue,
        }
        s.push_str("\r\n");
    }
    s.push_str(&format!("Contact: {contact}\r\n"));
    match sdp {
        Some(b) => s.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => s.push_str("Content-Length: 0\r\n\r\n"),
    }
    s
}

/// REGISTER as `phoneN@adatum.biz` from `sock`, answering the digest challenge.
async fn register(
    sock: &UdpSocket,
    server: SocketAddr,
    slot: usize,
    gen: u64,
) -> Result<(), String> {
    let me = sock.local_addr().map_err(|e| e.to_string())?;
    let user = format!("phone{slot}");
    let request = |cseq: u32, auth: Option<&str>| {
        let mut s = format!(
            "REGISTER sip:adatum.biz SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKreg{slot}g{gen}c{cseq}\r\nMax-Forwards: 70\r\n\
From: <sip:{user}@adatum.biz>;tag=reg{slot}g{gen}\r\nTo: <sip:{user}@adatum.biz>\r\nCall-ID: reg-{slot}-{gen}@soak\r\n\
CSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{me}>;+sip.instance=\"<urn:uuid:00000000-0000-4000-8000-{slot:012}>\"\r\nExpires: 3600\r\n"
        );
        if let Some(a) = auth {
            s.push_str(&format!("Authorization: {a}\r\n"));
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        s
    };
    let exchange = |text: String| async move {
        sock.send_to(text.as_bytes(), server)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 65535];
        let (len, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .map_err(|_| "no answer to REGISTER within 5 s".to_owned())?
            .map_err(|e| e.to_string())?;
        Ok::<Reply, String>(Reply {
            text: String::from_utf8_lossy(&buf[..len]).into_owned(),
        })
    };
    let challenge = exchange(request(1, None)).await?;
    if !challenge.text.starts_with("SIP/2.0 401") {
        return Err(challenge.text.lines().next().unwrap_or_default().to_owned());
    }
    let auth = phone::digest_md5(
        &challenge.text,
        &user,
        PHONE_PASSWORD,
        "REGISTER",
        "sip:adatum.biz",
    );
    let answer = exchange(request(2, Some(&auth))).await?;
    if answer.text.starts_with("SIP/2.0 200") {
        Ok(())
    } else {
        Err(answer.text.lines().next().unwrap_or_default().to_owned())
    }
}

/// One softphone: registers, then answers everything at once until `silent` is set;
/// from then on it reads and drops what comes, for good.
async fn softphone(
    slot: usize,
    gen: u64,
    server: SocketAddr,
    silent: Arc<AtomicBool>,
    counts: Arc<PhoneCounts>,
    events: UnboundedSender<Event>,
) {
    let sock = match UdpSocket::bind("127.0.0.1:0").await {
        Ok(s) => s,
        Err(e) => {
            let _ = events.send(Event::PhoneFailed(slot, gen, format!("bind: {e}")));
            return;
        }
    };
    if let Err(why) = register(&sock, server, slot, gen).await {
        let _ = events.send(Event::PhoneFailed(slot, gen, why));
        return;
    }
    let _ = events.send(Event::PhoneUp(slot, gen));
    let contact = match sock.local_addr() {
        Ok(me) => format!("<sip:phone{slot}@{me}>"),
        Err(_) => return,
    };
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((len, from)) = sock.recv_from(&mut buf).await else {
            return;
        };
        if silent.load(Ordering::Relaxed) {
            counts.ignored.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let text = String::from_utf8_lossy(&buf[..len]);
        let method = text.split(' ').next().unwrap_or_default();
        let out = match method {
            // Responses (none expected) and ACKs need no answer.
            "SIP/2.0" | "ACK" => continue,
            "INVITE" => {
                // The same To tag for a retransmitted INVITE.
                let mut h = std::hash::DefaultHasher::new();
                req_header(&text, "Call-ID").hash(&mut h);
                let tag = format!("ph{:x}", h.finish());
                counts.invites.fetch_add(1, Ordering::Relaxed);
                vec![
                    phone_response(&text, "180 Ringing", &tag, &contact, None),
                    phone_response(&text, "200 OK", &tag, &contact, Some(PHONE_SDP)),
                ]
            }
            _ => {
                if method == "BYE" {
                    counts.byes.fetch_add(1, Ordering::Relaxed);
                }
                vec![phone_response(&text, "200 OK", "ph", &contact, None)]
            }
        };
        for datagram in out {
            let _ = sock.send_to(datagram.as_bytes(), from).await;
        }
    }
}

/// The softphone registered as `phoneN@adatum.biz` now; a vanished one's task goes on
/// reading and dropping what comes, detached.
struct PhoneSlot {
    gen: u64,
    /// The current phone has registered.
    ready: bool,
    silent: Arc<AtomicBool>,
}

// --- calls -------------------------------------------------------------------------

enum State {
    /// INVITE sent, no final response yet.
    Inviting,
    /// 200 received and ACKed; the BYE is due after the holding time.
    Up { tag: String },
    /// BYE sent at `since`; `resent` once it went again over a replacement connection.
    Hanging {
        tag: String,
        since: Instant,
        resent: bool,
    },
}

struct Call {
    /// The SBC connection slot its INVITE went on; its ACK and BYE go on the same slot.
    slot: usize,
    phone: Option<usize>,
    sent: Instant,
    state: State,
    /// Its SBC connection was dropped while it was up.
    dropped: bool,
    /// Its phone vanished (or had not registered again yet) while it was up.
    vanished: bool,
}

/// How the calls hit by one kind of fault ended.
#[derive(Default)]
struct Hit {
    calls: u64,
    completed: u64,
    failed: u64,
}

#[derive(Default)]
struct Stats {
    offered: u64,
    completed: u64,
    /// Failed calls by what happened ("486 to INVITE", "no answer to BYE" ...).
    failed: BTreeMap<String, u64>,
    unexplained: BTreeMap<String, u64>,
    drops: u64,
    vanishes: u64,
    on_dropped: Hit,
    on_vanished: Hit,
    byes_resent: u64,
    /// A resent BYE answered 481: the first had arrived and ended the call.
    resent_481: u64,
    /// 200s to INVITEs of calls already over (ACKed again).
    late_200s: u64,
    /// Requests from the daemon (answered 200), by method.
    requests: BTreeMap<String, u64>,
    /// Connections that ended without the bench dropping them.
    lost: Vec<String>,
    phone_failures: Vec<String>,
}

impl Stats {
    fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }
    fn unexplained_total(&self) -> u64 {
        self.unexplained.values().sum()
    }
}

/// A daemon `status` line's figures.
#[derive(Clone, Copy, Default)]
struct DaemonStatus {
    calls: u64,
    legs: u64,
    transactions: u64,
    connections: u64,
    layer_queue: u64,
    shed: u64,
}

impl DaemonStatus {
    fn parse(line: &str) -> Option<DaemonStatus> {
        if !line.contains(" status ") {
            return None;
        }
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
        };
        Some(DaemonStatus {
            calls: field("calls")?,
            legs: field("legs")?,
            transactions: field("transactions")?,
            connections: field("connections")?,
            layer_queue: field("layer_queue").unwrap_or(0),
            shed: field("shed").unwrap_or(0),
        })
    }
}

impl std::fmt::Display for DaemonStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "calls={} legs={} transactions={} connections={} layer_queue={} shed={}",
            self.calls, self.legs, self.transactions, self.connections, self.layer_queue, self.shed
        )
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

struct Soak {
    o: Opts,
    addr: SocketAddr,
    endpoints: SocketAddr,
    connector: TlsConnector,
    daemon: LoggedDaemon,
    events: UnboundedSender<Event>,
    slots: Vec<Slot>,
    phones: Vec<PhoneSlot>,
    phone_counts: Arc<PhoneCounts>,
    calls: HashMap<u64, Call>,
    /// BYEs due, in order (one holding time for every call).
    byes: VecDeque<(Instant, u64)>,
    stats: Stats,
    next_drop_slot: usize,
    next_vanish_phone: usize,
    /// When offering started, and RSS samples (seconds since, KiB) from then on.
    t0: Instant,
    rss: Vec<(u64, u64)>,
}

impl Soak {
    fn pid(&self) -> u32 {
        self.daemon.child.id()
    }

    fn connect(&mut self, slot: usize) {
        let (tx, rx) = unbounded_channel();
        let epoch = self.slots.get(slot).map_or(0, |s| s.epoch + 1);
        let task = tokio::spawn(connection(
            slot,
            epoch,
            self.addr,
            self.connector.clone(),
            rx,
            self.events.clone(),
        ));
        let s = Slot {
            tx,
            task,
            epoch,
            connected: false,
        };
        match self.slots.get_mut(slot) {
            Some(old) => *old = s,
            None => self.slots.push(s),
        }
    }

    fn spawn_phone(&mut self, slot: usize) {
        let gen = self.phones.get(slot).map_or(0, |p| p.gen + 1);
        let silent = Arc::new(AtomicBool::new(false));
        tokio::spawn(softphone(
            slot,
            gen,
            self.endpoints,
            silent.clone(),
            self.phone_counts.clone(),
            self.events.clone(),
        ));
        let p = PhoneSlot {
            gen,
            ready: false,
            silent,
        };
        match self.phones.get_mut(slot) {
            Some(old) => *old = p,
            None => self.phones.push(p),
        }
    }

    fn send(&self, slot: usize, text: String) {
        let _ = self.slots[slot].tx.send(text);
    }

    /// Call `n` is over: completed (`Ok`) or failed with what happened.
    fn end(&mut self, n: u64, outcome: Result<(), String>) {
        let Some(call) = self.calls.remove(&n) else {
            return;
        };
        let ok = outcome.is_ok();
        for (hit, yes) in [
            (&mut self.stats.on_dropped, call.dropped),
            (&mut self.stats.on_vanished, call.vanished),
        ] {
            if yes {
                hit.calls += 1;
                if ok {
                    hit.completed += 1;
                } else {
                    hit.failed += 1;
                }
            }
        }
        match outcome {
            Ok(()) => self.stats.completed += 1,
            Err(what) => {
                *self.stats.failed.entry(what.clone()).or_insert(0) += 1;
                if !(call.dropped || call.vanished) {
                    if self.stats.unexplained_total() < 5 {
                        println!(
                            "  unexplained failure: call {n} ({}, SBC connection {}): {what}",
                            call.phone
                                .map_or("bench user".to_owned(), |p| format!("phone{p}")),
                            call.slot
                        );
                    }
                    *self.stats.unexplained.entry(what).or_insert(0) += 1;
                }
            }
        }
    }

    fn offer(&mut self, now: Instant) {
        self.stats.offered += 1;
        let n = self.stats.offered;
        let phone = self.o.phone_of(n);
        let slot = (n % self.slots.len() as u64) as usize;
        // A phone that vanished and whose replacement has not registered yet.
        let vanished = phone.is_some_and(|p| !self.phones[p].ready);
        self.calls.insert(
            n,
            Call {
                slot,
                phone,
                sent: now,
                state: State::Inviting,
                dropped: false,
                vanished,
            },
        );
        self.send(slot, self.o.invite(n));
    }

    fn on_sip(&mut self, from: usize, m: Incoming, now: Instant) {
        let Some(n) = m.n else {
            if let Some(req) = &m.request {
                *self.stats.requests.entry(m.method.clone()).or_insert(0) += 1;
                self.send(from, response_to(req, 200, "OK", &[]));
            }
            return;
        };
        let slot = self.calls.get(&n).map_or(from, |c| c.slot);
        match (m.status, m.method.as_str()) {
            (Some(s), "INVITE") if s < 200 => {}
            (Some(s), "INVITE") if s < 300 => {
                let tag = m.to_tag.unwrap_or_default();
                // RFC 3261 §13.2.2.4: every 2xx is ACKed, retransmissions too.
                self.send(slot, in_dialog(&self.o.invite(n), "ACK", Some(&tag), 1));
                match self.calls.get_mut(&n) {
                    Some(call) if matches!(call.state, State::Inviting) => {
                        call.state = State::Up { tag };
                        self.byes.push_back((now + self.o.hold, n));
                    }
                    Some(_) => {}
                    None => self.stats.late_200s += 1,
                }
            }
            (Some(s), "INVITE") => {
                // RFC 3261 §17.1.1.3: the ACK of a non-2xx, on the INVITE's branch.
                self.send(from, ack_non2xx(&self.o.invite(n), m.to_tag.as_deref()));
                if self
                    .calls
                    .get(&n)
                    .is_some_and(|c| matches!(c.state, State::Inviting))
                {
                    self.end(n, Err(format!("{s} to INVITE")));
                }
            }
            (Some(s), "BYE") => {
                let resent = match self.calls.get(&n).map(|c| &c.state) {
                    Some(State::Hanging { resent, .. }) => *resent,
                    _ => return,
                };
                if s == 200 {
                    self.end(n, Ok(()));
                } else if s == 481 && resent {
                    self.stats.resent_481 += 1;
                    self.end(n, Ok(()));
                } else {
                    self.end(n, Err(format!("{s} to BYE")));
                }
            }
            (Some(_), _) => {}
            (None, method) => {
                *self.stats.requests.entry(method.to_owned()).or_insert(0) += 1;
                if let Some(req) = &m.request {
                    self.send(from, response_to(req, 200, "OK", &[]));
                }
                if method == "BYE" {
                    self.end(n, Err("BYE from the proxy".to_owned()));
                }
            }
        }
    }

    /// BYEs whose holding time is over.
    fn hang_up(&mut self, now: Instant) {
        while let Some(&(due, n)) = self.byes.front() {
            if due > now {
                break;
            }
            self.byes.pop_front();
            let Some(call) = self.calls.get_mut(&n) else {
                continue;
            };
            let State::Up { tag } = &call.state else {
                continue;
            };
            let tag = tag.clone();
            let slot = call.slot;
            let bye = in_dialog(&self.o.invite(n), "BYE", Some(&tag), 2);
            call.state = State::Hanging {
                tag,
                since: now,
                resent: false,
            };
            self.send(slot, bye);
        }
    }

    /// Gives up on INVITEs and BYEs without a final response for [`GIVE_UP`].
    fn give_up(&mut self, now: Instant) {
        let late: Vec<(u64, &str)> = self
            .calls
            .iter()
            .filter_map(|(&n, c)| match &c.state {
                State::Inviting if now - c.sent > GIVE_UP => {
                    Some((n, "no final response to INVITE"))
                }
                State::Hanging { since, .. } if now - *since > GIVE_UP => {
                    Some((n, "no answer to BYE"))
                }
                _ => None,
            })
            .collect();
        for (n, what) in late {
            self.end(n, Err(what.to_owned()));
        }
    }

    /// Closes one SBC connection with calls up abruptly and replaces it at once.
    fn drop_connection(&mut self, now: Instant) {
        let k = self.slots.len();
        let has_calls = |s: usize| {
            self.slots[s].connected
                && self
                    .calls
                    .values()
                    .any(|c| c.slot == s && matches!(c.state, State::Up { .. }))
        };
        let Some(slot) = (0..k)
            .map(|i| (self.next_drop_slot + i) % k)
            .find(|&s| has_calls(s))
        else {
            return;
        };
        self.next_drop_slot = slot + 1;
        self.slots[slot].task.abort();
        self.stats.drops += 1;
        self.connect(slot);
        let mut resend = Vec::new();
        for (&n, call) in self.calls.iter_mut().filter(|(_, c)| c.slot == slot) {
            call.dropped = true;
            if let State::Hanging { tag, since, resent } = &mut call.state {
                *since = now;
                *resent = true;
                resend.push((n, tag.clone()));
            }
        }
        for (n, tag) in resend {
            self.stats.byes_resent += 1;
            self.send(slot, in_dialog(&self.o.invite(n), "BYE", Some(&tag), 3));
        }
    }

    /// One phone with calls up falls silent for good; a new one registers in its place.
    fn vanish_phone(&mut self) {
        let k = self.phones.len();
        let has_calls = |p: usize| {
            self.phones[p].ready
                && self
                    .calls
                    .values()
                    .any(|c| c.phone == Some(p) && matches!(c.state, State::Up { .. }))
        };
        let Some(p) = (0..k)
            .map(|i| (self.next_vanish_phone + i) % k)
            .find(|&p| has_calls(p))
        else {
            return;
        };
        self.next_vanish_phone = p + 1;
        self.phones[p].silent.store(true, Ordering::Relaxed);
        self.stats.vanishes += 1;
        for call in self.calls.values_mut().filter(|c| c.phone == Some(p)) {
            call.vanished = true;
        }
        // The silent phone's task goes on reading (a black hole, not a closed port).
        self.spawn_phone(p);
    }

    fn on_event(&mut self, ev: Event, now: Instant) {
        match ev {
            Event::Sip(slot, m) => self.on_sip(slot, m, now),
            Event::Connected(slot, epoch) => {
                if self.slots[slot].epoch == epoch {
                    self.slots[slot].connected = true;
                }
            }
            Event::Lost(slot, epoch, why) => {
                if self.slots[slot].epoch == epoch {
                    // Not a drop of the bench's: a fault of its own (or the daemon's).
                    self.stats.lost.push(format!("connection {slot}: {why}"));
                    // Its calls are not marked: their failures count against the daemon.
                    println!("  SBC connection {slot} lost: {why}; reconnecting");
                    self.connect(slot);
                }
            }
            Event::PhoneUp(p, gen) => {
                if self.phones[p].gen == gen {
                    self.phones[p].ready = true;
                }
            }
            Event::PhoneFailed(p, gen, why) => {
                println!("  phone{p} (generation {gen}) could not register: {why}");
                self.stats.phone_failures.push(format!("phone{p}: {why}"));
            }
        }
    }

    fn latest_status(&self, since: usize) -> Option<DaemonStatus> {
        let log = self.daemon.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter()
            .skip(since)
            .rev()
            .find_map(|l| DaemonStatus::parse(l))
    }

    fn log_len(&self) -> usize {
        self.daemon
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    fn report(&mut self, now: Instant) {
        let t = now.duration_since(self.t0).as_secs();
        let rss = rss_kib(self.pid());
        self.rss.push((t, rss));
        let inviting = self
            .calls
            .values()
            .filter(|c| matches!(c.state, State::Inviting))
            .count();
        let up = self.calls.len() - inviting;
        let s = &self.stats;
        let failed = if s.failed.is_empty() {
            String::new()
        } else {
            format!(" {:?}", s.failed)
        };
        let status = self
            .latest_status(0)
            .map_or("(no status line yet)".to_owned(), |d| d.to_string());
        println!(
            "[{t:>4} s] offered {} completed {} failed {}{failed} (unexplained {}) without final {inviting} up {up} | drops {} vanished {} | RSS {} | daemon {status}",
            s.offered,
            s.completed,
            s.failed_total(),
            s.unexplained_total(),
            s.drops,
            s.vanishes,
            mib(rss),
        );
    }
}

fn main() {
    let o = Opts::parse();
    let phones = o.phones;
    let (dir, cfg) = lab("soak", |t| config(t, phones));
    let daemon = spawn_daemon_logged(&dir, &cfg);
    let connector = tls_client(&dir, SBC);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (pass, mut daemon) = rt.block_on(run(o, daemon, connector));
    drop(rt);
    let _ = daemon.child.kill();
    let _ = daemon.child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    if !pass {
        std::process::exit(1);
    }
}

/// Sets up the SBC connections and the phones, offers the calls, drains, and prints the
/// summary: true when every check passed.
async fn run(o: Opts, daemon: LoggedDaemon, connector: TlsConnector) -> (bool, LoggedDaemon) {
    let endpoints = daemon
        .endpoints
        .expect("the lab config has an endpoint listener");
    let (events_tx, mut events) = unbounded_channel();
    let mut soak = Soak {
        addr: daemon.sip,
        endpoints,
        connector,
        daemon,
        events: events_tx,
        slots: Vec::new(),
        phones: Vec::new(),
        phone_counts: Arc::default(),
        calls: HashMap::new(),
        byes: VecDeque::new(),
        stats: Stats::default(),
        next_drop_slot: 0,
        next_vanish_phone: 0,
        t0: Instant::now(),
        rss: Vec::new(),
        o,
    };
    let pid = soak.pid();
    for slot in 0..soak.o.connections {
        soak.connect(slot);
    }
    for p in 0..soak.o.phones {
        soak.spawn_phone(p);
    }
    let setup_by = tokio::time::Instant::now() + Duration::from_secs(20);
    while !(soak.slots.iter().all(|s| s.connected) && soak.phones.iter().all(|p| p.ready)) {
        match tokio::time::timeout_at(setup_by, events.recv()).await {
            Ok(Some(ev)) => soak.on_event(ev, Instant::now()),
            _ => {
                println!("soak: SBC connections or phones not up within 20 s");
                return (false, soak.daemon);
            }
        }
        assert!(
            soak.stats.phone_failures.is_empty() && soak.stats.lost.is_empty(),
            "set-up failed"
        );
    }
    let o = &soak.o;
    println!(
        "soak: {} calls/s for {} s, hold {} ms, {} SBC connections (one dropped every {}), {} softphones taking {:.1} % of the calls (one vanishing every {})",
        o.rate,
        o.seconds,
        o.hold.as_millis(),
        o.connections,
        o.drop_every.map_or("never".to_owned(), |d| format!("{} s", d.as_secs())),
        o.phones,
        100.0 * o.phone_share,
        o.vanish_every.map_or("never".to_owned(), |d| format!("{} s", d.as_secs())),
    );
    let (rate, seconds, hold) = (o.rate, o.seconds, o.hold);
    let (drop_every, vanish_every) = (o.drop_every, o.vanish_every);
    let total = rate * seconds;
    let per_tick = (rate / 1000).max(1);
    let tick = Duration::from_micros(1_000_000 * per_tick / rate);

    let rss_start = rss_kib(pid);
    let cpu_start = cpu_micros(pid);
    let t0 = Instant::now();
    soak.t0 = t0;
    soak.rss.push((0, rss_start));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let second = Duration::from_secs(1);
    let (mut next_second, mut next_report) = (t0 + second, t0 + REPORT_EVERY);
    let mut next_drop = drop_every.map(|d| t0 + d);
    let mut next_vanish = vanish_every.map(|d| t0 + d);
    // Set when offering ends: the daemon's CPU over it, and when it ended.
    let mut offered: Option<(u64, Instant)> = None;
    // Set when the bench's last call has ended: then, and the log length at that time.
    let mut drained: Option<(Instant, usize)> = None;
    let mut daemon_exited = None;
    let end_status = loop {
        tokio::select! {
            ev = events.recv() => {
                if let Some(ev) = ev {
                    soak.on_event(ev, Instant::now());
                }
                continue;
            }
            _ = ticker.tick() => {}
        }
        let now = Instant::now();
        if offered.is_none() {
            for _ in 0..per_tick.min(total - soak.stats.offered) {
                soak.offer(now);
            }
            if soak.stats.offered >= total {
                offered = Some((cpu_micros(pid).saturating_sub(cpu_start), now));
            }
        }
        soak.hang_up(now);
        if now < next_second {
            continue;
        }
        next_second += second;
        soak.give_up(now);
        if offered.is_none() {
            if let (Some(at), Some(every)) = (next_drop, drop_every) {
                if now >= at {
                    soak.drop_connection(now);
                    next_drop = Some(at + every);
                }
            }
            if let (Some(at), Some(every)) = (next_vanish, vanish_every) {
                if now >= at {
                    soak.vanish_phone();
                    next_vanish = Some(at + every);
                }
            }
        }
        if now >= next_report {
            next_report += REPORT_EVERY;
            soak.report(now);
        }
        if let Ok(Some(exit)) = soak.daemon.child.try_wait() {
            println!("soak: the daemon exited: {exit}");
            daemon_exited = Some(exit);
            break soak.latest_status(0);
        }
        assert!(soak.stats.lost.len() < 50, "SBC connections keep failing");
        let Some((_, offer_end)) = offered else {
            continue;
        };
        match drained {
            None if soak.calls.is_empty() => {
                println!(
                    "  [{} s] every call of the bench has ended; waiting for the daemon's calls=0",
                    now.duration_since(t0).as_secs()
                );
                drained = Some((now, soak.log_len()));
            }
            None if now > offer_end + hold + 2 * GIVE_UP + Duration::from_secs(10) => {
                println!("  {} calls of the bench never ended", soak.calls.len());
                drained = Some((now, soak.log_len()));
            }
            None => {}
            Some((at, mark)) => {
                // A status line logged after the bench's last call ended.
                let status = soak.latest_status(mark);
                if status.is_some_and(|s| s.calls == 0 && s.transactions == 0)
                    || now > at + Duration::from_secs(60) + T1X64
                {
                    break status;
                }
            }
        }
    };
    let end = Instant::now();
    let rss_end = rss_kib(pid);
    soak.rss.push((end.duration_since(t0).as_secs(), rss_end));
    let pass = summary(
        &soak,
        SummaryInput {
            rss_start,
            rss_end,
            offered,
            drained: drained.map(|(at, _)| at),
            t0,
            end,
            end_status,
            daemon_exited: daemon_exited.is_some(),
        },
    );
    (pass, soak.daemon)
}

struct SummaryInput {
    rss_start: u64,
    rss_end: u64,
    /// The daemon's CPU over the offering (us) and when offering ended.
    offered: Option<(u64, Instant)>,
    drained: Option<Instant>,
    t0: Instant,
    end: Instant,
    /// The daemon's last status line after the bench's calls had ended.
    end_status: Option<DaemonStatus>,
    daemon_exited: bool,
}

fn summary(soak: &Soak, i: SummaryInput) -> bool {
    let s = &soak.stats;
    let o = &soak.o;
    let secs = |t: Instant| t.duration_since(i.t0).as_secs();
    println!(
        "soak summary: {} calls/s offered for {} s",
        o.rate, o.seconds
    );
    println!(
        "  offered {}, completed {}, failed {}, without a final response {}",
        s.offered,
        s.completed,
        s.failed_total(),
        soak.calls
            .values()
            .filter(|c| matches!(c.state, State::Inviting))
            .count()
    );
    if !s.failed.is_empty() {
        println!("  failed calls by what happened: {:?}", s.failed);
    }
    println!(
        "  {} SBC connections dropped: {} calls on dropped connections, {} completed, {} failed; {} BYEs sent again over the replacement ({} answered 481: the first had arrived)",
        s.drops, s.on_dropped.calls, s.on_dropped.completed, s.on_dropped.failed, s.byes_resent, s.resent_481
    );
    let pc = &soak.phone_counts;
    println!(
        "  {} phones vanished: {} calls on vanished phones, {} completed, {} failed; the phones answered {} INVITEs and {} BYEs; vanished phones left {} datagrams unanswered",
        s.vanishes,
        s.on_vanished.calls,
        s.on_vanished.completed,
        s.on_vanished.failed,
        pc.invites.load(Ordering::Relaxed),
        pc.byes.load(Ordering::Relaxed),
        pc.ignored.load(Ordering::Relaxed)
    );
    if !s.requests.is_empty() || s.late_200s > 0 {
        println!("  requests from the daemon (answered 200): {:?}; 200s to INVITEs of ended calls (ACKed): {}", s.requests, s.late_200s);
    }
    for lost in &s.lost {
        println!("  SBC connection lost (not dropped by the bench): {lost}");
    }
    for f in &s.phone_failures {
        println!("  phone registration failed: {f}");
    }
    if let Some((cpu, at)) = i.offered {
        println!(
            "  offering ended at {} s; daemon CPU {:.1} us per offered call",
            secs(at),
            cpu as f64 / s.offered.max(1) as f64
        );
    }
    if let Some(at) = i.drained {
        println!(
            "  the bench's last call ended at {} s; the end at {} s",
            secs(at),
            secs(i.end)
        );
    }
    // RSS: after the first 60 s (or the end of offering, if shorter), and the series.
    let offer_secs = i.offered.map_or(u64::MAX, |(_, at)| secs(at));
    let during: Vec<(u64, u64)> = soak
        .rss
        .iter()
        .copied()
        .filter(|&(t, _)| t <= offer_secs)
        .collect();
    let rss60 = during
        .iter()
        .find(|&&(t, _)| t >= 60)
        .or(during.last())
        .map_or(i.rss_start, |&(_, k)| k);
    let steady: Vec<(u64, u64)> = during.iter().copied().filter(|&(t, _)| t >= 60).collect();
    let (lo, hi) = steady
        .iter()
        .fold((u64::MAX, 0), |(lo, hi), &(_, k)| (lo.min(k), hi.max(k)));
    println!(
        "  daemon RSS: start {}, after 60 s {}, end {}",
        mib(i.rss_start),
        mib(rss60),
        mib(i.rss_end)
    );
    if steady.len() >= 2 {
        // Least squares over the samples from 60 s to the end of offering.
        let n = steady.len() as f64;
        let mx = steady.iter().map(|&(t, _)| t as f64).sum::<f64>() / n;
        let my = steady.iter().map(|&(_, k)| k as f64).sum::<f64>() / n;
        let sxy: f64 = steady
            .iter()
            .map(|&(t, k)| (t as f64 - mx) * (k as f64 - my))
            .sum();
        let sxx: f64 = steady.iter().map(|&(t, _)| (t as f64 - mx).powi(2)).sum();
        println!(
            "  RSS from 60 s to the end of offering: min {}, max {}, trend {:+.0} KiB/min",
            mib(lo),
            mib(hi),
            60.0 * sxy / sxx.max(1e-9)
        );
    }
    let series: Vec<String> = soak
        .rss
        .iter()
        .map(|&(_, k)| format!("{:.1}", k as f64 / 1024.0))
        .collect();
    println!(
        "  RSS series (MiB, every 10 s, last at the end): {}",
        series.join(" ")
    );
    match i.end_status {
        Some(st) => println!("  daemon at the end: {st}"),
        None => println!("  daemon at the end: no status line after the bench's last call"),
    }
    {
        let log = soak.daemon.log.lock().unwrap_or_else(|p| p.into_inner());
        let errors: Vec<&String> = log
            .iter()
            .filter(|l| l.contains("ERROR") || l.contains("panicked"))
            .collect();
        let panics = log.iter().filter(|l| l.contains("panicked")).count();
        println!(
            "  daemon log: {} lines, {} ERROR or panic lines ({panics} panics)",
            log.len(),
            errors.len()
        );
        for l in errors.iter().take(5) {
            println!("    {l}");
        }
    }

    let table_empty = !i.daemon_exited && i.end_status.is_some_and(|s| s.calls == 0);
    let margin = (rss60 / 10).max(4096);
    let flat = !i.daemon_exited && i.rss_end <= rss60 + margin;
    let unexplained = s.unexplained_total();
    let clean =
        unexplained == 0 && s.lost.is_empty() && s.phone_failures.is_empty() && !i.daemon_exited;
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    println!(
        "{} call table empty at the end: {}",
        verdict(table_empty),
        i.end_status
            .map_or("no status line".to_owned(), |s| format!(
                "calls={} legs={} transactions={}",
                s.calls, s.legs, s.transactions
            ))
    );
    println!(
        "{} memory flat: RSS at the end {} vs {} after 60 s (margin {})",
        verdict(flat),
        mib(i.rss_end),
        mib(rss60),
        mib(margin)
    );
    println!(
        "{} failed calls not explained by the injected faults: {unexplained}{}{}",
        verdict(clean),
        if s.unexplained.is_empty() {
            String::new()
        } else {
            format!(" {:?}", s.unexplained)
        },
        if s.lost.is_empty() && s.phone_failures.is_empty() {
            String::new()
        } else {
            format!(
                "; {} connections lost, {} phone registrations failed",
                s.lost.len(),
                s.phone_failures.len()
            )
        }
    );
    table_empty && flat && clean
}
