// SPDX-License-Identifier: GPL-2.0-only
//! The metadata space map (`dm-space-map-common.c`,
//! `dm-space-map-metadata.c`): reference counts of metadata blocks, two bits
//! each in bitmap blocks found through one index block, counts above two in
//! a btree of `__le32`.
//!
//! Bit order: entry `b` of a bitmap word uses bits `2b` and `2b+1`, and the
//! **lower-numbered bit is the high bit** of the count (`sm_lookup_bitmap`).
//!
//! This file is the format (sizes, validators, the [`OnDisk`] structures,
//! the 2-bit entry coding); [`read`] opens a committed map
//! ([`MetadataSpaceMap`]), [`write`] keeps the counts of the running
//! transaction and writes them back ([`SmMetadata`]).

pub mod read;
pub mod write;

pub use read::MetadataSpaceMap;
pub use write::SmMetadata;

use super::block::{Validator, BLOCK_SIZE};
use super::checksum::{BITMAP_CSUM_XOR, INDEX_CSUM_XOR};
use crate::endian::{on_disk, Le32, Le64, OnDisk};

/// `SPACE_MAP_ROOT_SIZE`: bytes of a serialised root in a superblock.
pub const SPACE_MAP_ROOT_SIZE: usize = 128;
/// `MAX_METADATA_BITMAPS`.
pub const MAX_METADATA_BITMAPS: usize = 255;
/// Entries per bitmap block: `(4096 - 16) * 4` = 16320.
pub const ENTRIES_PER_BLOCK: u64 = ((BLOCK_SIZE - DiskBitmapHeader::SIZE) * 4) as u64;
/// `DM_SM_METADATA_MAX_BLOCKS`.
pub const METADATA_MAX_BLOCKS: u64 = MAX_METADATA_BITMAPS as u64 * ENTRIES_PER_BLOCK;

/// Index block validator (`index_validator`).
pub const INDEX_VALIDATOR: Validator = Validator { name: "index", xor: INDEX_CSUM_XOR, blocknr_offset: 8 };
/// Bitmap block validator (`dm_sm_bitmap_validator`).
pub const BITMAP_VALIDATOR: Validator = Validator { name: "sm_bitmap", xor: BITMAP_CSUM_XOR, blocknr_offset: 8 };

/// `struct disk_sm_root` (32 bytes; [`OnDisk`]), stored at the start of a
/// superblock's `SPACE_MAP_ROOT_SIZE` bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct DiskSmRoot {
    /// Blocks the map covers.
    pub nr_blocks: Le64,
    /// Blocks with a nonzero count.
    pub nr_allocated: Le64,
    /// The index block (metadata space map).
    pub bitmap_root: Le64,
    /// Root of the overflow ref-count btree.
    pub ref_count_root: Le64,
}
on_disk!(DiskSmRoot, 32, { nr_blocks, nr_allocated, bitmap_root, ref_count_root });

/// `struct disk_index_entry` (16 bytes; [`OnDisk`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct DiskIndexEntry {
    /// Bitmap block.
    pub blocknr: Le64,
    /// Free entries in it.
    pub nr_free: Le32,
    /// Search hint.
    pub none_free_before: Le32,
}
on_disk!(DiskIndexEntry, 16, { blocknr, nr_free, none_free_before });

/// `struct disk_bitmap_header` (16 bytes; [`OnDisk`]): a bitmap block's
/// header, the 2-bit entries follow. Its fields are the validator's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct DiskBitmapHeader {
    /// Checksum of the rest of the block.
    pub csum: Le32,
    /// Zero.
    pub not_used: Le32,
    /// Own location.
    pub blocknr: Le64,
}
on_disk!(DiskBitmapHeader, 16, { csum, not_used, blocknr });

/// The header of `struct disk_metadata_index` (16 bytes; [`OnDisk`]): the
/// index block's [`DiskIndexEntry`]s follow. Its fields are the validator's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct DiskMetadataIndexHeader {
    /// Checksum of the rest of the block.
    pub csum: Le32,
    /// Zero.
    pub padding: Le32,
    /// Own location.
    pub blocknr: Le64,
}
on_disk!(DiskMetadataIndexHeader, 16, { csum, padding, blocknr });
static_assertions::const_assert!(
    DiskMetadataIndexHeader::SIZE + MAX_METADATA_BITMAPS * DiskIndexEntry::SIZE <= BLOCK_SIZE
);

/// Decodes the 2-bit count of entry `i` of a bitmap's data area.
pub fn bitmap_entry(data: &[u8], i: u64) -> u32 {
    let bit = (i * 2) as usize;
    let get = |n: usize| data.get(n / 8).map(|byte| (byte >> (n % 8)) & 1).unwrap_or(0) as u32;
    (get(bit) << 1) | get(bit + 1)
}

/// Encodes count `v` (0..=3) at entry `i`.
pub fn set_bitmap_entry(data: &mut [u8], i: u64, v: u32) {
    let bit = (i * 2) as usize;
    let mut put = |n: usize, on: bool| {
        if let Some(byte) = data.get_mut(n / 8) {
            if on {
                *byte |= 1 << (n % 8);
            } else {
                *byte &= !(1 << (n % 8));
            }
        }
    };
    put(bit, v & 2 != 0);
    put(bit + 1, v & 1 != 0);
}
