// SPDX-License-Identifier: GPL-2.0-only
//! `struct target_type` in the core: the entry points dm core calls on a
//! target, platform-neutral. The kernel module fills one `target_type`
//! per implementor with one generic set of trampolines; the hosted device
//! mapper keeps its tables as `dyn` objects of the same trait. Neither
//! knows which target it drives.
//!
//! A bio goes through [`Target::map`] first (the decision, from the bio's
//! description alone). What `map` does not remap the platform hands, owned,
//! to [`Target::map_bio`] (`blocking` false from `map`'s context, true from
//! the deferred worker): the target may queue it on its own work (a pending
//! exception, a hydration) or give it back with [`Queued::Retry`]; a bio
//! given back from the worker runs [`Target::work`], the synchronous path,
//! with its data through a buffer.

use super::{BioInfo, IoPlatform, MapResult, PerBio, Queued};
use crate::emit::{Emitter, StatusType};
use crate::errno::{Errno, Result, TargetError};
use crate::platform::QueueLimits;

/// The device type of a target's platform.
pub type Dev<T> = <<T as Target>::Io as IoPlatform>::Dev;
/// The bio type of a target's platform.
pub type Bio<T> = <<T as Target>::Io as IoPlatform>::Bio;

/// `iterate_devices_callout_fn`: called with a device, its start and length
/// in sectors; an error stops the iteration and is returned as is.
pub type DeviceCallout<'a, D, R> = dyn FnMut(&D, u64, u64) -> core::result::Result<(), R> + 'a;

/// What a constructor may ask of `struct dm_target` and dm core.
#[allow(clippy::len_without_is_empty)] // `ti->len` is never 0
pub trait TargetCtx<P: IoPlatform> {
    /// `ti->begin`: the target's first sector in the mapped device.
    fn begin(&self) -> u64;
    /// `ti->len`.
    fn len(&self) -> u64;
    /// `dm_get_device`: opens a device by path for the table's lifetime.
    fn get_device(&mut self, path: &str) -> Result<P::Dev>;
    /// The platform's handle of the table, for [`crate::dm::table_event`]
    /// (`ti->table`; 0: no events).
    fn table_handle(&self) -> u64;
    /// The mapped device's name, as dm-clone logs it (`dm_device_name`).
    fn md_name(&self) -> &str;
    /// The platform a target that starts its own copies uses, with its
    /// own copier (`dm_kcopyd_client_create`): copies it starts are
    /// completed through its [`Target::copy_done`].
    fn io(&mut self) -> Result<P>;
    /// `ti->num_flush_bios`.
    fn set_num_flush_bios(&mut self, n: u32);
    /// `ti->num_discard_bios`.
    fn set_num_discard_bios(&mut self, n: u32);
    /// `ti->discards_supported`: dm core passes discards even if a device
    /// below cannot.
    fn set_discards_supported(&mut self);
    /// `ti->flush_supported`.
    fn set_flush_supported(&mut self);
    /// `dm_set_target_max_io_len`: dm core splits bios so none crosses a
    /// multiple of `sectors` (0: no limit), so `map` sees whole chunks.
    fn set_max_io_len(&mut self, sectors: u32);
}

/// A bio's data on the synchronous path ([`Target::work`]).
#[derive(Debug)]
pub enum Data<'a> {
    /// A read lands here.
    Read(&'a mut [u8]),
    /// A write carries this.
    Write(&'a [u8]),
    /// A flush or a discard: no data.
    None,
}

/// A device-mapper target type: its name and version, and the entry
/// points of `struct target_type`. Every method but `ctr` runs between
/// `ctr` and the target's drop (`dtr`); `map`, `map_bio` and `end_io`
/// never sleep.
pub trait Target: Sized + Send + Sync {
    /// The platform the target moves bios and data with.
    type Io: IoPlatform;
    /// What every table of this type shares, handed to `ctr` (dm-snap.c's
    /// origin registry `_origins`); `()` for none.
    type Shared;
    /// `target_type.name`.
    const NAME: &'static str;
    /// `target_type.version`.
    const VERSION: [u32; 3];
    /// The target takes messages (`target_type.message` set): without,
    /// dm core refuses them with "Target type does not support messages".
    const HAS_MESSAGE: bool = false;
    /// The target needs `end_io`.
    const HAS_END_IO: bool = false;
    /// The target adjusts the queue limits (`io_hints`).
    const HAS_IO_HINTS: bool = false;

    /// `ctr`: parses the table line's arguments (the kernel's error strings).
    fn ctr(
        shared: &Self::Shared,
        ti: &mut dyn TargetCtx<Self::Io>,
        argv: &[&str],
    ) -> core::result::Result<Self, TargetError>;

    /// `map`: decides for a bio in the submitter's context. `pb` is its
    /// per-bio data (zeroed), given back to `end_io`.
    fn map(&self, bio: &BioInfo, pb: &mut PerBio) -> MapResult<Dev<Self>>;

    /// Takes a bio `map` returned `Submitted` for, pointed at the target's
    /// first device at the target-relative sector of `info`: queue it on
    /// work in flight, issue it remapped, end it, or give it back
    /// ([`Queued::Retry`], unchanged) for [`Self::work`] in the worker.
    fn map_bio(&self, bio: Bio<Self>, _info: &BioInfo, _blocking: bool) -> Queued<Bio<Self>> {
        Queued::Retry(bio)
    }

    /// The synchronous path for a bio, in process context (it may wait
    /// for locks and copies): `info.sector` is target-relative.
    fn work(&self, info: &BioInfo, data: Data<'_>) -> Result<()>;

    /// One step of background work (a merge step, a batch of hydration
    /// copies), in the worker while no bio waits: `Ok(true)` while more
    /// remains; an error stops it (a failed merge).
    fn background(&self) -> Result<bool> {
        Ok(false)
    }

    /// Background work left, in the target's units (sectors to merge,
    /// regions to hydrate), for progress: `None` when it has none.
    fn remaining(&self) -> Option<u64> {
        None
    }

    /// The target's periodic work (dm-clone's `do_waker`: commit once a
    /// second), from process context.
    fn periodic(&self) {}

    /// A copy this target started with [`IoPlatform::start_copy`] and
    /// `context` completed (kcopyd's notify: process context).
    fn copy_done(&self, _context: u64, _ok: bool) {}

    /// `dtr`'s first half: start no more copies and wait for those in
    /// flight, while the target can still take their `copy_done`. The
    /// platform then waits for their notify to return (and frees its
    /// copier) before it drops the target; dropping must also work
    /// without this call.
    fn dtr(&self) {}

    /// `end_io`: a remapped bio completed (any context: never sleeps).
    fn end_io(&self, _pb: &mut PerBio) {}

    /// `status` (INFO, TABLE, IMA) after the `start len type ` dm core
    /// prints; `noflush`: `DM_STATUS_NOFLUSH_FLAG` (no metadata commit).
    fn status(&self, ty: StatusType, noflush: bool, out: &mut Emitter<'_>);

    /// `message`.
    fn message(&self, _argv: &[&str]) -> Result<()> {
        Err(Errno::EINVAL)
    }

    /// `presuspend`.
    fn presuspend(&self) {}
    /// `postsuspend`: no bio of the target is in flight any more.
    fn postsuspend(&self) {}
    /// `preresume`: an error keeps the device suspended.
    fn preresume(&self) -> Result<()> {
        Ok(())
    }
    /// `resume`.
    fn resume(&self) {}

    /// `iterate_devices`: every device the target maps to, with the part
    /// of it the target uses.
    fn iterate_devices<R>(&self, f: &mut DeviceCallout<'_, Dev<Self>, R>) -> core::result::Result<(), R>;

    /// `io_hints`: adjusts the limits dm core stacked from the devices.
    fn io_hints(&self, _limits: &mut QueueLimits) {}

    /// Events the target raised since `ctr` (`dm_table_event`), for a
    /// platform that counts them per table.
    fn events(&self) -> u64 {
        0
    }
}
