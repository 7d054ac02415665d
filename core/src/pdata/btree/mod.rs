// SPDX-License-Identifier: GPL-2.0-only
//! Btree nodes (`dm-btree-internal.h`, `dm-btree-spine.c`). A node is a
//! 32-byte header, `max_entries` little-endian keys, then `max_entries`
//! values (values start after **max_entries** keys, not nr_entries).
//! Internal nodes hold `__le64` child block numbers.
//!
//! This file is the node format ([`NodeHeader`], `node_check` as
//! [`Node::parse`]); [`read`] walks and looks up committed trees,
//! [`write`] keeps a tree of `__le64` values in memory and writes it back
//! with shadowing ([`MemTree`]).

pub mod read;
pub mod write;

pub use read::{lookup, walk};
pub use write::MemTree;

use super::block::{BlockError, Validator, BLOCK_SIZE};
use super::checksum::BTREE_CSUM_XOR;
// Re-exported where they were declared before `error.rs` (the hosted tools).
pub use super::error::{PdError, PdResult};
use crate::endian::{on_disk, Le32, Le64, OnDisk};
use crate::errno::{Errno, Result};
use crate::mem::{self, TryVec};

/// `INTERNAL_NODE`.
pub const INTERNAL_NODE: u32 = 1;
/// `LEAF_NODE`.
pub const LEAF_NODE: u32 = 1 << 1;
/// Deepest tree accepted when walking (guards against cycles on corrupt disks).
pub const MAX_DEPTH: u32 = 16;

/// `struct node_header` (packed, 32 bytes; [`OnDisk`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct NodeHeader {
    /// Checksum of the rest of the block.
    pub csum: Le32,
    /// `INTERNAL_NODE` or `LEAF_NODE`.
    pub flags: Le32,
    /// Own location.
    pub blocknr: Le64,
    /// Used entries.
    pub nr_entries: Le32,
    /// Capacity ([`calc_max_entries`]).
    pub max_entries: Le32,
    /// Bytes per value.
    pub value_size: Le32,
    /// Zero.
    pub padding: Le32,
}
on_disk!(NodeHeader, 32, { csum, flags, blocknr, nr_entries, max_entries, value_size, padding });

impl NodeHeader {
    /// The header of a node to be written (`csum` and `blocknr` are
    /// stamped by [`NODE_VALIDATOR`]).
    pub fn new(flags: u32, nr_entries: u32, max_entries: u32, value_size: u32) -> Self {
        NodeHeader {
            flags: Le32::new(flags),
            nr_entries: Le32::new(nr_entries),
            max_entries: Le32::new(max_entries),
            value_size: Le32::new(value_size),
            ..NodeHeader::default()
        }
    }
}

/// Header size.
pub const NODE_HEADER_SIZE: usize = NodeHeader::SIZE;

/// `btree_node_validator`.
pub const NODE_VALIDATOR: Validator = Validator { name: "btree_node", xor: BTREE_CSUM_XOR, blocknr_offset: 8 };

/// `calc_max_entries`: as many (key, value) pairs as fit, rounded down to a
/// multiple of 3 (252 for 8-byte values, 336 for 4-byte values).
pub const fn calc_max_entries(value_size: usize) -> u32 {
    let total = (BLOCK_SIZE - NODE_HEADER_SIZE) / (8 + value_size);
    (3 * (total / 3)) as u32
}

/// A validated node in a block buffer.
pub struct Node<'a> {
    data: &'a [u8],
    /// Flags.
    pub flags: u32,
    /// Used entries.
    pub nr_entries: u32,
    /// Capacity.
    pub max_entries: u32,
    /// Bytes per value.
    pub value_size: u32,
}

impl<'a> Node<'a> {
    /// `node_check`'s shape checks (location and checksum were checked by
    /// the validator).
    pub fn parse(data: &'a [u8]) -> core::result::Result<Self, BlockError> {
        if data.len() != BLOCK_SIZE {
            return Err(BlockError::Shape("short block"));
        }
        let h = NodeHeader::unpack(data).ok_or(BlockError::Shape("short block"))?;
        let (flags, nr_entries, max_entries, value_size) =
            (h.flags.get(), h.nr_entries.get(), h.max_entries.get(), h.value_size.get());
        // Both factors come from disk: their product may not fit in 64 bits.
        let need = (8u64 + value_size as u64).checked_mul(max_entries as u64);
        if need.is_none_or(|n| n > (BLOCK_SIZE - NODE_HEADER_SIZE) as u64) {
            return Err(BlockError::Shape("max_entries too large"));
        }
        if nr_entries > max_entries {
            return Err(BlockError::Shape("too many entries"));
        }
        if flags & (INTERNAL_NODE | LEAF_NODE) == 0 {
            return Err(BlockError::Shape("node is neither INTERNAL or LEAF"));
        }
        Ok(Node { data, flags, nr_entries, max_entries, value_size })
    }

    /// Leaf (else internal).
    pub fn is_leaf(&self) -> bool {
        self.flags & LEAF_NODE != 0
    }

    /// Key `i`.
    pub fn key(&self, i: u32) -> u64 {
        Le64::unpack_at(self.data, NODE_HEADER_SIZE + 8 * i as usize).map_or(0, Le64::get)
    }

    /// Value `i` as a `__le64` (in an internal node, a child's location);
    /// `u64::MAX`, beyond any device, when values are not 8 bytes.
    pub fn value_le64(&self, i: u32) -> u64 {
        Le64::unpack(self.value(i)).map_or(u64::MAX, Le64::get)
    }

    /// Value `i`.
    pub fn value(&self, i: u32) -> &'a [u8] {
        let base = NODE_HEADER_SIZE + 8 * self.max_entries as usize;
        let off = base + self.value_size as usize * i as usize;
        self.data.get(off..off + self.value_size as usize).unwrap_or(&[])
    }
}

/// An empty leaf (`dm_btree_empty`) with `value_size`-byte values.
pub fn empty_leaf(value_size: usize) -> Result<TryVec<u8>> {
    let mut b = mem::try_zeroed(BLOCK_SIZE)?;
    NodeHeader::new(LEAF_NODE, 0, calc_max_entries(value_size), value_size as u32).pack(&mut b).ok_or(Errno::EINVAL)?;
    Ok(b)
}
