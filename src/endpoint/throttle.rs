//! Throttling of digest guessing: this module owns the failure counts and lockouts of the
//! endpoint side's digest authentication, per source address and per user.
//!
//! Sans-IO: every input carries its `now`; nothing here reads a clock or logs. What the
//! operator must hear about (a key locked, a lock ended) comes out of
//! [`Throttle::poll_notice`], once per event.
//!
//! The rules (an emulator choice: the real service has no digest endpoints at all):
//!
//! - A failure is a digest response that did not verify, for a user that exists or not.
//!   It counts against the source address and against the user. Requests without
//!   credentials, with unusable ones, or with a stale nonce and the right password are no
//!   guesses and count for nothing.
//! - A key with [`ThrottleConfig::failures`] failures within [`ThrottleConfig::window`]
//!   (a fixed window opened by its first failure) is locked for [`ThrottleConfig::lockout`].
//!   Refused requests neither count nor extend the lock.
//! - A locked address is refused everything, the right password included. A locked user is
//!   refused only from addresses the caller does not vouch for (the registrar vouches for an
//!   address holding a current registration of that user): an attacker elsewhere cannot
//!   lock a working phone out, and the attacker's own address stays refused.
//! - A success removes its address's count: a phone that mistypes a few times and then gets
//!   it right starts from zero.
//! - Users are keyed by the address-of-record the digest username must name, whether or not
//!   it exists, so the throttle answers alike for known and unknown users and cannot be used
//!   to enumerate them. IPv6 sources are keyed by their /64, which one host usually owns
//!   whole.
//!
//! Memory: each table holds at most [`ThrottleConfig::max_keys`] entries and a user key at
//! most [`MAX_USER_KEY`] bytes. A full table first drops what has expired, then the
//! unlocked entries whose window opened longest ago (an eighth of the table at once, so
//! that a flood costs O(1) per request amortised). Locks are never dropped early: a table
//! full of locks tracks no new key until one ends, and says so once.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The longest user key kept, in bytes; longer addresses-of-record are cut (at a character
/// boundary), so an attacker's long names cannot make an entry large.
pub const MAX_USER_KEY: usize = 256;

/// Throttle settings; the daemon fills them from `[endpoints]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures within `window` that lock a key; 0 turns throttling off.
    pub failures: u32,
    /// How long a run of failures is counted, from its first.
    pub window: Duration,
    /// How long a locked key stays locked.
    pub lockout: Duration,
    /// Most entries per table (addresses, users).
    pub max_keys: usize,
}

impl Default for ThrottleConfig {
    /// 10 failures within 60 s lock for 300 s; 10,000 keys per table.
    fn default() -> Self {
        ThrottleConfig {
            failures: 10,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(300),
            max_keys: 10_000,
        }
    }
}

/// A source address as the throttle counts it: IPv4 whole, IPv6 by its /64 (IPv4-mapped
/// IPv6 as IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrKey(IpAddr);

impl AddrKey {
    /// The key of a source address.
    pub fn new(ip: IpAddr) -> AddrKey {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                AddrKey(IpAddr::V6(bits.into()))
            }
            v4 => AddrKey(v4),
        }
    }
}

impl fmt::Display for AddrKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// A user as the throttle counts it: `user@domain` of the address-of-record, lower-case,
/// at most [`MAX_USER_KEY`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserKey(Box<str>);

impl UserKey {
    /// The key of an address-of-record's text (`user@domain`).
    pub fn new(aor: &str) -> UserKey {
        let mut end = aor.len().min(MAX_USER_KEY);
        while !aor.is_char_boundary(end) {
            end -= 1;
        }
        UserKey(aor.get(..end).unwrap_or("").to_ascii_lowercase().into())
    }

    /// The text, for logs (it comes from the network: log it escaped).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a lock or a notice is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locked {
    /// Every request from this address.
    Address(AddrKey),
    /// Requests for this user from addresses not vouched for.
    User(UserKey),
}

impl fmt::Display for Locked {
    /// `address 192.0.2.1` or `user "alice@adatum.biz"` (escaped: it comes from the network).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Locked::Address(a) => write!(f, "address {a}"),
            Locked::User(u) => write!(f, "user {:?}", u.as_str()),
        }
    }
}

/// Which table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Source addresses.
    Addresses,
    /// Users.
    Users,
}

/// Whether a request may have its credentials checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Check the credentials.
    Proceed,
    /// Refuse without checking: this key is locked.
    Refused(Locked),
}

/// Something the operator should hear about, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A key has just been locked.
    Locked {
        /// The key.
        key: Locked,
        /// Failures counted in its window.
        failures: u32,
        /// The window they fell in.
        window: Duration,
        /// How long the lock lasts.
        lockout: Duration,
    },
    /// A lock has ended.
    Unlocked {
        /// The key.
        key: Locked,
        /// Requests refused while it was locked.
        refused: u64,
    },
    /// A table is full of locked keys: new keys are not tracked until a lock ends.
    Full(Table),
}

/// The failure count of one key.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// When the current window opened (its first failure).
    window_start: Instant,
    failures: u32,
    locked_until: Option<Instant>,
    refused: u64,
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            window_start: now,
            failures: 0,
            locked_until: None,
            refused: 0,
        }
    }

    /// Nothing left to remember at `now`: not locked and the window is over.
    fn stale(&self, now: Instant, window: Duration) -> bool {
        self.locked_until.is_none() && now.saturating_duration_since(self.window_start) >= window
    }
}

/// One table of counts with its bound.
#[derive(Debug)]
struct Counts<K> {
    entries: HashMap<K, Entry>,
    /// A [`Notice::Full`] went out and no room has been made since.
    full_told: bool,
}

impl<K: Clone + Eq + Hash> Counts<K> {
    fn new() -> Self {
        Counts {
            entries: HashMap::new(),
            full_told: false,
        }
    }

    /// Ends the lock of `key` if it is over at `now`; returns whether `key` is locked.
    fn locked(
        &mut self,
        key: &K,
        now: Instant,
        wrap: impl Fn(K) -> Locked,
        notices: &mut VecDeque<Notice>,
    ) -> bool {
        let Some(e) = self.entries.get(key) else {
            return false;
        };
        match e.locked_until {
            Some(until) if until <= now => {
                let refused = e.refused;
                self.entries.remove(key);
                notices.push_back(Notice::Unlocked {
                    key: wrap(key.clone()),
                    refused,
                });
                false
            }
            Some(_) => true,
            None => false,
        }
    }

    fn refuse(&mut self, key: &K) {
        if let Some(e) = self.entries.get_mut(key) {
            e.refused = e.refused.saturating_add(1);
        }
    }

    /// Counts a failure of `key`; returns the notice when this failure locks it.
    fn fail(
        &mut self,
        key: K,
        now: Instant,
        config: &ThrottleConfig,
        wrap: impl Fn(K) -> Locked,
        table: Table,
        notices: &mut VecDeque<Notice>,
    ) {
        if !self.entries.contains_key(&key) && !self.make_room(now, config, &wrap, table, notices) {
            return;
        }
        let e = self.entries.entry(key.clone()).or_insert(Entry::new(now));
        if e.locked_until.is_some() {
            // Only a vouched-for address gets here while its user is locked.
            return;
        }
        if now.saturating_duration_since(e.window_start) >= config.window {
            *e = Entry::new(now);
        }
        e.failures = e.failures.saturating_add(1);
        if e.failures >= config.failures {
            e.locked_until = Some(now + config.lockout);
            notices.push_back(Notice::Locked {
                key: wrap(key),
                failures: e.failures,
                window: config.window,
                lockout: config.lockout,
            });
        }
    }

    /// Makes room for one more entry; false when the table is full of locks.
    fn make_room(
        &mut self,
        now: Instant,
        config: &ThrottleConfig,
        wrap: &impl Fn(K) -> Locked,
        table: Table,
        notices: &mut VecDeque<Notice>,
    ) -> bool {
        if self.entries.len() < config.max_keys {
            return true;
        }
        self.sweep(now, config.window, wrap, notices);
        if self.entries.len() >= config.max_keys {
            // The unlocked entries whose window opened first, an eighth of the table.
            let mut unlocked: Vec<(Instant, K)> = self
                .entries
                .iter()
                .filter(|(_, e)| e.locked_until.is_none())
                .map(|(k, e)| (e.window_start, k.clone()))
                .collect();
            let batch = (config.max_keys / 8).max(1).min(unlocked.len());
            if batch > 0 && batch < unlocked.len() {
                unlocked.select_nth_unstable_by_key(batch - 1, |(t, _)| *t);
            }
            for (_, k) in unlocked.into_iter().take(batch) {
                self.entries.remove(&k);
            }
        }
        if self.entries.len() < config.max_keys {
            self.full_told = false;
            return true;
        }
        if !self.full_told {
            self.full_told = true;
            notices.push_back(Notice::Full(table));
        }
        false
    }

    /// Ends the locks that are over and forgets entries with nothing left to count.
    fn sweep(
        &mut self,
        now: Instant,
        window: Duration,
        wrap: &impl Fn(K) -> Locked,
        notices: &mut VecDeque<Notice>,
    ) {
        self.entries.retain(|k, e| match e.locked_until {
            Some(until) if until <= now => {
                notices.push_back(Notice::Unlocked {
                    key: wrap(k.clone()),
                    refused: e.refused,
                });
                false
            }
            Some(_) => true,
            None => !e.stale(now, window),
        });
    }

    fn next_unlock(&self) -> Option<Instant> {
        self.entries.values().filter_map(|e| e.locked_until).min()
    }
}

/// Failure counts and lockouts per source address and per user (see the module docs).
///
/// Guarantees: a key is locked only after [`ThrottleConfig::failures`] failures within
/// [`ThrottleConfig::window`]; a lock ends [`ThrottleConfig::lockout`] after it began
/// (noticed by the first call at or after that time); each lock yields exactly one
/// [`Notice::Locked`] and one [`Notice::Unlocked`]; neither table exceeds
/// [`ThrottleConfig::max_keys`].
#[derive(Debug)]
pub struct Throttle {
    config: ThrottleConfig,
    addrs: Counts<AddrKey>,
    users: Counts<UserKey>,
    notices: VecDeque<Notice>,
}

impl Throttle {
    /// An empty throttle.
    pub fn new(config: ThrottleConfig) -> Throttle {
        Throttle {
            config,
            addrs: Counts::new(),
            users: Counts::new(),
            notices: VecDeque::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    fn enabled(&self) -> bool {
        self.config.failures > 0
    }

    /// May a request from `ip` for `user` have its credentials checked at `now`?
    /// `vouched` says the address may pass a lock of the user (it holds a current
    /// registration of that user); it never passes a lock of the address.
    pub fn check(&mut self, ip: IpAddr, user: &UserKey, vouched: bool, now: Instant) -> Verdict {
        if !self.enabled() {
            return Verdict::Proceed;
        }
        let addr = AddrKey::new(ip);
        if self
            .addrs
            .locked(&addr, now, Locked::Address, &mut self.notices)
        {
            self.addrs.refuse(&addr);
            return Verdict::Refused(Locked::Address(addr));
        }
        if self
            .users
            .locked(user, now, Locked::User, &mut self.notices)
            && !vouched
        {
            self.users.refuse(user);
            return Verdict::Refused(Locked::User(user.clone()));
        }
        Verdict::Proceed
    }

    /// Credentials from `ip` for `user` did not verify at `now`.
    pub fn failure(&mut self, ip: IpAddr, user: &UserKey, now: Instant) {
        if !self.enabled() {
            return;
        }
        let config = self.config;
        self.addrs.fail(
            AddrKey::new(ip),
            now,
            &config,
            Locked::Address,
            Table::Addresses,
            &mut self.notices,
        );
        self.users.fail(
            user.clone(),
            now,
            &config,
            Locked::User,
            Table::Users,
            &mut self.notices,
        );
    }

    /// Credentials from `ip` verified: the address's count starts again from zero.
    pub fn success(&mut self, ip: IpAddr) {
        let addr = AddrKey::new(ip);
        if self
            .addrs
            .entries
            .get(&addr)
            .is_some_and(|e| e.locked_until.is_none())
        {
            self.addrs.entries.remove(&addr);
        }
    }

    /// When the next lock ends: call [`handle_timeout`](Throttle::handle_timeout) then.
    /// Scans the locks (at most two tables of [`ThrottleConfig::max_keys`]).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.addrs.next_unlock(), self.users.next_unlock()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Ends the locks that are over at `now` and forgets counts whose window has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let window = self.config.window;
        self.addrs
            .sweep(now, window, &Locked::Address, &mut self.notices);
        self.users
            .sweep(now, window, &Locked::User, &mut self.notices);
    }

    /// The next notice for the log, oldest first.
    pub fn poll_notice(&mut self) -> Option<Notice> {
        self.notices.pop_front()
    }

    /// Entries held: (addresses, users).
    pub fn tracked(&self) -> (usize, usize) {
        (self.addrs.entries.len(), self.users.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(failures: u32) -> ThrottleConfig {
        ThrottleConfig {
            failures,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(300),
            max_keys: 1000,
        }
    }

    fn ip(s: &str) -> IpAddr {
        match s.parse() {
            Ok(ip) => ip,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn user(s: &str) -> UserKey {
        UserKey::new(s)
    }

    fn notices(t: &mut Throttle) -> Vec<Notice> {
        std::iter::from_fn(|| t.poll_notice()).collect()
    }

    /// A clock that only moves when told.
    struct Clock(Instant);

    impl Clock {
        fn at(&self, secs: f64) -> Instant {
            self.0 + Duration::from_secs_f64(secs)
        }
    }

    fn clock() -> Clock {
        Clock(Instant::now())
    }

    #[test]
    fn locks_at_the_threshold_and_refuses_even_the_right_password() {
        let c = clock();
        let mut t = Throttle::new(config(3));
        let (a, u) = (ip("192.0.2.1"), user("alice@adatum.biz"));
        for i in 0..2 {
            assert_eq!(t.check(a, &u, false, c.at(i as f64)), Verdict::Proceed);
            t.failure(a, &u, c.at(i as f64));
        }
        assert!(notices(&mut t).is_empty(), "two failures lock nothing");
        assert_eq!(t.check(a, &u, false, c.at(2.0)), Verdict::Proceed);
        t.failure(a, &u, c.at(2.0));
        let locks = notices(&mut t);
        assert_eq!(
            locks,
            vec![
                Notice::Locked {
                    key: Locked::Address(AddrKey::new(a)),
                    failures: 3,
                    window: Duration::from_secs(60),
                    lockout: Duration::from_secs(300),
                },
                Notice::Locked {
                    key: Locked::User(u.clone()),
                    failures: 3,
                    window: Duration::from_secs(60),
                    lockout: Duration::from_secs(300),
                },
            ]
        );
        // From now on nothing from the address is checked, whatever it sends, and the
        // refusals are not logged one by one.
        for i in 0..50 {
            assert_eq!(
                t.check(a, &u, false, c.at(3.0 + f64::from(i))),
                Verdict::Refused(Locked::Address(AddrKey::new(a)))
            );
        }
        assert!(notices(&mut t).is_empty());
        // A success would reset the address, but a locked address never gets that far;
        // even if a caller reported one, the lock stands.
        t.success(a);
        assert_ne!(t.check(a, &u, false, c.at(100.0)), Verdict::Proceed);
    }

    #[test]
    fn the_lock_ends_after_the_lockout_with_the_refused_count() {
        let c = clock();
        let mut t = Throttle::new(config(2));
        let (a, u) = (ip("192.0.2.1"), user("alice@adatum.biz"));
        t.failure(a, &u, c.at(0.0));
        t.failure(a, &u, c.at(1.0));
        let _ = notices(&mut t);
        assert_eq!(t.poll_timeout(), Some(c.at(301.0)));
        for s in [2.0, 150.0, 300.9] {
            assert!(matches!(
                t.check(a, &u, false, c.at(s)),
                Verdict::Refused(_)
            ));
        }
        // handle_timeout before the end changes nothing.
        t.handle_timeout(c.at(300.9));
        assert!(notices(&mut t).is_empty());
        // At the end: one notice per key, with what was refused meanwhile (the address
        // lock answered all three, the user lock none).
        t.handle_timeout(c.at(301.0));
        let ended = notices(&mut t);
        assert_eq!(
            ended,
            vec![
                Notice::Unlocked {
                    key: Locked::Address(AddrKey::new(a)),
                    refused: 3,
                },
                Notice::Unlocked {
                    key: Locked::User(u.clone()),
                    refused: 0,
                },
            ]
        );
        assert_eq!(t.tracked(), (0, 0));
        assert_eq!(t.poll_timeout(), None);
        assert_eq!(t.check(a, &u, false, c.at(301.0)), Verdict::Proceed);
        // A fresh count: one failure does not lock again.
        t.failure(a, &u, c.at(302.0));
        assert!(notices(&mut t).is_empty());
        assert_eq!(t.check(a, &u, false, c.at(303.0)), Verdict::Proceed);
    }

    #[test]
    fn a_check_after_the_end_notices_it_without_a_timer() {
        let c = clock();
        let mut t = Throttle::new(config(1));
        let (a, u) = (ip("192.0.2.1"), user("alice@adatum.biz"));
        t.failure(a, &u, c.at(0.0));
        let _ = notices(&mut t);
        assert!(matches!(
            t.check(a, &u, false, c.at(10.0)),
            Verdict::Refused(_)
        ));
        assert_eq!(t.check(a, &u, false, c.at(300.0)), Verdict::Proceed);
        assert_eq!(
            notices(&mut t),
            vec![
                Notice::Unlocked {
                    key: Locked::Address(AddrKey::new(a)),
                    refused: 1,
                },
                Notice::Unlocked {
                    key: Locked::User(u),
                    refused: 0,
                },
            ]
        );
    }

    #[test]
    fn failures_outside_the_window_start_a_new_count() {
        let c = clock();
        let mut t = Throttle::new(config(3));
        let (a, u) = (ip("192.0.2.1"), user("alice@adatum.biz"));
        // Two failures a minute, for an hour: never three within one window.
        for minute in 0..60 {
            let base = f64::from(minute) * 60.0;
            for s in [0.0, 30.0] {
                assert_eq!(t.check(a, &u, false, c.at(base + s)), Verdict::Proceed);
                t.failure(a, &u, c.at(base + s));
            }
        }
        assert!(notices(&mut t).is_empty());
        // Three within the window lock.
        let base = 3600.0;
        for s in [0.0, 20.0, 59.0] {
            t.failure(a, &u, c.at(base + s));
        }
        assert_eq!(notices(&mut t).len(), 2);
    }

    #[test]
    fn a_phone_that_mistypes_then_succeeds_is_never_locked() {
        let c = clock();
        let mut t = Throttle::new(config(10));
        let (phone, u) = (ip("192.0.2.30"), user("alice@adatum.biz"));
        // Twice a day for a month: two wrong passwords, then the right one. The user count
        // is not reset by a success (an attacker elsewhere must not benefit), but it stays
        // below the threshold within any window.
        for day in 0..30 {
            let base = f64::from(day) * 86_400.0;
            for run in [0.0, 43_200.0] {
                for k in 0..2 {
                    let now = c.at(base + run + f64::from(k));
                    assert_eq!(t.check(phone, &u, false, now), Verdict::Proceed);
                    t.failure(phone, &u, now);
                }
                let now = c.at(base + run + 2.0);
                assert_eq!(t.check(phone, &u, false, now), Verdict::Proceed);
                t.success(phone);
            }
        }
        assert!(notices(&mut t).is_empty());
    }

    #[test]
    fn a_success_resets_the_address_count() {
        let c = clock();
        let mut t = Throttle::new(config(3));
        let a = ip("192.0.2.1");
        // Two failures for one user, a success, two for another: the address is not locked
        // (each user has two failures, so neither is either).
        t.failure(a, &user("alice@adatum.biz"), c.at(0.0));
        t.failure(a, &user("alice@adatum.biz"), c.at(1.0));
        t.success(a);
        t.failure(a, &user("bob@adatum.biz"), c.at(2.0));
        t.failure(a, &user("bob@adatum.biz"), c.at(3.0));
        assert!(notices(&mut t).is_empty());
        assert_eq!(
            t.check(a, &user("carol@adatum.biz"), false, c.at(4.0)),
            Verdict::Proceed
        );
        // But a success does not reset the user count: guessing alice from an address
        // that also knows bob's password still locks alice.
        t.success(a);
        t.failure(a, &user("alice@adatum.biz"), c.at(5.0));
        assert_eq!(
            notices(&mut t),
            vec![Notice::Locked {
                key: Locked::User(user("alice@adatum.biz")),
                failures: 3,
                window: Duration::from_secs(60),
                lockout: Duration::from_secs(300),
            }]
        );
    }

    #[test]
    fn a_user_lock_spares_vouched_addresses_but_never_an_address_lock() {
        let c = clock();
        let mut t = Throttle::new(config(3));
        let u = user("alice@adatum.biz");
        // An attacker spread over three addresses: one failure each, the user locks.
        for (i, a) in ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
            .into_iter()
            .enumerate()
        {
            t.failure(ip(a), &u, c.at(i as f64));
        }
        assert_eq!(
            notices(&mut t),
            vec![Notice::Locked {
                key: Locked::User(u.clone()),
                failures: 3,
                window: Duration::from_secs(60),
                lockout: Duration::from_secs(300),
            }]
        );
        let phone = ip("192.0.2.30");
        // The registered phone passes; a new address does not; other users are untouched.
        assert_eq!(t.check(phone, &u, true, c.at(5.0)), Verdict::Proceed);
        assert_eq!(
            t.check(ip("203.0.113.9"), &u, false, c.at(5.0)),
            Verdict::Refused(Locked::User(u.clone()))
        );
        assert_eq!(
            t.check(
                ip("198.51.100.1"),
                &user("bob@adatum.biz"),
                false,
                c.at(5.0)
            ),
            Verdict::Proceed
        );
        // A vouched phone that then fails often enough still locks its own address.
        for k in 0..3 {
            t.failure(phone, &u, c.at(6.0 + f64::from(k)));
        }
        assert_eq!(
            t.check(phone, &u, true, c.at(10.0)),
            Verdict::Refused(Locked::Address(AddrKey::new(phone)))
        );
    }

    #[test]
    fn known_and_unknown_users_are_counted_alike() {
        // The throttle cannot tell them apart: it is never told.
        let c = clock();
        let mut t = Throttle::new(config(2));
        for name in ["alice@adatum.biz", "nobody@adatum.biz"] {
            let u = user(name);
            let a = ip(if name.starts_with('a') {
                "192.0.2.1"
            } else {
                "192.0.2.2"
            });
            t.failure(a, &u, c.at(0.0));
            t.failure(a, &u, c.at(1.0));
            assert_eq!(
                t.check(ip("192.0.2.3"), &u, false, c.at(2.0)),
                Verdict::Refused(Locked::User(u.clone()))
            );
        }
    }

    #[test]
    fn zero_failures_turns_it_off() {
        let c = clock();
        let mut t = Throttle::new(config(0));
        let (a, u) = (ip("192.0.2.1"), user("alice@adatum.biz"));
        for i in 0..1000 {
            t.failure(a, &u, c.at(f64::from(i) / 1000.0));
        }
        assert_eq!(t.check(a, &u, false, c.at(1.0)), Verdict::Proceed);
        assert_eq!(t.tracked(), (0, 0));
        assert!(notices(&mut t).is_empty());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            AddrKey::new(ip("2001:db8:1:2:aaaa::1")),
            AddrKey::new(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            AddrKey::new(ip("2001:db8:1:2::1")),
            AddrKey::new(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            AddrKey::new(ip("::ffff:192.0.2.1")),
            AddrKey::new(ip("192.0.2.1"))
        );
        assert_eq!(
            AddrKey::new(ip("2001:db8:1:2:aaaa::1")).to_string(),
            "2001:db8:1:2::/64"
        );
        let c = clock();
        let mut t = Throttle::new(config(2));
        let u = user("alice@adatum.biz");
        t.failure(ip("2001:db8::1"), &u, c.at(0.0));
        t.failure(ip("2001:db8::2"), &u, c.at(1.0));
        assert!(matches!(
            t.check(ip("2001:db8::3"), &user("bob@adatum.biz"), false, c.at(2.0)),
            Verdict::Refused(Locked::Address(_))
        ));
    }

    #[test]
    fn user_keys_are_lower_case_and_bounded() {
        assert_eq!(user("Alice@Adatum.BIZ"), user("alice@adatum.biz"));
        let long = format!("{}@adatum.biz", "é".repeat(1000));
        let k = user(&long);
        assert!(k.as_str().len() <= MAX_USER_KEY, "{}", k.as_str().len());
        assert!(long.starts_with(k.as_str()));
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_within_the_bound() {
        let c = clock();
        let mut t = Throttle::new(ThrottleConfig {
            max_keys: 64,
            ..config(3)
        });
        let victim = user("alice@adatum.biz");
        let attacker = ip("198.51.100.1");
        // One key of each table locked before the flood.
        for k in 0..3 {
            t.failure(attacker, &victim, c.at(f64::from(k)));
        }
        let _ = notices(&mut t);
        // 100,000 distinct addresses trying 100,000 distinct users, once each.
        for i in 0u32..100_000 {
            let a = IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
            let u = user(&format!("u{i}@adatum.biz"));
            assert_eq!(t.check(a, &u, false, c.at(10.0)), Verdict::Proceed);
            t.failure(a, &u, c.at(10.0));
            let (addrs, users) = t.tracked();
            assert!(addrs <= 64 && users <= 64, "{addrs} {users}");
        }
        // The locks survived: an attacker cannot flush them by flooding.
        assert!(matches!(
            t.check(attacker, &user("bob@adatum.biz"), false, c.at(11.0)),
            Verdict::Refused(Locked::Address(_))
        ));
        assert!(matches!(
            t.check(ip("192.0.2.99"), &victim, false, c.at(11.0)),
            Verdict::Refused(Locked::User(_))
        ));
        assert!(notices(&mut t).is_empty(), "no lock, no unlock, not full");
        // Expired entries go first: after the window, a sweep leaves only the locks.
        t.handle_timeout(c.at(71.0));
        assert_eq!(t.tracked(), (1, 1));
    }

    #[test]
    fn a_table_full_of_locks_tracks_nothing_new_and_says_so_once() {
        let c = clock();
        let mut t = Throttle::new(ThrottleConfig {
            max_keys: 4,
            ..config(1)
        });
        for i in 0u8..4 {
            t.failure(
                IpAddr::from([192, 0, 2, i]),
                &user(&format!("u{i}@x")),
                c.at(0.0),
            );
        }
        assert_eq!(notices(&mut t).len(), 8);
        for i in 10u8..20 {
            t.failure(
                IpAddr::from([192, 0, 2, i]),
                &user(&format!("u{i}@x")),
                c.at(1.0),
            );
        }
        assert_eq!(t.tracked(), (4, 4));
        assert_eq!(
            notices(&mut t),
            vec![Notice::Full(Table::Addresses), Notice::Full(Table::Users)]
        );
        // Once the locks end there is room again.
        t.failure(IpAddr::from([192, 0, 2, 50]), &user("v@x"), c.at(301.0));
        let after = notices(&mut t);
        assert_eq!(
            after
                .iter()
                .filter(|n| matches!(n, Notice::Unlocked { .. }))
                .count(),
            8,
            "{after:?}"
        );
        assert_eq!(t.tracked(), (1, 1));
    }
}
