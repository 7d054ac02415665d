// SPDX-License-Identifier: GPL-2.0-only
//! `dm-array.c`: a fully populated btree (key: array block index, value:
//! `__le64` location) of array blocks, each a 24-byte header then packed
//! values. All blocks but the last are full.

use super::block::{Block, BlockError, BlockManager, Validator, BLOCK_SIZE};
use super::btree::{self, PdError, PdResult};
use super::checksum::ARRAY_CSUM_XOR;
use crate::endian::{read_le32, read_le64, Le32, Le64};
use crate::errno::Errno;
use crate::platform::BlockDevice;
use core::cell::RefCell;
use static_assertions::assert_eq_size;

/// `struct array_block` (24 bytes).
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
assert_eq_size!(ArrayBlockHeader, [u8; 24]);

/// Header size.
pub const ARRAY_HEADER_SIZE: usize = core::mem::size_of::<ArrayBlockHeader>();
/// `array_validator`.
pub const ARRAY_VALIDATOR: Validator = Validator { name: "array", xor: ARRAY_CSUM_XOR, blocknr_offset: 16 };

/// Values per array block (509 for 8-byte values).
pub const fn calc_max_entries(value_size: usize) -> u32 {
    ((BLOCK_SIZE - ARRAY_HEADER_SIZE) / value_size) as u32
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
    let max = calc_max_entries(value_size.max(1) as usize);
    let node = RefCell::new(node);
    let mut expect_index = 0u64;
    let mut len = 0u64;
    let mut short_seen: Option<Block> = None;
    let mut err: Option<PdError> = None;
    let mut array_block = |k: u64, v: &[u8]| -> PdResult<()> {
        let b = read_le64(v, 0).unwrap_or(u64::MAX);
        let fail = |kind| PdError { block: b, kind };
        if k != expect_index {
            return Err(fail(BlockError::Shape("array btree is not fully populated")));
        }
        if let Some(s) = short_seen {
            return Err(PdError { block: s, kind: BlockError::Shape("a non-final array block is not full") });
        }
        (node.borrow_mut())(b);
        let data = bm.read(b, &ARRAY_VALIDATOR).map_err(fail)?;
        let (m, n, vs) = (read_le32(&data, 4), read_le32(&data, 8), read_le32(&data, 12));
        let (Some(m), Some(n), Some(vs)) = (m, n, vs) else { return Err(fail(BlockError::Shape("short block"))) };
        if vs == 0 || vs != value_size {
            return Err(fail(BlockError::Shape("value_size invalid")));
        }
        if m != max {
            return Err(fail(BlockError::Shape("max_entries invalid for value_size")));
        }
        if n > m {
            return Err(fail(BlockError::Shape("too many entries")));
        }
        for i in 0..n as usize {
            let off = ARRAY_HEADER_SIZE + i * vs as usize;
            f(len + i as u64, data.get(off..off + vs as usize).unwrap_or(&[]));
        }
        len += n as u64;
        if n < m {
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
