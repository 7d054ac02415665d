// SPDX-License-Identifier: GPL-2.0-only
//! The `clone` target (dm-clone-target.c), synchronous: the thread that
//! writes an unhydrated region hydrates it (copies it from the source)
//! first; background hydration runs when the platform calls
//! [`CloneTarget::hydrate_step`]. Metadata is committed on FLUSH/FUA, on
//! status, when the platform's periodic timer calls
//! [`CloneTarget::commit_metadata`], and on postsuspend — always after the
//! destination is flushed (`pre_commit`, flush, `commit`).

use super::ctr::{parse_options, parse_region_size};
use super::hydration::Hydrations;
use super::metadata::CloneMetadata;
use crate::args::kstrtouint;
use crate::dm::{BioInfo, BioOp, BioQueue, MapResult};
use crate::emit::{Emitter, StatusType};
use crate::errno::{Errno, Result, TargetError};
use crate::mem::TryVec;
use crate::platform::{split_io, ChunkCopier, DmDevice, QueueLimits, ReqFlags, SECTOR_SHIFT};
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, LockClass, Mutex, Ordering, SpinLock};

/// Serialises metadata commits (the worker's commit against suspend's).
static COMMIT_LOCK: LockClass = LockClass::new(c"dmrs_clone_commit_lock");
/// The hydrations in flight (`clone->lock` around the hydration table).
static HYDRATIONS_LOCK: LockClass = LockClass::new(c"dmrs_clone_hydrations_lock");

/// `DM_MSG_PREFIX` of dm-clone-target.c.
pub const DM_MSG_PREFIX: &str = "clone";
/// Target version in Linux 6.12.
pub const CLONE_VERSION: [u32; 3] = [1, 0, 0];
pub use super::ctr::{DEFAULT_HYDRATION_BATCH_SIZE, DEFAULT_HYDRATION_THRESHOLD, MAX_REGION_SIZE, MIN_REGION_SIZE};
/// `DM_CLONE_METADATA_MAX_SECTORS`: what the metadata space map can use.
pub const METADATA_MAX_SECTORS: u64 = crate::pdata::space_map::METADATA_MAX_BLOCKS * 8;
/// `DM_CLONE_METADATA_MAX_SECTORS_WARNING`: 16 GiB.
pub const METADATA_MAX_SECTORS_WARNING: u64 = 16 * (1 << 30) / 512;
/// `DM_CLONE_METADATA_BLOCK_SIZE` in sectors.
pub const METADATA_BLOCK_SIZE: u32 = 8;

/// `enum clone_metadata_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// `CM_WRITE`.
    Write = 0,
    /// `CM_READ_ONLY`.
    ReadOnly = 1,
    /// `CM_FAIL`: "Never move out of fail mode".
    Fail = 2,
}

/// A background hydration to start: copy `nr_sectors` at `sector` from the
/// source to the same place on the destination, then report it with
/// [`CloneTarget::hydration_done`] and `slot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HydrationJob {
    /// The hydration's slot.
    pub slot: u32,
    /// First sector (the same on both devices).
    pub sector: u64,
    /// Sectors to copy.
    pub nr_sectors: u64,
}

/// What [`CloneTarget::write_bio`] did with a write to an unhydrated region.
#[derive(Debug)]
pub enum WriteBio<B> {
    /// The region is hydrated by now: issue the bio.
    Hydrated(B),
    /// Queued on the region's hydration in flight.
    Queued,
    /// Queued on a new hydration: start its copy.
    Start(HydrationJob),
    /// No slot free: take the synchronous path.
    Busy(B),
}

/// One `clone` target. `L` queues the bios that wait for a hydration
/// (`()` for callers without bios).
pub struct CloneTarget<D: DmDevice, K: ChunkCopier, L: BioQueue = ()> {
    metadata_dev: D,
    dest: D,
    source: D,
    copier: K,
    ti_len: u64,
    region_size: u64,
    region_shift: u32,
    nr_regions: u64,
    /// The table's arguments after the three devices, as given.
    ctr_args: TryVec<u8>,
    hydration_enabled: AtomicBool,
    discard_passdown: AtomicBool,
    hydration_threshold: AtomicU32,
    hydration_batch_size: AtomicU32,
    mode: AtomicUsize,
    hydration_offset: AtomicU64,
    /// `clone->cmd`: the metadata (`struct dm_clone_metadata`).
    cmd: CloneMetadata<D>,
    /// `commit_lock`.
    commit_lock: Mutex<()>,
    /// Hydrations in flight: a region is copied once.
    hydrations: SpinLock<Hydrations<L>>,
    /// Events raised (`dm_table_event`): mode changes, commits once
    /// hydration is done.
    events: AtomicU64,
    /// The platform's handle of the table.
    event_handle: AtomicU64,
    /// Only in loom builds: see [`CloneTarget::break_hydration_order_for_loom`].
    #[cfg(loom)]
    broken_hydration_order: bool,
}

impl<D: DmDevice, K: ChunkCopier, L: BioQueue> CloneTarget<D, K, L> {
    /// `clone_ctr`: `<metadata dev> <destination dev> <source dev> <region
    /// size> [<#feature args> [no_hydration] [no_discard_passdown]]
    /// [<#core args> [hydration_threshold N] [hydration_batch_size N]]`.
    pub fn ctr(
        ti_len: u64,
        argv: &[&str],
        get_device: &mut dyn FnMut(&str) -> Result<D>,
        copier: K,
    ) -> core::result::Result<Self, TargetError> {
        let [metadata_path, dest_path, source_path, region_arg, options @ ..] = argv else {
            return Err(TargetError::inval(c"Invalid number of arguments"));
        };
        let metadata_dev =
            get_device(metadata_path).map_err(|e| TargetError::new(e, c"Error opening metadata device"))?;
        if metadata_dev.size_sectors() > METADATA_MAX_SECTORS_WARNING {
            crate::dm_warn!(
                DM_MSG_PREFIX,
                "Metadata device {} is larger than {} sectors: excess space will not be used.",
                metadata_dev.name(),
                METADATA_MAX_SECTORS
            );
        }
        let dest = get_device(dest_path).map_err(|e| TargetError::new(e, c"Error opening destination device"))?;
        if dest.size_sectors() < ti_len {
            return Err(TargetError::inval(c"Device size larger than destination device"));
        }
        let source = get_device(source_path).map_err(|e| TargetError::new(e, c"Error opening source device"))?;
        if source.size_sectors() < ti_len {
            return Err(TargetError::inval(c"Device size larger than source device"));
        }
        let region_size = parse_region_size(region_arg)?;
        let lbs = |d: &D| (d.logical_block_size() >> SECTOR_SHIFT).max(1);
        if region_size % lbs(&source) != 0 || region_size % lbs(&dest) != 0 {
            return Err(TargetError::inval(c"Region size is not a multiple of device logical block size"));
        }
        let region_size = region_size as u64;
        let nr_regions = ti_len.div_ceil(region_size);
        if nr_regions > 1 << 31 {
            return Err(TargetError::inval(c"Too many regions. Consider increasing the region size"));
        }
        let o = parse_options(options)?;
        let cmd = CloneMetadata::open(metadata_dev.clone(), ti_len, region_size)
            .map_err(|e| TargetError::new(e, c"Failed to load metadata"))?;
        let nomem = TargetError::new(Errno::ENOMEM, c"Failed to allocate memory for table line");
        let mut ctr_args = TryVec::new();
        for (i, a) in core::iter::once(region_arg).chain(options).enumerate() {
            if i > 0 {
                ctr_args.try_push(b' ').map_err(|_| nomem)?;
            }
            ctr_args.try_extend_from_slice(a.as_bytes()).map_err(|_| nomem)?;
        }
        let lock = |class| {
            Mutex::new((), class).map_err(|_| TargetError::new(Errno::ENOMEM, c"Failed to allocate clone structure"))
        };
        Ok(CloneTarget {
            metadata_dev,
            dest,
            source,
            copier,
            ti_len,
            region_size,
            region_shift: region_size.trailing_zeros(),
            nr_regions,
            ctr_args,
            hydration_enabled: AtomicBool::new(o.hydration),
            discard_passdown: AtomicBool::new(o.discard_passdown),
            hydration_threshold: AtomicU32::new(o.hydration_threshold),
            hydration_batch_size: AtomicU32::new(o.hydration_batch_size),
            mode: AtomicUsize::new(Mode::Write as usize),
            hydration_offset: AtomicU64::new(0),
            cmd,
            commit_lock: lock(&COMMIT_LOCK)?,
            hydrations: SpinLock::new(Hydrations::new(), &HYDRATIONS_LOCK)
                .map_err(|_| TargetError::new(Errno::ENOMEM, c"Failed to allocate clone structure"))?,
            events: AtomicU64::new(0),
            event_handle: AtomicU64::new(0),
            #[cfg(loom)]
            broken_hydration_order: false,
        })
    }

    /// The metadata mode.
    pub fn mode(&self) -> Mode {
        match self.mode.load(Ordering::Acquire) {
            0 => Mode::Write,
            1 => Mode::ReadOnly,
            _ => Mode::Fail,
        }
    }

    /// `__set_clone_mode`.
    fn set_mode(&self, name: &str, m: Mode) {
        let old = self.mode();
        // Never move out of fail mode.
        if old == Mode::Fail {
            return;
        }
        if m >= Mode::ReadOnly {
            self.cmd.set_read_only();
        }
        self.mode.store(m as usize, Ordering::Release);
        if m != old {
            self.event();
            let desc = match m {
                Mode::Write => "read-write",
                Mode::ReadOnly => "read-only",
                Mode::Fail => "fail",
            };
            crate::dm_info!(DM_MSG_PREFIX, "{}: Switching to {} mode", name, desc);
        }
    }

    /// `dm_table_event(clone->ti->table)`.
    fn event(&self) {
        self.events.fetch_add(1, Ordering::AcqRel);
        crate::dm::table_event(self.event_handle.load(Ordering::Acquire));
    }

    /// Gives the target the platform's handle of its table (its events).
    pub fn set_event_handle(&self, handle: u64) {
        self.event_handle.store(handle, Ordering::Release);
    }

    /// Events the target raised.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Acquire)
    }

    /// `__metadata_operation_failed`: abort, read-only, reload the region
    /// map from disk (fail mode if even that fails).
    fn metadata_operation_failed(&self, name: &str, op: &str, r: Errno) {
        crate::dm_err!(DM_MSG_PREFIX, "{}: Metadata operation `{}' failed: error = {}", name, op, -r.0);
        if self.cmd.abort().is_err() {
            crate::dm_err!(DM_MSG_PREFIX, "{}: Failed to abort metadata transaction", name);
            self.set_mode(name, Mode::Fail);
        }
        self.set_mode(name, Mode::ReadOnly);
        if self.cmd.reload_in_core_bitset().is_err() {
            crate::dm_err!(DM_MSG_PREFIX, "{}: Failed to reload metadata", name);
            self.set_mode(name, Mode::Fail);
        }
    }

    /// `commit_metadata`: pre_commit (swap dirty maps), flush the
    /// destination, commit. Returns whether the destination was flushed.
    pub fn commit_metadata(&self, name: &str) -> Result<bool> {
        let _g = self.commit_lock.lock();
        if !self.cmd.changed_this_transaction() {
            return Ok(false);
        }
        if self.mode() >= Mode::ReadOnly {
            return Err(Errno::EPERM);
        }
        if let Err(r) = self.cmd.pre_commit() {
            self.metadata_operation_failed(name, "dm_clone_metadata_pre_commit", r);
            return Err(r);
        }
        if let Err(r) = self.dest.flush() {
            self.metadata_operation_failed(name, "flush destination device", r);
            return Err(r);
        }
        if let Err(r) = self.cmd.commit() {
            self.metadata_operation_failed(name, "dm_clone_metadata_commit", r);
            return Err(r);
        }
        if self.cmd.is_hydration_done() {
            self.event();
        }
        Ok(true)
    }

    fn region_range(&self, r: u64) -> (u64, u64) {
        let start = r << self.region_shift;
        (start, self.region_size.min(self.ti_len - start))
    }

    /// Copies region `r` from the source unless it is hydrated by now;
    /// `overwrite` writes that whole region instead of copying. Waits while
    /// another hydration copies the region.
    fn hydrate_region(&self, r: u64, overwrite: Option<(&[u8], ReqFlags)>) -> Result<bool> {
        let slot = loop {
            {
                let mut h = self.hydrations.lock();
                if self.cmd.is_region_hydrated(r) {
                    return Ok(false);
                }
                if h.find(r).is_none() {
                    if let Some(slot) = h.claim(r, 1) {
                        break slot;
                    }
                }
            }
            crate::sync::sleep_short();
        };
        let (start, n) = self.region_range(r);
        let copied = match overwrite {
            Some((data, flags)) => self.dest.write(start, data, flags),
            None => self.copier.copy(&self.source, start, &self.dest, start, n),
        };
        // Recorded before the slot is freed: no other copy of the region
        // may start in between (it could land after this write's data).
        #[cfg(loom)]
        if self.broken_hydration_order {
            self.hydrations.lock().release(slot);
        }
        let mut h = self.hydrations.lock();
        // `hydration_update_metadata`: in read-only mode the region cannot
        // be recorded, so the write that needed it fails (BLK_STS_IOERR):
        // data written to an unrecorded region would be read from the
        // source again.
        let r = copied.and_then(|_| match self.cmd.set_region_hydrated(r) {
            Ok(()) => Ok(true),
            Err(_) => Err(Errno::EIO),
        });
        #[cfg(loom)]
        if self.broken_hydration_order {
            return r;
        }
        h.release(slot);
        r
    }

    /// Test hook, compiled only with `--cfg loom`: a write's hydration frees
    /// its slot before the region is recorded as hydrated. The hydration
    /// model's `#[should_panic]` variant uses it.
    #[cfg(loom)]
    pub fn break_hydration_order_for_loom(&mut self) {
        self.broken_hydration_order = true;
    }

    /// `hydrate_bio_region` for a write to unhydrated region `region` (a
    /// platform with bios; `bio` already points at the destination): queued
    /// on the region's hydration in flight, or on a new one whose copy the
    /// caller starts, to be issued when [`Self::hydration_done`] hands it
    /// back.
    pub fn write_bio(&self, region: u64, bio: L::Bio) -> WriteBio<L::Bio> {
        let mut h = self.hydrations.lock();
        if self.cmd.is_region_hydrated(region) {
            return WriteBio::Hydrated(bio);
        }
        if let Some(slot) = h.find(region) {
            return match h.queue(slot, bio) {
                Ok(()) => WriteBio::Queued,
                Err(bio) => WriteBio::Busy(bio),
            };
        }
        let Some(slot) = h.claim(region, 1) else { return WriteBio::Busy(bio) };
        if let Err(bio) = h.queue(slot, bio) {
            h.release(slot);
            return WriteBio::Busy(bio);
        }
        let (sector, nr_sectors) = self.region_range(region);
        WriteBio::Start(HydrationJob { slot, sector, nr_sectors })
    }

    /// `do_hydration`: the next background batch — up to
    /// `hydration_batch_size` consecutive unhydrated regions from the
    /// hydration offset, while fewer than `hydration_threshold` regions are
    /// in flight. `None` when nothing is to be started now.
    pub fn next_hydration(&self) -> Option<HydrationJob> {
        if !self.hydration_active() {
            return None;
        }
        let threshold = self.hydration_threshold.load(Ordering::Acquire) as u64;
        let batch = self.hydration_batch_size.load(Ordering::Acquire).max(1) as u64;
        let mut h = self.hydrations.lock();
        let room = threshold.saturating_sub(h.regions_in_flight()).min(batch);
        if room == 0 {
            return None;
        }
        let free = |h: &Hydrations<L>, r: u64| !self.cmd.is_region_hydrated(r) && h.find(r).is_none();
        let mut r = self.hydration_offset.load(Ordering::Acquire);
        let mut wrapped = false;
        loop {
            r = self.cmd.find_next_unhydrated_region(r);
            if r >= self.nr_regions {
                if wrapped {
                    return None;
                }
                wrapped = true;
                r = 0;
                continue;
            }
            if h.find(r).is_none() {
                break;
            }
            r += 1;
        }
        let mut n = 1;
        while n < room && r + n < self.nr_regions && free(&h, r + n) {
            n += 1;
        }
        let slot = h.claim(r, n)?;
        self.hydration_offset.store(r + n, Ordering::Release);
        let (sector, _) = self.region_range(r);
        let end = ((r + n) << self.region_shift).min(self.ti_len);
        Some(HydrationJob { slot, sector, nr_sectors: end - sector })
    }

    /// `hydration_complete`: the copy of hydration `slot` finished. Its
    /// regions are marked hydrated (`ok`); the bios that waited are handed
    /// back with the result to end them with on failure.
    pub fn hydration_done(&self, slot: u32, ok: bool) -> (L, Result<()>) {
        let mut h = self.hydrations.lock();
        let Some((first, nr)) = h.range(slot) else { return (L::default(), Err(Errno::EINVAL)) };
        let mut r = if ok { Ok(()) } else { Err(Errno::EIO) };
        if ok {
            // As in `hydrate_region`: a region that cannot be recorded
            // (read-only mode) fails the bios that waited for it.
            for region in first..first + nr {
                if self.cmd.set_region_hydrated(region).is_err() {
                    r = Err(Errno::EIO);
                }
            }
        }
        // Freed only now, as in `hydrate_region`.
        let bios = h.release(slot).map(|d| d.bios).unwrap_or_default();
        (bios, r)
    }

    /// True while a hydration's copy runs (suspend and removal wait for
    /// none: `hydrations_in_flight`).
    pub fn hydrations_in_flight(&self) -> bool {
        self.hydrations.lock().busy()
    }

    fn pieces(&self, sector: u64, len: usize) -> Result<impl Iterator<Item = (u64, core::ops::Range<usize>)>> {
        if (sector + (len >> SECTOR_SHIFT) as u64) > self.ti_len {
            return Err(Errno::EIO);
        }
        Ok(split_io(sector, len, self.region_size))
    }

    /// `clone_map`: decides for a bio in the submitter's context. Reads and
    /// writes of hydrated regions are remapped to the destination, reads of
    /// the others to the source (which the clone never writes). Writes to
    /// unhydrated regions (hydration first), flushes, FUA writes while the
    /// metadata has uncommitted changes (`bio_triggers_commit`), discards
    /// and bios crossing a region boundary are `Submitted`: the platform
    /// runs them through [`Self::read`], [`Self::write`], [`Self::flush`]
    /// or [`Self::discard`] in process context.
    pub fn map(&self, bio: &BioInfo) -> MapResult<D> {
        if self.mode() == Mode::Fail {
            return MapResult::Kill(Errno::EIO);
        }
        let read = match bio.op {
            BioOp::Read => true,
            BioOp::Write => false,
            BioOp::Flush | BioOp::Discard | BioOp::Other => return MapResult::Submitted,
        };
        if bio.end() > self.ti_len {
            return MapResult::Kill(Errno::EIO);
        }
        let region = bio.sector >> self.region_shift;
        if bio.nr_sectors == 0 || (bio.end() - 1) >> self.region_shift != region {
            return MapResult::Submitted;
        }
        if self.cmd.is_region_hydrated(region) {
            if !read && bio.flags.intersects(ReqFlags::FUA | ReqFlags::PREFLUSH) && self.cmd.changed_this_transaction()
            {
                return MapResult::Submitted;
            }
            return MapResult::Remapped { dev: self.dest.clone(), sector: bio.sector };
        }
        if read {
            return MapResult::Remapped { dev: self.source.clone(), sector: bio.sector };
        }
        MapResult::Submitted
    }

    /// `clone_map` for reads: hydrated regions from the destination, the
    /// rest from the source.
    pub fn read(&self, sector: u64, buf: &mut [u8]) -> Result<()> {
        if self.mode() == Mode::Fail {
            return Err(Errno::EIO);
        }
        for (s, r) in self.pieces(sector, buf.len())? {
            let piece = buf.get_mut(r).ok_or(Errno::EINVAL)?;
            if self.cmd.is_region_hydrated(s >> self.region_shift) {
                self.dest.read(s, piece)?;
            } else {
                self.source.read(s, piece)?;
            }
        }
        Ok(())
    }

    /// `clone_map` for writes: an unhydrated region is hydrated first (a
    /// whole-region write needs no copy); FUA/PREFLUSH writes commit the
    /// metadata before they are issued.
    pub fn write(&self, name: &str, sector: u64, buf: &[u8], flags: ReqFlags) -> Result<()> {
        if self.mode() == Mode::Fail {
            return Err(Errno::EIO);
        }
        for (s, r) in self.pieces(sector, buf.len())? {
            let piece = buf.get(r).ok_or(Errno::EINVAL)?;
            let region = s >> self.region_shift;
            let flush = flags.intersects(ReqFlags::FUA | ReqFlags::PREFLUSH);
            let plain = flags - (ReqFlags::FUA | ReqFlags::PREFLUSH);
            if !self.cmd.is_region_hydrated(region) {
                let whole = piece.len() as u64 == self.region_size << SECTOR_SHIFT;
                if whole {
                    if self.hydrate_region(region, Some((piece, plain)))? {
                        if flush {
                            self.commit_then_flush(name)?;
                        }
                        continue;
                    }
                } else {
                    self.hydrate_region(region, None)?;
                }
            }
            if flush {
                self.commit_then_flush(name)?;
            }
            self.dest.write(s, piece, if flush { plain | ReqFlags::FUA } else { plain })?;
        }
        Ok(())
    }

    fn commit_then_flush(&self, name: &str) -> Result<()> {
        match self.commit_metadata(name) {
            Ok(true) => Ok(()),
            Ok(false) | Err(Errno::EPERM) => self.dest.flush(),
            Err(e) => Err(e),
        }
    }

    /// An empty flush: commit the metadata, make the destination durable.
    pub fn flush(&self, name: &str) -> Result<()> {
        if self.mode() == Mode::Fail {
            return Err(Errno::EIO);
        }
        self.commit_then_flush(name)
    }

    /// `process_discard_bio`: whole regions covered by the discard are
    /// marked hydrated (a hint to skip copying them) and the discard of
    /// those regions is passed down unless `no_discard_passdown`.
    pub fn discard(&self, name: &str, sector: u64, nr_sectors: u64) -> Result<()> {
        if self.mode() == Mode::Fail {
            return Err(Errno::EIO);
        }
        // bio_region_range: rs rounds up, end rounds down (may cross: "rs > re").
        let rs = sector.div_ceil(self.region_size);
        let end = sector.saturating_add(nr_sectors) >> self.region_shift;
        if rs >= end {
            return Ok(());
        }
        let nr = end - rs;
        if rs >= self.nr_regions || rs + nr > self.nr_regions {
            crate::dm_err!(
                DM_MSG_PREFIX,
                "{}: Invalid range ({} + {}, total regions {}) for discard ({} + {})",
                name,
                rs,
                nr,
                self.nr_regions,
                sector,
                nr_sectors
            );
            return Ok(());
        }
        let ok = if self.cmd.is_range_hydrated(rs, nr) {
            true
        } else if self.mode() >= Mode::ReadOnly {
            return Ok(());
        } else {
            match self.cmd.cond_set_range(rs, nr) {
                Ok(()) => true,
                Err(e) => {
                    crate::dm_err!(DM_MSG_PREFIX, "{}: Failed to set hydrated range for discard", name);
                    let _ = e;
                    false
                }
            }
        };
        if ok && self.discard_passdown.load(Ordering::Acquire) {
            let (start, _) = self.region_range(rs);
            let len = (nr << self.region_shift).min(self.ti_len - start);
            match self.dest.discard(start, len) {
                Ok(()) | Err(Errno::EOPNOTSUPP) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// One round of background hydration for callers without bios: the
    /// next batch ([`Self::next_hydration`]) copied and recorded before it
    /// returns. Returns regions hydrated (0: nothing to do).
    pub fn hydrate_step(&self) -> Result<u64> {
        let Some(job) = self.next_hydration() else { return Ok(0) };
        let ok = self.copier.copy(&self.source, job.sector, &self.dest, job.sector, job.nr_sectors).is_ok();
        self.hydration_done(job.slot, ok).1?;
        Ok(job.nr_sectors.div_ceil(self.region_size))
    }

    /// True when background hydration can make progress.
    pub fn hydration_active(&self) -> bool {
        self.hydration_enabled.load(Ordering::Acquire)
            && self.hydration_threshold.load(Ordering::Acquire) > 0
            && self.mode() == Mode::Write
            && !self.cmd.is_hydration_done()
    }

    /// The destination device.
    pub fn dest(&self) -> &D {
        &self.dest
    }

    /// The source device.
    pub fn source(&self) -> &D {
        &self.source
    }

    /// Region size in sectors.
    pub fn region_size(&self) -> u64 {
        self.region_size
    }

    /// `(hydrated, total)` regions.
    pub fn progress(&self) -> (u64, u64) {
        (self.cmd.nr_of_hydrated_regions(), self.nr_regions)
    }

    /// `clone_message`.
    pub fn message(&self, name: &str, argv: &[&str]) -> Result<()> {
        let Some(m) = argv.first() else { return Err(Errno::EINVAL) };
        if m.eq_ignore_ascii_case("enable_hydration") {
            self.hydration_enabled.store(true, Ordering::Release);
            return Ok(());
        }
        if m.eq_ignore_ascii_case("disable_hydration") {
            self.hydration_enabled.store(false, Ordering::Release);
            return Ok(());
        }
        let [_, value] = argv else { return Err(Errno::EINVAL) };
        if m.eq_ignore_ascii_case("hydration_threshold") {
            let v = kstrtouint(value).ok_or(Errno::EINVAL)?;
            self.hydration_threshold.store(v, Ordering::Release);
            return Ok(());
        }
        if m.eq_ignore_ascii_case("hydration_batch_size") {
            let v = kstrtouint(value).ok_or(Errno::EINVAL)?;
            self.hydration_batch_size.store(v, Ordering::Release);
            return Ok(());
        }
        crate::dm_err!(DM_MSG_PREFIX, "{}: Unsupported message `{}'", name, m);
        Err(Errno::EINVAL)
    }

    /// `disable_passdown_if_not_supported`: a destination that cannot
    /// discard, or not a whole region at once, turns passdown off (the
    /// status line then shows `no_discard_passdown`).
    fn disable_passdown_if_not_supported(&self) {
        if !self.discard_passdown.load(Ordering::Acquire) {
            return;
        }
        let dest = self.dest.queue_limits();
        let reason = if dest.max_discard_sectors == 0 {
            "discard unsupported"
        } else if u64::from(dest.max_discard_sectors) < self.region_size {
            "max discard sectors smaller than a region"
        } else {
            return;
        };
        crate::dm_warn!(
            DM_MSG_PREFIX,
            "Destination device ({}) {}: Disabling discard passdown.",
            self.dest.disk_name(),
            reason
        );
        self.discard_passdown.store(false, Ordering::Release);
    }

    /// `clone_io_hints`: dm core stacked `limits` from the source and the
    /// destination; a region-sized I/O is preferred unless `io_opt` is
    /// already a multiple of it, and discards get the limits
    /// `set_discard_limits` gives (virtual without passdown, the
    /// destination's with it: discards never reach the source).
    pub fn io_hints(&self, limits: &mut QueueLimits) {
        let io_opt_sectors = u64::from(limits.io_opt >> SECTOR_SHIFT);
        if io_opt_sectors < self.region_size || io_opt_sectors % self.region_size != 0 {
            limits.io_min = (self.region_size << SECTOR_SHIFT) as u32;
            limits.io_opt = (self.region_size << SECTOR_SHIFT) as u32;
        }
        self.disable_passdown_if_not_supported();
        if !self.discard_passdown.load(Ordering::Acquire) {
            limits.discard_granularity = (self.region_size << SECTOR_SHIFT) as u32;
            let max = u64::from(u32::MAX >> SECTOR_SHIFT);
            limits.max_hw_discard_sectors = (max - max % self.region_size) as u32;
            return;
        }
        let dest = self.dest.queue_limits();
        limits.max_hw_discard_sectors = dest.max_hw_discard_sectors;
        limits.discard_granularity = dest.discard_granularity;
        limits.discard_alignment = dest.discard_alignment;
        limits.max_discard_segments = dest.max_discard_segments;
    }

    /// `clone_iterate_devices`: the source, then the destination, each
    /// over the target's length (the metadata device is not stacked).
    pub fn iterate_devices<R>(
        &self,
        f: &mut dyn FnMut(&D, u64, u64) -> core::result::Result<(), R>,
    ) -> core::result::Result<(), R> {
        f(&self.source, 0, self.ti_len)?;
        f(&self.dest, 0, self.ti_len)
    }

    /// `clone_postsuspend`: commit what is pending.
    pub fn postsuspend(&self, name: &str) {
        let _ = self.commit_metadata(name);
    }

    /// `clone_status`. INFO commits first unless `noflush` (or suspended).
    pub fn status(&self, name: &str, ty: StatusType, noflush: bool, out: &mut Emitter<'_>) {
        match ty {
            StatusType::Info => {
                if self.mode() == Mode::Fail {
                    crate::dmemit!(out, "Fail");
                    return;
                }
                if !noflush {
                    let _ = self.commit_metadata(name);
                }
                let (Ok(free), Ok(total)) = (self.cmd.nr_free_metadata_blocks(), self.cmd.metadata_dev_blocks()) else {
                    crate::dmemit!(out, "Error");
                    return;
                };
                crate::dmemit!(
                    out,
                    "{} {}/{} {} {}/{} {} ",
                    METADATA_BLOCK_SIZE,
                    total - free,
                    total,
                    self.region_size,
                    self.cmd.nr_of_hydrated_regions(),
                    self.nr_regions,
                    // `hydrations_in_flight`: regions being copied now.
                    self.hydrations.lock().regions_in_flight()
                );
                let h = !self.hydration_enabled.load(Ordering::Acquire);
                let d = !self.discard_passdown.load(Ordering::Acquire);
                crate::dmemit!(out, "{} ", h as u32 + d as u32);
                if h {
                    crate::dmemit!(out, "no_hydration ");
                }
                if d {
                    crate::dmemit!(out, "no_discard_passdown ");
                }
                crate::dmemit!(
                    out,
                    "4 hydration_threshold {} hydration_batch_size {} ",
                    self.hydration_threshold.load(Ordering::Acquire),
                    self.hydration_batch_size.load(Ordering::Acquire)
                );
                crate::dmemit!(
                    out,
                    "{}",
                    match self.mode() {
                        Mode::Write => "rw",
                        Mode::ReadOnly => "ro",
                        Mode::Fail => "Fail",
                    }
                );
            }
            StatusType::Table => {
                let args = core::str::from_utf8(&self.ctr_args).unwrap_or("");
                crate::dmemit!(
                    out,
                    "{} {} {} {}",
                    self.metadata_dev.name(),
                    self.dest.name(),
                    self.source.name(),
                    args
                );
            }
            StatusType::Ima => {}
        }
    }
}
