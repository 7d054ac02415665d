// SPDX-License-Identifier: GPL-2.0-only
//! Table-line parsing of `clone` in the kernel's order and with its
//! `ti->error` strings (`parse_region_size`, `parse_feature_args`,
//! `parse_core_args`). Opening the devices between these steps and loading
//! the metadata are `clone_ctr`'s ([`super::target::CloneTarget::ctr`]).

use crate::args::{dm_read_arg, dm_read_arg_group, kstrtouint};
use crate::errno::TargetError;

/// `MIN_REGION_SIZE`.
pub const MIN_REGION_SIZE: u32 = 1 << 3;
/// `MAX_REGION_SIZE`.
pub const MAX_REGION_SIZE: u32 = 1 << 21;
/// `DEFAULT_HYDRATION_THRESHOLD`.
pub const DEFAULT_HYDRATION_THRESHOLD: u32 = 1;
/// `DEFAULT_HYDRATION_BATCH_SIZE`.
pub const DEFAULT_HYDRATION_BATCH_SIZE: u32 = 1;

/// `parse_region_size` without the logical block size check (which needs
/// the devices): `[MIN_REGION_SIZE, MAX_REGION_SIZE]`, a power of two.
pub fn parse_region_size(arg: &str) -> Result<u32, TargetError> {
    let r = dm_read_arg(Some(arg), MIN_REGION_SIZE, MAX_REGION_SIZE, c"Invalid region size")?;
    if !r.is_power_of_two() {
        return Err(TargetError::inval(c"Region size is not a power of 2"));
    }
    Ok(r)
}

/// What the feature and core argument groups set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloneOptions {
    /// Not `no_hydration`.
    pub hydration: bool,
    /// Not `no_discard_passdown`.
    pub discard_passdown: bool,
    /// `hydration_threshold`.
    pub hydration_threshold: u32,
    /// `hydration_batch_size`.
    pub hydration_batch_size: u32,
}

/// `parse_feature_args` then `parse_core_args` on the arguments after the
/// region size: `[<#feature args> [no_hydration] [no_discard_passdown]]
/// [<#core args> [hydration_threshold N] [hydration_batch_size N]]`.
pub fn parse_options(rest: &[&str]) -> Result<CloneOptions, TargetError> {
    let mut o = CloneOptions {
        hydration: true,
        discard_passdown: true,
        hydration_threshold: DEFAULT_HYDRATION_THRESHOLD,
        hydration_batch_size: DEFAULT_HYDRATION_BATCH_SIZE,
    };
    let mut rest = rest;
    if let Some((count, tail)) = rest.split_first() {
        let n = dm_read_arg_group(Some(count), 0, 2, tail.len(), c"Invalid number of feature arguments")? as usize;
        let (features, after) = tail.split_at(n);
        for f in features {
            if f.eq_ignore_ascii_case("no_hydration") {
                o.hydration = false;
            } else if f.eq_ignore_ascii_case("no_discard_passdown") {
                o.discard_passdown = false;
            } else {
                return Err(TargetError::inval(c"Invalid feature argument"));
            }
        }
        rest = after;
    }
    if let Some((count, tail)) = rest.split_first() {
        let n = dm_read_arg_group(Some(count), 0, 4, tail.len(), c"Invalid number of core arguments")? as usize;
        if n & 1 != 0 {
            return Err(TargetError::inval(c"Number of core arguments must be even"));
        }
        for pair in tail.get(..n).unwrap_or(&[]).chunks(2) {
            let (k, v) = (pair.first().copied().unwrap_or(""), pair.get(1).copied().unwrap_or(""));
            if k.eq_ignore_ascii_case("hydration_threshold") {
                o.hydration_threshold =
                    kstrtouint(v).ok_or(TargetError::inval(c"Invalid value for argument `hydration_threshold'"))?;
            } else if k.eq_ignore_ascii_case("hydration_batch_size") {
                o.hydration_batch_size =
                    kstrtouint(v).ok_or(TargetError::inval(c"Invalid value for argument `hydration_batch_size'"))?;
            } else {
                return Err(TargetError::inval(c"Invalid core argument"));
            }
        }
    }
    Ok(o)
}
