// SPDX-License-Identifier: GPL-2.0-only
//! `dm-array.c`: a fully populated btree (key: array block index, value:
//! `__le64` location) of array blocks, each a 24-byte header then packed
//! values. All blocks but the last are full.
//!
//! This file is the array block format ([`ArrayBlockHeader`],
//! `array_block_check` as [`ArrayBlockHeader::check`]); [`read`] walks a
//! committed array, [`write`] creates and updates one ([`DiskArray`]).

pub mod read;
pub mod write;

pub use read::walk;
pub use write::{DiskArray, U64_PER_BLOCK};

use super::block::{BlockError, Validator, BLOCK_SIZE};
use super::checksum::ARRAY_CSUM_XOR;
use crate::endian::{on_disk, Le32, Le64, OnDisk};

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
pub const ARRAY_HEADER_SIZE: usize = ArrayBlockHeader::SIZE;
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
