// SPDX-License-Identifier: GPL-2.0-only
//! The four targets over the core: `snapshot-origin`, `snapshot`,
//! `snapshot-merge` (one origin registry shared by every table, as
//! dm-snap.c's `_origins`) and `clone`.

use crate::bio::{Bio, Op};
use dmrs_core::dm::BioOp;
use crate::kdev::KDev;
use crate::target::{Ctor, DmTarget, Mapped};
use dmrs_core::dm::{IoPlatform, MapResult, PerBio, Queued};
use crate::worker::{Handler, Worker};
use dmrs_core::clone::target::{CloneTarget, HydrationJob, WriteBio};
use dmrs_core::platform::ReqFlags;
use kernel::ffi::{c_int, c_ulong};
use dmrs_core::emit::{Emitter, StatusType};
use dmrs_core::mem::try_zeroed;
use crate::kcopyd::KcopydCopier;
use dmrs_core::platform::{DmDevice, QueueLimits, SECTOR_SHIFT};
use dmrs_core::snapshot::{ctr::parse_origin_args, MergeProgress, SnapId, SnapshotDriver};
use dmrs_core::{Errno, TargetError};
use kernel::prelude::*;
use kernel::sync::Arc;

/// The core's I/O platform in the kernel: `struct bio` and `bio_list`,
/// `submit_bio_noacct`, `bio_endio`, dm-kcopyd.
pub(crate) struct KIo;

impl IoPlatform for KIo {
    type Dev = KDev;
    type Bio = Bio;
    type BioList = crate::bio::BioList;

    fn bio_list_add(list: &mut Self::BioList, bio: Bio) {
        list.push(bio)
    }
    fn bio_list_pop(list: &mut Self::BioList) -> Option<Bio> {
        list.pop()
    }
    fn bio_sectors(bio: &Bio) -> (u64, u64) {
        (bio.sector(), (bio.size() >> SECTOR_SHIFT) as u64)
    }
    fn remap(bio: &mut Bio, dev: &KDev, sector: u64) {
        bio.set_dev(dev.bdev());
        if bio.size() != 0 {
            bio.set_sector(sector);
        }
    }
    fn submit(&self, bio: Bio) {
        bio.submit()
    }
    fn endio(&self, bio: Bio, r: dmrs_core::Result<()>) {
        bio.end(r)
    }
    fn start_copy(&self, from: &KDev, from_sector: u64, to: &KDev, to_sector: u64, nr: u64, ctx: u64) -> Option<bool> {
        crate::kcopyd::start_copy(from, from_sector, to, to_sector, nr, ctx);
        None
    }
    fn copy(&self, from: &KDev, from_sector: u64, to: &KDev, to_sector: u64, nr: u64) -> dmrs_core::Result<()> {
        dmrs_core::platform::ChunkCopier::copy(&KcopydCopier, from, from_sector, to, to_sector, nr)
    }
}

/// State shared by every table of the module.
pub(crate) struct Global {
    pub(crate) snap: SnapshotDriver<KIo>,
}

static GLOBAL: core::sync::atomic::AtomicPtr<Global> = core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

pub(crate) fn global_init() -> Result {
    let snap = SnapshotDriver::new(KIo).map_err(|_| ENOMEM)?;
    let g = KBox::new(Global { snap }, GFP_KERNEL)?;
    GLOBAL.store(KBox::into_raw(g), core::sync::atomic::Ordering::Release);
    Ok(())
}

pub(crate) fn global_exit() {
    let g = GLOBAL.swap(core::ptr::null_mut(), core::sync::atomic::Ordering::AcqRel);
    if !g.is_null() {
        // SAFETY: from `global_init`; no target is left.
        drop(unsafe { KBox::from_raw(g) });
    }
}

pub(crate) fn g() -> &'static Global {
    // SAFETY: set before the targets are registered, freed after they are gone.
    unsafe { &*GLOBAL.load(core::sync::atomic::Ordering::Acquire) }
}

/// Reads or writes a bio through `read`/`write`, bouncing its data.
fn rw(
    bio: Bio,
    sector: u64,
    read: impl FnOnce(u64, &mut [u8]) -> dmrs_core::Result<()>,
    write: impl FnOnce(u64, &[u8]) -> dmrs_core::Result<()>,
) {
    let mut buf = match try_zeroed(bio.size()) {
        Ok(b) => b,
        Err(e) => return bio.end(Err(e)),
    };
    let r = match bio.op() {
        Op::Read => read(sector, &mut buf).and_then(|_| if bio.copy_in(&buf) { Ok(()) } else { Err(Errno::EIO) }),
        _ => {
            if bio.copy_out(&mut buf) {
                write(sector, &buf)
            } else {
                Err(Errno::EIO)
            }
        }
    };
    bio.end(r)
}

/// Carries out the core's `map` decision: a remapped bio is pointed at its
/// device and sector and handed back to dm core with its data untouched;
/// one that needs work goes to `work` (the core's bio path, or the worker).
fn dispatch(r: MapResult<KDev>, mut bio: Bio, work: impl FnOnce(Bio) -> Mapped) -> Mapped {
    match r {
        MapResult::Remapped { dev, sector } => {
            bio.set_dev(dev.bdev());
            if bio.size() != 0 {
                bio.set_sector(sector);
            }
            bio.into_remapped();
            Mapped::Remapped
        }
        MapResult::Submitted => work(bio),
        MapResult::Kill(e) => {
            bio.end(Err(e));
            Mapped::Submitted
        }
        MapResult::Done(r) => {
            bio.end(r);
            Mapped::Submitted
        }
    }
}

/// Carries out what the core did with a bio it took for work: issue it
/// (from `map`: hand it back remapped), keep nothing (queued on an
/// exception), defer it to the worker, or end it.
fn queued(q: Queued<Bio>, from_map: bool, defer: impl FnOnce(Bio)) -> Mapped {
    match q {
        Queued::Remapped(bio) if from_map => {
            bio.into_remapped();
            Mapped::Remapped
        }
        Queued::Remapped(bio) => {
            bio.submit();
            Mapped::Submitted
        }
        Queued::Queued => Mapped::Submitted,
        Queued::Retry(bio) => {
            defer(bio);
            Mapped::Submitted
        }
        Queued::End(bio, r) => {
            bio.end(r);
            Mapped::Submitted
        }
    }
}

/// Points `bio` at `dev` at the target-relative sector, as the core
/// expects the bios it queues.
fn to_relative(mut bio: Bio, dev: &KDev, begin: u64) -> Bio {
    let s = bio.sector().saturating_sub(begin);
    KIo::remap(&mut bio, dev, s);
    bio
}

// ---------------------------------------------------------------- origin

struct OriginIo {
    dev: KDev,
    begin: u64,
    len: u64,
}

impl Handler for OriginIo {
    /// An origin write whose `map` found a snapshot lock held: the same
    /// `do_origin`, allowed to wait for the lock.
    fn handle(&self, bio: Bio) {
        let bio = to_relative(bio, &self.dev, self.begin);
        queued(g().snap.origin_write_bio(&self.dev, bio, true), false, |bio| bio.end(Err(Errno::EIO)));
    }
}

/// `snapshot-origin <dev>`.
pub(crate) struct Origin {
    w: Arc<Worker<OriginIo>>,
}

#[vtable]
impl DmTarget for Origin {
    fn ctr(ctor: &mut Ctor<'_>, argv: &[&str]) -> core::result::Result<Self, TargetError> {
        let path = parse_origin_args(argv)?;
        let dev = ctor.get_device(path).map_err(|e| TargetError::new(e, "Cannot get target device"))?;
        let w = Worker::new(OriginIo { dev, begin: ctor.begin(), len: ctor.len() })
            .map_err(|_| TargetError::new(Errno::ENOMEM, "Could not allocate origin structure"))?;
        ctor.set_num_flush_bios(1);
        Ok(Origin { w })
    }

    fn map(&self, bio: Bio, _pb: &mut PerBio) -> Mapped {
        let h = &self.w.h;
        dispatch(g().snap.origin_map(&h.dev, &bio.info(h.begin)), bio, |bio| {
            // Exceptions to make first: `do_origin` queues the bio on one
            // and starts the copies, unless a snapshot lock is held.
            let bio = to_relative(bio, &h.dev, h.begin);
            queued(g().snap.origin_write_bio(&h.dev, bio, false), true, |mut bio| {
                bio.set_sector(bio.sector() + h.begin);
                Worker::defer(&self.w, bio)
            })
        })
    }

    fn status(&self, ty: StatusType, _noflush: bool, out: &mut Emitter<'_>) {
        if ty == StatusType::Table {
            dmrs_core::dmemit!(out, "{}", self.w.h.dev.name());
        }
    }

    fn resume(&self) {
        Worker::start(&self.w)
    }

    fn postsuspend(&self) {
        self.w.stop()
    }

    /// `origin_iterate_devices`.
    fn iterate_devices(&self, f: &mut dyn FnMut(&KDev, u64, u64) -> core::result::Result<(), i32>) -> i32 {
        match f(&self.w.h.dev, 0, self.w.h.len) {
            Ok(()) => 0,
            Err(r) => r,
        }
    }
}

// ------------------------------------------------- snapshot, snapshot-merge

struct SnapIo {
    id: SnapId,
    begin: u64,
    len: u64,
    merge: bool,
}

impl Handler for SnapIo {
    fn handle(&self, mut bio: Bio) {
        let s = g();
        let sector = bio.sector().saturating_sub(self.begin);
        let flags = bio.flags();
        if !self.merge && bio.op() == Op::Write && bio.size() != 0 {
            // The bio path, waiting for locks; a bio across chunks or a
            // full pool takes the synchronous path below.
            bio.set_sector(sector);
            match s.snap.snapshot_write_bio(self.id, bio, true) {
                Queued::Retry(b) => bio = b,
                q => {
                    queued(q, false, |b| b.end(Err(Errno::EIO)));
                    return;
                }
            }
            bio.set_sector(sector + self.begin);
        }
        match bio.op() {
            Op::Write if bio.size() == 0 => {
                let r = s.snap.snapshot_flush(self.id);
                bio.end(r)
            }
            Op::Discard => {
                let n = (bio.size() >> SECTOR_SHIFT) as u64;
                let r = s.snap.snapshot_discard(self.id, sector, n);
                bio.end(r)
            }
            Op::Read | Op::Write => rw(
                bio,
                sector,
                |sec, b| s.snap.snapshot_read(self.id, sec, b),
                |sec, b| s.snap.snapshot_write(self.id, sec, b, flags),
            ),
            Op::Other => bio.end(Err(Errno::EOPNOTSUPP)),
        }
    }

    fn background(&self) -> bool {
        match g().snap.merge_running(self.id) {
            Ok(true) => matches!(g().snap.merge_step(self.id), Ok(MergeProgress::Merged(_))),
            _ => false,
        }
    }
}

/// `snapshot <origin> <COW> <P|PO|N> <chunk>` and `snapshot-merge …`.
pub(crate) struct Snapshot<const MERGE: bool> {
    w: Arc<Worker<SnapIo>>,
}

#[vtable]
impl<const MERGE: bool> DmTarget for Snapshot<MERGE> {
    fn ctr(ctor: &mut Ctor<'_>, argv: &[&str]) -> core::result::Result<Self, TargetError> {
        let len = ctor.len();
        let id = g().snap.snapshot_ctr(MERGE, len, argv, &mut |p| ctor.get_device(p))?;
        let begin = ctor.begin();
        let w = match Worker::new(SnapIo { id, begin, len, merge: MERGE }) {
            Ok(w) => w,
            Err(_) => {
                g().snap.snapshot_dtr(id);
                return Err(TargetError::new(Errno::ENOMEM, "Could not allocate snapshot context"));
            }
        };
        // One flush bio (the kernel's merge target asks for two, origin and
        // COW: `snapshot_flush` flushes both from the one). Whether the
        // device takes flushes comes from the devices (`iterate_devices`).
        ctor.set_num_flush_bios(1);
        // With `discard_zeroes_cow` dm core sends discards (the kernel asks
        // for a second bio for `discard_passdown_origin`; the core passes
        // down from the one). Without it dm core fails them (EOPNOTSUPP).
        if g().snap.snapshot_discards(id) == Ok(true) {
            ctor.set_num_discard_bios(1);
        }
        // `dm_set_target_max_io_len(ti, chunk_size)`: bios fit one chunk, so
        // `map` remaps them whole (a handover destination learns its chunk
        // size at resume; until then its bios cross chunks and are deferred).
        ctor.set_max_io_len(g().snap.snapshot_chunk_size(id).unwrap_or(0));
        let _ = g().snap.set_event_handle(id, ctor.table_handle());
        Ok(Snapshot { w })
    }

    fn map(&self, bio: Bio, pb: &mut PerBio) -> Mapped {
        let h = &self.w.h;
        let info = bio.info(h.begin);
        dispatch(g().snap.snapshot_map(h.id, &info, pb), bio, |mut bio| {
            if !MERGE && info.op == BioOp::Write {
                // An exception to make: the bio waits on it, pointed at
                // its COW chunk, and is issued when it completes.
                bio.set_sector(info.sector);
                return queued(g().snap.snapshot_write_bio(h.id, bio, false), true, |mut bio| {
                    bio.set_sector(info.sector + h.begin);
                    Worker::defer(&self.w, bio)
                });
            }
            Worker::defer(&self.w, bio);
            Mapped::Submitted
        })
    }

    fn end_io(&self, pb: &mut PerBio) {
        g().snap.snapshot_end_io(pb)
    }

    fn status(&self, ty: StatusType, _noflush: bool, out: &mut Emitter<'_>) {
        let _ = g().snap.snapshot_status(self.w.h.id, ty, out);
    }

    fn presuspend(&self) {
        // `stop_merge`: the merge stops before the table suspends.
        self.w.stop();
    }

    fn postsuspend(&self) {
        let _ = g().snap.set_suspended(self.w.h.id, true);
    }

    fn preresume(&self) -> core::result::Result<(), Errno> {
        g().snap.snapshot_preresume(self.w.h.id)
    }

    fn resume(&self) {
        let _ = g().snap.snapshot_resume(self.w.h.id);
        Worker::start(&self.w)
    }

    fn iterate_devices(&self, f: &mut dyn FnMut(&KDev, u64, u64) -> core::result::Result<(), i32>) -> i32 {
        match g().snap.snapshot_iterate_devices(self.w.h.id, self.w.h.len, f) {
            Ok(Ok(())) | Err(_) => 0,
            Ok(Err(r)) => r,
        }
    }

    fn io_hints(&self, limits: &mut QueueLimits) {
        let _ = g().snap.snapshot_io_hints(self.w.h.id, limits);
    }
}

impl<const MERGE: bool> Drop for Snapshot<MERGE> {
    fn drop(&mut self) {
        self.w.stop();
        g().snap.snapshot_dtr(self.w.h.id);
    }
}

// ------------------------------------------------------------------- clone

type Core = CloneTarget<KDev, KcopydCopier, crate::bio::BioList>;

/// kcopyd's context for hydration `slot` of a clone: points back at the
/// target, which outlives every copy (suspend and removal wait for them).
struct HydrationCtx {
    io: core::sync::atomic::AtomicPtr<CloneIo>,
    slot: u32,
}

struct CloneIo {
    c: Core,
    name: [u8; 16],
    begin: u64,
    /// Background hydration may start copies (resumed, not suspending).
    hydrating: core::sync::atomic::AtomicBool,
    ctx: [HydrationCtx; dmrs_core::clone::hydration::MAX_HYDRATIONS],
}

impl CloneIo {
    fn name(&self) -> &str {
        let n = self.name.iter().position(|&c| c == 0).unwrap_or(self.name.len());
        core::str::from_utf8(&self.name[..n]).unwrap_or("?")
    }

    /// Starts the copy of a hydration; its completion comes back through
    /// [`clone_hydration_notify`].
    fn start(&self, job: HydrationJob) {
        let Some(ctx) = self.ctx.get(job.slot as usize) else { return };
        let c = &self.c;
        let p = core::ptr::from_ref(ctx).cast_mut().cast::<kernel::ffi::c_void>();
        crate::kcopyd::start_copy_notify(c.source(), c.dest(), job.sector, job.nr_sectors, clone_hydration_notify, p);
    }

    /// `do_hydration`: background copies up to the threshold, none waited for.
    fn start_hydrations(&self) {
        while self.hydrating.load(core::sync::atomic::Ordering::Acquire) {
            match self.c.next_hydration() {
                Some(job) => self.start(job),
                None => break,
            }
        }
    }

    /// `hydration_complete`: record the regions, issue (or fail) the writes
    /// that waited, go on hydrating; commit once everything is hydrated.
    fn hydration_done(&self, slot: u32, ok: bool) {
        let (mut bios, r) = self.c.hydration_done(slot, ok);
        while let Some(bio) = bios.pop() {
            match r {
                Ok(()) => bio.submit(),
                Err(e) => bio.end(Err(e)),
            }
        }
        self.start_hydrations();
        if !self.c.hydration_active() && !self.c.hydrations_in_flight() {
            let _ = self.c.commit_metadata(self.name());
        }
    }

    /// Waits until no hydration copy runs (`clone_postsuspend`, removal).
    fn wait_hydrations(&self) {
        while self.c.hydrations_in_flight() {
            dmrs_core::sync::sleep_short();
        }
    }
}

/// kcopyd's notify for a hydration copy (its thread: may sleep).
unsafe extern "C" fn clone_hydration_notify(read_err: c_int, write_err: c_ulong, context: *mut kernel::ffi::c_void) {
    // SAFETY: `context` is a `HydrationCtx` of a live target (see `CloneIo::start`).
    let ctx = unsafe { &*context.cast::<HydrationCtx>() };
    let io = ctx.io.load(core::sync::atomic::Ordering::Acquire);
    // SAFETY: set before any copy started; the target waits for its copies
    // before it is freed.
    if let Some(io) = unsafe { io.as_ref() } {
        io.hydration_done(ctx.slot, read_err == 0 && write_err == 0);
    }
}

impl Handler for CloneIo {
    fn handle(&self, bio: Bio) {
        let sector = bio.sector() - self.begin;
        let flags = bio.flags();
        let name = self.name();
        match bio.op() {
            Op::Write if bio.size() == 0 => {
                let r = self.c.flush(name);
                bio.end(r)
            }
            Op::Discard => {
                let n = (bio.size() >> SECTOR_SHIFT) as u64;
                let r = self.c.discard(name, sector, n);
                bio.end(r)
            }
            Op::Read | Op::Write => {
                rw(bio, sector, |s, b| self.c.read(s, b), |s, b| self.c.write(name, s, b, flags))
            }
            Op::Other => bio.end(Err(Errno::EOPNOTSUPP)),
        }
    }

    /// Starts background copies; their completions start the next ones.
    fn background(&self) -> bool {
        self.start_hydrations();
        if !self.c.hydration_active() && !self.c.hydrations_in_flight() {
            let _ = self.c.commit_metadata(self.name());
        }
        false
    }
}

fn h_region_size(c: &Core) -> u32 {
    u32::try_from(c.region_size()).unwrap_or(0)
}

/// `clone <metadata> <destination> <source> <region size> [...]`.
pub(crate) struct Clone {
    w: Arc<Worker<CloneIo>>,
}

#[vtable]
impl DmTarget for Clone {
    fn ctr(ctor: &mut Ctor<'_>, argv: &[&str]) -> core::result::Result<Self, TargetError> {
        let len = ctor.len();
        let name = ctor.md_name();
        let begin = ctor.begin();
        let c = Core::ctr(len, argv, &mut |p| ctor.get_device(p), KcopydCopier::default())?;
        c.set_event_handle(ctor.table_handle());
        let region_size = h_region_size(&c);
        let ctx = core::array::from_fn(|i| HydrationCtx {
            io: core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()),
            slot: i as u32,
        });
        let hydrating = core::sync::atomic::AtomicBool::new(false);
        let w = Worker::new(CloneIo { c, name, begin, hydrating, ctx })
            .map_err(|_| TargetError::new(Errno::ENOMEM, "Failed to allocate clone structure"))?;
        // The worker's place is fixed now (inside its `Arc`).
        let io = core::ptr::from_ref(&w.h).cast_mut();
        w.h.ctx.iter().for_each(|c| c.io.store(io, core::sync::atomic::Ordering::Release));
        // `dm_set_target_max_io_len(ti, region_size)`.
        ctor.set_max_io_len(region_size);
        ctor.set_num_flush_bios(1);
        ctor.set_flush_supported();
        ctor.set_num_discard_bios(1);
        ctor.set_discards_supported();
        Ok(Clone { w })
    }

    fn map(&self, bio: Bio, _pb: &mut PerBio) -> Mapped {
        let h = &self.w.h;
        let info = bio.info(h.begin);
        dispatch(h.c.map(&info), bio, |mut bio| {
            let region = info.sector / h.c.region_size().max(1);
            let plain = info.op == BioOp::Write
                && !info.flags.intersects(ReqFlags::FUA | ReqFlags::PREFLUSH)
                && info.nr_sectors < h.c.region_size()
                && (info.end() - 1) / h.c.region_size().max(1) == region;
            if !plain {
                // Whole-region writes (written without a copy), FUA writes
                // (a commit first), discards, flushes: the worker.
                Worker::defer(&self.w, bio);
                return Mapped::Submitted;
            }
            // hydrate_bio_region: the write waits, pointed at the
            // destination, for its region's copy.
            KIo::remap(&mut bio, h.c.dest(), info.sector);
            match h.c.write_bio(region, bio) {
                WriteBio::Hydrated(bio) => {
                    bio.into_remapped();
                    Mapped::Remapped
                }
                WriteBio::Queued => Mapped::Submitted,
                WriteBio::Start(job) => {
                    h.start(job);
                    Mapped::Submitted
                }
                WriteBio::Busy(mut bio) => {
                    bio.set_sector(info.sector + h.begin);
                    Worker::defer(&self.w, bio);
                    Mapped::Submitted
                }
            }
        })
    }

    fn status(&self, ty: StatusType, noflush: bool, out: &mut Emitter<'_>) {
        let h = &self.w.h;
        // clone_status commits unless told not to or suspended.
        h.c.status(h.name(), ty, noflush || self.w.stopped(), out)
    }

    fn message(&self, argv: &[&str]) -> core::result::Result<(), Errno> {
        let r = self.w.h.c.message(self.w.h.name(), argv);
        if !self.w.stopped() {
            Worker::kick(&self.w);
        }
        r
    }

    fn presuspend(&self) {
        self.w.h.hydrating.store(false, core::sync::atomic::Ordering::Release);
        self.w.stop();
    }

    fn postsuspend(&self) {
        // clone_postsuspend waits for the hydrations in flight.
        self.w.h.wait_hydrations();
        self.w.h.c.postsuspend(self.w.h.name())
    }

    fn resume(&self) {
        self.w.h.hydrating.store(true, core::sync::atomic::Ordering::Release);
        Worker::start(&self.w)
    }

    fn iterate_devices(&self, f: &mut dyn FnMut(&KDev, u64, u64) -> core::result::Result<(), i32>) -> i32 {
        match self.w.h.c.iterate_devices(f) {
            Ok(()) => 0,
            Err(r) => r,
        }
    }

    fn io_hints(&self, limits: &mut QueueLimits) {
        self.w.h.c.io_hints(limits)
    }
}

impl Drop for Clone {
    fn drop(&mut self) {
        self.w.h.hydrating.store(false, core::sync::atomic::Ordering::Release);
        self.w.stop();
        self.w.h.wait_hydrations();
    }
}
