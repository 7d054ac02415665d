// SPDX-License-Identifier: GPL-2.0-only
//! Copies over dm-kcopyd, as dm-snap.c and dm-clone copy chunks and
//! regions (kcopyd splits a copy into sub-jobs it keeps in flight
//! together): [`start_copy`] hands a copy to kcopyd and returns; kcopyd's
//! notify reports it from its own thread (process context; see
//! `kio.rs` for where it goes). [`KcopydCopier`] waits for its copy (merge
//! steps, in a worker that may sleep).
//!
//! Each target that copies has its own client, as each snapshot and
//! clone has in C (`s->kcopyd_client`): a client's notifies run one after
//! another on its own workqueue, and a snapshot commits its metadata from
//! there; when its COW lives on another snapshot, that write may need the
//! lower snapshot's copy, which must not queue behind it. The module's
//! client copies for the snapshot driver's merge steps.

use crate::bindings;
use crate::kdev::KDev;
use dmrs_core::platform::{BlockDevice, ChunkCopier, SyncCopier};
use dmrs_core::{Errno, Result};
use kernel::ffi::{c_int, c_ulong, c_void};

/// The module's kcopyd client (kcopyd's own pages and job pool),
/// created at init and destroyed at exit, after every target.
static CLIENT: core::sync::atomic::AtomicPtr<bindings::dm_kcopyd_client> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// `dm_kcopyd_client_create` (process context: it allocates and sleeps).
pub(crate) fn client_new() -> kernel::error::Result<*mut bindings::dm_kcopyd_client> {
    // SAFETY: plain constructor (no throttle); an ERR_PTR on failure.
    kernel::error::from_err_ptr(unsafe { bindings::dm_kcopyd_client_create(core::ptr::null_mut()) })
}

/// `dm_kcopyd_client_destroy`: waits until every notify of the client's
/// copies has returned, then frees it.
///
/// # Safety
/// `c` is from [`client_new`] and nobody starts a copy on it any more.
pub(crate) unsafe fn client_free(c: *mut bindings::dm_kcopyd_client) {
    if !c.is_null() {
        // SAFETY: the caller's contract.
        unsafe { bindings::dm_kcopyd_client_destroy(c) };
    }
}

pub(crate) fn client_create() -> kernel::error::Result {
    CLIENT.store(client_new()?, core::sync::atomic::Ordering::Release);
    Ok(())
}

pub(crate) fn client_destroy() {
    let c = CLIENT.swap(core::ptr::null_mut(), core::sync::atomic::Ordering::AcqRel);
    // SAFETY: created by `client_create`; every target is gone.
    unsafe { client_free(c) };
}

/// The module's client.
pub(crate) fn module_client() -> *mut bindings::dm_kcopyd_client {
    CLIENT.load(core::sync::atomic::Ordering::Acquire)
}

/// One copy's completion and result, on the waiting worker's stack.
struct Done {
    completion: bindings::completion,
    read_err: c_int,
    write_err: c_ulong,
}

/// `dm_kcopyd_notify_fn`: records the result and wakes the waiter; the
/// waiter owns `Done` and frees it only after `complete` has returned.
unsafe extern "C" fn notify(read_err: c_int, write_err: c_ulong, context: *mut c_void) {
    let d = context.cast::<Done>();
    // SAFETY: `context` is the `Done` of a copy whose waiter is blocked in
    // `wait_for_completion` until `complete` below.
    unsafe {
        (*d).read_err = read_err;
        (*d).write_err = write_err;
        bindings::complete(core::ptr::addr_of_mut!((*d).completion));
    }
}

/// `dm_kcopyd_copy` of `nr_sectors` from `from` to `to` on `client` (a
/// live client from [`client_new`]); kcopyd calls
/// `notify(read_err, write_err, context)` from the client's workqueue when
/// done. `context` must stay valid until then.
pub(crate) fn start_copy(
    client: *mut bindings::dm_kcopyd_client,
    from: &KDev,
    from_sector: u64,
    to: &KDev,
    to_sector: u64,
    nr_sectors: u64,
    notify: unsafe extern "C" fn(c_int, c_ulong, *mut c_void),
    context: *mut c_void,
) {
    let mut from_region = bindings::dm_io_region { bdev: from.bdev(), sector: from_sector, count: nr_sectors };
    let mut to_region = bindings::dm_io_region { bdev: to.bdev(), sector: to_sector, count: nr_sectors };
    // SAFETY: open devices; kcopyd copies the regions before it returns;
    // the caller keeps `context` valid until `notify` ran.
    unsafe { bindings::dm_kcopyd_copy(client, &mut from_region, 1, &mut to_region, 0, Some(notify), context) };
}

/// Copies with dm-kcopyd between two devices the targets opened; any other
/// pair (never in the module) falls back to a bounce-buffer copy.
#[derive(Default)]
pub(crate) struct KcopydCopier;

impl ChunkCopier for KcopydCopier {
    fn copy(
        &self,
        from: &dyn BlockDevice,
        from_sector: u64,
        to: &dyn BlockDevice,
        to_sector: u64,
        nr_sectors: u64,
    ) -> Result<()> {
        let devs = (
            from.as_any().and_then(|a| a.downcast_ref::<KDev>()),
            to.as_any().and_then(|a| a.downcast_ref::<KDev>()),
        );
        let (Some(src), Some(dst)) = devs else {
            return SyncCopier::default().copy(from, from_sector, to, to_sector, nr_sectors);
        };
        if nr_sectors == 0 {
            return Ok(());
        }
        let mut done = Done { completion: bindings::completion::default(), read_err: 0, write_err: 0 };
        // `init_completion`'s static lockdep key (`LockClassKey` is a
        // transparent `lock_class_key`).
        let key = core::ptr::from_ref(kernel::static_lock_class!()).cast_mut().cast::<bindings::lock_class_key>();
        // SAFETY: `init_completion`: `done` stays put (this frame) until the
        // wait returns; the key is static, the name a C string.
        unsafe { bindings::__init_swait_queue_head(&mut done.completion.wait, c"dm_rs_kcopyd".as_ptr().cast(), key) };
        let ctx = core::ptr::addr_of_mut!(done).cast::<c_void>();
        // `done` lives until `notify` completed it, waited for below.
        start_copy(module_client(), src, from_sector, dst, to_sector, nr_sectors, notify, ctx);
        // SAFETY: `done` was initialised above and stays put in this frame.
        unsafe { bindings::wait_for_completion(&mut done.completion) };
        if done.read_err != 0 || done.write_err != 0 {
            Err(Errno::EIO)
        } else {
            Ok(())
        }
    }
}
