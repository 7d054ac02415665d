// SPDX-License-Identifier: GPL-2.0-only
//! Offline reading of dm-clone metadata: `dmrs clone dump` and
//! `dmrs clone check`. The check validates every block it reads
//! (location, checksum, shape), then recounts every reference the
//! superblock, the space map and the bitset's array make and compares the
//! counts with what the space map stores.

use dmrs_core::clone::superblock::{self, Superblock};
use dmrs_core::pdata::block::{BlockManager, BLOCK_SIZE};
use dmrs_core::pdata::btree::{self, PdError};
use dmrs_core::pdata::space_map::{bitmap_entry, MetadataSpaceMap, BITMAP_VALIDATOR, ENTRIES_PER_BLOCK};
use dmrs_core::pdata::{bitset, block::BlockError};
use dmrs_core::platform::BlockDevice;

/// What the metadata device holds.
#[derive(Debug, Default)]
pub struct CloneImage {
    /// The superblock, if valid.
    pub sb: Option<Superblock>,
    /// Block 0 is all zeros: the kernel would format.
    pub all_zero: bool,
    /// Regions.
    pub nr_regions: u64,
    /// The region bitset's words.
    pub words: Vec<u64>,
    /// `nr_allocated` and `nr_blocks` of the space map.
    pub blocks_used: u64,
    /// Blocks the space map covers.
    pub blocks_total: u64,
    /// Problems, one line each.
    pub problems: Vec<String>,
}

fn pd(e: PdError) -> String {
    let what = match e.kind {
        BlockError::Io(x) => format!("read error ({x})"),
        BlockError::BlockNr { found } => format!("blocknr {found} != wanted {} (-ENOTBLK)", e.block),
        BlockError::Checksum { found, wanted } => format!("csum {found} != wanted {wanted} (-EILSEQ)"),
        BlockError::Shape(s) => format!("{s} (-EILSEQ)"),
        BlockError::OutOfRange => "beyond the end of the device".to_string(),
    };
    format!("block {}: {what}", e.block)
}

/// Reads and checks the metadata on `dev`.
pub fn inspect(dev: &dyn BlockDevice) -> CloneImage {
    let bm = BlockManager::new(dev);
    let mut img = CloneImage::default();
    let mut b0 = vec![0u8; BLOCK_SIZE];
    if let Err(e) = bm.read_raw(0, &mut b0) {
        img.problems.push(format!("cannot read the superblock: {e:?} (device has {} blocks)", bm.nr_blocks()));
        return img;
    }
    if superblock::all_zeroes(&b0) {
        img.all_zero = true;
        return img;
    }
    let sb = match superblock::check(&b0) {
        Ok(sb) => sb,
        Err(p) => {
            img.problems.push(p.to_string());
            return img;
        }
    };
    img.sb = Some(sb);
    if sb.region_size == 0 || sb.target_size == 0 {
        img.problems.push(format!("region size {} / target size {} is zero", sb.region_size, sb.target_size));
        return img;
    }
    img.nr_regions = sb.target_size.div_ceil(sb.region_size);
    // The bitset keeps a bit per region in metadata blocks: more regions
    // than the device has bits cannot be real (and are not walked).
    let max_regions = bm.nr_blocks().saturating_mul(BLOCK_SIZE as u64 * 8);
    if img.nr_regions > max_regions {
        img.problems.push(format!(
            "target size {} / region size {} gives {} regions, more than the metadata device's {} blocks can hold",
            sb.target_size,
            sb.region_size,
            img.nr_regions,
            bm.nr_blocks()
        ));
        img.nr_regions = 0;
        return img;
    }
    let nr_blocks = sb.sm_root.nr_blocks.get();
    img.blocks_total = nr_blocks;
    img.blocks_used = sb.sm_root.nr_allocated.get();
    if nr_blocks > bm.nr_blocks() {
        img.problems.push(format!("space map covers {nr_blocks} blocks, the device has {}", bm.nr_blocks()));
    }
    let sm = match MetadataSpaceMap::open(&bm, sb.sm_root) {
        Ok(sm) => sm,
        Err(e) => {
            img.problems.push(format!("space map index: {}", pd(e)));
            return img;
        }
    };
    // What the structures reference.
    let mut refs = vec![0u32; nr_blocks as usize];
    let mut beyond = Vec::new();
    let mut add = |b: u64| match refs.get_mut(b as usize) {
        Some(r) => *r += 1,
        None => beyond.push(b),
    };
    add(superblock::SUPERBLOCK_LOCATION);
    sm.own_blocks(&mut add);
    if let Err(e) = btree::walk(&bm, sb.sm_root.ref_count_root.get(), 4, &mut add, &mut |_, _| Ok(())) {
        img.problems.push(format!("ref count tree: {}", pd(e)));
    }
    match bitset::load(&bm, sb.bitset_root, img.nr_regions, &mut add) {
        Ok(w) => img.words = w.to_vec(),
        Err(e) => img.problems.push(format!("region bitset: {}", pd(e))),
    }
    for b in beyond {
        img.problems.push(format!("block {b} is referenced but beyond the space map ({nr_blocks} blocks)"));
    }
    // What the space map says.
    match sm.counts(&bm) {
        Ok(counts) => {
            let mut allocated = 0u64;
            for (b, (&c, &r)) in counts.iter().zip(refs.iter()).enumerate() {
                allocated += (c > 0) as u64;
                if c != r {
                    img.problems.push(format!("block {b}: space map count {c}, referenced {r} times"));
                }
            }
            if allocated != img.blocks_used {
                img.problems.push(format!(
                    "space map root says {} blocks allocated, the bitmaps hold {allocated}",
                    img.blocks_used
                ));
            }
        }
        Err(e) => img.problems.push(format!("space map bitmaps: {}", pd(e))),
    }
    // Index entries' free counts.
    for (i, ie) in sm.index.iter().enumerate() {
        let Ok(data) = bm.read(ie.blocknr.get(), &BITMAP_VALIDATOR) else { continue };
        // nr_free counts every entry of the bitmap block, also those past nr_blocks.
        let free = (0..ENTRIES_PER_BLOCK).filter(|&e| bitmap_entry(&data[16..], e) == 0).count() as u32;
        if free != ie.nr_free.get() {
            img.problems.push(format!("index entry {i}: nr_free {}, bitmap has {free} free", ie.nr_free.get()));
        }
    }
    img
}

/// Hydrated regions as `(first, count)` runs.
pub fn runs(img: &CloneImage) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    // Word by word: all-zero words (unhydrated stretches) are skipped whole.
    let set = img.words.iter().enumerate().filter(|(_, &w)| w != 0);
    let regions = set.flat_map(|(i, &w)| (0..64).filter(move |b| w >> b & 1 != 0).map(move |b| i as u64 * 64 + b));
    for r in regions.take_while(|&r| r < img.nr_regions) {
        match out.last_mut() {
            Some((f, c)) if *f + *c == r => *c += 1,
            _ => out.push((r, 1)),
        }
    }
    out
}

/// The first line of `dmrs clone dump`.
pub fn summary(img: &CloneImage) -> String {
    match &img.sb {
        None if img.all_zero => "superblock new".to_string(),
        None => "superblock invalid".to_string(),
        Some(sb) => format!(
            "superblock version={} region_size={} target_size={} regions={} hydrated={} metadata_blocks={}/{}",
            sb.version,
            sb.region_size,
            sb.target_size,
            img.nr_regions,
            bitset::count(&img.words, img.nr_regions),
            img.blocks_used,
            img.blocks_total
        ),
    }
}

/// `dmrs clone dump` text.
pub fn dump_text(img: &CloneImage) -> String {
    let mut s = summary(img) + "\n";
    for (f, c) in runs(img) {
        s += &format!("{f} {c}\n");
    }
    s
}

/// `dmrs clone dump --json`.
pub fn dump_json(img: &CloneImage) -> serde_json::Value {
    let sb = match &img.sb {
        None if img.all_zero => serde_json::json!("new"),
        None => serde_json::Value::Null,
        Some(sb) => serde_json::json!({
            "version": sb.version, "region_size": sb.region_size, "target_size": sb.target_size,
            "regions": img.nr_regions, "hydrated": bitset::count(&img.words, img.nr_regions),
            "metadata_blocks_used": img.blocks_used, "metadata_blocks_total": img.blocks_total,
        }),
    };
    let runs: Vec<_> = runs(img).into_iter().map(|(f, c)| serde_json::json!([f, c])).collect();
    serde_json::json!({ "superblock": sb, "hydrated": runs, "errors": img.problems })
}
