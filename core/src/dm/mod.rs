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

pub mod target;
pub use target::{Data, DeviceCallout, Target, TargetCtx};

/// The platform's `dm_table_event`, set once at start: called with the
/// handle a target was given ([`crate::snapshot::SnapshotDriver::set_event_handle`],
/// [`crate::clone::target::CloneTarget::set_event_handle`]), from process
/// context (it may sleep), never under a spinlock.
static TABLE_EVENT: crate::sync::Once<fn(u64)> = crate::sync::Once::new();

/// Registers the platform's `dm_table_event`.
pub fn set_table_event(f: fn(u64)) {
    TABLE_EVENT.call_once(|| f);
}

/// `dm_table_event(ti->table)`: wakes `dmsetup wait` and dmeventd for the
/// table behind `handle` (0: none given).
pub(crate) fn table_event(handle: u64) {
    if handle != 0 {
        if let Some(f) = TABLE_EVENT.get() {
            f(handle)
        }
    }
}

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

/// What a platform gives the targets to move bios and data: its bio and
/// `bio_list` types, issuing and ending bios (`submit_bio_noacct`,
/// `bio_endio`) and copies (dm-kcopyd). The kernel module implements it
/// over `struct bio` and kcopyd; [`SyncIo`] has no bios of its own and
/// copies inline (the hosted shim, tests, loom).
pub trait IoPlatform: Send + Sync {
    /// A device the targets hold.
    type Dev: crate::platform::DmDevice;
    /// An owned bio, from `map` until it is issued or ended.
    type Bio: Send;
    /// `struct bio_list`: a FIFO of bios; adding never allocates.
    type BioList: Default + Send;

    /// `bio_list_add`.
    fn bio_list_add(list: &mut Self::BioList, bio: Self::Bio);
    /// `bio_list_pop`.
    fn bio_list_pop(list: &mut Self::BioList) -> Option<Self::Bio>;
    /// The bio's first sector on the device it points at and its length
    /// in sectors (`bi_sector`, `bio_sectors`).
    fn bio_sectors(bio: &Self::Bio) -> (u64, u64);
    /// Points `bio` at `dev`, `sector` (`bio_set_dev`, `bi_sector`).
    fn remap(bio: &mut Self::Bio, dev: &Self::Dev, sector: u64);
    /// `submit_bio_noacct`: issues a remapped bio.
    fn submit(&self, bio: Self::Bio);
    /// `bio_endio` with this result.
    fn endio(&self, bio: Self::Bio, r: Result<()>);
    /// `dm_kcopyd_copy`: starts copying `nr_sectors`. Returns `Some(ok)`
    /// when the copy is already complete; `None` when the platform will
    /// report it later to the target that started it (`copy_callback`
    /// with `context`), from a context that may sleep.
    fn start_copy(
        &self,
        from: &Self::Dev,
        from_sector: u64,
        to: &Self::Dev,
        to_sector: u64,
        nr_sectors: u64,
        context: u64,
    ) -> Option<bool>;
    /// A copy that is complete when it returns (a merge step waits for it).
    fn copy(&self, from: &Self::Dev, from_sector: u64, to: &Self::Dev, to_sector: u64, nr_sectors: u64) -> Result<()>;
}

/// The bio type of a platform without bios of its own: none exists.
#[derive(Debug)]
pub enum NoBio {}

/// A FIFO of a platform's bios (`struct bio_list`): adding never
/// allocates. `()` is the queue of a platform without bios.
pub trait BioQueue: Default + Send {
    /// The bios it holds.
    type Bio: Send;
    /// `bio_list_add`.
    fn push(&mut self, bio: Self::Bio);
    /// `bio_list_pop`.
    fn pop(&mut self) -> Option<Self::Bio>;
}

impl BioQueue for () {
    type Bio = NoBio;
    fn push(&mut self, bio: NoBio) {
        match bio {}
    }
    fn pop(&mut self) -> Option<NoBio> {
        None
    }
}

/// A platform whose I/O is done by the callers themselves, synchronously
/// (the hosted shim, tests, loom): no bios are queued in the core, copies
/// complete inline with the [`crate::platform::ChunkCopier`] `K`.
#[derive(Clone, Copy, Debug)]
pub struct SyncIo<D, K = crate::platform::SyncCopier> {
    copier: K,
    _d: core::marker::PhantomData<fn() -> D>,
}

impl<D, K: Default> Default for SyncIo<D, K> {
    fn default() -> Self {
        Self::new(K::default())
    }
}

impl<D, K> SyncIo<D, K> {
    /// Copies with `copier`.
    pub fn new(copier: K) -> Self {
        SyncIo { copier, _d: core::marker::PhantomData }
    }
}

impl<D: crate::platform::DmDevice, K: crate::platform::ChunkCopier> IoPlatform for SyncIo<D, K> {
    type Dev = D;
    type Bio = NoBio;
    type BioList = ();

    fn bio_list_add(_: &mut (), bio: NoBio) {
        match bio {}
    }
    fn bio_list_pop(_: &mut ()) -> Option<NoBio> {
        None
    }
    fn bio_sectors(bio: &NoBio) -> (u64, u64) {
        match *bio {}
    }
    fn remap(bio: &mut NoBio, _: &D, _: u64) {
        match *bio {}
    }
    fn submit(&self, bio: NoBio) {
        match bio {}
    }
    fn endio(&self, bio: NoBio, _: Result<()>) {
        match bio {}
    }
    fn start_copy(&self, from: &D, from_sector: u64, to: &D, to_sector: u64, nr: u64, _: u64) -> Option<bool> {
        Some(self.copier.copy(from, from_sector, to, to_sector, nr).is_ok())
    }
    fn copy(&self, from: &D, from_sector: u64, to: &D, to_sector: u64, nr: u64) -> Result<()> {
        self.copier.copy(from, from_sector, to, to_sector, nr)
    }
}

/// What happened to a bio a target took for work.
#[derive(Debug)]
pub enum Queued<B> {
    /// Remapped (the platform's `remap` was done): issue it.
    Remapped(B),
    /// The target keeps it: it is issued or ended when its exception
    /// completes.
    Queued,
    /// A lock was held by a copy or a merge step and the caller may not
    /// wait: run it again from process context (`blocking`).
    Retry(B),
    /// End it with this result.
    End(B, Result<()>),
}
