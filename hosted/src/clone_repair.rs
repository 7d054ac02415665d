// SPDX-License-Identifier: GPL-2.0-only
//! `dmrs clone repair`: rebuilds dm-clone metadata from whatever bitset
//! blocks still verify. The array's btree is walked as far as its nodes
//! verify; every array block that verifies (location, checksum, shape)
//! gives its words; regions whose block or node does not verify, or that
//! no walked entry covers, are in doubt and marked unhydrated: dm-clone
//! then copies them from the source again, which is always safe, whereas
//! trusting a doubtful bit would expose unhydrated destination data.
//! With no usable superblock nothing can be placed: every region is
//! unhydrated (the sizes must then be given).

use crate::error::Error;
use dmrs_core::clone::superblock;
use dmrs_core::endian::{read_le32, read_le64};
use dmrs_core::pdata::array::{calc_max_entries, ARRAY_HEADER_SIZE, ARRAY_VALIDATOR};
use dmrs_core::pdata::block::{BlockManager, BLOCK_SIZE};
use dmrs_core::pdata::btree;
use dmrs_core::platform::BlockDevice;

/// What a clone repair recovered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Salvaged {
    /// Region size, sectors.
    pub region_size: u64,
    /// Target size, sectors.
    pub target_size: u64,
    /// Hydrated `(first, count)` runs that verified.
    pub runs: Vec<(u64, u64)>,
    /// Regions whose bits could not be verified (now unhydrated).
    pub in_doubt: u64,
    /// Why parts were lost, one line each.
    pub problems: Vec<String>,
}

/// Salvages `dev`; `sizes` (region, target) overrides or replaces the
/// superblock's. Fails (exit code 2) when the sizes are unknown or zero.
pub fn salvage(dev: &dyn BlockDevice, sizes: Option<(u64, u64)>) -> Result<Salvaged, Error> {
    let bm = BlockManager::new(dev);
    let mut b0 = vec![0u8; BLOCK_SIZE];
    let sb = match bm.read_raw(0, &mut b0) {
        Ok(()) => superblock::check(&b0).map_err(|p| p.to_string()),
        Err(e) => Err(format!("cannot read the superblock: {e:?}")),
    };
    let (region_size, target_size) = match (&sb, sizes) {
        (_, Some(s)) => s,
        (Ok(sb), None) => (sb.region_size, sb.target_size),
        (Err(e), None) => return Err(Error::usage_or_io(format!("{e}; give --region-size and --target-size"))),
    };
    if region_size == 0 || target_size == 0 {
        return Err(Error::usage_or_io("region size and target size must not be 0"));
    }
    let nr_regions = target_size.div_ceil(region_size);
    let mut out = Salvaged { region_size, target_size, ..Default::default() };
    let Ok(sb) = sb else {
        out.in_doubt = nr_regions;
        out.problems.push("superblock unusable: every region is in doubt".into());
        return Ok(out);
    };
    if (sb.region_size, sb.target_size) != (region_size, target_size) {
        out.in_doubt = nr_regions;
        out.problems.push("sizes differ from the superblock's: every region is in doubt".into());
        return Ok(out);
    }
    // The words that verified, keyed by word index. Bounded first: a bitset
    // cannot have more words than array blocks on the device could hold,
    // so a forged target size cannot make this allocate without limit.
    let nr_words = nr_regions.div_ceil(64);
    let per_block = calc_max_entries(8) as u64;
    if nr_words > bm.nr_blocks().saturating_mul(per_block) {
        out.in_doubt = nr_regions;
        out.problems.push(format!("{nr_regions} regions cannot fit a bitset on this device: every region is in doubt"));
        return Ok(out);
    }
    let mut words: Vec<Option<u64>> = vec![None; nr_words as usize];
    let mut problems = Vec::new();
    let walked = btree::walk(&bm, sb.bitset_root, 8, &mut |_| {}, &mut |index, value| {
        let array_block = read_le64(value, 0).unwrap_or(u64::MAX);
        match bm.read(array_block, &ARRAY_VALIDATOR) {
            Ok(data) => {
                let entries = read_le32(&data, 8).unwrap_or(u32::MAX) as u64;
                let ok = read_le32(&data, 12) == Some(8)
                    && read_le32(&data, 4) == Some(per_block as u32)
                    && entries <= per_block;
                if !ok {
                    problems.push(format!("array block {array_block} (index {index}): bad shape"));
                    return Ok(());
                }
                for i in 0..entries {
                    let Some(word) = index.checked_mul(per_block).and_then(|x| x.checked_add(i)) else { break };
                    if let Some(slot) = words.get_mut(word as usize) {
                        *slot = read_le64(&data, ARRAY_HEADER_SIZE + 8 * i as usize);
                    }
                }
            }
            Err(e) => problems.push(format!("array block {array_block} (index {index}): {e:?}")),
        }
        Ok(())
    });
    if let Err(e) = walked {
        problems.push(format!("bitset btree: block {}: {:?}", e.block, e.kind));
    }
    out.problems = problems;
    for region in 0..nr_regions {
        match words[(region / 64) as usize] {
            Some(word) if word & (1 << (region % 64)) != 0 => match out.runs.last_mut() {
                Some((first, count)) if *first + *count == region => *count += 1,
                _ => out.runs.push((region, 1)),
            },
            Some(_) => {}
            None => out.in_doubt += 1,
        }
    }
    Ok(out)
}
