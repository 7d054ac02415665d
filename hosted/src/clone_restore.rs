// SPDX-License-Identifier: GPL-2.0-only
//! `dmrs clone restore`, and the writer behind `clone repair`: fresh
//! dm-clone metadata built by the core's own metadata code (the code the
//! kernel module runs, whose metadata the kernel opens): format, mark the
//! hydrated regions, two-phase commit.

use crate::error::Error;
use dmrs_core::clone::metadata::CloneMetadata;
use dmrs_core::platform::{BlockDevice, ReqFlags};

/// Checks `runs` against `nr_regions`: inside, sorted, not overlapping, non-empty.
/// A bad run is damage in the dump (exit code 1).
pub fn validate_runs(runs: &[(u64, u64)], nr_regions: u64) -> Result<(), Error> {
    let mut next = 0u64;
    for &(b, l) in runs {
        let end = b.checked_add(l).ok_or_else(|| Error::failed(format!("range {b}+{l} overflows")))?;
        if l == 0 || b < next || end > nr_regions {
            return Err(Error::failed(format!(
                "range {b}+{l} is empty, out of order, overlapping or beyond {nr_regions} regions"
            )));
        }
        next = end;
    }
    Ok(())
}

/// Writes fresh metadata for `target_size`/`region_size` sectors with
/// `runs` hydrated onto `dev` (its superblock is zeroed first, so the
/// core formats rather than opens). Every failure is a usage or I/O
/// error (exit code 2).
pub fn write_clone(
    dev: &dyn BlockDevice,
    target_size: u64,
    region_size: u64,
    runs: &[(u64, u64)],
) -> Result<(), Error> {
    write(dev, target_size, region_size, runs).map_err(Error::usage_or_io)
}

fn write(dev: &dyn BlockDevice, target_size: u64, region_size: u64, runs: &[(u64, u64)]) -> Result<(), String> {
    if region_size == 0 || target_size == 0 {
        return Err("region size and target size must not be 0".into());
    }
    let nr_regions = target_size.div_ceil(region_size);
    validate_runs(runs, nr_regions).map_err(|e| e.msg)?;
    // Bounded before the core allocates the bitmaps: the bitset's words
    // must fit the device's blocks (509 words per array block).
    let words_max = (dev.size_sectors() / 8).saturating_mul(dmrs_core::pdata::array::U64_PER_BLOCK);
    if nr_regions.div_ceil(64) > words_max {
        return Err(format!("{nr_regions} regions cannot fit a bitset on this device"));
    }
    dev.write(0, &[0u8; 4096], ReqFlags::empty()).map_err(|e| format!("write superblock: {e}"))?;
    let md = CloneMetadata::open(dev, target_size, region_size).map_err(|e| format!("format: {e:?}"))?;
    for &(b, l) in runs {
        md.cond_set_range(b, l).map_err(|e| format!("mark {b}+{l}: {e:?}"))?;
    }
    md.pre_commit().map_err(|e| format!("pre_commit: {e:?}"))?;
    md.commit().map_err(|e| format!("commit: {e:?}"))?;
    dev.flush().map_err(|e| format!("flush: {e}"))
}

/// True when `dev` holds dm-clone metadata whose superblock verifies.
pub fn holds_valid_metadata(dev: &dyn BlockDevice) -> bool {
    let mut b0 = vec![0u8; 4096];
    dev.read(0, &mut b0).is_ok() && dmrs_core::clone::superblock::check(&b0).is_ok()
}
