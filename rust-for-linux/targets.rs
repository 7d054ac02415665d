// SPDX-License-Identifier: GPL-2.0-only
//! The four targets over the core: `snapshot-origin`, `snapshot`,
//! `snapshot-merge` (one origin registry shared by every table, as
//! dm-snap.c's `_origins`) and `clone`.

use crate::bio::{Bio, Op};
use crate::kdev::KDev;
use crate::target::{Ctor, DmTarget, Mapped};
use dmrs_core::dm::{MapResult, PerBio};
use crate::worker::{Handler, Worker};
use dmrs_core::clone::target::CloneTarget;
use dmrs_core::emit::{Emitter, StatusType};
use dmrs_core::mem::try_zeroed;
use crate::kcopyd::KcopydCopier;
use dmrs_core::platform::{BlockDevice, DmDevice, QueueLimits, SECTOR_SHIFT};
use dmrs_core::snapshot::{ctr::parse_origin_args, MergeProgress, SnapId, SnapshotDriver};
use dmrs_core::{Errno, TargetError};
use kernel::prelude::*;
use kernel::sync::Arc;

/// State shared by every table of the module.
pub(crate) struct Global {
    pub(crate) snap: SnapshotDriver<KDev, KcopydCopier>,
}

static GLOBAL: core::sync::atomic::AtomicPtr<Global> = core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

pub(crate) fn global_init() -> Result {
    let snap = SnapshotDriver::new(KcopydCopier::default()).map_err(|_| ENOMEM)?;
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

fn g() -> &'static Global {
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
/// one that needs work goes to the target's worker.
fn dispatch(r: MapResult<KDev>, mut bio: Bio, defer: impl FnOnce(Bio)) -> Mapped {
    match r {
        MapResult::Remapped { dev, sector } => {
            bio.set_dev(dev.bdev());
            if bio.size() != 0 {
                bio.set_sector(sector);
            }
            bio.into_remapped();
            Mapped::Remapped
        }
        MapResult::Submitted => {
            defer(bio);
            Mapped::Submitted
        }
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

// ---------------------------------------------------------------- origin

struct OriginIo {
    dev: KDev,
    begin: u64,
    len: u64,
}

impl Handler for OriginIo {
    fn handle(&self, bio: Bio) {
        let s = bio.sector() - self.begin;
        let flags = bio.flags();
        let dev = &self.dev;
        rw(bio, s, |s, b| dev.read(s, b), |s, b| g().snap.origin_write(dev, s, b, flags))
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
        dispatch(g().snap.origin_map(&h.dev, &bio.info(h.begin)), bio, |bio| Worker::defer(&self.w, bio))
    }

    fn status(&self, ty: StatusType, out: &mut Emitter<'_>) {
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
}

impl Handler for SnapIo {
    fn handle(&self, bio: Bio) {
        let s = g();
        let sector = bio.sector() - self.begin;
        let flags = bio.flags();
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
        let w = match Worker::new(SnapIo { id, begin, len }) {
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
        Ok(Snapshot { w })
    }

    fn map(&self, bio: Bio, pb: &mut PerBio) -> Mapped {
        let h = &self.w.h;
        dispatch(g().snap.snapshot_map(h.id, &bio.info(h.begin), pb), bio, |bio| Worker::defer(&self.w, bio))
    }

    fn end_io(&self, pb: &mut PerBio) {
        g().snap.snapshot_end_io(pb)
    }

    fn status(&self, ty: StatusType, out: &mut Emitter<'_>) {
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

type Core = CloneTarget<KDev, KcopydCopier>;

struct CloneIo {
    c: Core,
    name: [u8; 16],
    begin: u64,
}

impl CloneIo {
    fn name(&self) -> &str {
        let n = self.name.iter().position(|&c| c == 0).unwrap_or(self.name.len());
        core::str::from_utf8(&self.name[..n]).unwrap_or("?")
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

    fn background(&self) -> bool {
        if !self.c.hydration_active() {
            return false;
        }
        let more = self.c.hydrate_step().is_ok() && self.c.hydration_active();
        if !more {
            let _ = self.c.commit_metadata(self.name());
        }
        more
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
        let region_size = h_region_size(&c);
        let w = Worker::new(CloneIo { c, name, begin })
            .map_err(|_| TargetError::new(Errno::ENOMEM, "Failed to allocate clone structure"))?;
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
        dispatch(h.c.map(&bio.info(h.begin)), bio, |bio| Worker::defer(&self.w, bio))
    }

    fn status(&self, ty: StatusType, out: &mut Emitter<'_>) {
        let h = &self.w.h;
        h.c.status(h.name(), ty, self.w.stopped(), out)
    }

    fn message(&self, argv: &[&str]) -> core::result::Result<(), Errno> {
        let r = self.w.h.c.message(self.w.h.name(), argv);
        if !self.w.stopped() {
            Worker::kick(&self.w);
        }
        r
    }

    fn presuspend(&self) {
        self.w.stop();
    }

    fn postsuspend(&self) {
        self.w.h.c.postsuspend(self.w.h.name())
    }

    fn resume(&self) {
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
        self.w.stop();
    }
}
