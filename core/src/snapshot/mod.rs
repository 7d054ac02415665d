// SPDX-License-Identifier: GPL-2.0-only
//! dm-snap.c: the `snapshot-origin`, `snapshot` and `snapshot-merge`
//! targets over the exception stores.
//!
//! - [`ctr`]: table lines and their error strings;
//! - [`dm_snapshot`]: `struct dm_snapshot` and its per-snapshot steps;
//! - [`driver`]: the origin registry (`_origins`, `_origins_lock`), map,
//!   status, handover, merge.
//!
//! I/O is synchronous: the calling thread does the copy (kcopyd's job) and
//! the commit before its write proceeds. The exclusion the kernel gets from
//! pending exceptions and tracked chunks comes from the snapshot's `RwSem`:
//! a read of an unmapped chunk holds it shared while reading the origin; an
//! exception is made (copy + commit + table insert) under it exclusively,
//! so exactly one copy is made per chunk and no reader sees a half-copied
//! chunk; origin writes hold `_origins_lock` shared from the copies to their
//! own write, and handover takes it exclusively (the kernel's internal
//! suspend of the origin).

pub mod ctr;
pub mod dm_snapshot;
pub mod driver;
pub mod pending;
pub mod track;

pub use driver::{MergeProgress, SnapId, SnapshotDriver, Volatile};

/// `DM_MSG_PREFIX` of dm-snap.c.
pub const DM_MSG_PREFIX: &str = "snapshots";
/// `snapshot` target version in Linux 6.12.
pub const SNAPSHOT_VERSION: [u32; 3] = [1, 16, 0];
/// `snapshot-origin` target version in Linux 6.12.
pub const ORIGIN_VERSION: [u32; 3] = [1, 9, 0];
/// `snapshot-merge` target version in Linux 6.12.
pub const MERGE_VERSION: [u32; 3] = [1, 5, 0];

#[cfg(test)]
mod tests;
