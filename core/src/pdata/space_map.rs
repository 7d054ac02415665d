// SPDX-License-Identifier: GPL-2.0-only
//! The metadata space map (`dm-space-map-common.c`,
//! `dm-space-map-metadata.c`): reference counts of metadata blocks, two bits
//! each in bitmap blocks found through one index block, counts above two in
//! a btree of `__le32`.
//!
//! Bit order: entry `b` of a bitmap word uses bits `2b` and `2b+1`, and the
//! **lower-numbered bit is the high bit** of the count (`sm_lookup_bitmap`).

use super::block::{Block, BlockError, BlockManager, Validator, BLOCK_SIZE};
use super::btree;
use super::error::{PdError, PdResult};
use super::checksum::{BITMAP_CSUM_XOR, INDEX_CSUM_XOR};
use crate::endian::{read_le32, read_le64, Le32, Le64};
use crate::mem::TryVec;
use crate::platform::BlockDevice;
use static_assertions::assert_eq_size;

/// `SPACE_MAP_ROOT_SIZE`: bytes of a serialised root in a superblock.
pub const SPACE_MAP_ROOT_SIZE: usize = 128;
/// `MAX_METADATA_BITMAPS`.
pub const MAX_METADATA_BITMAPS: usize = 255;
/// `sizeof(struct disk_bitmap_header)`.
pub const BITMAP_HEADER_SIZE: usize = 16;
/// Entries per bitmap block: `(4096 - 16) * 4` = 16320.
pub const ENTRIES_PER_BLOCK: u64 = ((BLOCK_SIZE - BITMAP_HEADER_SIZE) * 4) as u64;
/// `DM_SM_METADATA_MAX_BLOCKS`.
pub const METADATA_MAX_BLOCKS: u64 = MAX_METADATA_BITMAPS as u64 * ENTRIES_PER_BLOCK;

/// Index block validator (`index_validator`).
pub const INDEX_VALIDATOR: Validator = Validator { name: "index", xor: INDEX_CSUM_XOR, blocknr_offset: 8 };
/// Bitmap block validator (`dm_sm_bitmap_validator`).
pub const BITMAP_VALIDATOR: Validator = Validator { name: "sm_bitmap", xor: BITMAP_CSUM_XOR, blocknr_offset: 8 };

/// `struct disk_sm_root` (32 bytes).
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
assert_eq_size!(DiskSmRoot, [u8; 32]);

/// `struct disk_index_entry` (16 bytes).
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
assert_eq_size!(DiskIndexEntry, [u8; 16]);

impl DiskSmRoot {
    /// Decodes from a superblock's root bytes.
    pub fn unpack(b: &[u8]) -> Option<Self> {
        Some(DiskSmRoot {
            nr_blocks: Le64::new(read_le64(b, 0)?),
            nr_allocated: Le64::new(read_le64(b, 8)?),
            bitmap_root: Le64::new(read_le64(b, 16)?),
            ref_count_root: Le64::new(read_le64(b, 24)?),
        })
    }
}

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

/// An opened metadata space map, read-only.
pub struct MetadataSpaceMap {
    /// Its root.
    pub root: DiskSmRoot,
    /// Index entries in use.
    pub index: TryVec<DiskIndexEntry>,
}

impl MetadataSpaceMap {
    /// Opens a map from its root: reads and checks the index block.
    pub fn open<D: BlockDevice>(bm: &BlockManager<D>, root: DiskSmRoot) -> PdResult<Self> {
        let nr_blocks = root.nr_blocks.get();
        let ib = root.bitmap_root.get();
        let bad = |kind| PdError { block: ib, kind };
        if nr_blocks > METADATA_MAX_BLOCKS {
            return Err(bad(BlockError::Shape("space map larger than the metadata limit")));
        }
        let data = bm.read(ib, &INDEX_VALIDATOR).map_err(bad)?;
        let n = nr_blocks.div_ceil(ENTRIES_PER_BLOCK) as usize;
        let mut index = TryVec::try_with_capacity(n).map_err(|e| bad(BlockError::Io(e)))?;
        for i in 0..n {
            let off = 16 + 16 * i;
            let e = DiskIndexEntry {
                blocknr: Le64::new(read_le64(&data, off).unwrap_or(0)),
                nr_free: Le32::new(read_le32(&data, off + 8).unwrap_or(0)),
                none_free_before: Le32::new(read_le32(&data, off + 12).unwrap_or(0)),
            };
            index.try_push(e).map_err(|e| bad(BlockError::Io(e)))?;
        }
        Ok(MetadataSpaceMap { root, index })
    }

    /// Every block's reference count, in block order (`sm_ll_lookup` for
    /// each, reading each bitmap once).
    pub fn counts<D: BlockDevice>(&self, bm: &BlockManager<D>) -> PdResult<TryVec<u32>> {
        let nr = self.root.nr_blocks.get();
        let mut out =
            TryVec::try_with_capacity(nr as usize).map_err(|e| PdError { block: 0, kind: BlockError::Io(e) })?;
        for (i, ie) in self.index.iter().enumerate() {
            let b = ie.blocknr.get();
            let data = bm.read(b, &BITMAP_VALIDATOR).map_err(|kind| PdError { block: b, kind })?;
            let bits = data.get(16..).unwrap_or(&[]);
            let first = i as u64 * ENTRIES_PER_BLOCK;
            for e in 0..ENTRIES_PER_BLOCK.min(nr - first) {
                let mut c = bitmap_entry(bits, e);
                if c == 3 {
                    let v = btree::lookup(bm, self.root.ref_count_root.get(), first + e, 4)?;
                    c = v.and_then(|v| read_le32(&v, 0)).ok_or(PdError {
                        block: self.root.ref_count_root.get(),
                        kind: BlockError::Shape("overflow count missing from the ref count tree"),
                    })?;
                }
                out.try_push(c).map_err(|e| PdError { block: b, kind: BlockError::Io(e) })?;
            }
        }
        Ok(out)
    }

    /// The bitmap blocks and the index block (what the map itself uses).
    pub fn own_blocks(&self, f: &mut dyn FnMut(Block)) {
        f(self.root.bitmap_root.get());
        for ie in self.index.iter() {
            f(ie.blocknr.get());
        }
    }
}
