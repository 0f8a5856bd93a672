//! systemd `Type=notify` integration: READY=1 once listeners are bound, WATCHDOG=1 while
//! alive, RELOADING=1 and READY=1 around a reload (SIGHUP), STOPPING=1 on the way out.
//! Outside systemd (`NOTIFY_SOCKET` unset) every call is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;
use tracing::debug;

/// Tells systemd the listeners are bound and starts the watchdog pinger if one is set.
pub fn ready() {
    if let Err(e) = sd_notify::notify(false, &[NotifyState::Ready]) {
        debug!(error = %e, "sd_notify READY failed");
    }
    let mut usec = 0u64;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        let period = Duration::from_micros(usec / 2);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
            }
        });
    }
}

pub fn stopping() {
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
}

/// A reload has begun (`RELOADING=1` with the monotonic time systemd asks for).
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    let _ = sd_notify::notify(false, &states);
}

/// The reload is over, applied or refused: ready again.
pub fn reloaded() {
    let _ = sd_notify::notify(false, &[NotifyState::Ready]);
}
