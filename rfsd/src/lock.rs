//! The per-volume write lock with a lease and a fencing token.
//!
//! A commit holds the lock of its volume. The lease runs on tokio's
//! monotonic clock and frees the lock by itself when the holder stops
//! renewing it; the fencing token grows by one with every grant (it comes
//! from the store, so it keeps growing across restarts) and every write must
//! carry the current one, so a holder that was paused past its lease can
//! never write after someone else got the lock.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::grants::Peer;

/// The default lease of a lock.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

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
    /// Returns a description for messages: who, since when, lease left.
    pub fn describe(&self, now: Instant) -> String {
        let left = self.expires.saturating_duration_since(now).as_secs();
        let since = crate::timefmt::rfc3339(self.since);
        format!(
            "{} (host {:?}, pid {}) since {since}, token {}; the lease runs out in {left}s unless renewed",
            self.holder.peer, self.holder.host_name, self.holder.process_id, self.token
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
