// SPDX-License-Identifier: GPL-2.0-only
//! The core's I/O platform in the kernel ([`KIo`]): `struct bio` and
//! `bio_list`, `submit_bio_noacct`, `bio_endio` and dm-kcopyd; where
//! kcopyd's completions go (the snapshot driver, or the target that
//! started the copy); and the one snapshot driver every snapshot table of
//! the module shares (dm-snap.c's `_origins`).

use crate::bindings;
use crate::bio::Bio;
use crate::kcopyd::KcopydCopier;
use crate::kdev::KDev;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};
use dmrs_core::dm::IoPlatform;
use dmrs_core::platform::SECTOR_SHIFT;
use dmrs_core::snapshot::SnapshotDriver;
use kernel::ffi::c_void;
use kernel::prelude::*;

/// Where the completion of a copy a [`KIo`] starts goes.
#[derive(Clone, Copy)]
enum CopyRoute {
    /// The snapshot driver's `copy_callback` (its contexts use all 64 bits).
    Snapshots,
    /// The target registered in route slot `n` ([`Route`]).
    Target(u32),
}

/// The core's I/O platform in the kernel.
#[derive(Clone, Copy)]
pub(crate) struct KIo {
    route: CopyRoute,
}

impl KIo {
    /// The platform of a target holding route slot `slot`.
    pub(crate) fn for_route(slot: u32) -> Self {
        KIo { route: CopyRoute::Target(slot) }
    }
}

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
        match self.route {
            CopyRoute::Snapshots => {
                let client = crate::kcopyd::module_client();
                crate::kcopyd::start_copy(client, from, from_sector, to, to_sector, nr, snapshot_notify, ctx as *mut c_void)
            }
            CopyRoute::Target(slot) => {
                let Some(route) = ROUTES.get(slot as usize) else { return Some(false) };
                let Ok(ctx) = u32::try_from(ctx) else { return Some(false) };
                let client = route.client.load(Ordering::Acquire);
                if client.is_null() {
                    return Some(false);
                }
                route.inflight.fetch_add(1, Ordering::AcqRel);
                let context = ((slot as u64) << 32 | ctx as u64) as *mut c_void;
                crate::kcopyd::start_copy(client, from, from_sector, to, to_sector, nr, target_notify, context)
            }
        }
        None
    }
    fn copy(&self, from: &KDev, from_sector: u64, to: &KDev, to_sector: u64, nr: u64) -> dmrs_core::Result<()> {
        dmrs_core::platform::ChunkCopier::copy(&KcopydCopier, from, from_sector, to, to_sector, nr)
    }
}

/// kcopyd's notify for the snapshot driver: `context` is the core's copy
/// context, carried in the pointer (kcopyd's thread: may sleep).
unsafe extern "C" fn snapshot_notify(read_err: kernel::ffi::c_int, write_err: kernel::ffi::c_ulong, context: *mut c_void) {
    snapshots().copy_callback(context as u64, read_err == 0 && write_err == 0);
}

// ------------------------------------------------------------------ routes

/// A target's entry for kcopyd's completions: the target and the
/// trampoline that calls its `copy_done`.
pub(crate) struct RouteTarget {
    /// The target (`&T`, erased).
    pub(crate) target: *const c_void,
    /// Calls `T::copy_done(&*target, context, ok)`.
    pub(crate) done: unsafe fn(*const c_void, u64, bool),
}

/// One slot of [`ROUTES`].
struct Route {
    /// Taken by a constructing or live target.
    taken: AtomicBool,
    /// The target, once constructed (its `Private` holds the `RouteTarget`).
    target: AtomicPtr<RouteTarget>,
    /// Copies started and not yet fully notified.
    inflight: AtomicU32,
    /// The target's own kcopyd client, once it asked for one
    /// ([`route_client`]); freed with the slot.
    client: AtomicPtr<bindings::dm_kcopyd_client>,
}

const MAX_ROUTES: usize = 1024;

static ROUTES: [Route; MAX_ROUTES] = [const {
    Route {
        taken: AtomicBool::new(false),
        target: AtomicPtr::new(core::ptr::null_mut()),
        inflight: AtomicU32::new(0),
        client: AtomicPtr::new(core::ptr::null_mut()),
    }
}; MAX_ROUTES];

/// Takes a free route slot for a constructing target.
pub(crate) fn route_take() -> Option<u32> {
    ROUTES.iter().position(|r| r.taken.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok()).map(|i| i as u32)
}

/// Gives the constructing target of route `slot` its own kcopyd client
/// (process context; `ctr` only, so no copy races its creation).
pub(crate) fn route_client(slot: u32) -> Result {
    let Some(r) = ROUTES.get(slot as usize) else { return Err(EINVAL) };
    if r.client.load(Ordering::Acquire).is_null() {
        r.client.store(crate::kcopyd::client_new()?, Ordering::Release);
    }
    Ok(())
}

/// Publishes the constructed target of route `slot`.
///
/// # Safety
/// `t` stays valid until [`route_release`] of `slot` returned.
pub(crate) unsafe fn route_publish(slot: u32, t: *const RouteTarget) {
    if let Some(r) = ROUTES.get(slot as usize) {
        r.target.store(t.cast_mut(), Ordering::Release);
    }
}

/// Waits for every copy of route `slot` to be fully notified, frees its
/// kcopyd client, then the slot (the target's destructor: no copy starts
/// any more).
pub(crate) fn route_release(slot: u32) {
    let Some(r) = ROUTES.get(slot as usize) else { return };
    while r.inflight.load(Ordering::Acquire) != 0 {
        dmrs_core::sync::sleep_short();
    }
    // SAFETY: from `route_client`; the target starts no copy any more.
    unsafe { crate::kcopyd::client_free(r.client.swap(core::ptr::null_mut(), Ordering::AcqRel)) };
    r.target.store(core::ptr::null_mut(), Ordering::Release);
    r.taken.store(false, Ordering::Release);
}

/// kcopyd's notify for a target's copy: `context` is the route slot (high
/// 32 bits) and the target's context (low 32 bits).
unsafe extern "C" fn target_notify(read_err: kernel::ffi::c_int, write_err: kernel::ffi::c_ulong, context: *mut c_void) {
    let c = context as u64;
    let Some(route) = ROUTES.get((c >> 32) as usize) else { return };
    let t = route.target.load(Ordering::Acquire);
    // SAFETY: published before the target started any copy; released only
    // after this copy's `inflight` count is dropped below.
    if let Some(t) = unsafe { t.as_ref() } {
        // SAFETY: `t.target` is the live target `t.done` was made for.
        unsafe { (t.done)(t.target, c & 0xffff_ffff, read_err == 0 && write_err == 0) };
    }
    route.inflight.fetch_sub(1, Ordering::AcqRel);
}

// --------------------------------------------------------- snapshot driver

static SNAPSHOTS: AtomicPtr<SnapshotDriver<KIo>> = AtomicPtr::new(core::ptr::null_mut());

/// Creates the snapshot driver (module init, before the targets register).
pub(crate) fn snapshots_init() -> Result {
    let d = SnapshotDriver::new(KIo { route: CopyRoute::Snapshots }).map_err(|_| ENOMEM)?;
    let d = KBox::new(d, GFP_KERNEL)?;
    SNAPSHOTS.store(KBox::into_raw(d), Ordering::Release);
    Ok(())
}

/// Frees the snapshot driver (module exit, after the targets are gone).
pub(crate) fn snapshots_exit() {
    let d = SNAPSHOTS.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if !d.is_null() {
        // SAFETY: from `snapshots_init`; no target is left.
        drop(unsafe { KBox::from_raw(d) });
    }
}

/// The snapshot driver every snapshot table shares.
pub(crate) fn snapshots() -> &'static SnapshotDriver<KIo> {
    // SAFETY: set before the targets are registered, freed after they are gone.
    unsafe { &*SNAPSHOTS.load(Ordering::Acquire) }
}
