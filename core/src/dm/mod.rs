// SPDX-License-Identifier: GPL-2.0-only
//! The device-mapper target layer: what a target's `map` is told about a
//! bio and what it decides, as `include/linux/device-mapper.h` has it.
//!
//! A platform hands every bio to the target's `map` in the submitter's
//! context. Most are *remapped* ([`MapResult::Remapped`]): the platform
//! points the bio at the device and sector given and issues it without
//! touching its data (`DM_MAPIO_REMAPPED`). Only bios that need a copy or a
//! metadata update first are kept ([`MapResult::Submitted`]); the platform
//! runs them in process context through the target's deferred path. `map`
//! itself never waits for I/O: where it would have to wait for a lock held
//! across a copy, it defers instead.
//!
//! What a remapped bio must carry to its completion (a tracked chunk) is
//! in [`PerBio`], the target's per-bio data (`ti->per_io_data_size`,
//! `dm_per_bio_data`), handed back to the target's `end_io`.

use crate::errno::{Errno, Result};
use crate::platform::ReqFlags;

/// What a bio asks for (`bio_op`, with an empty `REQ_PREFLUSH` write apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BioOp {
    /// `REQ_OP_READ`.
    Read,
    /// `REQ_OP_WRITE` with data.
    Write,
    /// An empty `REQ_PREFLUSH` write: flush the device caches.
    Flush,
    /// `REQ_OP_DISCARD`.
    Discard,
    /// Anything else (write zeroes, …): the targets refuse it.
    Other,
}

/// The part of a `struct bio` a target's `map` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BioInfo {
    /// What it asks for.
    pub op: BioOp,
    /// First sector, relative to the target's start (`dm_target_offset`).
    pub sector: u64,
    /// Length in sectors (`bio_sectors`); 0 for a flush.
    pub nr_sectors: u64,
    /// `REQ_PREFLUSH`, `REQ_FUA`, `REQ_SYNC`.
    pub flags: ReqFlags,
}

impl BioInfo {
    /// `bio_data_dir(bio) == WRITE` (writes, flushes and discards).
    pub fn is_write(&self) -> bool {
        self.op != BioOp::Read
    }

    /// Last sector + 1.
    pub fn end(&self) -> u64 {
        self.sector.saturating_add(self.nr_sectors)
    }
}

/// `map`'s decision.
#[derive(Debug, PartialEq, Eq)]
pub enum MapResult<D> {
    /// `DM_MAPIO_REMAPPED`: issue the bio to `dev` at `sector`, data untouched.
    Remapped {
        /// The device below.
        dev: D,
        /// Its sector there.
        sector: u64,
    },
    /// `DM_MAPIO_SUBMITTED` for work: the bio needs a copy or a metadata
    /// update first. The platform keeps it and runs the target's deferred
    /// path for it in process context, then ends it.
    Submitted,
    /// `DM_MAPIO_KILL`: end the bio with this error now.
    Kill(Errno),
    /// The target finished the bio in `map` (`bio_endio` then
    /// `DM_MAPIO_SUBMITTED`): end it with this result.
    Done(Result<()>),
}

/// A target's per-bio data, set by `map` for a remapped bio and given back
/// to `end_io` when the bio completes (`dm_per_bio_data`). All zero is
/// "nothing to do" (`init_tracked_chunk`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct PerBio {
    /// A snapshot's tracked chunk: slot in the driver's tracker + 1.
    pub(crate) tracked: u32,
}

impl PerBio {
    /// Nothing tracked.
    pub const fn new() -> Self {
        PerBio { tracked: 0 }
    }

    /// True when `end_io` has something to release.
    pub fn is_tracked(&self) -> bool {
        self.tracked != 0
    }
}
