//! Replay detection in memory: a bounded set of accepted signature hashes, each kept until the
//! signature would be stale anyway. Checked last, after a request passed everything else, so a
//! tampered copy of an accepted request is refused for what is wrong with it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::RedisReplay;
use crate::reject::{Denial, Reject};

const SHARDS: usize = 16;

#[derive(Default)]
struct Shard {
    seen: HashMap<[u8; 32], SystemTime>,
    expiry: BinaryHeap<Reverse<(SystemTime, [u8; 32])>>,
}

impl Shard {
    fn evict(&mut self, now: SystemTime) {
        while let Some(Reverse((until, token))) = self.expiry.peek().copied() {
            if until > now {
                break;
            }
            self.expiry.pop();
            if self.seen.get(&token) == Some(&until) {
                self.seen.remove(&token);
            }
        }
    }
}

/// Accepted signatures, remembered until they expire; at most `capacity` at once.
pub struct ReplayStore {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
}

impl std::fmt::Debug for ReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayStore")
            .field("capacity", &(self.per_shard * SHARDS))
            .finish()
    }
}

impl ReplayStore {
    /// A store remembering at most about `capacity` signatures.
    pub fn new(capacity: usize) -> Self {
        ReplayStore {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// Refuses `token` when it was recorded before and is not yet expired; otherwise records it
    /// until `until`. When the store is full of unexpired entries the request is refused
    /// (`replay_store_unavailable`) rather than forgetting an entry that could then be replayed.
    pub fn check_and_record(
        &self,
        token: [u8; 32],
        until: SystemTime,
        now: SystemTime,
    ) -> Result<(), Denial> {
        let shard = &self.shards[token[0] as usize % SHARDS];
        let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
        s.evict(now);
        if let Some(prev) = s.seen.get(&token)
            && *prev > now
        {
            return Err(Denial::new(
                Reject::Replayed,
                "this signature was already accepted inside its validity window",
            ));
        }
        if s.seen.len() >= self.per_shard {
            return Err(Denial::new(
                Reject::ReplayStoreUnavailable,
                format!(
                    "the in-memory replay store is full ({} unexpired signatures); raise signature.replay_capacity or lower signature.max_age",
                    self.per_shard * SHARDS
                ),
            ));
        }
        if until > now {
            s.seen.insert(token, until);
            s.expiry.push(Reverse((until, token)));
        }
        Ok(())
    }

    /// How many signatures are remembered (expired ones may still be counted until evicted).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).seen.len())
            .sum()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The replay store a snapshot checks: in this process, or in Redis shared with the sidecars of
/// the other replicas.
#[derive(Debug, Clone)]
pub enum Replay {
    /// `signature.replay: memory`
    Memory(Arc<ReplayStore>),
    /// `signature.replay: redis://...`
    Redis(Arc<RedisReplay>),
}

impl Replay {
    /// Refuses `token` when it was accepted before and is not yet expired; otherwise records it
    /// until the end of the second `until` falls in. See [`ReplayStore::check_and_record`] and
    /// [`RedisReplay::check_and_record`].
    pub async fn check_and_record(
        &self,
        token: [u8; 32],
        until: SystemTime,
        now: SystemTime,
    ) -> Result<(), Denial> {
        // The verifier compares whole seconds: a signature fresh until second `u` is still
        // accepted at u.999, so it is remembered through the whole of that second. Without this
        // margin a request replayed in the last second of its window would pass.
        let until = until + Duration::from_secs(1);
        match self {
            Replay::Memory(m) => m.check_and_record(token, until, now),
            Replay::Redis(r) => r.check_and_record(token, until, now).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn second_use_is_refused_until_expiry() {
        let r = ReplayStore::new(100);
        let tok = [7u8; 32];
        r.check_and_record(tok, t(1300), t(1000)).unwrap();
        let e = r.check_and_record(tok, t(1300), t(1010)).unwrap_err();
        assert_eq!(e.reject, Reject::Replayed);
        // Another token (in the same shard) is fine.
        r.check_and_record([7 + SHARDS as u8; 32], t(1300), t(1010))
            .unwrap();
        // After expiry the entry is evicted.
        r.check_and_record(tok, t(1700), t(1301)).unwrap();
        assert_eq!(r.len(), 1);
    }

    #[tokio::test]
    async fn replay_is_refused_through_the_last_second_of_the_window() {
        let r = Replay::Memory(Arc::new(ReplayStore::new(100)));
        let tok = [9u8; 32];
        r.check_and_record(tok, t(1000), t(990)).await.unwrap();
        // At 1000.9 the verifier (whole seconds) still accepts a signature fresh until 1000.
        let late = t(1000) + Duration::from_millis(900);
        let e = r.check_and_record(tok, t(1000), late).await.unwrap_err();
        assert_eq!(e.reject, Reject::Replayed);
        r.check_and_record(tok, t(1000), t(1001)).await.unwrap();
    }

    #[test]
    fn full_store_fails_closed_and_recovers() {
        let r = ReplayStore::new(SHARDS); // one per shard
        let a = [0u8; 32];
        let mut b = [0u8; 32];
        b[1] = 1; // same shard as a
        r.check_and_record(a, t(200), t(100)).unwrap();
        let e = r.check_and_record(b, t(200), t(100)).unwrap_err();
        assert_eq!(e.reject, Reject::ReplayStoreUnavailable);
        r.check_and_record(b, t(400), t(201)).unwrap();
    }

    #[test]
    fn concurrent_use_records_once() {
        let r = std::sync::Arc::new(ReplayStore::new(1000));
        let ok = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let r = r.clone();
                let ok = ok.clone();
                std::thread::spawn(move || {
                    if r.check_and_record([42; 32], t(500), t(100)).is_ok() {
                        ok.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(ok.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
