// SPDX-License-Identifier: GPL-2.0-only
//! Reading a committed dm-array: its btree walked in key order, every
//! array block validated and checked before its values are used.

use super::{ArrayBlockHeader, ARRAY_HEADER_SIZE, ARRAY_VALIDATOR};
use crate::endian::{Le64, OnDisk};
use crate::errno::Errno;
use crate::pdata::block::{Block, BlockError, BlockManager};
use crate::pdata::btree;
use crate::pdata::error::{PdError, PdResult};
use crate::platform::BlockDevice;
use core::cell::RefCell;

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
