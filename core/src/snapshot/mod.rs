// SPDX-License-Identifier: GPL-2.0-only
//! dm-snap.c: the `snapshot-origin`, `snapshot` and `snapshot-merge`
//! targets over the exception stores.
//!
//! - [`ctr`]: table lines and their error strings;
//! - [`dm_snapshot`]: `struct dm_snapshot` and its per-snapshot steps;
//! - [`driver`]: the origin registry (`_origins`, `_origins_lock`), map,
//!   status, handover, merge.
//!
//! - [`pending`]: pending exceptions and their pool;
//! - [`track`]: tracked chunks (reads remapped to the origin in flight);
//! - [`target`]: the three target types over the driver.
//!
//! The I/O model is dm-snap.c's: `map` remaps what needs no copy; writes
//! that need one wait on a pending exception whose copy runs without any
//! lock held and completes through `copy_callback` (in allocation order),
//! after which the waiting bios are issued. core/README.md has the whole
//! picture.

pub mod ctr;
pub mod dm_snapshot;
pub mod driver;
pub mod pending;
pub mod target;
pub mod track;

pub use driver::{InMemory, MergeProgress, SnapId, SnapshotDriver};

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
