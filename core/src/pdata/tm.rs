// SPDX-License-Identifier: GPL-2.0-only
//! The transaction manager (`dm-transaction-manager.c`): which blocks were
//! allocated in this transaction (shadows, writable in place), shadowing,
//! and the commit order. The counts are the metadata space map's
//! ([`SmMetadata`], `space_map/write.rs`).
//!
//! The rules that make a crash harmless (commit "dm transaction manager:
//! fix corruption due to non-atomic transaction commit"): never overwrite a
//! block of the previous transaction — a block shadowed or freed in this
//! transaction stays untouched until the superblock that stops using it is
//! on disk — and write the superblock last, after everything else is
//! flushed. The space map itself is shadowed too: every commit writes the
//! changed bitmaps and a new index block at fresh locations.

use super::bitset;
use super::block::{Block, BlockManager};
use super::space_map::{DiskSmRoot, SmMetadata};
use crate::errno::Result;
use crate::mem::TryVec;
use crate::platform::BlockDevice;

/// Transaction manager over the metadata space map of one metadata device.
pub struct TransactionManager {
    sm: SmMetadata,
    /// Allocated in this transaction: may be written in place.
    shadow: TryVec<u64>,
}

impl TransactionManager {
    fn with_sm(sm: SmMetadata) -> Result<Self> {
        let shadow = TryVec::try_from_elem(0, bitset::words_for(sm.nr_blocks()) as usize)?;
        Ok(TransactionManager { sm, shadow })
    }

    /// `dm_tm_create_with_sm`: a new space map ([`SmMetadata::create`]) over
    /// `nr_blocks` with `superblock` counted; the blocks it allocated are
    /// this transaction's.
    pub fn create<D: BlockDevice>(bm: &BlockManager<D>, nr_blocks: u64, superblock: Block) -> Result<Self> {
        let mut tm = Self::with_sm(SmMetadata::create(bm, nr_blocks, superblock)?)?;
        let TransactionManager { sm, shadow } = &mut tm;
        for b in sm.own_blocks().chain(core::iter::once(sm.ref_count_root())) {
            bitset::set(shadow, b);
        }
        Ok(tm)
    }

    /// `dm_tm_open_with_sm`: loads the committed counts.
    pub fn open<D: BlockDevice>(bm: &BlockManager<D>, root: DiskSmRoot) -> Result<Self> {
        Self::with_sm(SmMetadata::open(bm, root)?)
    }

    /// The space map.
    pub fn sm(&self) -> &SmMetadata {
        &self.sm
    }

    /// `dm_tm_new_block`: a new block, counted and marked as a shadow.
    pub fn new_block(&mut self) -> Result<Block> {
        let b = self.sm.new_block()?;
        bitset::set(&mut self.shadow, b);
        Ok(b)
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
        self.sm.dec(b)?;
        Ok(n)
    }

    /// `dm_tm_pre_commit`: writes the space map (changed bitmaps and a new
    /// index, all at fresh locations) and flushes every block written so
    /// far. Returns the root to store in the superblock.
    pub fn pre_commit<D: BlockDevice>(&mut self, bm: &BlockManager<D>) -> Result<DiskSmRoot> {
        // Shadowing the index and bitmaps changes counts, which may dirty
        // more bitmaps: repeat until every dirty bitmap is a shadow.
        let index = self.shadow(self.sm.index_block())?;
        self.sm.set_index_block(index);
        loop {
            let mut changed = false;
            for i in 0..self.sm.nr_bitmaps() {
                if let Some(b) = self.sm.dirty_bitmap(i).filter(|&b| !self.is_shadow(b)) {
                    let nb = self.shadow(b)?;
                    self.sm.set_bitmap(i, nb);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let root = self.sm.write(bm)?;
        bm.flush()?;
        Ok(root)
    }

    /// `dm_tm_commit`: the superblock is on disk; freed blocks become
    /// reusable and nothing is a shadow any more.
    pub fn end_transaction(&mut self) {
        self.sm.end_transaction();
        self.shadow.fill(0);
    }
}
