// SPDX-License-Identifier: GPL-2.0-only
//! Btree writes: a btree of `__le64` values held in memory and written
//! back with shadowing, what dm-array keeps its array blocks in. Only the nodes on
//! the path to a changed value are copied (`shadow_step` in
//! dm-btree-spine.c), so a commit costs the changed paths, not the tree.

use super::{
    calc_max_entries, Node, NodeHeader, INTERNAL_NODE, LEAF_NODE, MAX_DEPTH, NODE_HEADER_SIZE, NODE_VALIDATOR,
};
use crate::endian::{Le64, OnDisk};
use crate::errno::{Errno, Result};
use crate::mem::{self, TryVec};
use crate::pdata::block::{Block, BlockError, BlockManager, BLOCK_SIZE};
use crate::pdata::error::{PdError, PdResult};
use crate::pdata::tm::TransactionManager;
use crate::platform::{BlockDevice, ReqFlags};

struct MemNode {
    block: Block,
    leaf: bool,
    keys: TryVec<u64>,
    /// Leaf: the values; internal: indexes of the children in `nodes`.
    vals: TryVec<u64>,
    dirty: bool,
}

/// An in-memory btree of u64 → u64.
pub struct MemTree {
    nodes: TryVec<MemNode>,
    root: usize,
}

const MAX: u32 = calc_max_entries(8);

fn pdio(b: Block) -> impl Fn(Errno) -> PdError {
    move |e| PdError { block: b, kind: BlockError::Io(e) }
}

impl MemTree {
    /// Reads the tree rooted at `root` (validated, depth-limited).
    pub fn load<D: BlockDevice>(bm: &BlockManager<D>, root: Block) -> PdResult<Self> {
        let mut t = MemTree { nodes: TryVec::new(), root: 0 };
        t.root = t.load_node(bm, root, 0)?;
        Ok(t)
    }

    fn load_node<D: BlockDevice>(&mut self, bm: &BlockManager<D>, b: Block, depth: u32) -> PdResult<usize> {
        if depth > MAX_DEPTH {
            return Err(PdError { block: b, kind: BlockError::Shape("btree too deep (a cycle?)") });
        }
        let data = bm.read(b, &NODE_VALIDATOR).map_err(|kind| PdError { block: b, kind })?;
        let n = Node::parse(&data).map_err(|kind| PdError { block: b, kind })?;
        if n.value_size != 8 {
            return Err(PdError { block: b, kind: BlockError::Shape("unexpected value size") });
        }
        let mut keys = TryVec::try_with_capacity(n.nr_entries as usize).map_err(pdio(b))?;
        let mut raw = TryVec::try_with_capacity(n.nr_entries as usize).map_err(pdio(b))?;
        for i in 0..n.nr_entries {
            keys.try_push(n.key(i)).map_err(pdio(b))?;
            raw.try_push(n.value_le64(i)).map_err(pdio(b))?;
        }
        let leaf = n.is_leaf();
        let mut vals = TryVec::try_with_capacity(raw.len()).map_err(pdio(b))?;
        for &v in raw.iter() {
            let x = if leaf { v } else { self.load_node(bm, v, depth + 1)? as u64 };
            vals.try_push(x).map_err(pdio(b))?;
        }
        self.nodes.try_push(MemNode { block: b, leaf, keys, vals, dirty: false }).map_err(pdio(b))?;
        Ok(self.nodes.len() - 1)
    }

    /// A new, packed tree of `entries` (ascending keys); every node is a
    /// new block. An empty tree is one empty leaf.
    pub fn build(tm: &mut TransactionManager, entries: &[(u64, u64)]) -> Result<Self> {
        let mut t = MemTree { nodes: TryVec::new(), root: 0 };
        // Leaves.
        let mut level = TryVec::new();
        let chunks = entries.chunks(MAX as usize);
        if entries.is_empty() {
            level.try_push(t.push(tm, true, &[], &[])?)?;
        }
        for c in chunks {
            let mut keys = TryVec::try_with_capacity(c.len())?;
            let mut vals = TryVec::try_with_capacity(c.len())?;
            for &(k, v) in c {
                keys.try_push(k)?;
                vals.try_push(v)?;
            }
            level.try_push(t.push(tm, true, &keys, &vals)?)?;
        }
        // Internal levels until one node remains.
        while level.len() > 1 {
            let mut up = TryVec::new();
            for c in level.chunks(MAX as usize) {
                let mut keys = TryVec::try_with_capacity(c.len())?;
                let mut vals = TryVec::try_with_capacity(c.len())?;
                for &i in c {
                    keys.try_push(t.nodes.get(i).and_then(|n| n.keys.first().copied()).unwrap_or(0))?;
                    vals.try_push(i as u64)?;
                }
                up.try_push(t.push(tm, false, &keys, &vals)?)?;
            }
            level = up;
        }
        t.root = level.first().copied().unwrap_or(0);
        Ok(t)
    }

    fn push(&mut self, tm: &mut TransactionManager, leaf: bool, keys: &[u64], vals: &[u64]) -> Result<usize> {
        let mut k = TryVec::new();
        k.try_extend_from_slice(keys)?;
        let mut v = TryVec::new();
        v.try_extend_from_slice(vals)?;
        let block = tm.new_block()?;
        self.nodes.try_push(MemNode { block, leaf, keys: k, vals: v, dirty: true })?;
        Ok(self.nodes.len() - 1)
    }

    /// The root's block.
    pub fn root_block(&self) -> Block {
        self.nodes.get(self.root).map(|n| n.block).unwrap_or(0)
    }

    /// Values in key order.
    pub fn for_each_value(&self, f: &mut dyn FnMut(u64, u64)) {
        self.visit(self.root, 0, f)
    }

    fn visit(&self, i: usize, depth: u32, f: &mut dyn FnMut(u64, u64)) {
        let Some(n) = self.nodes.get(i) else { return };
        if depth > MAX_DEPTH {
            return;
        }
        for (k, v) in n.keys.iter().zip(n.vals.iter()) {
            if n.leaf {
                f(*k, *v)
            } else {
                self.visit(*v as usize, depth + 1, f)
            }
        }
    }

    /// Every node's block.
    pub fn for_each_node(&self, f: &mut dyn FnMut(Block)) {
        for n in self.nodes.iter() {
            f(n.block)
        }
    }

    /// Replaces the value of an existing `key`, shadowing the path to it.
    pub fn set(&mut self, tm: &mut TransactionManager, key: u64, value: u64) -> Result<()> {
        let mut i = self.root;
        for _ in 0..=MAX_DEPTH {
            let n = self.nodes.get_mut(i).ok_or(Errno::EINVAL)?;
            n.block = tm.shadow(n.block)?;
            n.dirty = true;
            let pos = n.keys.iter().rposition(|&k| k <= key).ok_or(Errno::ENOENT)?;
            if n.leaf {
                if n.keys.get(pos) != Some(&key) {
                    return Err(Errno::ENOENT);
                }
                if let Some(v) = n.vals.get_mut(pos) {
                    *v = value;
                }
                return Ok(());
            }
            i = n.vals.get(pos).copied().ok_or(Errno::EINVAL)? as usize;
        }
        Err(Errno::EINVAL)
    }

    /// Writes every node changed since the last write.
    pub fn write_dirty<D: BlockDevice>(&mut self, bm: &BlockManager<D>) -> Result<()> {
        let mut buf = mem::try_zeroed(BLOCK_SIZE)?;
        for idx in 0..self.nodes.len() {
            let Some(n) = self.nodes.get(idx) else { continue };
            if !n.dirty {
                continue;
            }
            buf.fill(0);
            NodeHeader::new(if n.leaf { LEAF_NODE } else { INTERNAL_NODE }, n.keys.len() as u32, MAX, 8)
                .pack(&mut buf)
                .ok_or(Errno::EINVAL)?;
            for (j, (&k, &v)) in n.keys.iter().zip(n.vals.iter()).enumerate() {
                let value =
                    if n.leaf { v } else { self.nodes.get(v as usize).map(|c| c.block).ok_or(Errno::EINVAL)? };
                Le64::new(k).pack_at(&mut buf, NODE_HEADER_SIZE + 8 * j).ok_or(Errno::EINVAL)?;
                Le64::new(value).pack_at(&mut buf, NODE_HEADER_SIZE + 8 * MAX as usize + 8 * j).ok_or(Errno::EINVAL)?;
            }
            let block = n.block;
            bm.write(block, &mut buf, &NODE_VALIDATOR, ReqFlags::empty())?;
            if let Some(n) = self.nodes.get_mut(idx) {
                n.dirty = false;
            }
        }
        Ok(())
    }
}
