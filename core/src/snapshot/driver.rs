// SPDX-License-Identifier: GPL-2.0-only
//! The snapshot driver: every snapshot and merge target, the origin
//! registry that links them to their origin (`_origins` under
//! `_origins_lock`), and the entry points a platform calls: ctr/dtr,
//! preresume/resume, `map` and `end_io`, the bio paths for writes that need
//! an exception (`origin_write_bio`, `snapshot_write_bio`) and their
//! completion (`copy_callback`), blocking reads and writes for callers
//! without bios, status, merge.
//!
//! Lock order: `_origins_lock` (the registry `RwSem`) → a snapshot's lock.
//! Two snapshot locks are only held together by handover (source, then
//! destination, under the registry write lock). No lock is held while a
//! copy is started (it may complete at once) or while waiting for one.

use super::ctr::parse_snapshot_args;
use super::dm_snapshot::DmSnapshot;
use super::pending::PendingTable;
use super::track::ChunkTracker;
use super::DM_MSG_PREFIX;
use crate::dm::{BioInfo, BioOp, DeviceCallout, IoPlatform, MapResult, PerBio, Queued};
use crate::emit::{Emitter, StatusType};
use crate::errno::{Errno, Result, TargetError};
use crate::exception::{Chunk, DmException, DM_CHUNK_CONSECUTIVE_BITS};
use crate::exception_store::{ExceptionStore, Metadata};
use crate::exception_table::{table_sizes, ExceptionTable};
use crate::mem::{self, TryVec};
use crate::platform::{split_io, BlockDevice, DmDevice, QueueLimits, ReqFlags, SECTOR_SHIFT};
use crate::sync::{AtomicU64, LockClass, Ordering, RwSem, RwSemReadGuard};

/// `_origins_lock`.
static ORIGINS_LOCK: LockClass = LockClass::new(c"dmrs_origins_lock");
/// A snapshot's `s->lock`.
static SNAPSHOT_LOCK: LockClass = LockClass::new(c"dmrs_snapshot_lock");

/// A registered snapshot or merge target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapId {
    index: u32,
    gen: u32,
}

struct Slot<P: IoPlatform> {
    gen: u32,
    origin_id: u64,
    cow_id: u64,
    /// Copy of the store's chunk size, for the registry's ordering.
    chunk_size: u32,
    is_merge: bool,
    /// The snapshot's own copier (`s->kcopyd_client`), given by its target
    /// ([`SnapshotDriver::set_copy_io`]): its copies complete through the
    /// target's `copy_done`. None: the driver's platform copies, and
    /// completes through [`SnapshotDriver::copy_callback`].
    io: Option<P>,
    snap: RwSem<DmSnapshot<P>>,
}

struct Registry<P: IoPlatform> {
    slots: TryVec<Option<Slot<P>>>,
    /// Registered slots, largest chunk size first (`__insert_snapshot`).
    order: TryVec<u32>,
    next_gen: u32,
}

/// What `__find_snapshots_sharing_cow` found.
#[derive(Clone, Copy, Debug, Default)]
struct Sharing {
    count: u32,
    src: Option<u32>,
    dest: Option<u32>,
    merge: Option<u32>,
}

impl<P: IoPlatform> Registry<P> {
    fn slot(&self, id: SnapId) -> Result<&Slot<P>> {
        match self.slots.get(id.index as usize) {
            Some(Some(s)) if s.gen == id.gen => Ok(s),
            _ => Err(Errno::ENODEV),
        }
    }

    fn at(&self, index: u32) -> Option<&Slot<P>> {
        self.slots.get(index as usize).and_then(|s| s.as_ref())
    }

    /// Snapshots of `origin_id` in registry order.
    fn of_origin(&self, origin_id: u64) -> impl Iterator<Item = (u32, &Slot<P>)> {
        self.order.iter().filter_map(move |&i| self.at(i).filter(|s| s.origin_id == origin_id).map(|s| (i, s)))
    }

    /// `__find_snapshots_sharing_cow` for the snapshot in slot `me`.
    /// Takes each sharing snapshot's lock shortly: the caller must not hold any.
    fn find_sharing_cow(&self, origin_id: u64, cow_id: u64) -> Sharing {
        let mut r = Sharing::default();
        for (i, s) in self.of_origin(origin_id) {
            if s.is_merge {
                r.merge = Some(i);
            }
            if s.cow_id != cow_id {
                continue;
            }
            if s.snap.down_read().active {
                r.src = Some(i);
            } else {
                r.dest = Some(i);
            }
            r.count += 1;
        }
        r
    }

    /// `__insert_snapshot`: before the first with a smaller chunk size.
    fn insert_ordered(&mut self, index: u32) -> Result<()> {
        let cs = self.at(index).map(|s| s.chunk_size).unwrap_or(0);
        let pos = self.order.iter().position(|&i| self.at(i).map(|s| s.chunk_size < cs).unwrap_or(false));
        self.order.try_insert(pos.unwrap_or(self.order.len()), index)
    }

    fn remove_ordered(&mut self, index: u32) {
        if let Some(p) = self.order.iter().position(|&i| i == index) {
            self.order.remove(p);
        }
    }
}

/// What a snapshot keeps only in memory (the kernel loses it on reboot,
/// a hosted process on exit): flags, and a transient store's exceptions.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct InMemory {
    /// `valid`.
    pub valid: bool,
    /// `snapshot_overflowed`.
    pub overflowed: bool,
    /// `merge_failed`.
    pub merge_failed: bool,
    /// Transient store: next free sector and exception ranges.
    pub transient: Option<(u64, TryVec<Range>)>,
}

/// An exception range `(old_chunk, new_chunk, consecutive_count)`.
pub type Range = (u64, u64, u32);

/// Progress of one merge step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeProgress {
    /// Chunks were merged; call again.
    Merged(u32),
    /// Nothing left: the merge finished (or was never running).
    Done,
    /// The merge stopped on an error (`Merge failed` in the status).
    Failed,
}

/// All snapshot targets of one platform instance (the kernel module's
/// globals, or one hosted process).
pub struct SnapshotDriver<P: IoPlatform> {
    reg: RwSem<Registry<P>>,
    /// Bios, copies (kcopyd) and their completions.
    platform: P,
    /// `_pending_exceptions_done_count`: bumped whenever a pending
    /// exception completes; synchronous callers wait for it to move.
    pending_done: AtomicU64,
    /// Bios remapped past a chunk that may change (`tracked_chunk_hash`).
    tracker: ChunkTracker,
    /// Only in loom builds, only set by loom-tests/tests/handover.rs: see
    /// [`Self::break_handover_for_loom`].
    #[cfg(loom)]
    broken_handover: bool,
    /// Only in loom builds: see [`Self::break_tracking_for_loom`].
    #[cfg(loom)]
    broken_tracking: bool,
    /// Only in loom builds: see [`Self::break_commit_order_for_loom`].
    #[cfg(loom)]
    broken_commit_order: bool,
    /// Only in loom builds: see [`Self::break_pending_lookup_for_loom`].
    #[cfg(loom)]
    broken_pending_lookup: bool,
}

impl<P: IoPlatform> SnapshotDriver<P> {
    /// An empty registry on `platform`.
    pub fn new(platform: P) -> Result<Self> {
        Ok(SnapshotDriver {
            reg: RwSem::new(Registry { slots: TryVec::new(), order: TryVec::new(), next_gen: 1 }, &ORIGINS_LOCK)?,
            platform,
            pending_done: AtomicU64::new(0),
            tracker: ChunkTracker::new(),
            #[cfg(loom)]
            broken_handover: false,
            #[cfg(loom)]
            broken_tracking: false,
            #[cfg(loom)]
            broken_commit_order: false,
            #[cfg(loom)]
            broken_pending_lookup: false,
        })
    }

    /// The platform the driver moves bios and copies with.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// Test hook, compiled only with `--cfg loom`: breaks this driver's
    /// handover on purpose. [`Self::snapshot_resume`] then drops the registry
    /// write lock between moving the exceptions and activating the
    /// destination, letting origin writes in where the kernel keeps the
    /// origin suspended (b735fede8d95). The handover model's `#[should_panic]`
    /// variant uses it to show the model catches the lost exception.
    #[cfg(loom)]
    pub fn break_handover_for_loom(&mut self) {
        self.broken_handover = true;
    }

    /// Test hook, compiled only with `--cfg loom`: exceptions become visible
    /// without waiting for tracked reads of their chunk (no
    /// `__check_for_conflicting_io`). The tracked-chunk model's
    /// `#[should_panic]` variant uses it.
    #[cfg(loom)]
    pub fn break_tracking_for_loom(&mut self) {
        self.broken_tracking = true;
    }

    /// Test hook, compiled only with `--cfg loom`: each exception is
    /// committed as soon as its copy finishes, ignoring allocation order.
    /// The async-exceptions model's `#[should_panic]` variant uses it.
    #[cfg(loom)]
    pub fn break_commit_order_for_loom(&mut self) {
        self.broken_commit_order = true;
    }

    /// Test hook, compiled only with `--cfg loom`: a write needing an
    /// exception never finds the one already pending for its chunk, and
    /// allocates another ("dm snapshot: avoid having two exceptions for
    /// the same chunk").
    #[cfg(loom)]
    pub fn break_pending_lookup_for_loom(&mut self) {
        self.broken_pending_lookup = true;
    }

    /// The next exception to commit: the one after the last committed in
    /// allocation order, once its copy has finished. (Broken on purpose
    /// under loom: the one whose copy just finished, once.)
    fn next_to_commit(&self, snap: &DmSnapshot<P>, just_copied: &mut Option<u32>) -> Option<u32> {
        #[cfg(loom)]
        if self.broken_commit_order {
            return just_copied.take();
        }
        let _ = just_copied;
        snap.pending.copied_with_sequence(snap.exception_complete_sequence)
    }

    /// `__check_for_conflicting_io` for snapshot `index`, chunks `first..=last`.
    fn check_for_conflicting_io(&self, index: u32, first: Chunk, last: Chunk) {
        #[cfg(loom)]
        if self.broken_tracking {
            return;
        }
        self.tracker.wait(index, first, last)
    }

    /// `snapshot_ctr` (or the `snapshot-merge` constructor when `merge`):
    /// `get_device` opens a path (`dm_get_device`).
    pub fn snapshot_ctr(
        &self,
        merge: bool,
        ti_len: u64,
        argv: &[&str],
        get_device: &mut dyn FnMut(&str) -> Result<P::Dev>,
    ) -> core::result::Result<SnapId, TargetError> {
        let a = parse_snapshot_args(argv)?;
        let origin = get_device(a.origin_path).map_err(|e| TargetError::new(e, c"Cannot get origin device"))?;
        let cow = get_device(a.cow_path).map_err(|e| TargetError::new(e, c"Cannot get COW device"))?;
        if cow.bdev_id() == origin.bdev_id() {
            return Err(TargetError::inval(c"COW device cannot be the same as origin device"));
        }
        let (store, _) =
            ExceptionStore::create(&a.store_args, cow.clone(), origin.logical_block_size()).map_err(|e| {
                // The kernel overwrites this reason with the generic text below;
                // keep it in the log so the user can see what was wrong.
                crate::dm_err!(DM_MSG_PREFIX, "{}", e.msg());
                TargetError::inval(c"Couldn't create exception store")
            })?;
        if merge && !store.supports_merge() {
            return Err(TargetError::inval(c"Snapshot exception store does not support snapshot-merge."));
        }
        let (size, _) = table_sizes(cow.size_sectors(), store.chunk_shift());
        let complete = ExceptionTable::new(size, DM_CHUNK_CONSECUTIVE_BITS)
            .map_err(|_| TargetError::new(Errno::ENOMEM, c"Unable to allocate hash table space"))?;
        let (origin_id, cow_id, chunk_size) = (origin.bdev_id(), cow.bdev_id(), store.chunk_size());
        let snap = DmSnapshot {
            origin,
            cow,
            is_merge: merge,
            ti_len,
            valid: true,
            snapshot_overflowed: false,
            active: false,
            merge_failed: false,
            suspended: false,
            discard_zeroes_cow: a.discard_zeroes_cow,
            discard_passdown_origin: a.discard_passdown_origin,
            store,
            complete,
            pending: PendingTable::new()
                .map_err(|_| TargetError::new(Errno::ENOMEM, c"Could not allocate snapshot pending exception pool"))?,
            exception_start_sequence: 0,
            exception_complete_sequence: 0,
            merging: None,
            running_merge: false,
            events: 0,
            event_handle: 0,
        };
        let nomem = TargetError::new(Errno::ENOMEM, c"Snapshot origin struct allocation failed");
        let slot_lock = RwSem::new(snap, &SNAPSHOT_LOCK).map_err(|_| nomem)?;

        // register_snapshot: validate the handover, then insert.
        let (id, handover_dest) = {
            let mut reg = self.reg.down_write();
            let sh = reg.find_sharing_cow(origin_id, cow_id);
            if sh.count == 2 || sh.dest.is_some() {
                return Err(TargetError::inval(c"Snapshot cow pairing for exception table handover failed"));
            }
            if let (Some(src), true) = (sh.src, merge) {
                if sh.merge.is_some() {
                    return Err(TargetError::inval(c"A snapshot is already merging."));
                }
                let supports = reg.at(src).map(|s| s.snap.down_read().store.supports_merge()).unwrap_or(false);
                if !supports {
                    return Err(TargetError::inval(c"Snapshot exception store does not support snapshot-merge."));
                }
            }
            let index = match reg.slots.iter().position(|s| s.is_none()) {
                Some(i) => i,
                None => {
                    reg.slots.try_push(None).map_err(|_| nomem)?;
                    reg.slots.len() - 1
                }
            };
            let index = u32::try_from(index).map_err(|_| nomem)?;
            reg.order.try_reserve(1).map_err(|_| nomem)?;
            let gen = reg.next_gen;
            reg.next_gen = reg.next_gen.wrapping_add(1).max(1);
            let slot = Slot { gen, origin_id, cow_id, chunk_size, is_merge: merge, io: None, snap: slot_lock };
            if let Some(s) = reg.slots.get_mut(index as usize) {
                *s = Some(slot);
            }
            reg.insert_ordered(index).map_err(|_| nomem)?;
            (SnapId { index, gen }, sh.src.is_some())
        };

        if handover_dest {
            // Metadata must only be loaded into one table at once: the
            // destination gets it at resume; its chunk size is ignored until
            // then (zero: ordered after every other snapshot).
            let mut reg = self.reg.down_write();
            if let Ok(slot) = reg.slot(id) {
                slot.snap.down_write().store.clear_chunk_size();
            }
            reg.remove_ordered(id.index);
            if let Some(Some(s)) = reg.slots.get_mut(id.index as usize) {
                s.chunk_size = 0;
            }
            reg.insert_ordered(id.index).map_err(|_| nomem)?;
            return Ok(id);
        }

        let loaded = {
            let reg = self.reg.down_read();
            let slot = reg.slot(id).map_err(|e| TargetError::new(e, c"Failed to read snapshot metadata"))?;
            let mut s = slot.snap.down_write();
            let s = &mut *s;
            let table = &mut s.complete;
            let r = s.store.read_metadata(&mut |old, new| table.insert(old, new));
            match r {
                Ok(Metadata::Invalidated) => {
                    s.loaded_invalid();
                    Ok(s.store.chunk_size())
                }
                Ok(Metadata::Loaded) => Ok(s.store.chunk_size()),
                Err(e) => Err(TargetError::new(e, c"Failed to read snapshot metadata")),
            }
        };
        match loaded {
            Ok(0) => {
                self.unregister(id);
                Err(TargetError::inval(c"Chunk size not set"))
            }
            Ok(cs) => {
                let mut reg = self.reg.down_write();
                reg.remove_ordered(id.index);
                if let Some(Some(s)) = reg.slots.get_mut(id.index as usize) {
                    s.chunk_size = cs;
                }
                reg.insert_ordered(id.index).map_err(|_| nomem)?;
                Ok(id)
            }
            Err(e) => {
                self.unregister(id);
                Err(e)
            }
        }
    }

    fn unregister(&self, id: SnapId) {
        let mut reg = self.reg.down_write();
        if reg.slot(id).is_ok() {
            reg.remove_ordered(id.index);
            if let Some(s) = reg.slots.get_mut(id.index as usize) {
                *s = None;
            }
        }
    }

    /// `snapshot_dtr`: cancels a pending handover from this source, stops a
    /// merge, unregisters and frees.
    pub fn snapshot_dtr(&self, id: SnapId) {
        {
            let reg = self.reg.down_read();
            let Ok(slot) = reg.slot(id) else { return };
            let sh = reg.find_sharing_cow(slot.origin_id, slot.cow_id);
            if let (Some(src), Some(dest)) = (sh.src, sh.dest) {
                if src == id.index {
                    if let Some(d) = reg.at(dest) {
                        d.snap.down_write().cancel_handover();
                    }
                    crate::dm_err!(DM_MSG_PREFIX, "Cancelling snapshot handover.");
                }
            }
            slot.snap.down_write().deactivate();
        }
        // Exceptions started by origin writes complete first (their
        // origin bios are retried and skip this snapshot now).
        self.wait_pending_drained(id);
        self.unregister(id);
    }

    /// Waits until snapshot `id` has no pending exception (the kernel's
    /// `snapshot_dtr` polls `pending_exceptions_count` the same way).
    fn wait_pending_drained(&self, id: SnapId) {
        while self.with_snapshot(id, |_, slot| slot.snap.down_read().pending.count()).unwrap_or(0) != 0 {
            crate::sync::sleep_short();
        }
    }

    /// Tells the driver whether the target's table is suspended.
    pub fn set_suspended(&self, id: SnapId, suspended: bool) -> Result<()> {
        let reg = self.reg.down_read();
        reg.slot(id)?.snap.down_write().suspended = suspended;
        Ok(())
    }

    /// `snapshot_preresume`: a handover needs the source suspended and the
    /// destination resumed first.
    pub fn snapshot_preresume(&self, id: SnapId) -> Result<()> {
        let reg = self.reg.down_read();
        let slot = reg.slot(id)?;
        let sh = reg.find_sharing_cow(slot.origin_id, slot.cow_id);
        if let (Some(src), Some(_)) = (sh.src, sh.dest) {
            if src == id.index {
                crate::dm_err!(DM_MSG_PREFIX, "Unable to resume snapshot source until handover completes.");
                return Err(Errno::EINVAL);
            }
            let suspended = reg.at(src).map(|s| s.snap.down_read().suspended).unwrap_or(true);
            if !suspended {
                crate::dm_err!(DM_MSG_PREFIX, "Unable to perform snapshot handover until source is suspended.");
                return Err(Errno::EINVAL);
            }
        }
        Ok(())
    }

    /// `snapshot_resume` (and `snapshot_merge_resume` for a merge target):
    /// performs a pending handover with origin I/O excluded, reregisters
    /// with the now known chunk size and activates; a merge target starts
    /// merging.
    pub fn snapshot_resume(&self, id: SnapId) -> Result<()> {
        let (mut reg, sh) = loop {
            let reg = self.reg.down_write();
            let (origin_id, cow_id) = {
                let s = reg.slot(id)?;
                (s.origin_id, s.cow_id)
            };
            let sh = reg.find_sharing_cow(origin_id, cow_id);
            // The kernel suspends the origin internally for a handover,
            // which lets the source's exceptions in flight complete; here
            // the source's pending exceptions must drain before its tables
            // move (new ones need the registry lock, held from now on).
            let busy = match (sh.src, sh.dest) {
                (Some(src), Some(_)) => reg.at(src).map(|s| s.snap.down_read().pending.count()).unwrap_or(0) != 0,
                _ => false,
            };
            if !busy {
                break (reg, sh);
            }
            drop(reg);
            crate::sync::sleep_short();
        };
        if let (Some(src), Some(dest)) = (sh.src, sh.dest) {
            if let (Some(a), Some(b)) = (reg.at(src), reg.at(dest)) {
                // Source, then destination (`down_write_nested` as in C).
                let mut s = a.snap.down_write();
                let mut d = b.snap.down_write_nested();
                d.handover_from(&mut s);
            }
        }
        #[cfg(loom)]
        if self.broken_handover {
            drop(reg);
            reg = self.reg.down_write();
        }
        // reregister_snapshot
        let cs = reg.slot(id)?.snap.down_read().store.chunk_size();
        reg.remove_ordered(id.index);
        if let Some(Some(s)) = reg.slots.get_mut(id.index as usize) {
            s.chunk_size = cs;
        }
        reg.insert_ordered(id.index)?;
        let slot = reg.slot(id)?;
        slot.snap.down_write().activate();
        Ok(())
    }

    fn with_snapshot<T>(
        &self,
        id: SnapId,
        f: impl FnOnce(&RwSemReadGuard<'_, Registry<P>>, &Slot<P>) -> T,
    ) -> Result<T> {
        let reg = self.reg.down_read();
        let slot = reg.slot(id)?;
        Ok(f(&reg, slot))
    }

    /// Gives the target the platform's handle of its table: its events
    /// (`dm_table_event`) are reported with it.
    pub fn set_event_handle(&self, id: SnapId, handle: u64) -> Result<()> {
        self.with_snapshot(id, |_, slot| slot.snap.down_write().event_handle = handle)
    }

    /// Events the target raised (invalidation).
    pub fn snapshot_events(&self, id: SnapId) -> Result<u64> {
        self.with_snapshot(id, |_, slot| slot.snap.down_read().events)
    }

    /// The snapshot's chunk size in sectors (0 for a handover destination
    /// until its resume).
    pub fn snapshot_chunk_size(&self, id: SnapId) -> Result<u32> {
        self.with_snapshot(id, |_, slot| slot.snap.down_read().store.chunk_size())
    }

    /// Whether the table takes discards (`discard_zeroes_cow`): the
    /// constructor then asks dm core for discard bios.
    pub fn snapshot_discards(&self, id: SnapId) -> Result<bool> {
        self.with_snapshot(id, |_, slot| slot.snap.down_read().discard_zeroes_cow)
    }

    /// `snapshot_io_hints`: with `discard_zeroes_cow`, discards are split
    /// on the chunk size (the handover source's while one is pending). As
    /// the kernel, `discard_granularity` gets the chunk size in sectors.
    pub fn snapshot_io_hints(&self, id: SnapId, limits: &mut QueueLimits) -> Result<()> {
        let reg = self.reg.down_read();
        let slot = reg.slot(id)?;
        if !slot.snap.down_read().discard_zeroes_cow {
            return Ok(());
        }
        let from = match reg.find_sharing_cow(slot.origin_id, slot.cow_id) {
            Sharing { src: Some(src), dest: Some(_), .. } => reg.at(src).unwrap_or(slot),
            _ => slot,
        };
        let cs = u32::try_from(from.snap.down_read().chunk_size()).map_err(|_| Errno::EINVAL)?;
        limits.discard_granularity = cs;
        limits.max_hw_discard_sectors = cs;
        Ok(())
    }

    /// `snapshot_iterate_devices`: the origin over the target's length,
    /// then the whole COW device.
    pub fn snapshot_iterate_devices<R>(
        &self,
        id: SnapId,
        ti_len: u64,
        f: &mut DeviceCallout<'_, P::Dev, R>,
    ) -> Result<core::result::Result<(), R>> {
        let (origin, cow) = self.with_snapshot(id, |_, slot| {
            let s = slot.snap.down_read();
            (s.origin.clone(), s.cow.clone())
        })?;
        // Called without locks: dm core may sleep in the callout.
        Ok(f(&origin, 0, ti_len).and_then(|_| f(&cow, 0, cow.size_sectors())))
    }

    /// Sectors of the COW that hold data (allocated minus metadata): what
    /// a merge has left to copy back.
    pub fn snapshot_data_sectors(&self, id: SnapId) -> Result<u64> {
        self.with_snapshot(id, |_, slot| {
            let u = slot.snap.down_read().store.usage();
            u.sectors_allocated.saturating_sub(u.metadata_sectors)
        })
    }

    /// `snapshot_status` into `out`.
    pub fn snapshot_status(&self, id: SnapId, ty: StatusType, out: &mut Emitter<'_>) -> Result<()> {
        self.with_snapshot(id, |_, slot| slot.snap.down_read().status(ty, out))
    }

    /// `snapshot_map` and `snapshot_merge_map`: decides for a bio in the
    /// submitter's context, without waiting for I/O.
    ///
    /// Remapped: reads and writes of chunks with a completed exception (to
    /// the COW), reads of other chunks (to the origin, tracked until
    /// [`Self::snapshot_end_io`] unless the target merges), flushes of a
    /// snapshot (to the COW). Killed: any I/O to an invalid snapshot, writes
    /// to an overflowed one. Everything else — writes that need an
    /// exception, merge writes that are origin writes, discards, merge
    /// flushes (both devices), bios crossing a chunk boundary — and any
    /// bio that finds a lock held by a copy or a merge step, is
    /// `Submitted`: the platform runs it through [`Self::snapshot_read`] /
    /// [`Self::snapshot_write`] / [`Self::snapshot_flush`] /
    /// [`Self::snapshot_discard`] in process context.
    pub fn snapshot_map(&self, id: SnapId, bio: &BioInfo, pb: &mut PerBio) -> MapResult<P::Dev> {
        *pb = PerBio::new();
        let Some(reg) = self.reg.try_down_read() else { return MapResult::Submitted };
        let Ok(slot) = reg.slot(id) else { return MapResult::Kill(Errno::EIO) };
        let Some(snap) = slot.snap.try_down_read() else { return MapResult::Submitted };
        let read = match bio.op {
            BioOp::Read => true,
            BioOp::Write => false,
            BioOp::Flush if !snap.is_merge => return MapResult::Remapped { dev: snap.cow.clone(), sector: 0 },
            BioOp::Flush | BioOp::Discard | BioOp::Other => return MapResult::Submitted,
        };
        if !snap.is_merge && (!snap.valid || (!read && snap.snapshot_overflowed)) {
            return MapResult::Kill(Errno::EIO);
        }
        let shift = snap.chunk_shift();
        if snap.chunk_size() == 0 || bio.nr_sectors == 0 || (bio.end() - 1) >> shift != bio.sector >> shift {
            return MapResult::Submitted;
        }
        let chunk = bio.sector >> shift;
        // A merge target with an invalid snapshot reads the origin.
        if let Some(cow_sector) = snap.remap(bio.sector).filter(|_| snap.valid) {
            if snap.is_merge && !read {
                if matches!(snap.merging, Some((first, n)) if chunk >= first && chunk < first + n) {
                    // Queued until the merge of this chunk is done.
                    return MapResult::Submitted;
                }
                // A merge step copies this chunk back to the origin only
                // after such writes have landed.
                match self.tracker.track(id.index, chunk) {
                    Some(t) => pb.tracked = t,
                    None => return MapResult::Submitted,
                }
            }
            return MapResult::Remapped { dev: snap.cow.clone(), sector: cow_sector };
        }
        if !read {
            // An exception to make, or (merge) an origin write.
            return MapResult::Submitted;
        }
        if !snap.is_merge {
            // Until this read completes, no exception for the chunk may
            // become visible (origin writes to it would then go ahead).
            match self.tracker.track(id.index, chunk) {
                Some(t) => pb.tracked = t,
                None => return MapResult::Submitted,
            }
        }
        MapResult::Remapped { dev: snap.origin.clone(), sector: bio.sector }
    }

    /// `snapshot_end_io`: a remapped bio completed (any context, never blocks).
    pub fn snapshot_end_io(&self, pb: &mut PerBio) {
        if pb.is_tracked() {
            self.tracker.stop_tracking(pb.tracked);
            *pb = PerBio::new();
        }
    }

    /// `origin_map` + `do_origin`: reads and flushes go to the origin; a
    /// write is remapped to it when no active, valid, non-merging snapshot
    /// of the origin lacks an exception for a chunk it covers. Otherwise
    /// (or when a lock is held by a copy) it is `Submitted`: the platform
    /// runs it through [`Self::origin_write`], which makes the exceptions
    /// first. Discards are not taken (`origin_ctr` asks for none).
    pub fn origin_map(&self, origin: &P::Dev, bio: &BioInfo) -> MapResult<P::Dev> {
        match bio.op {
            BioOp::Read => return MapResult::Remapped { dev: origin.clone(), sector: bio.sector },
            BioOp::Flush => return MapResult::Remapped { dev: origin.clone(), sector: 0 },
            BioOp::Discard | BioOp::Other => return MapResult::Kill(Errno::EOPNOTSUPP),
            BioOp::Write => {}
        }
        let Some(reg) = self.reg.try_down_read() else { return MapResult::Submitted };
        for (_, slot) in reg.of_origin(origin.bdev_id()) {
            if slot.is_merge {
                continue;
            }
            let Some(snap) = slot.snap.try_down_read() else { return MapResult::Submitted };
            let end = bio.end().max(bio.sector + 1).min(snap.ti_len);
            if bio.sector >= end || !snap.valid || !snap.active {
                continue;
            }
            let shift = snap.chunk_shift();
            if (bio.sector >> shift..=(end - 1) >> shift).any(|c| snap.complete.lookup(c).is_none()) {
                return MapResult::Submitted;
            }
        }
        MapResult::Remapped { dev: origin.clone(), sector: bio.sector }
    }

    /// Reads from a snapshot or merge target (`snapshot_map`,
    /// `snapshot_merge_map` for reads), chunk by chunk.
    pub fn snapshot_read(&self, id: SnapId, sector: u64, buf: &mut [u8]) -> Result<()> {
        let reg = self.reg.down_read();
        let slot = reg.slot(id)?;
        let cs = slot.snap.down_read().chunk_size().max(1);
        for (s, r) in split_io(sector, buf.len(), cs) {
            let piece = buf.get_mut(r).ok_or(Errno::EINVAL)?;
            let snap = slot.snap.down_read();
            if !snap.valid && !snap.is_merge {
                return Err(Errno::EIO);
            }
            match snap.remap(s).filter(|_| snap.valid) {
                Some(cow_sector) => snap.cow.read(cow_sector, piece)?,
                None => snap.origin.read(s, piece)?,
            }
        }
        Ok(())
    }

    /// Writes to a snapshot or merge target, chunk by chunk, for callers
    /// without bios (the hosted shim, tests): waits for the exceptions the
    /// write needs.
    pub fn snapshot_write(&self, id: SnapId, sector: u64, buf: &[u8], flags: ReqFlags) -> Result<()> {
        let (cs, is_merge) = self.with_snapshot(id, |_, slot| {
            let s = slot.snap.down_read();
            (s.chunk_size().max(1), s.is_merge)
        })?;
        for (s, r) in split_io(sector, buf.len(), cs) {
            let piece = buf.get(r).ok_or(Errno::EINVAL)?;
            if is_merge {
                self.merge_write(id, s, piece, flags)?;
            } else {
                self.snap_write(id, s, piece, flags)?;
            }
        }
        Ok(())
    }

    /// `snapshot_map` for one write within a chunk, waiting instead of
    /// queuing: a whole-chunk write is itself the copy (`start_full_bio`).
    fn snap_write(&self, id: SnapId, sector: u64, piece: &[u8], flags: ReqFlags) -> Result<()> {
        enum Next<D> {
            Wait,
            Start,
            Full(D, u64, u64),
        }
        loop {
            let seen = self.pending_done.load(Ordering::Acquire);
            let next = {
                let reg = self.reg.down_read();
                let slot = reg.slot(id)?;
                let mut snap = slot.snap.down_write();
                if !snap.valid || snap.snapshot_overflowed {
                    return Err(Errno::EIO);
                }
                if let Some(cow_sector) = snap.remap(sector) {
                    return snap.cow.write(cow_sector, piece, flags);
                }
                let chunk = sector >> snap.chunk_shift();
                if snap.pending.lookup(chunk).is_some() {
                    Next::Wait
                } else {
                    match self.find_pending(&mut snap, chunk) {
                        Ok(Some(ps)) if piece.len() == snap.chunk_bytes() => {
                            let cs = snap.chunk_size();
                            let pe = snap.pending.get_mut(ps).ok_or(Errno::EIO)?;
                            pe.started = true;
                            let to = pe.e.new_chunk.checked_mul(cs).ok_or(Errno::EIO)?;
                            Next::Full(snap.cow.clone(), to, copy_context(id, ps))
                        }
                        Ok(Some(_)) => Next::Start,
                        Ok(None) => Next::Wait,
                        Err(_) => {
                            self.no_room(&mut snap);
                            return Err(Errno::EIO);
                        }
                    }
                }
            };
            match next {
                Next::Wait => self.wait_pending_done(seen),
                Next::Start => self.start_copies(id.index),
                Next::Full(cow, to, ctx) => {
                    // The data goes out as the copy; honour the bio's FUA.
                    let ok = cow.write(to, piece, ReqFlags::empty()).is_ok()
                        && (!flags.contains(ReqFlags::FUA) || cow.flush().is_ok());
                    self.copy_callback(ctx, ok);
                    // As the kernel ends a full bio only in
                    // `pending_complete`: the exception commits in order,
                    // maybe after copies still in flight, and the write is
                    // not done (nor durable after a flush) before that.
                    return self.wait_remapped(id, sector);
                }
            }
        }
    }

    /// Waits until the chunk holding `sector` is remapped (its exception
    /// completed) or the snapshot is invalid.
    fn wait_remapped(&self, id: SnapId, sector: u64) -> Result<()> {
        loop {
            let seen = self.pending_done.load(Ordering::Acquire);
            let done = self.with_snapshot(id, |_, slot| {
                let snap = slot.snap.down_read();
                if !snap.valid {
                    Some(Err(Errno::EIO))
                } else if snap.remap(sector).is_some() {
                    Some(Ok(()))
                } else if snap.pending.lookup(sector >> snap.chunk_shift()).is_none() {
                    // Completed without a remap: not copied.
                    Some(Err(Errno::EIO))
                } else {
                    None
                }
            })?;
            match done {
                Some(r) => return r,
                None => self.wait_pending_done(seen),
            }
        }
    }

    /// `__find_pending_exception`: the pending exception of `chunk`, or a
    /// new one (`prepare_exception` picks its COW chunk, a sequence number
    /// orders its commit). `Ok(None)`: the pool is exhausted.
    /// `Err`: the store has no room.
    fn find_pending(&self, snap: &mut DmSnapshot<P>, chunk: Chunk) -> Result<Option<u32>> {
        #[cfg(loom)]
        let lookup = if self.broken_pending_lookup { None } else { snap.pending.lookup(chunk) };
        #[cfg(not(loom))]
        let lookup = snap.pending.lookup(chunk);
        if let Some(ps) = lookup {
            return Ok(Some(ps));
        }
        if snap.pending.is_full() {
            return Ok(None);
        }
        let mut e = DmException::new(chunk, 0);
        snap.store.prepare_exception(&mut e)?;
        let seq = snap.exception_start_sequence;
        snap.exception_start_sequence += 1;
        Ok(snap.pending.insert(e, seq))
    }

    /// No room for another exception: `PO` overflows on a snapshot write,
    /// anything else invalidates (`__invalidate_snapshot(s, -ENOMEM)`).
    fn no_room(&self, snap: &mut DmSnapshot<P>) {
        if snap.store.userspace_supports_overflow() {
            snap.overflow();
        } else {
            snap.invalidate(Errno::ENOMEM);
        }
    }

    /// Waits until some pending exception completed after `seen` was read
    /// (`wait_event(_pending_exceptions_done, ...)`).
    fn wait_pending_done(&self, seen: u64) {
        while self.pending_done.load(Ordering::Acquire) == seen {
            crate::sync::sleep_short();
        }
    }

    /// `start_copy` for every pending exception of snapshot `index` not
    /// started yet, in allocation order, without the snapshot's lock (a
    /// copy may complete before `start_copy` returns). As `do_origin`
    /// holds `_origins_lock`, the registry stays read-locked while the
    /// snapshot's own copier takes the copy.
    fn start_copies(&self, index: u32) {
        loop {
            let reg = self.reg.down_read();
            let Some(slot) = reg.at(index) else { return };
            let id = SnapId { index, gen: slot.gen };
            let (origin, cow, from, to, count, ps) = {
                let mut snap = slot.snap.down_write();
                let Some(ps) = snap.pending.next_unstarted() else { return };
                let (shift, cs, origin_size) = (snap.chunk_shift(), snap.chunk_size(), snap.origin.size_sectors());
                let Some(pe) = snap.pending.get_mut(ps) else { return };
                pe.started = true;
                let from = pe.e.old_chunk << shift;
                // The last chunk of the origin may be short.
                let count = cs.min(origin_size.saturating_sub(from));
                let to = pe.e.new_chunk.checked_mul(cs);
                (snap.origin.clone(), snap.cow.clone(), from, to, count, ps)
            };
            // The snapshot's own copier knows its snapshot: the context is
            // the pending slot alone (`snapshot_copy_done`).
            let (io, ctx) = match &slot.io {
                Some(io) => (io, ps as u64),
                None => (&self.platform, copy_context(id, ps)),
            };
            let done = match to {
                Some(to) => io.start_copy(&origin, from, &cow, to, count, ctx),
                None => Some(false),
            };
            drop(reg);
            if let Some(ok) = done {
                self.copy_callback(copy_context(id, ps), ok);
            }
        }
    }

    /// Gives snapshot `id` its own copier (dm-snap.c creates a kcopyd
    /// client per snapshot): a snapshot whose COW lives on another
    /// snapshot commits its metadata from its copier's thread, and that
    /// write may need a copy of the lower snapshot, which must not queue
    /// behind it on one shared copier. Copies started with it complete
    /// through [`Self::snapshot_copy_done`].
    pub fn set_copy_io(&self, id: SnapId, io: P) -> Result<()> {
        let mut reg = self.reg.down_write();
        reg.slot(id)?;
        if let Some(Some(s)) = reg.slots.get_mut(id.index as usize) {
            s.io = Some(io);
        }
        Ok(())
    }

    /// A copy snapshot `id`'s own copier started for pending slot
    /// `context` finished.
    pub fn snapshot_copy_done(&self, id: SnapId, context: u64, ok: bool) {
        let Ok(ps) = u32::try_from(context) else { return };
        self.copy_callback(copy_context(id, ps), ok);
    }

    /// `copy_callback` + `complete_exception`: a copy started with
    /// `context` finished. Copies are committed in allocation order; every
    /// exception the store reports durable is completed
    /// (`pending_complete`), then its bios are released. May sleep; hold
    /// no lock of this driver.
    pub fn copy_callback(&self, context: u64, ok: bool) {
        let (index, gen, ps) = split_context(context);
        let mut released = Released::<P>::default();
        {
            let reg = self.reg.down_read();
            let Some(slot) = reg.at(index).filter(|s| s.gen & CONTEXT_GEN_MASK == gen) else { return };
            let mut guard = slot.snap.down_write();
            let snap = &mut *guard;
            if let Some(pe) = snap.pending.get_mut(ps) {
                pe.copied = Some(ok);
            }
            let mut just_copied = Some(ps);
            while let Some(next) = self.next_to_commit(snap, &mut just_copied) {
                snap.exception_complete_sequence += 1;
                let Some(pe) = snap.pending.get(next) else { break };
                let (e, valid) = (pe.e, pe.copied == Some(true));
                let DmSnapshot { store, pending, .. } = &mut *snap;
                store.commit_exception(&e, valid, next, &mut |s, v| {
                    if let Some(p) = pending.get_mut(s) {
                        p.committed = Some(v);
                    }
                });
            }
            while let Some(done) = snap.pending.next_committed() {
                self.pending_complete(index, snap, done, &mut released);
            }
            released.origin = Some(snap.origin.clone());
        }
        self.release(released);
    }

    /// `pending_complete`: the exception in `ps` is durable (or failed).
    /// Once no read remapped to the origin covers its chunk it goes into
    /// the complete table; its snapshot writes are issued (or failed) and
    /// its origin writes retried — by [`Self::release`], outside the locks.
    fn pending_complete(&self, index: u32, snap: &mut DmSnapshot<P>, ps: u32, out: &mut Released<P>) {
        let Some(mut pe) = snap.pending.remove(ps) else { return };
        let mut ok = pe.committed == Some(true);
        if !ok {
            // Read/write error: the snapshot is unusable.
            snap.invalidate(Errno::EIO);
        } else if snap.valid {
            self.check_for_conflicting_io(index, pe.e.old_chunk, pe.e.old_chunk);
            if snap.complete.insert(pe.e.old_chunk, pe.e.new_chunk).is_err() {
                snap.invalidate(Errno::ENOMEM);
                ok = false;
            }
        } else {
            ok = false;
        }
        let to = if ok { &mut out.submit } else { &mut out.error };
        while let Some(b) = P::bio_list_pop(&mut pe.snapshot_bios) {
            P::bio_list_add(to, b);
        }
        while let Some(b) = P::bio_list_pop(&mut pe.origin_bios) {
            P::bio_list_add(&mut out.retry, b);
        }
        self.pending_done.fetch_add(1, Ordering::AcqRel);
    }

    /// Issues, fails and retries what completed exceptions released
    /// (`flush_bios`, `error_bios`, `retry_origin_bios`).
    fn release(&self, mut r: Released<P>) {
        while let Some(b) = P::bio_list_pop(&mut r.submit) {
            self.platform.submit(b);
        }
        while let Some(b) = P::bio_list_pop(&mut r.error) {
            self.platform.endio(b, Err(Errno::EIO));
        }
        if let Some(origin) = r.origin {
            while let Some(b) = P::bio_list_pop(&mut r.retry) {
                match self.origin_write_bio(&origin, b, true) {
                    Queued::Remapped(b) => self.platform.submit(b),
                    Queued::End(b, res) => self.platform.endio(b, res),
                    Queued::Queued | Queued::Retry(_) => {}
                }
            }
        }
    }

    /// `do_origin` + `__origin_write` for an origin write of `nr_sectors`
    /// at `sector`: every valid, active, non-merging snapshot of the origin
    /// must have an exception for each chunk it covers. Missing ones are
    /// allocated (all of them before any copy starts, so a persistent
    /// store commits them together) and started; `bio`, if given, is
    /// queued on the first exception it needs and retried when that one
    /// completes. Without `blocking`, a snapshot lock held by a copy's
    /// commit or a merge gives `Origin::Busy` (the caller defers).
    fn do_origin(
        &self,
        origin_id: u64,
        sector: u64,
        nr_sectors: u64,
        bio: &mut Option<P::Bio>,
        blocking: bool,
    ) -> Origin {
        let mut waits = false;
        let mut busy = false;
        let mut to_start: heapless::Vec<u32, 8> = heapless::Vec::new();
        let mut start_all = false;
        {
            let reg = self.reg.down_read();
            for (index, slot) in reg.of_origin(origin_id) {
                // Don't make new exceptions in a merging snapshot: it has
                // effectively been deleted.
                if slot.is_merge {
                    continue;
                }
                let mut snap = if blocking {
                    slot.snap.down_write()
                } else {
                    match slot.snap.try_down_write() {
                        Some(g) => g,
                        None => {
                            busy = true;
                            break;
                        }
                    }
                };
                let end = sector.saturating_add(nr_sectors.max(1)).min(snap.ti_len);
                if sector >= end || !snap.valid || !snap.active {
                    continue;
                }
                let shift = snap.chunk_shift();
                let mut allocated = false;
                for chunk in sector >> shift..=(end - 1) >> shift {
                    if snap.complete.lookup(chunk).is_some() {
                        continue;
                    }
                    let ps = match self.find_pending(&mut snap, chunk) {
                        Ok(Some(ps)) => Some(ps),
                        // Pool exhausted: wait behind one in flight.
                        Ok(None) => snap.pending.any_started().or_else(|| snap.pending.next_unstarted()),
                        // No room: invalidate, which writes the header —
                        // not from `map` (a bio submitted there waits for
                        // `map` to return): the caller defers instead.
                        Err(_) if !blocking => {
                            busy = true;
                            break;
                        }
                        Err(_) => {
                            // __insert_pending_exception failed.
                            snap.invalidate(Errno::ENOMEM);
                            break;
                        }
                    };
                    allocated = true;
                    waits |= ps.is_some();
                    if let (Some(ps), Some(b)) = (ps, bio.take()) {
                        match snap.pending.get_mut(ps) {
                            Some(pe) => P::bio_list_add(&mut pe.origin_bios, b),
                            None => *bio = Some(b),
                        }
                    }
                }
                if allocated && to_start.push(index).is_err() {
                    start_all = true;
                }
                if busy {
                    break;
                }
            }
        }
        // The exception the bio waits for starts last (`pe_to_start_last`)
        // only in spirit: all start now, none waits for another.
        if start_all {
            let all: heapless::Vec<u32, 64> = {
                let reg = self.reg.down_read();
                reg.of_origin(origin_id).map(|(i, _)| i).take(64).collect()
            };
            all.iter().for_each(|&i| self.start_copies(i));
        } else {
            to_start.iter().for_each(|&i| self.start_copies(i));
        }
        if busy {
            Origin::Busy
        } else if waits {
            Origin::Waits
        } else {
            Origin::Clear
        }
    }

    /// An origin write with its bio (the module's `origin_map` and worker,
    /// and retries): remapped to the origin when no exception is missing,
    /// else queued on one (`Queued`), or `Retry` when not `blocking` and a
    /// snapshot lock is held by a copy's commit.
    pub fn origin_write_bio(&self, origin: &P::Dev, mut bio: P::Bio, blocking: bool) -> Queued<P::Bio> {
        let (sector, nr) = P::bio_sectors(&bio);
        let mut slot = Some(bio);
        let r = self.do_origin(origin.bdev_id(), sector, nr, &mut slot, blocking);
        match (slot, r) {
            (None, _) => Queued::Queued,
            (Some(b), Origin::Busy) => Queued::Retry(b),
            (Some(b), Origin::Clear) => {
                bio = b;
                P::remap(&mut bio, origin, sector);
                Queued::Remapped(bio)
            }
            // Not queued although exceptions were missing (pool exhausted
            // with nothing in flight to wait on, or the snapshot was just
            // invalidated): go round again.
            (Some(b), Origin::Waits) => self.origin_write_bio(origin, b, blocking),
        }
    }

    /// A write to a snapshot with its bio (the module's `snapshot_map` for
    /// writes that need an exception): pointed at the exception's COW
    /// chunk and queued on it, issued when it completes. The bio covers
    /// one chunk. A merge target's writes are not taken here.
    pub fn snapshot_write_bio(&self, id: SnapId, mut bio: P::Bio, blocking: bool) -> Queued<P::Bio> {
        let (sector, _) = P::bio_sectors(&bio);
        {
            let reg = self.reg.down_read();
            let Ok(slot) = reg.slot(id) else { return Queued::End(bio, Err(Errno::EIO)) };
            let mut snap = if blocking {
                slot.snap.down_write()
            } else {
                match slot.snap.try_down_write() {
                    Some(g) => g,
                    None => return Queued::Retry(bio),
                }
            };
            if snap.is_merge || !snap.valid || snap.snapshot_overflowed {
                return Queued::End(bio, Err(Errno::EIO));
            }
            // No chunk size yet (a handover destination) or a bio across a
            // chunk boundary: the synchronous path splits it.
            let (_, nr) = P::bio_sectors(&bio);
            let shift = snap.chunk_shift();
            if snap.chunk_size() == 0 || nr == 0 || (sector + nr - 1) >> shift != sector >> shift {
                return Queued::Retry(bio);
            }
            if let Some(cow_sector) = snap.remap(sector) {
                P::remap(&mut bio, &snap.cow, cow_sector);
                return Queued::Remapped(bio);
            }
            let chunk = sector >> snap.chunk_shift();
            let ps = match self.find_pending(&mut snap, chunk) {
                Ok(Some(ps)) => ps,
                // Pool exhausted: try again once one completes.
                Ok(None) => return Queued::Retry(bio),
                // Invalidation writes the header: not from `map`.
                Err(_) if !blocking => return Queued::Retry(bio),
                Err(_) => {
                    self.no_room(&mut snap);
                    return Queued::End(bio, Err(Errno::EIO));
                }
            };
            let (cs, mask) = (snap.chunk_size(), snap.chunk_size() - 1);
            let cow = snap.cow.clone();
            let Some(pe) = snap.pending.get_mut(ps) else { return Queued::End(bio, Err(Errno::EIO)) };
            let Some(to) = pe.e.new_chunk.checked_mul(cs) else { return Queued::End(bio, Err(Errno::EIO)) };
            P::remap(&mut bio, &cow, to + (sector & mask));
            P::bio_list_add(&mut pe.snapshot_bios, bio);
        }
        self.start_copies(id.index);
        Queued::Queued
    }

    /// A write through a merge target that is not remapped to the COW: an
    /// origin write (the other snapshots get their copies first). One
    /// remapped to a chunk being merged waits for that merge step.
    fn merge_write(&self, id: SnapId, sector: u64, piece: &[u8], flags: ReqFlags) -> Result<()> {
        let origin = loop {
            let r = self.with_snapshot(id, |_, slot| {
                let snap = slot.snap.down_write();
                let chunk = sector >> snap.chunk_shift();
                if matches!(snap.merging, Some((first, n)) if chunk >= first && chunk < first + n) {
                    return Err(Errno::EAGAIN);
                }
                if snap.valid {
                    if let Some(cow_sector) = snap.remap(sector) {
                        return snap.cow.write(cow_sector, piece, flags).map(|_| None);
                    }
                }
                Ok(Some(snap.origin.clone()))
            })?;
            match r {
                Err(Errno::EAGAIN) => crate::sync::sleep_short(),
                Err(e) => return Err(e),
                Ok(None) => return Ok(()),
                Ok(Some(origin)) => break origin,
            }
        };
        self.origin_write(&origin, sector, piece, flags)
    }

    /// Makes sure every snapshot of the origin has its copy of every chunk
    /// in `sector..sector + nr_sectors` (`origin_write_extent` and the
    /// merge's wait for `_pending_exceptions_done`). Never fails: a
    /// snapshot that cannot copy is invalidated instead.
    fn origin_write_extent(&self, origin_id: u64, sector: u64, nr_sectors: u64) {
        loop {
            let seen = self.pending_done.load(Ordering::Acquire);
            match self.do_origin(origin_id, sector, nr_sectors, &mut None, true) {
                Origin::Clear => return,
                Origin::Waits | Origin::Busy => self.wait_pending_done(seen),
            }
        }
    }

    /// `origin_map` for writes by callers without bios: every snapshot gets
    /// its copies of the chunks the write covers, then the origin is written.
    pub fn origin_write(&self, origin: &P::Dev, sector: u64, buf: &[u8], flags: ReqFlags) -> Result<()> {
        self.origin_write_extent(origin.bdev_id(), sector, (buf.len() >> SECTOR_SHIFT) as u64);
        origin.write(sector, buf, flags)
    }

    /// A flush through a snapshot (the COW), or a merge target (both devices).
    pub fn snapshot_flush(&self, id: SnapId) -> Result<()> {
        self.with_snapshot(id, |_, slot| {
            let snap = slot.snap.down_read();
            if snap.is_merge {
                snap.origin.flush()?;
            }
            snap.cow.flush()
        })?
    }

    /// `REQ_OP_DISCARD` on a snapshot: only with `discard_zeroes_cow`. A
    /// whole remapped chunk is zeroed in the COW, a partial one discarded
    /// there; unmapped chunks complete at once; `discard_passdown_origin`
    /// also discards the origin. On a merge target discards do nothing.
    pub fn snapshot_discard(&self, id: SnapId, sector: u64, nr_sectors: u64) -> Result<()> {
        let reg = self.reg.down_read();
        let slot = reg.slot(id)?;
        let snap = slot.snap.down_read();
        if snap.is_merge {
            return Ok(());
        }
        if !snap.discard_zeroes_cow {
            return Err(Errno::EOPNOTSUPP);
        }
        if !snap.valid {
            return Err(Errno::EIO);
        }
        let len = usize::try_from(nr_sectors << SECTOR_SHIFT).map_err(|_| Errno::EINVAL)?;
        // One chunk of zeros for every whole chunk the discard covers.
        let mut zeros = None;
        for (s, r) in split_io(sector, len, snap.chunk_size().max(1)) {
            let n = (r.len() >> SECTOR_SHIFT) as u64;
            if let Some(cow_sector) = snap.remap(s) {
                if r.len() == snap.chunk_bytes() {
                    let z = match zeros {
                        Some(ref z) => z,
                        None => zeros.insert(mem::try_zeroed(r.len())?),
                    };
                    snap.cow.write(cow_sector, z, ReqFlags::empty())?;
                } else {
                    snap.cow.discard(cow_sector, n)?;
                }
            }
            if snap.discard_passdown_origin {
                snap.origin.discard(s, n)?;
            }
        }
        Ok(())
    }

    /// The snapshot's in-memory-only state.
    pub fn volatile(&self, id: SnapId) -> Result<InMemory> {
        self.with_snapshot(id, |_, slot| {
            let s = slot.snap.down_read();
            let transient = match s.store.transient_next_free() {
                Some(nf) => {
                    let mut v = TryVec::try_with_capacity(s.complete.ranges())?;
                    let mut r = Ok(());
                    s.complete.for_each(|e| {
                        if r.is_ok() {
                            r = v.try_push((e.old_chunk, e.first_new_chunk(), e.consecutive_count()));
                        }
                    });
                    r?;
                    Some((nf, v))
                }
                None => None,
            };
            Ok(InMemory { valid: s.valid, overflowed: s.snapshot_overflowed, merge_failed: s.merge_failed, transient })
        })?
    }

    /// Puts back what [`Self::volatile`] saved: a snapshot is invalid,
    /// overflowed or merge-failed if it was or is; a transient store gets
    /// its exceptions back.
    pub fn restore_volatile(&self, id: SnapId, v: &InMemory) -> Result<()> {
        self.with_snapshot(id, |_, slot| {
            let mut s = slot.snap.down_write();
            s.valid &= v.valid;
            s.snapshot_overflowed |= v.overflowed;
            s.merge_failed |= v.merge_failed;
            if let (Some((nf, ranges)), Some(_)) = (&v.transient, s.store.transient_next_free()) {
                s.store.set_transient_next_free(*nf);
                for &(old, new, count) in ranges.iter() {
                    for k in 0..=count as u64 {
                        s.complete.insert(old + k, new + k)?;
                    }
                }
            }
            Ok(())
        })?
    }

    /// Where origin `sector` of snapshot `id` is stored right now: the COW
    /// sector, or `None` for the origin (a query for tools; I/O must go
    /// through [`Self::snapshot_read`], which holds the lock while reading).
    pub fn snapshot_remap(&self, id: SnapId, sector: u64) -> Result<Option<u64>> {
        self.with_snapshot(id, |_, slot| slot.snap.down_read().remap(sector))
    }

    /// True while a merge target is merging.
    pub fn merge_running(&self, id: SnapId) -> Result<bool> {
        self.with_snapshot(id, |_, slot| slot.snap.down_read().running_merge)
    }

    /// One round of `snapshot_merge_next_chunks` + `merge_callback`: the
    /// newest run of consecutive exceptions is copied back to the origin
    /// (after other snapshots got their copies), the origin is flushed, and
    /// only then the store forgets them on disk and in memory.
    pub fn merge_step(&self, id: SnapId) -> Result<MergeProgress> {
        let shut = |snap: &mut DmSnapshot<P>, failed: bool, msg: &str| {
            if !msg.is_empty() {
                crate::dm_err!(DM_MSG_PREFIX, "{}", msg);
            }
            snap.stop_merge(failed);
            if failed {
                MergeProgress::Failed
            } else {
                MergeProgress::Done
            }
        };
        // snapshot_merge_next_chunks: pick the run under the lock and mark
        // it merging (writes to it now wait), then work without locks.
        let (run, origin_id, origin, cow, shift) = {
            let reg = self.reg.down_read();
            let slot = reg.slot(id)?;
            let mut snap = slot.snap.down_write();
            if !snap.running_merge {
                return Ok(MergeProgress::Done);
            }
            if !snap.valid {
                return Ok(shut(&mut snap, false, "Snapshot is invalid: can't merge"));
            }
            let run = match snap.store.prepare_merge() {
                Ok(Some(run)) => run,
                Ok(None) => return Ok(shut(&mut snap, false, "")),
                Err(_) => return Ok(shut(&mut snap, true, "Read error in exception store: shutting down merge")),
            };
            let n = run.nr_consecutive as u64;
            snap.start_merging(run.last_old_chunk + 1 - n, n);
            (run, slot.origin_id, snap.origin.clone(), snap.cow.clone(), snap.chunk_shift())
        };
        let n = run.nr_consecutive as u64;
        let old_chunk = run.last_old_chunk + 1 - n;
        let new_chunk = run.last_new_chunk + 1 - n;
        let io_size = n << shift;
        let dest = old_chunk << shift;
        let count = io_size.min(origin.size_sectors().saturating_sub(dest));
        // Writes remapped to these chunks' COW copies before they were
        // marked merging must land before the copy reads them.
        self.check_for_conflicting_io(id.index, old_chunk, old_chunk + n - 1);
        // Reallocate exceptions needed in other snapshots first and wait
        // for them (origin_write_extent).
        self.origin_write_extent(origin_id, dest, io_size);
        let copied = self.platform.copy(&cow, new_chunk << shift, &origin, dest, count);
        let flushed = copied.is_ok() && origin.flush().is_ok();
        // merge_callback
        let reg = self.reg.down_read();
        let slot = reg.slot(id)?;
        let mut snap = slot.snap.down_write();
        if copied.is_err() {
            return Ok(shut(&mut snap, true, "Read error: shutting down merge."));
        }
        if !flushed {
            return Ok(shut(&mut snap, true, "Flush after merge failed: shutting down merge"));
        }
        if snap.store.commit_merge(run.nr_consecutive).is_err() {
            return Ok(shut(&mut snap, true, "Write error in exception store: shutting down merge"));
        }
        // remove_single_exception_chunk, last chunk first.
        for c in (old_chunk..old_chunk + n).rev() {
            if snap.complete.remove_chunk(c).is_err() {
                return Ok(shut(&mut snap, true, ""));
            }
        }
        snap.end_merging();
        Ok(MergeProgress::Merged(run.nr_consecutive))
    }
}

#[cfg(test)]
impl<P: IoPlatform> SnapshotDriver<P> {
    /// Runs `f` holding the registry lock exclusively (as a handover does)
    /// or, with `snapshot`, a snapshot's lock exclusively (as a copy does).
    pub(crate) fn with_lock_held<R>(&self, snapshot: Option<SnapId>, f: impl FnOnce() -> R) -> R {
        match snapshot {
            None => {
                let _g = self.reg.down_write();
                f()
            }
            Some(id) => {
                let reg = self.reg.down_read();
                let _s = reg.slot(id).map(|s| s.snap.down_write());
                f()
            }
        }
    }

    /// Changes a snapshot's state directly.
    pub(crate) fn with_snap_mut<R>(&self, id: SnapId, f: impl FnOnce(&mut DmSnapshot<P>) -> R) -> R {
        let reg = self.reg.down_read();
        let mut s = reg.slot(id).map(|s| s.snap.down_write()).unwrap_or_else(|_| panic!("no snapshot {id:?}"));
        f(&mut s)
    }
}

/// What [`SnapshotDriver::do_origin`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// Every snapshot has its copies: the origin may be written.
    Clear,
    /// Some exception is pending (the bio, if any, was queued on one).
    Waits,
    /// A snapshot lock was held (only without `blocking`).
    Busy,
}

/// Bios released by completed exceptions, handled outside the locks.
struct Released<P: IoPlatform> {
    submit: P::BioList,
    error: P::BioList,
    retry: P::BioList,
    origin: Option<P::Dev>,
}

impl<P: IoPlatform> Default for Released<P> {
    fn default() -> Self {
        Released {
            submit: P::BioList::default(),
            error: P::BioList::default(),
            retry: P::BioList::default(),
            origin: None,
        }
    }
}

/// Bits of a copy's context holding the snapshot's generation.
const CONTEXT_GEN_MASK: u32 = 0xff_ffff;

/// A copy's context: registry index (24 bits), generation (24 bits),
/// pending slot (16 bits).
fn copy_context(id: SnapId, slot: u32) -> u64 {
    ((id.index as u64 & 0xff_ffff) << 40) | (((id.gen & CONTEXT_GEN_MASK) as u64) << 16) | (slot as u64 & 0xffff)
}

fn split_context(c: u64) -> (u32, u32, u32) {
    ((c >> 40) as u32, ((c >> 16) as u32) & CONTEXT_GEN_MASK, (c & 0xffff) as u32)
}
