#!/usr/bin/env bash
# Kamailio baseline for the calls_load bench: CPU per call of Kamailio 5.6 proxying,
# statefully, the same inbound call load that `cargo bench --bench calls_load` offers
# drhub, so the README can put the two figures side by side.
#
# What runs (all on 127.0.0.1, nothing else):
#   calls_load (the SBC, this repo's load generator, --target mode)
#     == one mutual-TLS 1.2 connection ==> Kamailio (tls listener, stateful proxy:
#        sanity checks, record_route, loose_route for in-dialog requests, t_relay)
#     == UDP ==> a sipp UAS (180 and 200 at once, 200 to BYE). Its scenario is written
#        below: the shape of sipp's built-in `-sn uas`, which however does not copy
#        Record-Route into its 180/200 as a UAS must (RFC 3261 12.1.1), so ACK and BYE
#        could not follow the proxy's route set.
#   Per call: INVITE, 100 (from Kamailio's tm), 180, 200, ACK, BYE, 200 on the TLS side,
#   as against drhub, whose virtual endpoint rings and answers at once. The SBC sends
#   ACK and BYE along the dialog's route set (Route from Record-Route, Request-URI the
#   UAS's Contact), as a real SBC would through a proxy.
#
# What it prints: calls completed/failed, INVITE-to-100 p50/p99, Kamailio's CPU in
#   microseconds per call (user + system, summed over the main process and all its
#   children, from /proc, over the load window), and sipp's CPU per call apart.
#
# Run (as root, or with sudo available for the package install):
#   benches/kamailio_baseline.sh                   # 2,000 calls/s for 60 s
#   benches/kamailio_baseline.sh --rate 500 --seconds 10
# Options: --rate N (calls/s, default 2000), --seconds N (default 60),
#   --children N (Kamailio's UDP and TLS worker processes each, default 2),
#   --mem tlsf|fm|qm (Kamailio's memory manager, default tlsf, a fast one as tuned
#   deployments run; fm measured about the same. qm, the packaged binary's default,
#   is the debugging allocator: here about 2.5x the CPU per call at 1,000 calls/s,
#   most of it in qm_malloc, and it cannot sustain 2,000 calls/s on 2 cores).
# Ports (loopback only; override when busy): KAM_TLS_PORT (5071), KAM_UDP_PORT
#   (5072, Kamailio's side towards the UAS), UAS_PORT (5080), UAS_CTRL_PORT (5081).
# KEEP_WORK=1 keeps the temp dir (kamailio.cfg, uas.xml, logs) for a look afterwards.
#
# It INSTALLS PACKAGES when missing: Debian's kamailio, kamailio-tls-modules and
#   sip-tester (sipp), with apt-get (Debian 12 ships Kamailio 5.6.x). Service start on
#   install is blocked with a temporary /usr/sbin/policy-rc.d when none exists, so the
#   packaged kamailio.service never starts on its default configuration (and is
#   disabled for boot afterwards).
# It writes only to a temp dir (removed at the end) and this repo's target/; it stops
# the Kamailio and sipp it started, by pid, on every exit. Bounded: the load run is
# killed after 3 x --seconds + 120 s.
# Compare with, right after on the same machine:
#   cargo bench --bench calls_load -- --rate 2000 --seconds 60
set -euo pipefail

RATE=2000
SECONDS_=60
CHILDREN=2
MEM=tlsf
while [[ $# -gt 0 ]]; do
    case "$1" in
    --rate) RATE="$2"; shift 2 ;;
    --seconds) SECONDS_="$2"; shift 2 ;;
    --children) CHILDREN="$2"; shift 2 ;;
    --mem) MEM="$2"; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$MEM" in tlsf | fm | qm) ;; *) echo "--mem: tlsf, fm or qm" >&2; exit 2 ;; esac
for n in "$RATE" "$SECONDS_" "$CHILDREN"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "not a positive number: $n" >&2; exit 2; }
done

KAM_TLS_PORT="${KAM_TLS_PORT:-5071}"
KAM_UDP_PORT="${KAM_UDP_PORT:-5072}"
UAS_PORT="${UAS_PORT:-5080}"
UAS_CTRL_PORT="${UAS_CTRL_PORT:-5081}"
ADDR=127.0.0.1
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

WORK=""
KAM_PID=""
UAS_PID=""
LOAD_PID=""
POLICY_RC_D_OURS=""

# shellcheck disable=SC2317 # stop_pid and cleanup run from the EXIT trap
stop_pid() { # pid: TERM, up to 5 s, then KILL (the pid and its direct children)
    local pid="$1" kids
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kids="$(pgrep -P "$pid" || true)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    for k in $kids; do kill -KILL "$k" 2>/dev/null || true; done
}

# shellcheck disable=SC2317
cleanup() {
    local rc=$?
    stop_pid "$LOAD_PID"
    stop_pid "$KAM_PID"
    stop_pid "$UAS_PID"
    if [[ -n "$POLICY_RC_D_OURS" ]]; then as_root rm -f /usr/sbin/policy-rc.d; fi
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        if [[ -n "${KEEP_WORK:-}" ]]; then echo "== kept $WORK"; else rm -rf "$WORK"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

as_root() {
    if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# --- 1. packages -------------------------------------------------------------------
PKGS=(kamailio kamailio-tls-modules sip-tester)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "== installing ${missing[*]} (apt-get)"
    if ! apt-cache policy kamailio | grep -q 'Candidate: [0-9]'; then
        as_root apt-get update
    fi
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        # Refuse service starts during the install (exit 101: action forbidden).
        printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
        as_root chmod 755 /usr/sbin/policy-rc.d
        POLICY_RC_D_OURS=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    if [[ -n "$POLICY_RC_D_OURS" ]]; then as_root rm -f /usr/sbin/policy-rc.d; POLICY_RC_D_OURS=""; fi
    # The package enables kamailio.service for boot, on /etc/kamailio/kamailio.cfg: undo.
    if [[ " ${missing[*]} " == *" kamailio "* ]] && command -v systemctl >/dev/null; then
        as_root systemctl disable --quiet kamailio.service >/dev/null 2>&1 || true
    fi
fi
KAM_VERSION="$(kamailio -v | sed -n 's/^version: kamailio \([^ ]*\).*/\1/p')"
case "$KAM_VERSION" in
5.6.*) ;;
*) echo "warning: Kamailio $KAM_VERSION, not 5.6.x: the figure is not the issue's baseline" >&2 ;;
esac
SIPP_VERSION="$( (sipp -v 2>&1 || true) | sed -n 's/.*SIPp \(v[0-9.]*[0-9]\).*/\1/p' | head -n1)"

# --- 2. ports, builds, lab PKI --------------------------------------------------------
for port in "$KAM_TLS_PORT" "$KAM_UDP_PORT" "$UAS_PORT" "$UAS_CTRL_PORT"; do
    if [[ -n "$(ss -Hlntu "( sport = :$port )")" ]]; then
        echo "port $port is in use; set KAM_TLS_PORT/KAM_UDP_PORT/UAS_PORT/UAS_CTRL_PORT" >&2
        exit 1
    fi
done

echo "== building drhub (lab PKI) and the calls_load bench"
executable() { # kind name cargo-args...: path of that target's executable, built
    local kind="$1" name="$2"
    shift 2
    (cd "$ROOT" && cargo "$@" --quiet --message-format=json) |
        grep -F "\"kind\":[\"$kind\"],\"crate_types\":[\"bin\"],\"name\":\"$name\"" |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1
}
DRHUB="$(executable bin drhub build --release --bin drhub)"
BENCH="$(executable bench calls_load bench --bench calls_load --no-run)"
[[ -x "$DRHUB" && -x "$BENCH" ]] || { echo "build failed: drhub '$DRHUB', bench '$BENCH'" >&2; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/kamailio-baseline.XXXXXX")"
# The same lab PKI drhub uses: proxy certificate for sip.pstnhub.microsoft.com, the
# SBC's client certificate, one CA. Run in $WORK so no config/drhub.toml is picked up.
(cd "$WORK" && "$DRHUB" certs --dir "$WORK/certs" >/dev/null)

# --- 3. Kamailio configuration ---------------------------------------------------------
cat >"$WORK/kamailio.cfg" <<EOF
#!KAMAILIO
# Stateful proxy for the drhub call bench: SBC over mutual TLS in, UAS over UDP out.

debug=-1
log_stderror=yes
fork=yes
children=$CHILDREN
tcp_children=$CHILDREN
auto_aliases=no
dns=no
rev_dns=no
enable_tls=yes
tcp_connection_lifetime=3605
server_signature=no

listen=tls:$ADDR:$KAM_TLS_PORT
listen=udp:$ADDR:$KAM_UDP_PORT

loadmodule "tls.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "sanity.so"
loadmodule "siputils.so"
loadmodule "textops.so"

# Mutual TLS like drhub: present the proxy certificate, demand and verify the SBC's.
modparam("tls", "tls_method", "TLSv1.2+")
modparam("tls", "certificate", "$WORK/certs/proxy.pem")
modparam("tls", "private_key", "$WORK/certs/proxy.key")
modparam("tls", "ca_list", "$WORK/certs/ca.pem")
modparam("tls", "verify_certificate", 1)
modparam("tls", "require_certificate", 1)

request_route {
    if (!mf_process_maxfwd_header("10")) {
        sl_send_reply("483", "Too Many Hops");
        exit;
    }
    if (!sanity_check()) {
        exit;
    }
    force_rport();

    # In-dialog (ACK, BYE): along the Route set this proxy record-routed.
    if (has_totag()) {
        if (loose_route()) {
            route(RELAY);
        }
        if (is_method("ACK") && t_check_trans()) {
            route(RELAY);
        }
        if (!is_method("ACK")) {
            sl_send_reply("404", "Not Here");
        }
        exit;
    }
    if (is_method("CANCEL")) {
        if (t_check_trans()) {
            route(RELAY);
        }
        exit;
    }
    # Retransmissions are absorbed by their transaction.
    t_check_trans();
    if (!is_method("INVITE")) {
        sl_send_reply("405", "Method Not Allowed");
        exit;
    }
    # Every new call goes to the UAS.
    record_route();
    \$du = "sip:$ADDR:$UAS_PORT;transport=udp";
    route(RELAY);
}

route[RELAY] {
    if (!t_relay()) {
        sl_reply_error();
    }
    exit;
}
EOF
kamailio -c -f "$WORK/kamailio.cfg" >"$WORK/kamailio-check.log" 2>&1 || {
    cat "$WORK/kamailio-check.log" >&2
    exit 1
}

# --- 4. the UAS scenario, then start the UAS and Kamailio --------------------------------
cat >"$WORK/uas.xml" <<'EOF'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<!-- Answers every INVITE at once: 180, then 200 (retransmitted until the ACK), then 200
     to the BYE. The 1xx and 2xx carry the INVITE's Record-Route so that the caller's
     ACK and BYE go back through the proxy. -->
<scenario name="drhub bench UAS">
  <recv request="INVITE" crlf="true"/>
  <send>
    <![CDATA[

      SIP/2.0 180 Ringing
      [last_Via:]
      [last_Record-Route:]
      [last_From:]
      [last_To:];tag=[pid]u[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_Record-Route:]
      [last_From:]
      [last_To:];tag=[pid]u[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=uas 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>
  <recv request="ACK"/>
  <recv request="BYE"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <!-- Stay a moment to answer a retransmitted BYE. -->
  <timewait milliseconds="2000"/>
</scenario>
EOF

wait_port() { # proto port pid what
    for _ in $(seq 100); do
        if [[ -n "$(ss -Hln"$1" "( src $ADDR:$2 )")" ]]; then return 0; fi
        kill -0 "$3" 2>/dev/null || { echo "$4 exited" >&2; return 1; }
        sleep 0.1
    done
    echo "$4 is not listening on $ADDR:$2 after 10 s" >&2
    return 1
}

sipp -sf "$WORK/uas.xml" -t u1 -i "$ADDR" -p "$UAS_PORT" -bind_local -mi "$ADDR" \
    -ci "$ADDR" -cp "$UAS_CTRL_PORT" -nostdin \
    -trace_err -error_file "$WORK/sipp-errors.log" >"$WORK/sipp.out" 2>&1 &
UAS_PID=$!
wait_port u "$UAS_PORT" "$UAS_PID" "sipp" || { tail -n 20 "$WORK/sipp.out" >&2; exit 1; }

# -DD: the main process stays in the foreground (its pid is ours) and forks the workers.
# 1 GiB of shared memory: the default 64 MiB runs out under a backlog (transactions
# linger 5 s after their final reply), and the tls module then refuses to work.
kamailio -f "$WORK/kamailio.cfg" -DD -E -x "$MEM" -m 1024 -M 32 -w "$WORK" -Y "$WORK" \
    -P "$WORK/kamailio.pid" >"$WORK/kamailio.log" 2>&1 &
KAM_PID=$!
wait_port t "$KAM_TLS_PORT" "$KAM_PID" "kamailio" || { tail -n 20 "$WORK/kamailio.log" >&2; exit 1; }
sleep 1 # workers forked and initialised
KAM_PROCS=$(($(pgrep -c -P "$KAM_PID") + 1))

tree_ticks() { # user + system clock ticks of Kamailio's main process and its children
    local p t=0
    for p in "$KAM_PID" $(pgrep -P "$KAM_PID"); do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}
idle0=$(tree_ticks)
sleep 5
IDLE_MS_PER_S=$(( ($(tree_ticks) - idle0) * 1000 / $(getconf CLK_TCK) / 5 ))

echo "== Kamailio $KAM_VERSION (-x $MEM; $KAM_PROCS processes: children=$CHILDREN, tcp_children=$CHILDREN;" \
    "idle: $IDLE_MS_PER_S ms CPU per s)" \
    "on tls:$ADDR:$KAM_TLS_PORT -> sipp ${SIPP_VERSION:-?} UAS on udp:$ADDR:$UAS_PORT"
echo "== load: $RATE calls/s for $SECONDS_ s; $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# --- 5. the load -------------------------------------------------------------------------
# In the background and waited for, so that a signal to this script stops it at once.
(cd "$ROOT" && exec timeout --kill-after=10 "$((SECONDS_ * 3 + 120))" "$BENCH" \
    --target "$ADDR:$KAM_TLS_PORT" --pid "$KAM_PID" --uas-pid "$UAS_PID" \
    --certs "$WORK/certs" --rate "$RATE" --seconds "$SECONDS_") >"$WORK/load.out" 2>&1 &
LOAD_PID=$!
rc=0
wait "$LOAD_PID" || rc=$?
LOAD_PID=""
cat "$WORK/load.out"
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
if ! kill -0 "$KAM_PID" 2>/dev/null; then
    echo "kamailio died during the run" >&2
    rc=1
fi
# The load generator ends by dropping its connection, which Kamailio may log as a read
# error (reset by peer) when replies were still on the way: not a failure.
errors="$(grep -E 'ERROR|CRITICAL|ALERT|BUG' "$WORK/kamailio.log" |
    grep -v -E 'Connection reset by peer|tcp_read_req: error reading' || true)"
if [[ -n "$errors" ]]; then
    echo "== Kamailio logged errors (first 10):"
    head -n 10 <<<"$errors"
fi
if [[ -s "$WORK/sipp-errors.log" ]]; then
    echo "== sipp unexpected messages: $(grep -c 'Aborting call\|Unexpected' "$WORK/sipp-errors.log" || true)"
fi
if [[ $rc -ne 0 ]]; then
    echo "load generator failed (exit $rc)" >&2
fi
exit "$rc"
