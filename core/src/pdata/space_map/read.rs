// SPDX-License-Identifier: GPL-2.0-only
//! The metadata space map, read side (`sm_ll_open_metadata`,
//! `sm_ll_lookup`): the index block and the counts its bitmaps hold.

use super::{
    bitmap_entry, DiskBitmapHeader, DiskIndexEntry, DiskMetadataIndexHeader, DiskSmRoot, BITMAP_VALIDATOR,
    ENTRIES_PER_BLOCK, INDEX_VALIDATOR, METADATA_MAX_BLOCKS,
};
use crate::endian::{Le32, OnDisk};
use crate::mem::TryVec;
use crate::pdata::block::{Block, BlockError, BlockManager};
use crate::pdata::btree;
use crate::pdata::error::{PdError, PdResult};
use crate::platform::BlockDevice;

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
            let off = DiskMetadataIndexHeader::SIZE + DiskIndexEntry::SIZE * i;
            let e = DiskIndexEntry::unpack_at(&data, off).ok_or_else(|| bad(BlockError::Shape("short block")))?;
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
            let bits = data.get(DiskBitmapHeader::SIZE..).unwrap_or(&[]);
            let first = i as u64 * ENTRIES_PER_BLOCK;
            for e in 0..ENTRIES_PER_BLOCK.min(nr - first) {
                let mut c = bitmap_entry(bits, e);
                if c == 3 {
                    let v = btree::lookup(bm, self.root.ref_count_root.get(), first + e, 4)?;
                    c = v.and_then(|v| Le32::unpack(&v)).map(Le32::get).ok_or(PdError {
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
