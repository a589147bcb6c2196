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

/// What the store keeps of a token: its first 128 bits (a SHA-256 prefix: two different accepted
/// signatures share one with a probability of about n²/2¹²⁹).
type Tag = [u8; 16];

/// Whole seconds since the epoch; an entry stays while `until > now_secs(now)`.
type Secs = u32;

fn tag_of(token: &[u8; 32]) -> Tag {
    let mut t = [0u8; 16];
    t.copy_from_slice(&token[..16]);
    t
}

/// `now` in whole seconds, rounded down.
fn now_secs(now: SystemTime) -> Secs {
    let s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Secs::try_from(s).unwrap_or(Secs::MAX)
}

/// `until` in whole seconds, rounded up: an entry is never forgotten before its time.
fn until_secs(until: SystemTime) -> Secs {
    let d = until
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    Secs::try_from(s).unwrap_or(Secs::MAX)
}

#[derive(Default)]
struct Shard {
    seen: HashMap<Tag, Secs>,
    expiry: BinaryHeap<Reverse<(Secs, Tag)>>,
    /// The table's room without tombstones: the largest `seen.capacity()` observed (removals
    /// leave tombstones that lower `capacity()` until the next rehash).
    room: usize,
}

impl Shard {
    /// Records `tag` until `until`, keeping the table at most half full.
    ///
    /// Expired entries leave tombstones; when they use up the table's free room, the standard
    /// table rehashes in place if at most half of it is live, and otherwise doubles. Under a steady
    /// load (as many signatures expiring as arriving) a table between half and fully live would
    /// double minutes into the load, when the tombstones run out its room. Doubling as soon as
    /// more than half is live instead sizes the table while the store fills: from then on the
    /// churn rehashes in place and the memory stays flat.
    fn record(&mut self, tag: Tag, until: Secs) {
        self.seen.insert(tag, until);
        self.expiry.push(Reverse((until, tag)));
        self.room = self.room.max(self.seen.capacity());
        let live = self.seen.len();
        if live + 1 > self.room / 2 {
            // More than the free room: the table is rebuilt with at least twice `room`.
            self.seen.reserve(self.room + 1 - live);
            self.room = self.seen.capacity();
        }
    }

    fn evict(&mut self, now: Secs) {
        while let Some(Reverse((until, tag))) = self.expiry.peek().copied() {
            if until > now {
                break;
            }
            self.expiry.pop();
            if self.seen.get(&tag) == Some(&until) {
                self.seen.remove(&tag);
            }
        }
        // After a burst, hand the room back once an eighth of it is live, down to about four
        // times the live entries: between this threshold and `record`'s half, so the next
        // entries do not grow the table straight back.
        // Small tables are left alone: their room is a few kilobytes.
        let live = self.seen.len();
        if self.room > 1024 && live < self.room / 8 {
            self.seen.shrink_to(live * 4);
            self.expiry.shrink_to(live * 2);
            self.room = self.seen.capacity();
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
        let (tag, until, now) = (tag_of(&token), until_secs(until), now_secs(now));
        let shard = &self.shards[tag[0] as usize % SHARDS];
        let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
        s.evict(now);
        if let Some(prev) = s.seen.get(&tag)
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
            s.record(tag, until);
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

    /// Each shard's table room (see [`Shard::record`]).
    #[cfg(test)]
    fn rooms(&self) -> Vec<usize> {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).room)
            .collect()
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
    fn a_fraction_of_a_second_is_remembered_as_the_whole_second() {
        let r = ReplayStore::new(100);
        let tok = [3u8; 32];
        let until = t(1000) + Duration::from_millis(500);
        r.check_and_record(tok, until, t(990)).unwrap();
        let late = t(1000) + Duration::from_millis(900);
        let e = r.check_and_record(tok, until, late).unwrap_err();
        assert_eq!(e.reject, Reject::Replayed);
        r.check_and_record(tok, until, t(1001)).unwrap();
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

    fn distinct(n: u64) -> [u8; 32] {
        let mut t = [0u8; 32];
        t.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &n.to_be_bytes()).as_ref());
        t
    }

    /// Drives `r` for `seconds` from `start`: `rate` new signatures a second, each remembered for
    /// 60 s. Returns the next token number.
    fn churn(r: &ReplayStore, start: u64, seconds: u64, rate: u64, mut n: u64) -> u64 {
        for s in start..start + seconds {
            for _ in 0..rate {
                r.check_and_record(distinct(n), t(s + 60), t(s)).unwrap();
                n += 1;
            }
        }
        n
    }

    #[test]
    fn steady_load_keeps_the_tables_size() {
        // 200 signatures a second for 30 minutes, each remembered for a minute: about 12,000
        // live. Once full, one arrives for each that expires; the tables must not grow after that.
        let r = ReplayStore::new(1_000_000);
        let n = churn(&r, 1000, 90, 200, 0);
        let filled = r.rooms();
        let live = r.len();
        churn(&r, 1090, 1800, 200, n);
        assert_eq!(r.rooms(), filled, "a table grew under a steady load");
        assert!(
            r.len().abs_diff(live) < live / 10,
            "{} live, {live} at first",
            r.len()
        );
    }

    #[test]
    fn room_is_handed_back_after_a_burst() {
        let r = ReplayStore::new(1_000_000);
        let n = churn(&r, 1000, 60, 2000, 0);
        let burst: usize = r.rooms().iter().sum();
        // A trickle afterwards: the burst's entries expire and the tables shrink.
        let n = churn(&r, 1060, 120, 100, n);
        let after: usize = r.rooms().iter().sum();
        assert!(
            after * 8 < burst,
            "room {burst} during the burst, {after} after"
        );
        assert!(r.len() < 7000, "{} live after the trickle", r.len());
        // The trickle goes on: the shrunk tables keep their size (no grow right after a shrink,
        // no shrink-grow cycle).
        let shrunk = r.rooms();
        churn(&r, 1180, 600, 100, n);
        assert_eq!(r.rooms(), shrunk);
    }

    #[test]
    fn a_shrunk_table_takes_the_next_entries_without_growing() {
        let mut shard = Shard::default();
        for i in 0..4096 {
            shard.record(tag_of(&distinct(i)), 100);
        }
        // 112 entries stay: a table shrunk to twice that (room 224) would double at the next one.
        for i in 0..112 {
            shard.record(tag_of(&distinct(10_000 + i)), 200);
        }
        let burst = shard.room;
        shard.evict(150);
        assert_eq!(shard.seen.len(), 112);
        let shrunk = shard.room;
        assert!(shrunk * 8 < burst, "room {burst} → {shrunk}");
        for i in 0..8 {
            shard.record(tag_of(&distinct(20_000 + i)), 200);
        }
        assert_eq!(shard.room, shrunk);
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
