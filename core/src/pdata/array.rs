// SPDX-License-Identifier: GPL-2.0-only
//! `dm-array.c`: a fully populated btree (key: array block index, value:
//! `__le64` location) of array blocks, each a 24-byte header then packed
//! values. All blocks but the last are full.

use super::block::{Block, BlockError, BlockManager, Validator, BLOCK_SIZE};
use super::btree;
use super::checksum::ARRAY_CSUM_XOR;
use super::error::{PdError, PdResult};
use crate::endian::{on_disk, Le32, Le64, OnDisk};
use crate::errno::Errno;
use crate::platform::BlockDevice;
use core::cell::RefCell;

/// `struct array_block` (24 bytes; [`OnDisk`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ArrayBlockHeader {
    /// Checksum.
    pub csum: Le32,
    /// Capacity.
    pub max_entries: Le32,
    /// Used.
    pub nr_entries: Le32,
    /// Bytes per value.
    pub value_size: Le32,
    /// Own location.
    pub blocknr: Le64,
}
on_disk!(ArrayBlockHeader, 24, { csum, max_entries, nr_entries, value_size, blocknr });

/// Header size.
pub const ARRAY_HEADER_SIZE: usize = core::mem::size_of::<ArrayBlockHeader>();
/// `array_validator`.
pub const ARRAY_VALIDATOR: Validator = Validator { name: "array", xor: ARRAY_CSUM_XOR, blocknr_offset: 16 };

/// Values per array block (509 for 8-byte values).
pub const fn calc_max_entries(value_size: usize) -> u32 {
    ((BLOCK_SIZE - ARRAY_HEADER_SIZE) / value_size) as u32
}

impl ArrayBlockHeader {
    /// The header of a block to be written (`csum` and `blocknr` are
    /// stamped by [`ARRAY_VALIDATOR`]).
    pub fn new(max_entries: u32, nr_entries: u32, value_size: u32) -> Self {
        ArrayBlockHeader {
            max_entries: Le32::new(max_entries),
            nr_entries: Le32::new(nr_entries),
            value_size: Le32::new(value_size),
            ..ArrayBlockHeader::default()
        }
    }

    /// `array_block_check`'s shape checks for an array of `value_size`
    /// values (location and checksum were checked by the validator): the
    /// number of entries in use.
    pub fn check(&self, value_size: u32) -> core::result::Result<u32, BlockError> {
        let (m, n, vs) = (self.max_entries.get(), self.nr_entries.get(), self.value_size.get());
        if vs == 0 || vs != value_size {
            return Err(BlockError::Shape("value_size invalid"));
        }
        if m != calc_max_entries(vs as usize) {
            return Err(BlockError::Shape("max_entries invalid for value_size"));
        }
        if n > m {
            return Err(BlockError::Shape("too many entries"));
        }
        Ok(n)
    }
}

/// Calls `f(index, value)` for every element, and `node(block)` for every
/// block the array uses (btree nodes and array blocks). Returns the length.
pub fn walk<D: BlockDevice>(
    bm: &BlockManager<D>,
    root: Block,
    value_size: u32,
    node: &mut dyn FnMut(Block),
    f: &mut dyn FnMut(u64, &[u8]),
) -> PdResult<u64> {
    let node = RefCell::new(node);
    let mut expect_index = 0u64;
    let mut len = 0u64;
    let mut short_seen: Option<Block> = None;
    let mut err: Option<PdError> = None;
    let mut array_block = |k: u64, v: &[u8]| -> PdResult<()> {
        let b = Le64::unpack(v).map_or(u64::MAX, Le64::get);
        let fail = |kind| PdError { block: b, kind };
        if k != expect_index {
            return Err(fail(BlockError::Shape("array btree is not fully populated")));
        }
        if let Some(s) = short_seen {
            return Err(PdError { block: s, kind: BlockError::Shape("a non-final array block is not full") });
        }
        (node.borrow_mut())(b);
        let data = bm.read(b, &ARRAY_VALIDATOR).map_err(fail)?;
        let h = ArrayBlockHeader::unpack(&data).ok_or_else(|| fail(BlockError::Shape("short block")))?;
        let n = h.check(value_size).map_err(fail)?;
        let vs = value_size as usize;
        for i in 0..n as usize {
            let off = ARRAY_HEADER_SIZE + i * vs;
            f(len + i as u64, data.get(off..off + vs).unwrap_or(&[]));
        }
        len += n as u64;
        if n < h.max_entries.get() {
            short_seen = Some(b);
        }
        expect_index += 1;
        Ok(())
    };
    let r = btree::walk(bm, root, 8, &mut |b| (node.borrow_mut())(b), &mut |k, v| {
        array_block(k, v).map_err(|e| {
            err = Some(e);
            Errno::EILSEQ
        })
    });
    if let Some(e) = err {
        return Err(e);
    }
    r?;
    Ok(len)
}

/// A dm-array of `u64` kept on disk, changed a block at a time with
/// shadowing (the write side of dm-array for dm-bitset's words).
pub struct DiskArray {
    tree: super::mem_btree::MemTree,
    blocks: crate::mem::TryVec<Block>,
    len: u64,
}

/// Values per array block for u64 values.
pub const U64_PER_BLOCK: u64 = calc_max_entries(8) as u64;

fn write_array_block<D: BlockDevice>(bm: &BlockManager<D>, b: Block, vals: &[u64]) -> crate::errno::Result<()> {
    let mut buf = crate::mem::try_zeroed(BLOCK_SIZE)?;
    ArrayBlockHeader::new(U64_PER_BLOCK as u32, vals.len() as u32, 8).pack(&mut buf).ok_or(Errno::EINVAL)?;
    for (i, v) in vals.iter().enumerate() {
        Le64::new(*v).pack_at(&mut buf, ARRAY_HEADER_SIZE + 8 * i).ok_or(Errno::EINVAL)?;
    }
    bm.write(b, &mut buf, &ARRAY_VALIDATOR, crate::platform::ReqFlags::empty())
}

impl DiskArray {
    /// A new array holding `values` (`dm_array_empty` + `dm_array_resize`).
    pub fn create<D: BlockDevice>(
        tm: &mut super::tm::TransactionManager,
        bm: &BlockManager<D>,
        values: &[u64],
    ) -> crate::errno::Result<Self> {
        let mut blocks = crate::mem::TryVec::new();
        let mut entries = crate::mem::TryVec::new();
        for (i, c) in values.chunks(U64_PER_BLOCK as usize).enumerate() {
            let b = tm.new_block()?;
            write_array_block(bm, b, c)?;
            blocks.try_push(b)?;
            entries.try_push((i as u64, b))?;
        }
        let tree = super::mem_btree::MemTree::build(tm, &entries)?;
        Ok(DiskArray { tree, blocks, len: values.len() as u64 })
    }

    /// Opens the array at `root` (its btree only; values are the caller's).
    pub fn open<D: BlockDevice>(bm: &BlockManager<D>, root: Block, len: u64) -> PdResult<Self> {
        let tree = super::mem_btree::MemTree::load(bm, root)?;
        let mut blocks = crate::mem::TryVec::new();
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
        tm: &mut super::tm::TransactionManager,
        bm: &BlockManager<D>,
        i: u64,
        vals: &[u64],
    ) -> crate::errno::Result<()> {
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
    pub fn flush<D: BlockDevice>(&mut self, bm: &BlockManager<D>) -> crate::errno::Result<Block> {
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
