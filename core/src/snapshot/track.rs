// SPDX-License-Identifier: GPL-2.0-only
//! Tracked chunks (`track_chunk`, `stop_tracking_chunk`,
//! `__chunk_is_tracked`, `__check_for_conflicting_io` in dm-snap.c).
//!
//! A snapshot read of a chunk that has no exception is remapped to the
//! origin. Until it completes, the origin's chunk must not change, so it
//! is tracked: before an exception for that chunk is made visible (and with
//! it origin writes to the chunk are let through), the maker waits until no
//! tracked bio of the snapshot covers it. Merge writes remapped to the COW
//! are tracked the same way, and a merge waits for them before copying.
//!
//! The kernel keeps the tracked bios on a hash of lists under a spinlock
//! taken with interrupts off, the entry in each bio's per-bio data. Here
//! the table is a fixed array of atomics shared by every snapshot of the
//! driver: tracking takes a free slot with one compare-and-swap, ending
//! the bio stores zero (safe in any completion context, no lock, no
//! allocation); the slot number is the bio's per-bio data. When every slot
//! is busy, `map` defers the bio instead of tracking it.
//!
//! Ordering: a bio is tracked under its snapshot's lock held shared, and
//! an exception is inserted under it held exclusively, after the wait. A
//! reader that missed the exception therefore tracked before the maker took
//! the lock, so the maker's scan sees it; no new tracking of the snapshot
//! can start while the maker holds the lock.

use crate::exception::Chunk;
use crate::sync::{AtomicU64, Ordering};

/// Bios tracked at once across all snapshots (the kernel has no limit; a
/// bio that finds no slot is deferred, which needs none).
#[cfg(not(loom))]
pub const TRACKED_SLOTS: usize = 256;
/// Under loom every atomic is modelled: keep the table small.
#[cfg(loom)]
pub const TRACKED_SLOTS: usize = 4;

/// Bits of a slot's value holding the chunk; the snapshot's registry index
/// + 1 is above them. Chunks beyond are not tracked (the bio is deferred).
const CHUNK_BITS: u32 = 48;

/// The tracked-chunk table of a [`super::SnapshotDriver`].
pub struct ChunkTracker {
    slots: [AtomicU64; TRACKED_SLOTS],
}

impl core::fmt::Debug for ChunkTracker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ChunkTracker").finish_non_exhaustive()
    }
}

fn key(snap: u32, chunk: Chunk) -> Option<u64> {
    if chunk >> CHUNK_BITS != 0 || snap >= u16::MAX as u32 {
        return None;
    }
    Some(((snap as u64 + 1) << CHUNK_BITS) | chunk)
}

impl ChunkTracker {
    /// No bio tracked.
    pub fn new() -> Self {
        ChunkTracker { slots: core::array::from_fn(|_| AtomicU64::new(0)) }
    }

    /// `track_chunk`: records a bio of snapshot `snap` on `chunk`. Returns
    /// its slot + 1 for the bio's per-bio data, or `None` when the table is
    /// full (or the chunk out of range): the caller must not remap then.
    /// Call with the snapshot's lock held (shared is enough).
    pub fn track(&self, snap: u32, chunk: Chunk) -> Option<u32> {
        let k = key(snap, chunk)?;
        // Start where the chunk hashes, so concurrent bios spread out.
        let start = (chunk as usize).wrapping_mul(0x9E37_79B9) % TRACKED_SLOTS;
        for i in 0..TRACKED_SLOTS {
            let n = (start + i) % TRACKED_SLOTS;
            let slot = self.slots.get(n)?;
            if slot.compare_exchange(0, k, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                return u32::try_from(n + 1).ok();
            }
        }
        None
    }

    /// `stop_tracking_chunk`, from `end_io` in any context: never blocks.
    pub fn stop_tracking(&self, token: u32) {
        if let Some(slot) = (token as usize).checked_sub(1).and_then(|n| self.slots.get(n)) {
            slot.store(0, Ordering::Release);
        }
    }

    /// `__chunk_is_tracked` for any chunk in `first..=last` of snapshot `snap`.
    pub fn is_tracked(&self, snap: u32, first: Chunk, last: Chunk) -> bool {
        let (Some(lo), Some(hi)) = (key(snap, first), key(snap, last.min((1 << CHUNK_BITS) - 1))) else {
            return false;
        };
        self.slots.iter().any(|s| {
            let v = s.load(Ordering::Acquire);
            (lo..=hi).contains(&v)
        })
    }

    /// `__check_for_conflicting_io`: waits until no bio of snapshot `snap`
    /// on `first..=last` is in flight. Sleeps: hold no spinlock.
    pub fn wait(&self, snap: u32, first: Chunk, last: Chunk) {
        while self.is_tracked(snap, first, last) {
            crate::sync::sleep_short();
        }
    }
}

impl Default for ChunkTracker {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn tracks_exact_chunks_per_snapshot() {
        let t = ChunkTracker::new();
        let a = t.track(0, 7).unwrap();
        let b = t.track(0, 7).unwrap();
        let c = t.track(1, 9).unwrap();
        assert_ne!(a, b);
        assert!(t.is_tracked(0, 7, 7));
        assert!(t.is_tracked(0, 0, 100));
        assert!(!t.is_tracked(0, 8, 100), "another chunk of the same snapshot");
        assert!(!t.is_tracked(1, 7, 7), "the same chunk of another snapshot");
        assert!(t.is_tracked(1, 9, 9));
        t.stop_tracking(a);
        assert!(t.is_tracked(0, 7, 7), "one of two bios on the chunk is still in flight");
        t.stop_tracking(b);
        assert!(!t.is_tracked(0, 7, 7));
        t.stop_tracking(c);
        assert!(!t.is_tracked(1, 0, u64::MAX));
        t.wait(1, 0, u64::MAX);
    }

    #[test]
    fn full_table_and_huge_chunks_are_refused() {
        let t = ChunkTracker::new();
        let tokens: std::vec::Vec<u32> = (0..TRACKED_SLOTS as u64).map(|c| t.track(3, c).unwrap()).collect();
        assert_eq!(t.track(3, 1_000_000), None, "every slot busy: the caller defers");
        assert_eq!(ChunkTracker::new().track(0, 1 << 48), None);
        for k in tokens {
            t.stop_tracking(k);
        }
        assert!(t.track(3, 1).is_some());
        t.stop_tracking(0);
        t.stop_tracking(u32::MAX);
    }

    #[test]
    fn wait_returns_when_the_bio_ends() {
        let t = std::sync::Arc::new(ChunkTracker::new());
        let tok = t.track(2, 5).unwrap();
        let t2 = t.clone();
        let h = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            t2.stop_tracking(tok);
        });
        let start = std::time::Instant::now();
        t.wait(2, 5, 5);
        assert!(start.elapsed() >= std::time::Duration::from_millis(15));
        h.join().unwrap();
    }
}
