// SPDX-License-Identifier: GPL-2.0-only
//! `clone_target`: the `clone` target type over [`CloneTarget`], with
//! dm-clone-target.c's I/O model on the platform's bios and copies.
//!
//! `map` remaps hydrated regions to the destination and reads of the
//! others to the source. A write smaller than a region to an unhydrated
//! region waits, pointed at the destination, on the region's hydration
//! (`hydrate_bio_region`), whose copy is started without waiting; the
//! copy's completion (`hydration_complete`, [`Target::copy_done`]) records
//! the region and issues the bios that waited. Background hydration keeps
//! up to `hydration_threshold` regions in flight while the target is
//! resumed (`do_hydration`). Everything else takes the synchronous path.

use super::target::{CloneTarget, HydrationJob, WriteBio, CLONE_VERSION};
use crate::dm::target::{Bio, Dev};
use crate::dm::{
    BioInfo, BioOp, BioQueue, Data, DeviceCallout, IoPlatform, MapResult, PerBio, Queued, Target, TargetCtx,
};
use crate::emit::{Emitter, StatusType};
use crate::errno::{Errno, Result, TargetError};
use crate::platform::{ChunkCopier, QueueLimits, ReqFlags};
use crate::sync::{AtomicBool, Ordering};

/// Longest device name kept for the log (dm's `DM_NAME_LEN` is 128).
const NAME_LEN: usize = 128;

/// A `clone` table: the metadata and hydration engine, the platform it
/// copies with, and whether it is resumed (background hydration runs).
pub struct DmClone<P: IoPlatform, K: ChunkCopier>
where
    P::BioList: BioQueue<Bio = P::Bio>,
{
    c: CloneTarget<P::Dev, K, P::BioList>,
    io: P,
    name: heapless::String<NAME_LEN>,
    resumed: AtomicBool,
}

impl<P: IoPlatform, K: ChunkCopier> DmClone<P, K>
where
    P::BioList: BioQueue<Bio = P::Bio>,
{
    /// The engine.
    pub fn engine(&self) -> &CloneTarget<P::Dev, K, P::BioList> {
        &self.c
    }

    /// Starts the copy of a hydration. True when it completed at once (a
    /// platform that copies inline): its completion has been handled.
    fn start(&self, job: HydrationJob) -> bool {
        let c = &self.c;
        match self.io.start_copy(c.source(), job.sector, c.dest(), job.sector, job.nr_sectors, job.slot as u64) {
            Some(ok) => {
                self.complete(job.slot, ok);
                true
            }
            None => false,
        }
    }

    /// `hydration_complete`: records the regions, issues (or fails) the
    /// writes that waited.
    fn complete(&self, slot: u32, ok: bool) {
        let (mut bios, r) = self.c.hydration_done(slot, ok);
        while let Some(bio) = bios.pop() {
            match r {
                Ok(()) => self.io.submit(bio),
                Err(e) => self.io.endio(bio, Err(e)),
            }
        }
    }

    /// `do_hydration`: starts background copies up to the threshold. True
    /// when one completed inline (the caller goes on step by step).
    fn start_hydrations(&self) -> bool {
        while self.resumed.load(Ordering::Acquire) {
            match self.c.next_hydration() {
                Some(job) => {
                    if self.start(job) {
                        return true;
                    }
                }
                None => break,
            }
        }
        false
    }

    /// Commits once every region is hydrated and no copy runs (the event
    /// `hydration done` comes with it).
    fn commit_if_done(&self) {
        if !self.c.hydration_active() && !self.c.hydrations_in_flight() {
            let _ = self.c.commit_metadata(&self.name);
        }
    }

    /// Waits until no hydration copy runs (`clone_postsuspend`, removal).
    fn wait_hydrations(&self) {
        while self.c.hydrations_in_flight() {
            crate::sync::sleep_short();
        }
    }

    /// `clone_dtr`: hydration stops; the copies in flight complete first.
    fn stop_hydration(&self) {
        self.resumed.store(false, Ordering::Release);
        self.wait_hydrations();
    }
}

impl<P: IoPlatform, K: ChunkCopier + Default> Target for DmClone<P, K>
where
    P::BioList: BioQueue<Bio = P::Bio>,
{
    type Io = P;
    type Shared = ();
    const NAME: &'static str = "clone";
    const VERSION: [u32; 3] = CLONE_VERSION;
    const HAS_MESSAGE: bool = true;
    const HAS_IO_HINTS: bool = true;

    /// `clone_ctr`.
    fn ctr(_: &(), ti: &mut dyn TargetCtx<P>, argv: &[&str]) -> core::result::Result<Self, TargetError> {
        let c = CloneTarget::ctr(ti.len(), argv, &mut |p| ti.get_device(p), K::default())?;
        // `clone->kcopyd_client` (the kernel sets no message for it).
        let io = ti.io().map_err(|e| TargetError::new(e, c"Unknown error"))?;
        c.set_event_handle(ti.table_handle());
        let mut name = heapless::String::new();
        for ch in ti.md_name().chars() {
            if name.push(ch).is_err() {
                break;
            }
        }
        // `dm_set_target_max_io_len(ti, region_size)`.
        ti.set_max_io_len(u32::try_from(c.region_size()).unwrap_or(0));
        ti.set_num_flush_bios(1);
        ti.set_flush_supported();
        ti.set_num_discard_bios(1);
        ti.set_discards_supported();
        Ok(DmClone { c, io, name, resumed: AtomicBool::new(false) })
    }

    fn map(&self, bio: &BioInfo, _pb: &mut PerBio) -> MapResult<Dev<Self>> {
        self.c.map(bio)
    }

    /// `hydrate_bio_region` for a write within one unhydrated region;
    /// whole-region writes (written without a copy), FUA writes (a commit
    /// first), discards and flushes take the synchronous path.
    fn map_bio(&self, mut bio: Bio<Self>, info: &BioInfo, _blocking: bool) -> Queued<Bio<Self>> {
        let rs = self.c.region_size().max(1);
        let region = info.sector / rs;
        let plain = info.op == BioOp::Write
            && !info.flags.intersects(ReqFlags::FUA | ReqFlags::PREFLUSH)
            && info.nr_sectors != 0
            && info.nr_sectors < rs
            && (info.end() - 1) / rs == region;
        if !plain {
            return Queued::Retry(bio);
        }
        P::remap(&mut bio, self.c.dest(), info.sector);
        match self.c.write_bio(region, bio) {
            WriteBio::Hydrated(bio) => Queued::Remapped(bio),
            WriteBio::Queued => Queued::Queued,
            WriteBio::Start(job) => {
                self.start(job);
                Queued::Queued
            }
            WriteBio::Busy(bio) => Queued::Retry(bio),
        }
    }

    fn work(&self, info: &BioInfo, data: Data<'_>) -> Result<()> {
        let name = &self.name;
        match (info.op, data) {
            (BioOp::Read, Data::Read(b)) => self.c.read(info.sector, b),
            (BioOp::Write, Data::Write(b)) => self.c.write(name, info.sector, b, info.flags),
            (BioOp::Flush, _) => self.c.flush(name),
            (BioOp::Discard, _) => self.c.discard(name, info.sector, info.nr_sectors),
            _ => Err(Errno::EOPNOTSUPP),
        }
    }

    /// `do_hydration`: copies that complete later start the next ones from
    /// [`Self::copy_done`]; with copies that complete inline, one batch per
    /// call.
    fn background(&self) -> Result<bool> {
        let more = self.start_hydrations() && self.c.hydration_active();
        self.commit_if_done();
        Ok(more)
    }

    fn remaining(&self) -> Option<u64> {
        let (hydrated, total) = self.c.progress();
        Some(total - hydrated)
    }

    /// `do_waker`: the periodic commit.
    fn periodic(&self) {
        if self.resumed.load(Ordering::Acquire) {
            let _ = self.c.commit_metadata(&self.name);
        }
    }

    /// kcopyd's notify for hydration slot `context`.
    fn copy_done(&self, context: u64, ok: bool) {
        let Ok(slot) = u32::try_from(context) else { return };
        self.complete(slot, ok);
        self.start_hydrations();
        self.commit_if_done();
    }

    fn dtr(&self) {
        self.stop_hydration();
    }

    /// `clone_status`: INFO commits first unless told not to or suspended.
    fn status(&self, ty: StatusType, noflush: bool, out: &mut Emitter<'_>) {
        let suspended = !self.resumed.load(Ordering::Acquire);
        self.c.status(&self.name, ty, noflush || suspended, out)
    }

    /// `clone_message`; hydration enabled here starts from the worker.
    fn message(&self, argv: &[&str]) -> Result<()> {
        self.c.message(&self.name, argv)
    }

    /// `clone_presuspend`: no new hydration starts.
    fn presuspend(&self) {
        self.resumed.store(false, Ordering::Release);
    }

    /// `clone_postsuspend`: waits for the hydrations in flight, commits.
    fn postsuspend(&self) {
        self.resumed.store(false, Ordering::Release);
        self.wait_hydrations();
        self.c.postsuspend(&self.name)
    }

    fn resume(&self) {
        self.resumed.store(true, Ordering::Release);
    }

    fn iterate_devices<R>(&self, f: &mut DeviceCallout<'_, Dev<Self>, R>) -> core::result::Result<(), R> {
        self.c.iterate_devices(f)
    }

    fn io_hints(&self, limits: &mut QueueLimits) {
        self.c.io_hints(limits)
    }

    fn events(&self) -> u64 {
        self.c.events()
    }
}

impl<P: IoPlatform, K: ChunkCopier> Drop for DmClone<P, K>
where
    P::BioList: BioQueue<Bio = P::Bio>,
{
    /// `clone_dtr`: no copy may outlive the target.
    fn drop(&mut self) {
        self.stop_hydration();
    }
}
