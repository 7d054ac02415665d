// SPDX-License-Identifier: GPL-2.0-only
//! Read-only btree walks (`dm_btree_lookup`, `dm_btree_walk`) over
//! validated nodes, depth-limited against cycles on corrupt disks.

use super::{Node, MAX_DEPTH, NODE_VALIDATOR};
use crate::errno::Result as KResult;
use crate::mem::TryVec;
use crate::pdata::block::{Block, BlockError, BlockManager};
use crate::pdata::error::{PdError, PdResult};
use crate::platform::BlockDevice;

fn read_node<D: BlockDevice>(bm: &BlockManager<D>, b: Block) -> PdResult<TryVec<u8>> {
    let data = bm.read(b, &NODE_VALIDATOR).map_err(|kind| PdError { block: b, kind })?;
    Node::parse(&data).map_err(|kind| PdError { block: b, kind })?;
    Ok(data)
}

/// Calls `f(key, value)` for every leaf entry in key order, and
/// `node(block)` for every node visited (for reference counting checks).
pub fn walk<D: BlockDevice>(
    bm: &BlockManager<D>,
    root: Block,
    value_size: u32,
    node: &mut dyn FnMut(Block),
    f: &mut dyn FnMut(u64, &[u8]) -> KResult<()>,
) -> PdResult<()> {
    walk_at(bm, root, value_size, 0, node, f)
}

fn walk_at<D: BlockDevice>(
    bm: &BlockManager<D>,
    b: Block,
    value_size: u32,
    depth: u32,
    node: &mut dyn FnMut(Block),
    f: &mut dyn FnMut(u64, &[u8]) -> KResult<()>,
) -> PdResult<()> {
    if depth > MAX_DEPTH {
        return Err(PdError { block: b, kind: BlockError::Shape("btree too deep (a cycle?)") });
    }
    node(b);
    let data = read_node(bm, b)?;
    let n = Node::parse(&data).map_err(|kind| PdError { block: b, kind })?;
    let mut last: Option<u64> = None;
    for i in 0..n.nr_entries {
        let k = n.key(i);
        if last.is_some_and(|l| l >= k) {
            return Err(PdError { block: b, kind: BlockError::Shape("keys out of order") });
        }
        last = Some(k);
        if n.is_leaf() {
            if n.value_size != value_size {
                return Err(PdError { block: b, kind: BlockError::Shape("unexpected value size") });
            }
            f(k, n.value(i)).map_err(|e| PdError { block: b, kind: BlockError::Io(e) })?;
        } else {
            let child = n.value_le64(i);
            walk_at(bm, child, value_size, depth + 1, node, f)?;
        }
    }
    Ok(())
}

/// Looks `key` up (`dm_btree_lookup`): the value, if present.
pub fn lookup<D: BlockDevice>(
    bm: &BlockManager<D>,
    root: Block,
    key: u64,
    value_size: u32,
) -> PdResult<Option<TryVec<u8>>> {
    let mut b = root;
    for _ in 0..=MAX_DEPTH {
        let data = read_node(bm, b)?;
        let n = Node::parse(&data).map_err(|kind| PdError { block: b, kind })?;
        // Last entry whose key is <= key.
        let mut i = None;
        for j in 0..n.nr_entries {
            if n.key(j) <= key {
                i = Some(j);
            } else {
                break;
            }
        }
        let Some(i) = i else { return Ok(None) };
        if n.is_leaf() {
            if n.value_size != value_size {
                return Err(PdError { block: b, kind: BlockError::Shape("unexpected value size") });
            }
            if n.key(i) != key {
                return Ok(None);
            }
            let mut v = TryVec::new();
            v.try_extend_from_slice(n.value(i)).map_err(|e| PdError { block: b, kind: BlockError::Io(e) })?;
            return Ok(Some(v));
        }
        b = n.value_le64(i);
    }
    Err(PdError { block: b, kind: BlockError::Shape("btree too deep (a cycle?)") })
}
