// SPDX-License-Identifier: GPL-2.0-only
//! The write side of dm-array for dm-bitset's words: creating an array and
//! rewriting its blocks with shadowing.

use super::{calc_max_entries, ArrayBlockHeader, ARRAY_HEADER_SIZE, ARRAY_VALIDATOR};
use crate::endian::{Le64, OnDisk};
use crate::errno::{Errno, Result};
use crate::mem::{self, TryVec};
use crate::pdata::block::{Block, BlockError, BlockManager, BLOCK_SIZE};
use crate::pdata::btree::MemTree;
use crate::pdata::error::{PdError, PdResult};
use crate::pdata::tm::TransactionManager;
use crate::platform::{BlockDevice, ReqFlags};

/// A dm-array of `u64` kept on disk, changed a block at a time with
/// shadowing (the write side of dm-array for dm-bitset's words).
pub struct DiskArray {
    tree: MemTree,
    blocks: TryVec<Block>,
    len: u64,
}

/// Values per array block for u64 values.
pub const U64_PER_BLOCK: u64 = calc_max_entries(8) as u64;

fn write_array_block<D: BlockDevice>(bm: &BlockManager<D>, b: Block, vals: &[u64]) -> Result<()> {
    let mut buf = mem::try_zeroed(BLOCK_SIZE)?;
    ArrayBlockHeader::new(U64_PER_BLOCK as u32, vals.len() as u32, 8).pack(&mut buf).ok_or(Errno::EINVAL)?;
    for (i, v) in vals.iter().enumerate() {
        Le64::new(*v).pack_at(&mut buf, ARRAY_HEADER_SIZE + 8 * i).ok_or(Errno::EINVAL)?;
    }
    bm.write(b, &mut buf, &ARRAY_VALIDATOR, ReqFlags::empty())
}

impl DiskArray {
    /// A new array holding `values` (`dm_array_empty` + `dm_array_resize`).
    pub fn create<D: BlockDevice>(tm: &mut TransactionManager, bm: &BlockManager<D>, values: &[u64]) -> Result<Self> {
        let mut blocks = TryVec::new();
        let mut entries = TryVec::new();
        for (i, c) in values.chunks(U64_PER_BLOCK as usize).enumerate() {
            let b = tm.new_block()?;
            write_array_block(bm, b, c)?;
            blocks.try_push(b)?;
            entries.try_push((i as u64, b))?;
        }
        let tree = MemTree::build(tm, &entries)?;
        Ok(DiskArray { tree, blocks, len: values.len() as u64 })
    }

    /// Opens the array at `root` (its btree only; values are the caller's).
    pub fn open<D: BlockDevice>(bm: &BlockManager<D>, root: Block, len: u64) -> PdResult<Self> {
        let tree = MemTree::load(bm, root)?;
        let mut blocks = TryVec::new();
        let mut err = None;
        let mut expect = 0u64;
        tree.for_each_value(&mut |k, v| {
            if k != expect && err.is_none() {
                err = Some(BlockError::Shape("array btree is not fully populated"));
            }
            expect += 1;
            if blocks.try_push(v).is_err() {
                err = Some(BlockError::Io(Errno::ENOMEM));
            }
        });
        if let Some(kind) = err {
            return Err(PdError { block: root, kind });
        }
        if blocks.len() as u64 != len.div_ceil(U64_PER_BLOCK) {
            return Err(PdError { block: root, kind: BlockError::Shape("array length does not match") });
        }
        Ok(DiskArray { tree, blocks, len })
    }

    /// Rewrites array block `i` with `vals` (a shadow when it was committed).
    pub fn update_block<D: BlockDevice>(
        &mut self,
        tm: &mut TransactionManager,
        bm: &BlockManager<D>,
        i: u64,
        vals: &[u64],
    ) -> Result<()> {
        let old = self.blocks.get(i as usize).copied().ok_or(Errno::EINVAL)?;
        let new = tm.shadow(old)?;
        write_array_block(bm, new, vals)?;
        if new != old {
            self.tree.set(tm, i, new)?;
            if let Some(b) = self.blocks.get_mut(i as usize) {
                *b = new;
            }
        }
        Ok(())
    }

    /// Writes the changed btree nodes; returns the root.
    pub fn flush<D: BlockDevice>(&mut self, bm: &BlockManager<D>) -> Result<Block> {
        self.tree.write_dirty(bm)?;
        Ok(self.tree.root_block())
    }

    /// Length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every block the array uses.
    pub fn for_each_block(&self, f: &mut dyn FnMut(Block)) {
        self.tree.for_each_node(f);
        for &b in self.blocks.iter() {
            f(b)
        }
    }
}
