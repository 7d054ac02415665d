// SPDX-License-Identifier: GPL-2.0-only
//! `struct dm_exception_table` from dm-snap.c: a power-of-two hash of
//! exceptions on `chunk >> hash_shift`.
//!
//! With `hash_shift = DM_CHUNK_CONSECUTIVE_BITS` (the `complete` table) all
//! chunks of an aligned run of 256 share a bucket, so an exception that
//! continues a neighbour in both old and new chunk is folded into it and
//! the table stores ranges, as the kernel's does. With `hash_shift = 0`
//! (the `pending` table) nothing is folded.
//!
//! Each bucket is a vector kept sorted by `old_chunk` (the kernel keeps its
//! hlist ordered the same way). The table does no locking: the snapshot
//! holds it under its own lock.

use crate::errno::{Errno, Result};
use crate::exception::{Chunk, DmException};
use crate::mem::TryVec;

/// `calc_max_buckets`: 2 MiB of the kernel's 16-byte `dm_hlist_head`s.
pub const MAX_BUCKETS: u64 = 2 * 1024 * 1024 / 16;

/// Bucket counts `init_hash_tables` picks for the `complete` and `pending`
/// tables of a snapshot whose COW has `cow_sectors` sectors.
pub fn table_sizes(cow_sectors: u64, chunk_shift: u32) -> (u32, u32) {
    let mut hash_size = (cow_sectors >> chunk_shift).clamp(64, MAX_BUCKETS);
    // rounddown_pow_of_two
    hash_size = 1u64 << (63 - hash_size.leading_zeros());
    let pending = (hash_size >> 3).max(64);
    (hash_size as u32, pending as u32)
}

/// A hash table of exceptions.
pub struct ExceptionTable {
    hash_mask: u32,
    hash_shift: u32,
    table: TryVec<TryVec<DmException>>,
    entries: usize,
}

impl ExceptionTable {
    /// `dm_exception_table_init`: `size` buckets (rounded down to a power
    /// of two, at least 1).
    pub fn new(size: u32, hash_shift: u32) -> Result<Self> {
        let size = if size == 0 { 1 } else { 1u32 << (31 - size.leading_zeros()) };
        let mut table = TryVec::try_with_capacity(size as usize)?;
        for _ in 0..size {
            table.try_push(TryVec::new())?;
        }
        Ok(ExceptionTable { hash_mask: size - 1, hash_shift, table, entries: 0 })
    }

    /// `exception_hash`.
    fn hash(&self, chunk: Chunk) -> usize {
        ((chunk >> self.hash_shift) & self.hash_mask as u64) as usize
    }

    fn bucket(&self, chunk: Chunk) -> &[DmException] {
        self.table.get(self.hash(chunk)).map(|b| &b[..]).unwrap_or(&[])
    }

    /// `dm_lookup_exception`: the exception (range) covering `chunk`.
    pub fn lookup(&self, chunk: Chunk) -> Option<DmException> {
        let b = self.bucket(chunk);
        // Ranges in a bucket are disjoint and sorted: the candidate is the
        // last one starting at or before `chunk`.
        let idx = b.partition_point(|e| e.old_chunk <= chunk);
        let e = b.get(idx.checked_sub(1)?)?;
        e.covers(chunk).then_some(*e)
    }

    /// `dm_insert_exception` of a single-chunk exception `old -> new`,
    /// folding it into a neighbouring range where both chunks continue it.
    pub fn insert(&mut self, old_chunk: Chunk, new_chunk: Chunk) -> Result<()> {
        let h = self.hash(old_chunk);
        let fold = self.hash_shift != 0;
        let b = self.table.get_mut(h).ok_or(Errno::EINVAL)?;
        let idx = b.partition_point(|e| e.old_chunk < old_chunk);
        if fold {
            // Insert after an existing range?
            if let Some(prev) = idx.checked_sub(1).and_then(|i| b.get_mut(i)) {
                let n = prev.consecutive_count() as u64 + 1;
                if prev.old_chunk.checked_add(n) == Some(old_chunk)
                    && prev.first_new_chunk().checked_add(n) == Some(new_chunk)
                    && prev.count_inc()
                {
                    self.entries += 1;
                    return Ok(());
                }
            }
            // Insert before an existing range?
            if let Some(next) = b.get_mut(idx) {
                if old_chunk.checked_add(1) == Some(next.old_chunk)
                    && new_chunk.checked_add(1) == Some(next.first_new_chunk())
                    && next.count_inc()
                {
                    next.old_chunk -= 1;
                    next.new_chunk -= 1;
                    self.entries += 1;
                    return Ok(());
                }
            }
        }
        b.try_insert(idx, DmException::new(old_chunk, new_chunk))?;
        self.entries += 1;
        Ok(())
    }

    /// `__remove_single_exception_chunk` (merging): drops origin chunk
    /// `old_chunk`, which must be the first or last chunk of its range.
    pub fn remove_chunk(&mut self, old_chunk: Chunk) -> Result<()> {
        let h = self.hash(old_chunk);
        let b = self.table.get_mut(h).ok_or(Errno::EINVAL)?;
        let idx = b.partition_point(|e| e.old_chunk <= old_chunk);
        let i = idx.checked_sub(1).ok_or(Errno::EINVAL)?;
        let e = b.get_mut(i).ok_or(Errno::EINVAL)?;
        if !e.covers(old_chunk) {
            crate::dm_err!(
                "snapshots",
                "Corruption detected: exception for block {} is on disk but not in memory",
                old_chunk
            );
            return Err(Errno::EINVAL);
        }
        if e.consecutive_count() == 0 {
            b.remove(i);
        } else if old_chunk == e.old_chunk {
            e.old_chunk += 1;
            e.new_chunk += 1;
            e.count_dec();
        } else if old_chunk == e.old_chunk + e.consecutive_count() as u64 {
            e.count_dec();
        } else {
            crate::dm_err!(
                "snapshots",
                "Attempt to merge block {} from the middle of a chunk range [{} - {}]",
                old_chunk,
                e.old_chunk,
                e.old_chunk + e.consecutive_count() as u64
            );
            return Err(Errno::EINVAL);
        }
        self.entries -= 1;
        Ok(())
    }

    /// Number of chunks remapped (a range counts each of its chunks).
    pub fn len(&self) -> usize {
        self.entries
    }

    /// True when no chunk is remapped.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Number of stored entries (ranges).
    pub fn ranges(&self) -> usize {
        self.table.iter().map(|b| b.len()).sum()
    }

    /// Number of buckets.
    pub fn buckets(&self) -> usize {
        self.table.len()
    }

    /// Bytes of memory the table holds: buckets plus their capacity.
    pub fn allocated_bytes(&self) -> usize {
        let bucket = core::mem::size_of::<TryVec<DmException>>();
        let entry = core::mem::size_of::<DmException>();
        self.table.capacity() * bucket + self.table.iter().map(|b| b.capacity() * entry).sum::<usize>()
    }

    /// Calls `f` with every stored range, bucket by bucket.
    pub fn for_each(&self, mut f: impl FnMut(&DmException)) {
        for b in self.table.iter() {
            for e in b.iter() {
                f(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exception::DM_CHUNK_CONSECUTIVE_BITS as BITS;

    #[test]
    fn sizes_follow_init_hash_tables() {
        // 64 MiB COW, chunk 16: 8192 chunks.
        assert_eq!(table_sizes(131072, 4), (8192, 1024));
        assert_eq!(table_sizes(100, 4), (64, 64));
        assert_eq!(table_sizes(u64::MAX, 4), (131072, 16384));
        assert_eq!(table_sizes(3000 << 4, 4), (2048, 256));
    }

    #[test]
    fn consecutive_inserts_fold_into_one_range() {
        let mut t = ExceptionTable::new(64, BITS).unwrap();
        for i in 0..10 {
            t.insert(100 + i, 2 + i).unwrap();
        }
        assert_eq!((t.len(), t.ranges()), (10, 1));
        assert_eq!(t.lookup(105).map(|e| e.remap(105)), Some(7));
        assert!(t.lookup(110).is_none());
        assert!(t.lookup(99).is_none());
        // Backwards: insert before.
        t.insert(99, 1).unwrap();
        assert_eq!(t.ranges(), 1);
        assert_eq!(t.lookup(99).map(|e| e.remap(99)), Some(1));
        // Not consecutive in the COW: a new range.
        t.insert(110, 50).unwrap();
        assert_eq!(t.ranges(), 2);
        assert_eq!(t.lookup(110).map(|e| e.remap(110)), Some(50));
    }

    #[test]
    fn ranges_stop_at_the_bucket_boundary_and_the_count_limit() {
        let mut t = ExceptionTable::new(64, BITS).unwrap();
        for i in 0..300 {
            t.insert(i, 1000 + i).unwrap();
        }
        // 0..=255 in one bucket, 256.. in the next.
        assert_eq!(t.ranges(), 2);
        for i in 0..300 {
            assert_eq!(t.lookup(i).map(|e| e.remap(i)), Some(1000 + i));
        }
    }

    #[test]
    fn pending_table_never_folds() {
        let mut t = ExceptionTable::new(64, 0).unwrap();
        t.insert(1, 1).unwrap();
        t.insert(2, 2).unwrap();
        assert_eq!(t.ranges(), 2);
        assert!(t.lookup(2).is_some());
    }

    #[test]
    fn merge_removal_from_either_end_only() {
        let mut t = ExceptionTable::new(64, BITS).unwrap();
        for i in 0..5 {
            t.insert(10 + i, 20 + i).unwrap();
        }
        assert_eq!(t.remove_chunk(12), Err(Errno::EINVAL));
        t.remove_chunk(14).unwrap();
        t.remove_chunk(10).unwrap();
        assert!(t.lookup(10).is_none() && t.lookup(14).is_none());
        assert_eq!(t.lookup(11).map(|e| e.remap(11)), Some(21));
        assert_eq!(t.remove_chunk(99), Err(Errno::EINVAL));
        for c in [13, 12, 11] {
            t.remove_chunk(c).unwrap();
        }
        assert!(t.is_empty());
        assert_eq!(t.ranges(), 0);
    }

    #[test]
    fn random_order_matches_a_plain_map() {
        use alloc::collections::BTreeMap;
        let mut t = ExceptionTable::new(64, BITS).unwrap();
        let mut m = BTreeMap::new();
        let mut x = 12345u64;
        for n in 0..5000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let old = (x >> 33) % 4096;
            if m.contains_key(&old) {
                continue;
            }
            m.insert(old, n + 2);
            t.insert(old, n + 2).unwrap();
        }
        for c in 0..4200 {
            assert_eq!(t.lookup(c).map(|e| e.remap(c)), m.get(&c).copied());
        }
        assert_eq!(t.len(), m.len());
    }
}
