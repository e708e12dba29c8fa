//! The per-volume write lock with a lease and a fencing token.
//!
//! A commit holds the lock of its volume. The lease runs on tokio's
//! monotonic clock and frees the lock by itself when the holder stops
//! renewing it; the fencing token grows by one with every grant (it comes
//! from the store, so it keeps growing across restarts) and every write must
//! carry the current one, so a holder that was paused past its lease can
//! never write after someone else got the lock. The store checks the token
//! once more in the transaction that records a version.
//!
//! A `.nft-lock` that another program wrote into a volume (see
//! [`crate::lock_file`]) also holds the lock, for "unknown legacy holder",
//! until it is older than the configured limit.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::grants::Peer;

/// The default lease of a lock.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The default age after which a legacy `.nft-lock` is cleared.
pub const DEFAULT_LEGACY_MAX_AGE: Duration = Duration::from_secs(10 * 60);

/// The holder named for a `.nft-lock` that another program wrote.
pub const LEGACY_HOLDER: &str = "unknown legacy holder";

/// Who holds a lock, by their own account and as the server saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The connection the lock was taken from.
    pub peer: Peer,
    /// The host name the client reported.
    pub host_name: String,
    /// The process id the client reported.
    pub process_id: u32,
}

/// A granted lock.
#[derive(Debug, Clone)]
pub struct Held {
    /// Who holds it.
    pub holder: Holder,
    /// The fencing token of this grant.
    pub token: u64,
    /// When the lease runs out unless renewed.
    pub expires: Instant,
    /// When it was granted, for people.
    pub since: SystemTime,
}

impl Held {
    /// Returns a description for messages: who, since when, and when the
    /// lease runs out.
    pub fn describe(&self, now: Instant) -> String {
        let left = self.expires.saturating_duration_since(now);
        let since = crate::timefmt::rfc3339(self.since);
        let until = crate::timefmt::rfc3339(SystemTime::now() + left);
        format!(
            "{} (host {:?}, pid {}) since {since}, token {}; the lease runs out \
             at {until} (in {}s) unless renewed",
            self.holder.peer,
            self.holder.host_name,
            self.holder.process_id,
            self.token,
            left.as_secs()
        )
    }
}

/// Why a lock operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// Someone else holds the lock.
    #[error("lock of volume {volume:?} is held by {holder}")]
    Held {
        /// The volume.
        volume: String,
        /// Who holds it, for people.
        holder: String,
    },
    /// A `.nft-lock` written by another program holds the lock.
    #[error(
        "lock of volume {volume:?} is held by {LEGACY_HOLDER} (a .nft-lock \
         written by another program {}s ago); rfsd clears it when it is \
         {}s old, or now with `rfsd clear-lock --volume {volume}`",
        age.as_secs(),
        max_age.as_secs()
    )]
    Legacy {
        /// The volume.
        volume: String,
        /// How old the file is.
        age: Duration,
        /// The age at which rfsd clears it.
        max_age: Duration,
    },
    /// The token is not the current one: the lease ran out or the lock was
    /// freed and granted again.
    #[error(
        "lock token {token} of volume {volume:?} is no longer valid (lease expired or lock released)"
    )]
    Stale {
        /// The volume.
        volume: String,
        /// The token the client sent.
        token: u64,
    },
}

/// The lock state of one volume.
#[derive(Debug, Default)]
pub struct LockSlot {
    held: Option<Held>,
}

impl LockSlot {
    /// Returns the current holder, first freeing a lock whose lease ran out.
    /// The freed grant is returned too, so the caller can log it and remove
    /// the lock file.
    pub fn current(&mut self, now: Instant) -> (Option<&Held>, Option<Held>) {
        let expired = match &self.held {
            Some(held) if held.expires <= now => self.held.take(),
            _ => None,
        };
        (self.held.as_ref(), expired)
    }

    /// Returns whether a grant is recorded, even one whose lease ran out
    /// and that [`LockSlot::current`] has not freed yet.
    pub fn is_held(&self) -> bool {
        self.held.is_some()
    }

    /// Grants the lock to `holder` with `token` if it is free.
    ///
    /// # Errors
    ///
    /// Returns [`LockError::Held`] naming the holder when it is not free.
    pub fn acquire(
        &mut self,
        volume: &str,
        holder: Holder,
        token: u64,
        lease: Duration,
        now: Instant,
    ) -> Result<Held, LockError> {
        if let (Some(held), _) = self.current(now) {
            return Err(LockError::Held {
                volume: volume.to_owned(),
                holder: held.describe(now),
            });
        }
        let held = Held {
            holder,
            token,
            expires: now + lease,
            since: SystemTime::now(),
        };
        self.held = Some(held.clone());
        Ok(held)
    }

    /// Checks that `token` is the live grant, without changing anything.
    ///
    /// # Errors
    ///
    /// Returns [`LockError::Stale`] otherwise.
    pub fn check(&mut self, volume: &str, token: u64, now: Instant) -> Result<&Held, LockError> {
        match self.current(now).0 {
            Some(held) if held.token == token => Ok(held),
            _ => Err(LockError::Stale {
                volume: volume.to_owned(),
                token,
            }),
        }
    }

    /// Extends the lease of the grant with `token`.
    ///
    /// # Errors
    ///
    /// Returns [`LockError::Stale`] when `token` is not the live grant.
    pub fn renew(
        &mut self,
        volume: &str,
        token: u64,
        lease: Duration,
        now: Instant,
    ) -> Result<(), LockError> {
        self.check(volume, token, now)?;
        if let Some(held) = self.held.as_mut() {
            held.expires = now + lease;
        }
        Ok(())
    }

    /// Frees the lock if `token` is the live grant; returns the freed grant.
    pub fn release(&mut self, token: u64) -> Option<Held> {
        match &self.held {
            Some(held) if held.token == token => self.held.take(),
            _ => None,
        }
    }

    /// Frees the lock whoever holds it (the operator's `clear-lock`);
    /// returns the freed grant, even one whose lease already ran out.
    pub fn clear(&mut self) -> Option<Held> {
        self.held.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(addr: &str) -> Holder {
        let peer = Peer {
            addr: addr.parse().unwrap(),
            key_hash: None,
        };
        Holder {
            peer,
            host_name: "fw1".into(),
            process_id: 42,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_client_is_refused_while_the_lease_runs() {
        let mut slot = LockSlot::default();
        slot.acquire(
            "local",
            holder("127.0.0.2"),
            1,
            DEFAULT_LEASE,
            Instant::now(),
        )
        .unwrap();

        let refused = slot.acquire(
            "local",
            holder("127.0.0.5"),
            2,
            DEFAULT_LEASE,
            Instant::now(),
        );

        let Err(LockError::Held { holder, .. }) = refused else {
            panic!("expected held, got {refused:?}")
        };
        assert!(
            holder.contains("127.0.0.2") && holder.contains("pid 42"),
            "{holder}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_lease_frees_the_lock_and_fences_the_old_token() {
        let mut slot = LockSlot::default();
        slot.acquire(
            "local",
            holder("127.0.0.2"),
            1,
            DEFAULT_LEASE,
            Instant::now(),
        )
        .unwrap();

        tokio::time::advance(DEFAULT_LEASE + Duration::from_secs(1)).await;
        let (_, expired) = slot.current(Instant::now());
        slot.acquire(
            "local",
            holder("127.0.0.5"),
            2,
            DEFAULT_LEASE,
            Instant::now(),
        )
        .unwrap();

        assert_eq!(expired.unwrap().token, 1);
        assert!(slot.check("local", 1, Instant::now()).is_err());
        assert!(slot.check("local", 2, Instant::now()).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn the_refusal_says_when_the_lease_runs_out() {
        let mut slot = LockSlot::default();
        let lease = Duration::from_secs(30);
        slot.acquire("local", holder("127.0.0.2"), 1, lease, Instant::now())
            .unwrap();
        tokio::time::advance(Duration::from_secs(10)).await;

        let refused = slot.acquire("local", holder("127.0.0.5"), 2, lease, Instant::now());

        let message = refused.unwrap_err().to_string();
        assert!(message.contains("the lease runs out at "), "{message}");
        assert!(message.contains("(in 20s)"), "{message}");
    }

    #[tokio::test(start_paused = true)]
    async fn clearing_frees_the_lock_at_once_and_fences_its_token() {
        let mut slot = LockSlot::default();
        slot.acquire(
            "local",
            holder("127.0.0.2"),
            4,
            DEFAULT_LEASE,
            Instant::now(),
        )
        .unwrap();

        let cleared = slot.clear();

        assert_eq!(cleared.map(|held| held.token), Some(4));
        assert!(slot.check("local", 4, Instant::now()).is_err());
        assert!(slot.current(Instant::now()).0.is_none());
        assert!(slot.clear().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_renewed_in_time_never_runs_out() {
        let mut slot = LockSlot::default();
        let lease = Duration::from_secs(3);
        slot.acquire("local", holder("127.0.0.2"), 9, lease, Instant::now())
            .unwrap();

        for _ in 0..10 {
            tokio::time::advance(lease / 3).await;
            slot.renew("local", 9, lease, Instant::now()).unwrap();
        }
        tokio::time::advance(lease + Duration::from_millis(1)).await;

        assert!(slot.check("local", 9, Instant::now()).is_err());
        assert!(slot.renew("local", 9, lease, Instant::now()).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn renewing_keeps_the_lock() {
        let mut slot = LockSlot::default();
        slot.acquire(
            "local",
            holder("127.0.0.2"),
            7,
            DEFAULT_LEASE,
            Instant::now(),
        )
        .unwrap();

        tokio::time::advance(DEFAULT_LEASE / 2).await;
        slot.renew("local", 7, DEFAULT_LEASE, Instant::now())
            .unwrap();
        tokio::time::advance(DEFAULT_LEASE / 2 + Duration::from_secs(1)).await;

        assert!(slot.check("local", 7, Instant::now()).is_ok());
        assert!(slot.release(7).is_some());
        assert!(slot.current(Instant::now()).0.is_none());
    }
}
