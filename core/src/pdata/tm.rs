// SPDX-License-Identifier: GPL-2.0-only
//! The transaction manager and metadata space map, write side
//! (`dm-transaction-manager.c`, `dm-space-map-metadata.c`).
//!
//! The rules that make a crash harmless (commit "dm transaction manager:
//! fix corruption due to non-atomic transaction commit"): never overwrite a
//! block of the previous transaction — a block shadowed or freed in this
//! transaction stays untouched until the superblock that stops using it is
//! on disk — and write the superblock last, after everything else is
//! flushed. The space map itself is shadowed too: every commit writes the
//! changed bitmaps and a new index block at fresh locations.
//!
//! Counts are kept exactly in memory (one byte per block, at most 4 MiB for
//! the largest metadata device). dm-clone never shares blocks, so counts
//! stay at 0 or 1; counts above 2 (the overflow btree) are refused.

use super::bitset;
use super::block::{Block, BlockManager, BLOCK_SIZE};
use super::btree::{empty_leaf, NODE_VALIDATOR};
use super::space_map::{
    set_bitmap_entry, DiskSmRoot, MetadataSpaceMap, BITMAP_HEADER_SIZE, BITMAP_VALIDATOR, ENTRIES_PER_BLOCK,
    INDEX_VALIDATOR, MAX_METADATA_BITMAPS, METADATA_MAX_BLOCKS,
};
use crate::endian::{write_le32, write_le64, Le64};
use crate::errno::{Errno, Result};
use crate::mem::{self, TryVec};
use crate::platform::{BlockDevice, ReqFlags};

/// Transaction manager + metadata space map of one metadata device.
pub struct TransactionManager {
    nr_blocks: u64,
    counts: TryVec<u8>,
    /// Allocated in this transaction: may be written in place.
    shadow: TryVec<u64>,
    /// Freed in this transaction: not reusable until the commit.
    freed: TryVec<u64>,
    index_block: Block,
    bitmaps: TryVec<Block>,
    bitmap_dirty: TryVec<bool>,
    ref_count_root: Block,
    hint: u64,
}

impl TransactionManager {
    fn empty(nr_blocks: u64) -> Result<Self> {
        let nr_blocks = nr_blocks.min(METADATA_MAX_BLOCKS);
        let nbm = nr_blocks.div_ceil(ENTRIES_PER_BLOCK) as usize;
        if nbm == 0 || nbm > MAX_METADATA_BITMAPS {
            return Err(Errno::EINVAL);
        }
        let words = bitset::words_for(nr_blocks) as usize;
        Ok(TransactionManager {
            nr_blocks,
            counts: mem::try_zeroed(nr_blocks as usize)?,
            shadow: TryVec::try_from_elem(0, words)?,
            freed: TryVec::try_from_elem(0, words)?,
            index_block: 0,
            bitmaps: TryVec::try_from_elem(0, nbm)?,
            bitmap_dirty: TryVec::try_from_elem(true, nbm)?,
            ref_count_root: 0,
            hint: 0,
        })
    }

    /// `dm_tm_create_with_sm` + `dm_sm_metadata_create`: a new map over
    /// `nr_blocks` (clamped to the metadata limit) with `superblock`
    /// counted, its index and bitmaps, and an empty ref-count btree.
    pub fn create<D: BlockDevice>(bm: &BlockManager<D>, nr_blocks: u64, superblock: Block) -> Result<Self> {
        let mut tm = Self::empty(nr_blocks.min(bm.nr_blocks()))?;
        tm.inc(superblock)?;
        tm.index_block = tm.new_block()?;
        for i in 0..tm.bitmaps.len() {
            let b = tm.new_block()?;
            if let Some(s) = tm.bitmaps.get_mut(i) {
                *s = b;
            }
        }
        tm.ref_count_root = tm.new_block()?;
        let mut leaf = empty_leaf(4)?;
        bm.write(tm.ref_count_root, &mut leaf, &NODE_VALIDATOR, ReqFlags::empty())?;
        Ok(tm)
    }

    /// `dm_tm_open_with_sm`: loads the committed counts.
    pub fn open<D: BlockDevice>(bm: &BlockManager<D>, root: DiskSmRoot) -> Result<Self> {
        let sm = MetadataSpaceMap::open(bm, root).map_err(|e| e.kind.errno())?;
        let counts = sm.counts(bm).map_err(|e| e.kind.errno())?;
        let mut tm = Self::empty(root.nr_blocks.get())?;
        if tm.nr_blocks != root.nr_blocks.get() || sm.index.len() != tm.bitmaps.len() {
            return Err(Errno::EINVAL);
        }
        for (b, &c) in counts.iter().enumerate() {
            if c > 2 {
                // Shared metadata blocks never occur in dm-clone metadata.
                return Err(Errno::EOPNOTSUPP);
            }
            if let Some(x) = tm.counts.get_mut(b) {
                *x = c as u8;
            }
        }
        tm.index_block = root.bitmap_root.get();
        for (i, ie) in sm.index.iter().enumerate() {
            if let Some(s) = tm.bitmaps.get_mut(i) {
                *s = ie.blocknr.get();
            }
        }
        tm.bitmap_dirty.fill(false);
        tm.ref_count_root = root.ref_count_root.get();
        Ok(tm)
    }

    /// Blocks the map covers.
    pub fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    /// Blocks in use (`nr_allocated`).
    pub fn nr_allocated(&self) -> u64 {
        self.counts.iter().filter(|&&c| c > 0).count() as u64
    }

    /// Free blocks (`dm_sm_get_nr_free`).
    pub fn nr_free(&self) -> u64 {
        self.nr_blocks - self.nr_allocated()
    }

    /// Reference count of `b`.
    pub fn count(&self, b: Block) -> u32 {
        self.counts.get(b as usize).copied().unwrap_or(0) as u32
    }

    fn mark(&mut self, b: Block) {
        if let Some(d) = self.bitmap_dirty.get_mut((b / ENTRIES_PER_BLOCK) as usize) {
            *d = true;
        }
    }

    /// `dm_sm_inc_block`.
    pub fn inc(&mut self, b: Block) -> Result<()> {
        let c = self.counts.get_mut(b as usize).ok_or(Errno::EINVAL)?;
        if *c >= 2 {
            return Err(Errno::EOPNOTSUPP);
        }
        *c += 1;
        self.mark(b);
        Ok(())
    }

    /// `dm_sm_dec_block`; a block reaching zero is not reused before the commit.
    pub fn dec(&mut self, b: Block) -> Result<()> {
        let c = self.counts.get_mut(b as usize).ok_or(Errno::EINVAL)?;
        if *c == 0 {
            return Err(Errno::EINVAL);
        }
        *c -= 1;
        if *c == 0 {
            bitset::set(&mut self.freed, b);
        }
        self.mark(b);
        Ok(())
    }

    /// `dm_sm_new_block`: a block free now and in the last committed
    /// transaction, counted and marked as a shadow (writable in place).
    pub fn new_block(&mut self) -> Result<Block> {
        let n = self.nr_blocks;
        for k in 0..n {
            let b = (self.hint + k) % n;
            if self.counts.get(b as usize) == Some(&0) && !bitset::test(&self.freed, b) {
                self.inc(b)?;
                bitset::set(&mut self.shadow, b);
                self.hint = b + 1;
                return Ok(b);
            }
        }
        Err(Errno::ENOSPC)
    }

    /// True when `b` was allocated in this transaction (`is_shadow`).
    pub fn is_shadow(&self, b: Block) -> bool {
        bitset::test(&self.shadow, b)
    }

    /// `dm_tm_shadow_block` without the copy: the location a modified
    /// copy of `b` must be written to (itself when already a shadow).
    pub fn shadow(&mut self, b: Block) -> Result<Block> {
        if self.is_shadow(b) {
            return Ok(b);
        }
        let n = self.new_block()?;
        self.dec(b)?;
        Ok(n)
    }

    /// `dm_tm_pre_commit`: writes the space map (changed bitmaps and a new
    /// index, all at fresh locations) and flushes every block written so
    /// far. Returns the root to store in the superblock.
    pub fn pre_commit<D: BlockDevice>(&mut self, bm: &BlockManager<D>) -> Result<DiskSmRoot> {
        // Shadowing the index and bitmaps changes counts, which may dirty
        // more bitmaps: repeat until every dirty bitmap is a shadow.
        self.index_block = self.shadow(self.index_block)?;
        loop {
            let mut changed = false;
            for i in 0..self.bitmaps.len() {
                let (b, dirty) = (self.bitmaps.get(i).copied().unwrap_or(0), self.bitmap_dirty.get(i) == Some(&true));
                if dirty && !self.is_shadow(b) {
                    let nb = self.shadow(b)?;
                    if let Some(s) = self.bitmaps.get_mut(i) {
                        *s = nb;
                    }
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let mut index = mem::try_zeroed(BLOCK_SIZE)?;
        let mut data = mem::try_zeroed(BLOCK_SIZE)?;
        for i in 0..self.bitmaps.len() {
            let first = i as u64 * ENTRIES_PER_BLOCK;
            let mut nr_free = 0u32;
            let mut first_free = None;
            data.fill(0);
            for e in 0..ENTRIES_PER_BLOCK {
                let c = if first + e < self.nr_blocks { self.count(first + e) } else { 0 };
                if c == 0 {
                    nr_free += 1;
                    first_free.get_or_insert(e);
                }
                set_bitmap_entry(data.get_mut(BITMAP_HEADER_SIZE..).unwrap_or(&mut []), e, c);
            }
            let b = self.bitmaps.get(i).copied().unwrap_or(0);
            if self.bitmap_dirty.get(i) == Some(&true) {
                bm.write(b, &mut data, &BITMAP_VALIDATOR, ReqFlags::empty())?;
            }
            let off = 16 + 16 * i;
            write_le64(&mut index, off, b).ok_or(Errno::EINVAL)?;
            write_le32(&mut index, off + 8, nr_free).ok_or(Errno::EINVAL)?;
            write_le32(&mut index, off + 12, first_free.unwrap_or(0) as u32).ok_or(Errno::EINVAL)?;
        }
        bm.write(self.index_block, &mut index, &INDEX_VALIDATOR, ReqFlags::empty())?;
        bm.flush()?;
        Ok(DiskSmRoot {
            nr_blocks: Le64::new(self.nr_blocks),
            nr_allocated: Le64::new(self.nr_allocated()),
            bitmap_root: Le64::new(self.index_block),
            ref_count_root: Le64::new(self.ref_count_root),
        })
    }

    /// `dm_tm_commit`: the superblock is on disk; freed blocks become
    /// reusable and nothing is a shadow any more.
    pub fn end_transaction(&mut self) {
        self.freed.fill(0);
        self.shadow.fill(0);
        self.bitmap_dirty.fill(false);
    }

    /// Every block the map itself uses (index and bitmaps).
    pub fn own_blocks(&self) -> impl Iterator<Item = Block> + '_ {
        core::iter::once(self.index_block).chain(self.bitmaps.iter().copied())
    }
}
