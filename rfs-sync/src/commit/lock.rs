//! Holding the volume's write lock for a commit: taking it (waiting with
//! backoff when `--wait-lock` allows), renewing its lease in the
//! background, and always releasing it.

use std::time::Duration;

use anyhow::Result;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::exit::{Code, Failure};
use crate::remote::{LockAnswer, Remote};

/// The first pause between attempts while another client holds the lock.
const FIRST_RETRY: Duration = Duration::from_millis(250);

/// The longest pause between attempts.
const MAX_RETRY: Duration = Duration::from_secs(2);

/// The shortest pause between lease renewals, whatever lease the server
/// grants.
const MIN_RENEWAL: Duration = Duration::from_millis(200);

/// A held lock whose lease a background task keeps renewing.
#[derive(Debug)]
pub(crate) struct HeldLock {
    pub(crate) token: u64,
    renewer: JoinHandle<()>,
}

/// Takes the lock, waiting up to `wait` while another client holds it.
///
/// # Errors
///
/// Fails with exit code 4 when the lock is still held by someone else once
/// the wait is over (at once without `wait`).
pub(crate) async fn acquire(
    remote: &mut Remote,
    host_name: &str,
    wait: Option<Duration>,
) -> Result<HeldLock> {
    let deadline = wait.map(|wait| Instant::now() + wait);
    let mut delay = FIRST_RETRY;
    let mut announced = false;
    loop {
        let message = match remote.acquire_lock(host_name).await? {
            LockAnswer::Granted { token, lease } => return Ok(hold(remote, token, lease)),
            LockAnswer::Held(message) => message,
        };
        let now = Instant::now();
        let Some(deadline) = deadline.filter(|deadline| now < *deadline) else {
            let message = format!("lock held by another client: {message}");
            return Err(Failure::new(Code::LockHeld, message).into());
        };

        if !announced {
            let waiting = deadline - now;
            eprintln!("waiting up to {waiting:.0?} for the lock: {message}");
            announced = true;
        }
        tracing::debug!(holder = %message, "lock held, retrying");
        tokio::time::sleep(jittered(delay).min(deadline - now)).await;
        delay = (delay * 2).min(MAX_RETRY);
    }
}

/// Returns a pause between half of `delay` and all of it, different in
/// each process: clients that started waiting together must not retry in
/// step, or each round only one of them gets the lock.
pub(crate) fn jittered(delay: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    // A multiplicative hash spreads neighbouring pids and times apart.
    let mixed =
        (u64::from(nanos) ^ u64::from(std::process::id())).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let fraction = (mixed >> 32) as f64 / f64::from(u32::MAX);
    delay.mul_f64(0.5 + fraction / 2.0)
}

fn hold(remote: &Remote, token: u64, lease: Duration) -> HeldLock {
    tracing::debug!(token, lease_ms = lease.as_millis(), "lock taken");
    let renewer = tokio::spawn(renew(remote.clone(), token, lease).in_current_span());
    HeldLock { token, renewer }
}

/// Renews the lease every third of its length until aborted. A failed
/// renewal is logged; the commit then fails on its stale token.
async fn renew(mut remote: Remote, token: u64, lease: Duration) {
    let mut period = (lease / 3).max(MIN_RENEWAL);
    loop {
        tokio::time::sleep(period).await;
        match remote.renew_lock(token).await {
            Ok(lease) => period = (lease / 3).max(MIN_RENEWAL),
            Err(err) => tracing::warn!(error = %format!("{err:#}"), "lock renewal failed"),
        }
    }
}

impl HeldLock {
    /// Stops renewing and frees the lock. A failure is only logged: the
    /// lease runs out by itself.
    pub(crate) async fn release(self, remote: &mut Remote) {
        self.renewer.abort();
        match remote.release_lock(self.token).await {
            Ok(()) => tracing::debug!(token = self.token, "lock released"),
            Err(err) => tracing::warn!(error = %format!("{err:#}"), "lock release failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jittered_pause_stays_between_half_and_all_of_the_delay() {
        for _ in 0..100 {
            let pause = jittered(Duration::from_secs(2));
            assert!(pause >= Duration::from_secs(1), "{pause:?}");
            assert!(pause <= Duration::from_secs(2), "{pause:?}");
        }
    }
}
