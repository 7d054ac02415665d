// SPDX-License-Identifier: GPL-2.0-only
//! The metadata space map, write side (`dm-space-map-metadata.c`,
//! `sm_ll_new_metadata`, `sm_ll_commit`): the counts of the running
//! transaction, allocation, and writing the changed bitmaps and the index.
//!
//! Counts are kept exactly in memory (one byte per block, at most 4 MiB for
//! the largest metadata device). dm-clone never shares blocks, so counts
//! stay at 0 or 1; counts above 2 (the overflow btree) are refused.
//!
//! Where the bitmaps and the index go is the transaction manager's choice
//! ([`TransactionManager::pre_commit`](crate::pdata::tm::TransactionManager::pre_commit)
//! shadows them through [`SmMetadata::set_index_block`] and
//! [`SmMetadata::set_bitmap`] before [`SmMetadata::write`]).

use super::{
    set_bitmap_entry, DiskBitmapHeader, DiskIndexEntry, DiskMetadataIndexHeader, DiskSmRoot, MetadataSpaceMap,
    BITMAP_VALIDATOR, ENTRIES_PER_BLOCK, INDEX_VALIDATOR, MAX_METADATA_BITMAPS, METADATA_MAX_BLOCKS,
};
use crate::endian::{Le32, Le64, OnDisk};
use crate::errno::{Errno, Result};
use crate::mem::{self, TryVec};
use crate::pdata::bitset;
use crate::pdata::block::{Block, BlockManager, BLOCK_SIZE};
use crate::pdata::btree::{empty_leaf, NODE_VALIDATOR};
use crate::platform::{BlockDevice, ReqFlags};

/// `struct sm_metadata`: the metadata space map of one metadata device.
pub struct SmMetadata {
    nr_blocks: u64,
    counts: TryVec<u8>,
    /// Freed in this transaction: not reusable until the commit.
    freed: TryVec<u64>,
    index_block: Block,
    bitmaps: TryVec<Block>,
    bitmap_dirty: TryVec<bool>,
    ref_count_root: Block,
    hint: u64,
}

impl SmMetadata {
    fn empty(nr_blocks: u64) -> Result<Self> {
        let nr_blocks = nr_blocks.min(METADATA_MAX_BLOCKS);
        let nbm = nr_blocks.div_ceil(ENTRIES_PER_BLOCK) as usize;
        if nbm == 0 || nbm > MAX_METADATA_BITMAPS {
            return Err(Errno::EINVAL);
        }
        Ok(SmMetadata {
            nr_blocks,
            counts: mem::try_zeroed(nr_blocks as usize)?,
            freed: TryVec::try_from_elem(0, bitset::words_for(nr_blocks) as usize)?,
            index_block: 0,
            bitmaps: TryVec::try_from_elem(0, nbm)?,
            bitmap_dirty: TryVec::try_from_elem(true, nbm)?,
            ref_count_root: 0,
            hint: 0,
        })
    }

    /// `dm_sm_metadata_create`: a new map over `nr_blocks` (clamped to the
    /// metadata limit and the device) with `superblock` counted, its index
    /// and bitmaps allocated, and an empty ref-count btree written.
    pub fn create<D: BlockDevice>(bm: &BlockManager<D>, nr_blocks: u64, superblock: Block) -> Result<Self> {
        let mut sm = Self::empty(nr_blocks.min(bm.nr_blocks()))?;
        sm.inc(superblock)?;
        sm.index_block = sm.new_block()?;
        for i in 0..sm.bitmaps.len() {
            let b = sm.new_block()?;
            if let Some(s) = sm.bitmaps.get_mut(i) {
                *s = b;
            }
        }
        sm.ref_count_root = sm.new_block()?;
        let mut leaf = empty_leaf(4)?;
        bm.write(sm.ref_count_root, &mut leaf, &NODE_VALIDATOR, ReqFlags::empty())?;
        Ok(sm)
    }

    /// `dm_sm_metadata_open`: loads the committed counts (read side).
    pub fn open<D: BlockDevice>(bm: &BlockManager<D>, root: DiskSmRoot) -> Result<Self> {
        let sm = MetadataSpaceMap::open(bm, root).map_err(|e| e.kind.errno())?;
        let counts = sm.counts(bm).map_err(|e| e.kind.errno())?;
        let mut w = Self::empty(root.nr_blocks.get())?;
        if w.nr_blocks != root.nr_blocks.get() || sm.index.len() != w.bitmaps.len() {
            return Err(Errno::EINVAL);
        }
        for (b, &c) in counts.iter().enumerate() {
            if c > 2 {
                // Shared metadata blocks never occur in dm-clone metadata.
                return Err(Errno::EOPNOTSUPP);
            }
            if let Some(x) = w.counts.get_mut(b) {
                *x = c as u8;
            }
        }
        w.index_block = root.bitmap_root.get();
        for (i, ie) in sm.index.iter().enumerate() {
            if let Some(s) = w.bitmaps.get_mut(i) {
                *s = ie.blocknr.get();
            }
        }
        w.bitmap_dirty.fill(false);
        w.ref_count_root = root.ref_count_root.get();
        Ok(w)
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
    /// transaction, counted.
    pub fn new_block(&mut self) -> Result<Block> {
        let n = self.nr_blocks;
        for k in 0..n {
            let b = (self.hint + k) % n;
            if self.counts.get(b as usize) == Some(&0) && !bitset::test(&self.freed, b) {
                self.inc(b)?;
                self.hint = b + 1;
                return Ok(b);
            }
        }
        Err(Errno::ENOSPC)
    }

    /// The index block.
    pub fn index_block(&self) -> Block {
        self.index_block
    }

    /// Moves the index block (to its shadow).
    pub fn set_index_block(&mut self, b: Block) {
        self.index_block = b;
    }

    /// Bitmap blocks.
    pub fn nr_bitmaps(&self) -> usize {
        self.bitmaps.len()
    }

    /// Bitmap `i`'s block when its counts changed in this transaction.
    pub fn dirty_bitmap(&self, i: usize) -> Option<Block> {
        if self.bitmap_dirty.get(i) == Some(&true) {
            self.bitmaps.get(i).copied()
        } else {
            None
        }
    }

    /// Moves bitmap `i` (to its shadow).
    pub fn set_bitmap(&mut self, i: usize, b: Block) {
        if let Some(s) = self.bitmaps.get_mut(i) {
            *s = b;
        }
    }

    /// `sm_ll_commit`'s writes: the changed bitmaps and the index, where
    /// they are now. Returns the root to store in the superblock.
    pub fn write<D: BlockDevice>(&self, bm: &BlockManager<D>) -> Result<DiskSmRoot> {
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
                set_bitmap_entry(data.get_mut(DiskBitmapHeader::SIZE..).unwrap_or(&mut []), e, c);
            }
            let b = self.bitmaps.get(i).copied().unwrap_or(0);
            if self.bitmap_dirty.get(i) == Some(&true) {
                bm.write(b, &mut data, &BITMAP_VALIDATOR, ReqFlags::empty())?;
            }
            let ie = DiskIndexEntry {
                blocknr: Le64::new(b),
                nr_free: Le32::new(nr_free),
                none_free_before: Le32::new(first_free.unwrap_or(0) as u32),
            };
            ie.pack_at(&mut index, DiskMetadataIndexHeader::SIZE + DiskIndexEntry::SIZE * i).ok_or(Errno::EINVAL)?;
        }
        bm.write(self.index_block, &mut index, &INDEX_VALIDATOR, ReqFlags::empty())?;
        Ok(DiskSmRoot {
            nr_blocks: Le64::new(self.nr_blocks),
            nr_allocated: Le64::new(self.nr_allocated()),
            bitmap_root: Le64::new(self.index_block),
            ref_count_root: Le64::new(self.ref_count_root),
        })
    }

    /// The superblock is on disk: freed blocks become reusable and nothing
    /// is dirty any more.
    pub fn end_transaction(&mut self) {
        self.freed.fill(0);
        self.bitmap_dirty.fill(false);
    }

    /// The ref-count btree's root.
    pub fn ref_count_root(&self) -> Block {
        self.ref_count_root
    }

    /// Every block the map itself uses (index and bitmaps).
    pub fn own_blocks(&self) -> impl Iterator<Item = Block> + '_ {
        core::iter::once(self.index_block).chain(self.bitmaps.iter().copied())
    }
}
