// SPDX-License-Identifier: GPL-2.0-only
//! dm-clone metadata bytes through every persistent-data reader (the
//! target's `CloneMetadata::open`, `clone check`, `clone dump`). The first
//! bytes of the input choose, block by block, a validator whose location
//! and checksum are fixed before parsing, so the fuzzer gets past the
//! checksums and into the structures (a mutator that fixes checksums).
#![no_main]

use dmrs_core::clone::metadata::CloneMetadata;
use dmrs_core::clone::superblock::SB_VALIDATOR;
use dmrs_core::pdata::array::ARRAY_VALIDATOR;
use dmrs_core::pdata::btree::NODE_VALIDATOR;
use dmrs_core::pdata::space_map::{BITMAP_VALIDATOR, INDEX_VALIDATOR};
use dmrs_core::platform::RamDev;
use libfuzzer_sys::fuzz_target;

const BLOCK: usize = 4096;
const BLOCKS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let (choice, image) = data.split_at(data.len().min(BLOCKS));
    let mut bytes = image[..image.len().min(BLOCKS * BLOCK)].to_vec();
    bytes.resize(BLOCKS * BLOCK, 0);
    let validators = [
        None,
        Some(&SB_VALIDATOR),
        Some(&NODE_VALIDATOR),
        Some(&ARRAY_VALIDATOR),
        Some(&INDEX_VALIDATOR),
        Some(&BITMAP_VALIDATOR),
    ];
    for (i, block) in bytes.chunks_mut(BLOCK).enumerate() {
        let pick = choice.get(i).copied().unwrap_or(0) as usize % validators.len();
        if let Some(v) = validators[pick] {
            let _ = v.prepare_for_write(i as u64, block);
        }
    }
    let Ok(dev) = RamDev::from_bytes(&bytes, 512) else { return };
    let img = dmrs_hosted::clone::inspect(&dev);
    let _ = dmrs_hosted::clone::dump_text(&img);
    // The target's own open, with the sizes the superblock claims when it
    // has some (bounded), else a small clone.
    let (region, target) = img.sb.map(|sb| (sb.region_size, sb.target_size)).unwrap_or((8, 4096));
    if region != 0 && target / region.max(1) <= 1 << 20 {
        let _ = CloneMetadata::open(&dev, target, region);
    }
});
