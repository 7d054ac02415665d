// SPDX-License-Identifier: GPL-2.0-only
//! The three target types of dm-snap.c over the [`SnapshotDriver`]:
//! `origin_target` ([`OriginTarget`]), `snapshot_target` and
//! `merge_target` ([`SnapshotTarget`]). Every table of a platform shares
//! one driver (dm-snap.c's `_origins`): the platform hands it to `ctr` as
//! the target type's [`Target::Shared`], as `&'static` (the kernel module)
//! or behind an `Arc` (the hosted device mapper).

use super::ctr::parse_origin_args;
use super::{SnapId, SnapshotDriver, MERGE_VERSION, ORIGIN_VERSION, SNAPSHOT_VERSION};
use crate::dm::target::{Bio, Dev};
use crate::dm::{BioInfo, BioOp, Data, DeviceCallout, IoPlatform, MapResult, PerBio, Queued, Target, TargetCtx};
use crate::emit::{Emitter, StatusType};
use crate::errno::{Errno, Result, TargetError};
use crate::platform::{BlockDevice, DmDevice, QueueLimits};
use crate::snapshot::MergeProgress;

/// A shared handle of the snapshot driver (`&'static SnapshotDriver` or an
/// `Arc` of one).
pub trait Snapshots: Clone + Send + Sync {
    /// The driver's platform.
    type Io: IoPlatform;
    /// The driver.
    fn driver(&self) -> &SnapshotDriver<Self::Io>;
}

impl<P: IoPlatform, S: core::ops::Deref<Target = SnapshotDriver<P>> + Clone + Send + Sync> Snapshots for S {
    type Io = P;
    fn driver(&self) -> &SnapshotDriver<P> {
        self
    }
}

/// `snapshot-origin <dev>`: `struct dm_origin`.
pub struct OriginTarget<S: Snapshots> {
    snapshots: S,
    dev: <S::Io as IoPlatform>::Dev,
    ti_len: u64,
}

impl<S: Snapshots> Target for OriginTarget<S> {
    type Io = S::Io;
    type Shared = S;
    const NAME: &'static str = "snapshot-origin";
    const VERSION: [u32; 3] = ORIGIN_VERSION;

    /// `origin_ctr`.
    fn ctr(shared: &S, ti: &mut dyn TargetCtx<S::Io>, argv: &[&str]) -> core::result::Result<Self, TargetError> {
        let path = parse_origin_args(argv)?;
        let dev = ti.get_device(path).map_err(|e| TargetError::new(e, c"Cannot get target device"))?;
        ti.set_num_flush_bios(1);
        Ok(OriginTarget { snapshots: shared.clone(), dev, ti_len: ti.len() })
    }

    fn map(&self, bio: &BioInfo, _pb: &mut PerBio) -> MapResult<Dev<Self>> {
        self.snapshots.driver().origin_map(&self.dev, bio)
    }

    /// `do_origin` for a write that needs exceptions: queued on one.
    fn map_bio(&self, bio: Bio<Self>, _info: &BioInfo, blocking: bool) -> Queued<Bio<Self>> {
        self.snapshots.driver().origin_write_bio(&self.dev, bio, blocking)
    }

    fn work(&self, info: &BioInfo, data: Data<'_>) -> Result<()> {
        match (info.op, data) {
            (BioOp::Read, Data::Read(b)) => self.dev.read(info.sector, b),
            (BioOp::Write, Data::Write(b)) => {
                self.snapshots.driver().origin_write(&self.dev, info.sector, b, info.flags)
            }
            (BioOp::Flush, _) => self.dev.flush(),
            _ => Err(Errno::EOPNOTSUPP),
        }
    }

    /// `origin_status`: no INFO, the device for TABLE.
    fn status(&self, ty: StatusType, _noflush: bool, out: &mut Emitter<'_>) {
        if ty == StatusType::Table {
            crate::dmemit!(out, "{}", self.dev.name());
        }
    }

    /// `origin_iterate_devices`.
    fn iterate_devices<R>(&self, f: &mut DeviceCallout<'_, Dev<Self>, R>) -> core::result::Result<(), R> {
        f(&self.dev, 0, self.ti_len)
    }
}

/// `snapshot <origin> <COW> <P|PO|N> <chunk> [...]` (`MERGE` false) and
/// `snapshot-merge …` (`MERGE` true): a snapshot in the driver.
pub struct SnapshotTarget<S: Snapshots, const MERGE: bool> {
    snapshots: S,
    id: SnapId,
    ti_len: u64,
}

impl<S: Snapshots, const MERGE: bool> SnapshotTarget<S, MERGE> {
    /// The snapshot's place in the driver.
    pub fn id(&self) -> SnapId {
        self.id
    }
}

impl<S: Snapshots, const MERGE: bool> Target for SnapshotTarget<S, MERGE> {
    type Io = S::Io;
    type Shared = S;
    const NAME: &'static str = if MERGE { "snapshot-merge" } else { "snapshot" };
    const VERSION: [u32; 3] = if MERGE { MERGE_VERSION } else { SNAPSHOT_VERSION };
    const HAS_END_IO: bool = true;
    const HAS_IO_HINTS: bool = true;

    /// `snapshot_ctr`.
    fn ctr(shared: &S, ti: &mut dyn TargetCtx<S::Io>, argv: &[&str]) -> core::result::Result<Self, TargetError> {
        let d = shared.driver();
        let ti_len = ti.len();
        // `s->kcopyd_client`: the snapshot's own copier.
        let io = ti.io().map_err(|e| TargetError::new(e, c"Could not create kcopyd client"))?;
        let id = d.snapshot_ctr(MERGE, ti_len, argv, &mut |p| ti.get_device(p))?;
        let this = SnapshotTarget { snapshots: shared.clone(), id, ti_len };
        // One flush bio (the kernel's merge target asks for two, origin and
        // COW: `snapshot_flush` flushes both from the one).
        ti.set_num_flush_bios(1);
        // With `discard_zeroes_cow` dm core sends discards (the kernel asks
        // for a second bio for `discard_passdown_origin`; the core passes
        // down from the one). Without, dm core fails them (EOPNOTSUPP).
        if d.snapshot_discards(id) == Ok(true) {
            ti.set_num_discard_bios(1);
        }
        // `dm_set_target_max_io_len(ti, chunk_size)`: a handover destination
        // learns its chunk size at resume; until then its bios cross chunks
        // and take the synchronous path.
        ti.set_max_io_len(d.snapshot_chunk_size(id).unwrap_or(0));
        let _ = d.set_event_handle(id, ti.table_handle());
        let _ = d.set_copy_io(id, io);
        Ok(this)
    }

    fn map(&self, bio: &BioInfo, pb: &mut PerBio) -> MapResult<Dev<Self>> {
        self.snapshots.driver().snapshot_map(self.id, bio, pb)
    }

    /// A write that needs an exception waits on it, pointed at its COW
    /// chunk, and is issued when the exception completes.
    fn map_bio(&self, bio: Bio<Self>, info: &BioInfo, blocking: bool) -> Queued<Bio<Self>> {
        if MERGE || info.op != BioOp::Write {
            return Queued::Retry(bio);
        }
        self.snapshots.driver().snapshot_write_bio(self.id, bio, blocking)
    }

    fn work(&self, info: &BioInfo, data: Data<'_>) -> Result<()> {
        let d = self.snapshots.driver();
        match (info.op, data) {
            (BioOp::Read, Data::Read(b)) => d.snapshot_read(self.id, info.sector, b),
            (BioOp::Write, Data::Write(b)) => d.snapshot_write(self.id, info.sector, b, info.flags),
            (BioOp::Flush, _) => d.snapshot_flush(self.id),
            (BioOp::Discard, _) => d.snapshot_discard(self.id, info.sector, info.nr_sectors),
            _ => Err(Errno::EOPNOTSUPP),
        }
    }

    /// `merge_callback` → `snapshot_merge_next_chunks`: one merge step.
    fn background(&self) -> Result<bool> {
        let d = self.snapshots.driver();
        if !MERGE || !d.merge_running(self.id)? {
            return Ok(false);
        }
        match d.merge_step(self.id)? {
            MergeProgress::Merged(_) => Ok(true),
            MergeProgress::Done => Ok(false),
            MergeProgress::Failed => Err(Errno::EIO),
        }
    }

    /// Data sectors left in the COW (a merge's work).
    fn remaining(&self) -> Option<u64> {
        if !MERGE {
            return None;
        }
        self.snapshots.driver().snapshot_data_sectors(self.id).ok()
    }

    fn end_io(&self, pb: &mut PerBio) {
        self.snapshots.driver().snapshot_end_io(pb)
    }

    fn status(&self, ty: StatusType, _noflush: bool, out: &mut Emitter<'_>) {
        let _ = self.snapshots.driver().snapshot_status(self.id, ty, out);
    }

    /// `snapshot_merge_presuspend` stops a merge (the platform stops its
    /// worker); the driver learns of the suspension at `postsuspend`.
    fn postsuspend(&self) {
        let _ = self.snapshots.driver().set_suspended(self.id, true);
    }

    fn preresume(&self) -> Result<()> {
        self.snapshots.driver().snapshot_preresume(self.id)
    }

    fn resume(&self) {
        let _ = self.snapshots.driver().snapshot_resume(self.id);
    }

    fn iterate_devices<R>(&self, f: &mut DeviceCallout<'_, Dev<Self>, R>) -> core::result::Result<(), R> {
        self.snapshots.driver().snapshot_iterate_devices(self.id, self.ti_len, f).unwrap_or(Ok(()))
    }

    fn io_hints(&self, limits: &mut QueueLimits) {
        let _ = self.snapshots.driver().snapshot_io_hints(self.id, limits);
    }

    fn events(&self) -> u64 {
        self.snapshots.driver().snapshot_events(self.id).unwrap_or(0)
    }

    fn copy_done(&self, context: u64, ok: bool) {
        self.snapshots.driver().snapshot_copy_done(self.id, context, ok)
    }

    /// `snapshot_dtr` (the drop finds it done): the pending exceptions
    /// drain through `copy_done` while the target is still there.
    fn dtr(&self) {
        self.snapshots.driver().snapshot_dtr(self.id);
    }
}

impl<S: Snapshots, const MERGE: bool> Drop for SnapshotTarget<S, MERGE> {
    /// `snapshot_dtr`.
    fn drop(&mut self) {
        self.snapshots.driver().snapshot_dtr(self.id);
    }
}
