//! The parse path allocates nothing: framing, the checks and every typed view borrow from
//! the read buffer. A counting global allocator proves it for the bench messages.
//!
//! This file needs `unsafe` for `GlobalAlloc`; the library itself has none.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

use drhub::sip::{HeaderName, Limits, Message, Status};

struct Counting;

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: thread-local storage may already be gone while a thread exits.
    let _ = ACTIVE.try_with(|a| {
        if a.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping only
// touches `const`-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Counts the heap allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    COUNT.with(|c| c.set(0));
    ACTIVE.with(|a| a.set(true));
    f();
    ACTIVE.with(|a| a.set(false));
    COUNT.with(|c| c.get())
}

const INVITE: &[u8] = include_bytes!("../benches/fixtures/invite.sip");
const SP183: &[u8] = include_bytes!("../benches/fixtures/session_progress_183.sip");
const OK200: &[u8] = include_bytes!("../benches/fixtures/options_200.sip");
const WSINV: &[u8] = include_bytes!("torture/rfc4475/wsinv.dat");
const ESC01: &[u8] = include_bytes!("torture/rfc4475/esc01.dat");
const V6: &[u8] = include_bytes!("torture/rfc5118/ipv6-bug-abnf-3-colons.dat");

/// Parse, check (both forms) and read every typed view the call layer uses.
fn exercise(buf: &[u8]) -> usize {
    let mut seen = 0usize;
    let Ok(Status::Complete(m)) = Message::parse(black_box(buf), &Limits::default()) else {
        panic!("fixture must parse");
    };
    let ok = if m.is_request() {
        m.check_request().is_ok()
    } else {
        m.check_response().is_ok()
    };
    assert!(ok);
    if let Some(Ok(uri)) = m.request_uri() {
        seen += uri.user().map_or(0, str::len);
        seen += usize::from(uri.is_phone());
        let mut buf = [0u8; 128];
        seen += uri.user_decoded(&mut buf).map_or(0, <[u8]>::len);
    }
    for v in m.vias() {
        let v = v.expect("valid Via");
        seen += v.branch().map_or(0, str::len) + usize::from(v.port().unwrap_or(0) > 0);
        seen += usize::from(v.host().is_ip()) + usize::from(v.rfc3261_branch().is_some());
    }
    let from = m.from().expect("From").expect("valid From");
    seen += from.tag().map_or(0, str::len) + from.uri().as_str().len();
    let to = m.to().expect("To").expect("valid To");
    seen += to.uri().host().map_or(0, |h| usize::from(h.is_ip()));
    seen += to.display_name().map_or(0, str::len);
    for c in m.contacts() {
        let c = c.expect("valid Contact");
        if let Some(u) = c.uri() {
            seen += u.param("transport").map_or(0, |p| p.name.len());
            seen += u.host().and_then(|h| h.domain()).map_or(0, str::len);
        }
    }
    let checked = if m.is_request() {
        m.checked_request()
    } else {
        m.checked_response()
    }
    .expect("checks pass");
    seen += checked.from.tag().map_or(0, str::len) + checked.top_via.branch().map_or(0, str::len);
    let cseq = m.cseq().expect("CSeq").expect("valid CSeq");
    seen += cseq.seq as usize + cseq.method.as_str().len();
    seen += m.call_id().map_or(0, str::len);
    seen += m.values(HeaderName::Allow).count() + m.values(HeaderName::Supported).count();
    seen += m.body().len() + m.len();
    black_box(seen)
}

#[test]
fn parse_check_and_typed_views_do_not_allocate() {
    // Warm up anything lazily initialised outside the parser (none expected).
    for f in [INVITE, SP183, OK200, WSINV, ESC01, V6] {
        exercise(f);
    }
    for (name, f) in [
        ("invite", INVITE),
        ("183", SP183),
        ("200", OK200),
        ("wsinv", WSINV),
        ("esc01", ESC01),
        ("ipv6 three colons", V6),
    ] {
        let n = allocations(|| {
            exercise(f);
        });
        assert_eq!(n, 0, "{name}: {n} heap allocations on the parse path");
    }
    // The counter works: a Vec allocates.
    let n = allocations(|| {
        black_box(vec![1u8; 16]);
    });
    assert_eq!(n, 1);
}
