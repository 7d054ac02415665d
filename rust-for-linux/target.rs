// SPDX-License-Identifier: GPL-2.0-only
//! `struct target_type` for every core target: [`Registration`] fills one
//! with the trampolines below, generic over the core's
//! [`Target`](dmrs_core::dm::Target) (callbacks a target type does not
//! have stay NULL, as in C). They turn dm core's raw pointers into
//! references and owned bios and carry out the core's decisions: a
//! remapped bio is pointed at its device and returned
//! `DM_MAPIO_REMAPPED` with its data untouched; a bio the target keeps is
//! queued on its work in flight; only what needs the synchronous path goes
//! to the target's worker, which bounces its data through a buffer.
//!
//! `map` gets `&T`: dm core calls it on many CPUs at once.

use crate::bindings;
use crate::bio::{Bio, Op};
use crate::kdev::KDev;
use crate::kio::{KIo, RouteTarget};
use crate::worker::{Handler, Worker};
use core::ffi::CStr;
use core::marker::PhantomData;
use dmrs_core::args::Args;
use dmrs_core::dm::{BioInfo, BioOp, Data, MapResult, PerBio, Queued, Target, TargetCtx};
use dmrs_core::emit::{Emitter, StatusType};
use dmrs_core::mem::try_zeroed;
use dmrs_core::Errno;
use kernel::ffi::{c_char, c_int, c_uint, c_void};
use kernel::prelude::*;
use kernel::sync::Arc;

/// A core target of this module's platform whose type can be registered.
pub(crate) trait KTarget: Target<Io = KIo, Shared: Send + Sync + 'static> + 'static {}
impl<T: Target<Io = KIo, Shared: Send + Sync + 'static> + 'static> KTarget for T {}

/// The constructor's view of `struct dm_target`.
struct Ctor<'a> {
    ti: &'a mut bindings::dm_target,
    /// Devices opened so far, released by the destructor (or on failure).
    devs: KVec<*mut bindings::dm_dev>,
    /// `dm_device_name` of the table's mapped device.
    md_name: [u8; 16],
    md_len: usize,
    /// The route slot this target's copies complete through.
    route: u32,
}

impl TargetCtx<KIo> for Ctor<'_> {
    fn begin(&self) -> u64 {
        self.ti.begin
    }

    fn len(&self) -> u64 {
        self.ti.len
    }

    /// `dm_get_device(ti, path, dm_table_get_mode(ti->table), &dev)`.
    fn get_device(&mut self, path: &str) -> dmrs_core::Result<KDev> {
        let mut p = [0u8; 256];
        if path.len() >= p.len() {
            return Err(Errno::EINVAL);
        }
        p[..path.len()].copy_from_slice(path.as_bytes());
        self.devs.reserve(1, GFP_KERNEL).map_err(|_| Errno::ENOMEM)?;
        let mut dev: *mut bindings::dm_dev = core::ptr::null_mut();
        // SAFETY: a constructing target and a NUL-terminated path.
        let r = unsafe { bindings::dm_get_device(self.ti, p.as_ptr().cast(), bindings::dm_table_get_mode(self.ti.table), &mut dev) };
        if r != 0 {
            return Err(Errno(-r));
        }
        // Capacity reserved above: cannot fail.
        let _ = self.devs.push(dev, GFP_KERNEL);
        // SAFETY: just opened; released by the destructor after the target is dropped.
        Ok(unsafe { KDev::new(dev) })
    }

    /// The table, as the core's event handle (`dm_table_event(ti->table)`;
    /// the table outlives the target).
    fn table_handle(&self) -> u64 {
        self.ti.table as u64
    }

    fn md_name(&self) -> &str {
        core::str::from_utf8(&self.md_name[..self.md_len]).unwrap_or("?")
    }

    /// The target's own kcopyd client, in its route slot.
    fn io(&mut self) -> dmrs_core::Result<KIo> {
        crate::kio::route_client(self.route).map_err(|_| Errno::ENOMEM)?;
        Ok(KIo::for_route(self.route))
    }

    fn set_num_flush_bios(&mut self, n: u32) {
        self.ti.num_flush_bios = n;
    }

    fn set_num_discard_bios(&mut self, n: u32) {
        self.ti.num_discard_bios = n;
    }

    fn set_discards_supported(&mut self) {
        self.ti.set_discards_supported(true);
    }

    fn set_flush_supported(&mut self) {
        self.ti.set_flush_supported(true);
    }

    fn set_max_io_len(&mut self, sectors: u32) {
        self.ti.max_io_len = sectors;
    }
}

/// A target and where it starts in the mapped device: what its worker runs.
struct Deferred<T> {
    target: T,
    begin: u64,
}

impl<T: KTarget> Handler for Deferred<T> {
    /// A bio `map` deferred: the target's bio path, allowed to wait for
    /// locks now; what it gives back takes the synchronous path.
    fn handle(&self, mut bio: Bio) {
        let info = bio.info(self.begin);
        bio.set_sector(info.sector);
        match self.target.map_bio(bio, &info, true) {
            Queued::Retry(bio) => self.work(bio, &info),
            Queued::Remapped(bio) => bio.submit(),
            Queued::Queued => {}
            Queued::End(bio, r) => bio.end(r),
        }
    }

    fn background(&self) -> bool {
        matches!(self.target.background(), Ok(true))
    }
}

impl<T: KTarget> Deferred<T> {
    /// The synchronous path: the bio's data through a buffer.
    fn work(&self, bio: Bio, info: &BioInfo) {
        let t = &self.target;
        let r = match (info.op, bio.op()) {
            (BioOp::Read, _) => match try_zeroed(bio.size()) {
                Ok(mut buf) => t
                    .work(info, Data::Read(&mut buf))
                    .and_then(|_| if bio.copy_in(&buf) { Ok(()) } else { Err(Errno::EIO) }),
                Err(e) => Err(e),
            },
            (BioOp::Write, _) => match try_zeroed(bio.size()) {
                Ok(mut buf) => {
                    if bio.copy_out(&mut buf) {
                        t.work(info, Data::Write(&buf))
                    } else {
                        Err(Errno::EIO)
                    }
                }
                Err(e) => Err(e),
            },
            (BioOp::Flush | BioOp::Discard, Op::Write | Op::Discard) => t.work(info, Data::None),
            _ => Err(Errno::EOPNOTSUPP),
        };
        bio.end(r)
    }
}

/// `DM_STATUS_NOFLUSH_FLAG` (drivers/md/dm.h, not in the public headers).
const DM_STATUS_NOFLUSH_FLAG: c_uint = 1 << 0;

/// What `ti->private` points at.
struct Private<T: KTarget> {
    w: Arc<Worker<Deferred<T>>>,
    devs: KVec<*mut bindings::dm_dev>,
    /// Route slot of the target's copies, and its entry there.
    route: u32,
    route_target: RouteTarget,
}

/// `ti->error`: the core's messages are static C strings, kept by
/// pointer as dm core expects.
fn set_error(ti: &mut bindings::dm_target, msg: &'static CStr) {
    ti.error = msg.as_ptr().cast_mut().cast();
}

/// The target behind `ti`.
///
/// # Safety
/// `ti` is a target of type `T` between its `ctr` (which set `private`)
/// and its `dtr`: dm core's contract for every callback but those two.
unsafe fn private<'a, T: KTarget>(ti: *mut bindings::dm_target) -> &'a Private<T> {
    // SAFETY: `private` is our `Private<T>` from `ctr` until `dtr` (caller).
    unsafe { &*(*ti).private.cast::<Private<T>>() }
}

/// The target behind `ti`.
///
/// # Safety
/// As [`private`].
unsafe fn target<'a, T: KTarget>(ti: *mut bindings::dm_target) -> &'a T {
    // SAFETY: the caller's contract.
    &unsafe { private::<T>(ti) }.w.h.target
}

/// A registered `target_type` and what every table of the type shares;
/// `tt` first, so that `ti->type` leads back to it.
#[repr(C)]
struct TypeReg<T: KTarget> {
    tt: bindings::target_type,
    shared: T::Shared,
    _name: KVec<u8>,
}

/// The bio's per-bio data: `TargetVTable::ctr` sized it for a [`PerBio`].
///
/// # Safety
/// `bio` is a live bio dm core cloned for a target of this module.
unsafe fn per_bio<'a>(bio: *mut bindings::bio) -> &'a mut PerBio {
    // SAFETY: dm core reserved `per_io_data_size` bytes before the clone,
    // suitably aligned, for the target that owns it until it completes.
    unsafe { &mut *bindings::dm_per_bio_data(bio, core::mem::size_of::<PerBio>()).cast::<PerBio>() }
}

/// The trampolines of every `struct target_type` this module registers,
/// for target type `T`: each turns dm core's raw pointers into references
/// and owned bios and calls the core.
struct TargetVTable<T>(PhantomData<T>);

impl<T: KTarget> TargetVTable<T> {
    /// `copy_done` through a route entry.
    ///
    /// # Safety
    /// `t` is the `T` of a live `Private<T>`.
    unsafe fn copy_done(t: *const c_void, context: u64, ok: bool) {
        // SAFETY: the caller's contract.
        unsafe { &*t.cast::<T>() }.copy_done(context, ok)
    }

    /// `ctr`: builds the target from the table line's words.
    ///
    /// # Safety
    /// dm core's contract: `ti` is a target under construction of this
    /// registered type, exclusively ours for the call; `argv` holds `argc`
    /// NUL-terminated words.
    unsafe extern "C" fn ctr(ti: *mut bindings::dm_target, argc: c_uint, argv: *mut *mut c_char) -> c_int {
        // SAFETY: dm core hands us the constructing target, exclusively.
        let ti = unsafe { &mut *ti };
        // SAFETY: `ti->type` is the `tt` of our registered `TypeReg<T>`,
        // which outlives every table of the type.
        let reg = unsafe { &*ti.type_.cast::<TypeReg<T>>() };
        let mut words: Args<'_> = Args::new();
        for i in 0..argc as usize {
            // SAFETY: `argc` NUL-terminated words.
            let w = unsafe { CStr::from_ptr((*argv.add(i)).cast()) };
            let Ok(w) = w.to_str() else {
                set_error(ti, c"Invalid argument");
                return -(Errno::EINVAL.0);
            };
            if words.push(w).is_err() {
                set_error(ti, c"Too many arguments");
                return -(Errno::EINVAL.0);
            }
        }
        // Allocated first so that a failure after `ctr` cannot strand its devices.
        let Ok(slot) = KBox::<Private<T>>::new_uninit(GFP_KERNEL) else {
            set_error(ti, c"Cannot allocate target context");
            return -(Errno::ENOMEM.0);
        };
        let Some(route) = crate::kio::route_take() else {
            set_error(ti, c"Too many targets");
            return -(Errno::ENOMEM.0);
        };
        // Every target gets per-bio data (`map` and `end_io` find it with
        // `dm_per_bio_data`).
        ti.per_io_data_size = core::mem::size_of::<PerBio>() as c_uint;
        let mut md_name = [0u8; 16];
        // SAFETY: a constructing target's table has its mapped device.
        let name = unsafe { CStr::from_ptr(bindings::dm_device_name(bindings::dm_table_get_md(ti.table)).cast()) };
        let md_len = name.to_bytes().len().min(md_name.len());
        md_name[..md_len].copy_from_slice(&name.to_bytes()[..md_len]);
        let begin = ti.begin;
        let mut ctor = Ctor { ti, devs: KVec::new(), md_name, md_len, route };
        let r = T::ctr(&reg.shared, &mut ctor, &words);
        let Ctor { ti, devs, .. } = ctor;
        let put_all = |ti: &mut bindings::dm_target, devs: &KVec<*mut bindings::dm_dev>| {
            for d in devs.iter() {
                // SAFETY: opened by `get_device` for this target.
                unsafe { bindings::dm_put_device(ti, *d) };
            }
        };
        let e = match r.map(|target| Worker::new(Deferred { target, begin })) {
            Ok(Ok(w)) => {
                let route_target = RouteTarget { target: core::ptr::null(), done: Self::copy_done };
                let p = KBox::into_raw(slot.write(Private { w, devs, route, route_target }));
                // SAFETY: just boxed, ours until `ti->private` is set below.
                let pr = unsafe { &mut *p };
                pr.route_target.target = core::ptr::from_ref(&pr.w.h.target).cast();
                // SAFETY: the box and the target inside the worker's `Arc` stay
                // put until `dtr`, which releases the route first.
                unsafe { crate::kio::route_publish(route, &pr.route_target) };
                ti.private = p.cast::<c_void>();
                return 0;
            }
            // The target is dropped with the failed worker allocation.
            Ok(Err(_)) => dmrs_core::TargetError::new(Errno::ENOMEM, c"Cannot allocate target context"),
            Err(e) => e,
        };
        put_all(ti, &devs);
        crate::kio::route_release(route);
        set_error(ti, e.error());
        -(e.errno.0)
    }

    /// `dtr`: drops the target, then closes its devices.
    ///
    /// # Safety
    /// `ti` was constructed by [`Self::ctr`]; dm core calls `dtr` once, with
    /// no bio of the target in flight.
    unsafe extern "C" fn dtr(ti: *mut bindings::dm_target) {
        // SAFETY: set by `Self::ctr`; dm core calls dtr once, with no I/O in flight.
        let p = unsafe { (*ti).private.cast::<Private<T>>() };
        {
            // SAFETY: boxed by `Self::ctr`; freed below, after the route
            // that points into it is released.
            let pr = unsafe { &*p };
            // No background step runs any more.
            pr.w.stop();
            // The target starts no more copies; those in flight complete
            // through its `copy_done` while it is still there.
            pr.w.h.target.dtr();
            // Their notifies return; the target's kcopyd client goes.
            crate::kio::route_release(pr.route);
        }
        // SAFETY: as above; nothing refers to the box any more.
        let Private { w, devs, .. } = KBox::into_inner(unsafe { KBox::from_raw(p) });
        // The core lets go of every device before they are closed.
        drop(w);
        for d in devs.iter() {
            // SAFETY: opened in `ctr` for this target.
            unsafe { bindings::dm_put_device(ti, *d) };
        }
    }

    /// `map`: the core's decision for a bio, carried out.
    ///
    /// # Safety
    /// `ti` is live (between `ctr` and `dtr`); `bio` is a clone dm core hands
    /// to this target to own until it is remapped or ended.
    unsafe extern "C" fn map(ti: *mut bindings::dm_target, bio: *mut bindings::bio) -> c_int {
        if bio.is_null() {
            return bindings::DM_MAPIO_KILL as c_int;
        }
        // SAFETY: a live clone of this target (dm core's contract for `map`);
        // its per-bio data is uninitialised, so it is written before use.
        let pb = unsafe {
            let p = bindings::dm_per_bio_data(bio, core::mem::size_of::<PerBio>()).cast::<PerBio>();
            p.write(PerBio::new());
            &mut *p
        };
        // SAFETY: dm core gives us a live bio to own until we end or remap it.
        let Some(mut bio) = (unsafe { Bio::from_raw(bio) }) else { return bindings::DM_MAPIO_KILL as c_int };
        // SAFETY: dm core calls `map` between `ctr` and `dtr`.
        let p = unsafe { private::<T>(ti) };
        let (t, begin) = (&p.w.h.target, p.w.h.begin);
        let info = bio.info(begin);
        let submitted = bindings::DM_MAPIO_SUBMITTED as c_int;
        match t.map(&info, pb) {
            MapResult::Remapped { dev, sector } => {
                <KIo as dmrs_core::dm::IoPlatform>::remap(&mut bio, &dev, sector);
                bio.into_remapped();
                bindings::DM_MAPIO_REMAPPED as c_int
            }
            MapResult::Kill(e) => {
                bio.end(Err(e));
                submitted
            }
            MapResult::Done(r) => {
                bio.end(r);
                submitted
            }
            MapResult::Submitted => {
                // The target's bio path (never waits here); what it gives
                // back goes to its worker, as dm core handed it to us.
                bio.set_sector(info.sector);
                match t.map_bio(bio, &info, false) {
                    Queued::Remapped(bio) => {
                        bio.into_remapped();
                        bindings::DM_MAPIO_REMAPPED as c_int
                    }
                    Queued::Queued => submitted,
                    Queued::Retry(mut bio) => {
                        bio.set_sector(info.sector + begin);
                        Worker::defer(&p.w, bio);
                        submitted
                    }
                    Queued::End(bio, r) => {
                        bio.end(r);
                        submitted
                    }
                }
            }
        }
    }

    /// `end_io`: a bio of the target completed (any context).
    ///
    /// # Safety
    /// `ti` is live; `bio` went through [`Self::map`], which initialised its
    /// per-bio data.
    unsafe extern "C" fn end_io(
        ti: *mut bindings::dm_target,
        bio: *mut bindings::bio,
        _error: *mut bindings::blk_status_t,
    ) -> c_int {
        // SAFETY: a completing clone of a live target (between `ctr` and
        // `dtr`): `Self::map` initialised its per-bio data.
        unsafe { target::<T>(ti).end_io(per_bio(bio)) };
        bindings::DM_ENDIO_DONE as c_int
    }

    /// `status`: INFO, TABLE or IMA text into `result`.
    ///
    /// # Safety
    /// `ti` is live; `result` has `maxlen` writable bytes.
    unsafe extern "C" fn status(
        ti: *mut bindings::dm_target,
        ty: bindings::status_type_t,
        flags: c_uint,
        result: *mut c_char,
        maxlen: c_uint,
    ) {
        if result.is_null() || maxlen == 0 {
            return;
        }
        // SAFETY: dm core gives `maxlen` writable bytes.
        let buf = unsafe { core::slice::from_raw_parts_mut(result.cast::<u8>(), maxlen as usize) };
        let ty = match ty {
            bindings::status_type_t_STATUSTYPE_INFO => StatusType::Info,
            bindings::status_type_t_STATUSTYPE_TABLE => StatusType::Table,
            _ => StatusType::Ima,
        };
        let n = {
            let mut e = Emitter::new(buf);
            // SAFETY: `status` runs between `ctr` and `dtr`.
            unsafe { target::<T>(ti) }.status(ty, flags & DM_STATUS_NOFLUSH_FLAG != 0, &mut e);
            e.len()
        };
        // The emitter keeps room for the NUL.
        if let Some(z) = buf.get_mut(n) {
            *z = 0;
        }
    }

    /// `message`.
    ///
    /// # Safety
    /// `ti` is live; `argv` holds `argc` NUL-terminated words.
    unsafe extern "C" fn message(
        ti: *mut bindings::dm_target,
        argc: c_uint,
        argv: *mut *mut c_char,
        _result: *mut c_char,
        _maxlen: c_uint,
    ) -> c_int {
        let mut words: Args<'_> = Args::new();
        for i in 0..argc as usize {
            // SAFETY: `argc` NUL-terminated words.
            let Ok(w) = unsafe { CStr::from_ptr((*argv.add(i)).cast()) }.to_str() else { return -(Errno::EINVAL.0) };
            if words.push(w).is_err() {
                return -(Errno::EINVAL.0);
            }
        }
        // SAFETY: `message` runs between `ctr` and `dtr`.
        let p = unsafe { private::<T>(ti) };
        let r = p.w.h.target.message(&words);
        // What the message started (hydration) runs in the worker.
        if !p.w.stopped() {
            Worker::kick(&p.w);
        }
        match r {
            Ok(()) => 0,
            Err(e) => -e.0,
        }
    }

    /// `presuspend`: the target's hook, then its worker stops background work.
    ///
    /// # Safety
    /// `ti` is live.
    unsafe extern "C" fn presuspend(ti: *mut bindings::dm_target) {
        // SAFETY: suspend hooks run between `ctr` and `dtr`.
        let p = unsafe { private::<T>(ti) };
        p.w.h.target.presuspend();
        // Background work (a merge, hydration batches) stops before the
        // table suspends; deferred bios still run.
        p.w.stop();
    }

    /// `postsuspend`.
    ///
    /// # Safety
    /// `ti` is live.
    unsafe extern "C" fn postsuspend(ti: *mut bindings::dm_target) {
        // SAFETY: as in `Self::presuspend`.
        unsafe { target::<T>(ti) }.postsuspend()
    }

    /// `preresume`: an error keeps the device suspended.
    ///
    /// # Safety
    /// `ti` is live.
    unsafe extern "C" fn preresume(ti: *mut bindings::dm_target) -> c_int {
        // SAFETY: resume hooks run between `ctr` and `dtr`.
        match unsafe { target::<T>(ti) }.preresume() {
            Ok(()) => 0,
            Err(e) => -e.0,
        }
    }

    /// `resume`: the target's hook, then its worker may run background work.
    ///
    /// # Safety
    /// `ti` is live.
    unsafe extern "C" fn resume(ti: *mut bindings::dm_target) {
        // SAFETY: as in `Self::preresume`.
        let p = unsafe { private::<T>(ti) };
        p.w.h.target.resume();
        Worker::start(&p.w)
    }

    /// `iterate_devices`: dm core's callout on every device the target uses.
    ///
    /// # Safety
    /// `ti` is live; `f` is dm core's callout for its `data`.
    unsafe extern "C" fn iterate_devices(
        ti: *mut bindings::dm_target,
        f: bindings::iterate_devices_callout_fn,
        data: *mut c_void,
    ) -> c_int {
        let Some(f) = f else { return 0 };
        // SAFETY: dm core iterates the devices of a constructed target.
        let r = unsafe { target::<T>(ti) }.iterate_devices(&mut |dev: &KDev, start, len| {
            // SAFETY: dm core's callout with its own `data`, on a device this
            // target opened.
            match unsafe { f(ti, dev.raw(), start, len, data) } {
                0 => Ok(()),
                r => Err(r),
            }
        });
        r.err().unwrap_or(0)
    }

    /// `io_hints`: the target adjusts the limits dm core stacked.
    ///
    /// # Safety
    /// `ti` is live; `limits` is dm core's, ours for the call.
    unsafe extern "C" fn io_hints(ti: *mut bindings::dm_target, limits: *mut bindings::queue_limits) {
        // SAFETY: dm core's limits for this target, ours for the call.
        let l = unsafe { &mut *limits };
        let mut q = crate::kdev::limits_from(l);
        // SAFETY: `io_hints` runs for a constructed target.
        unsafe { target::<T>(ti) }.io_hints(&mut q);
        l.io_min = q.io_min;
        l.io_opt = q.io_opt;
        l.max_discard_sectors = q.max_discard_sectors;
        l.max_hw_discard_sectors = q.max_hw_discard_sectors;
        l.discard_granularity = q.discard_granularity;
        l.discard_alignment = q.discard_alignment;
        l.max_discard_segments = q.max_discard_segments;
    }
}

/// A registered target type; unregistered on drop.
pub(crate) struct Registration<T: KTarget> {
    reg: *mut TypeReg<T>,
    _t: PhantomData<T>,
}

// SAFETY: only touched at module init and exit.
unsafe impl<T: KTarget> Send for Registration<T> {}
// SAFETY: as above.
unsafe impl<T: KTarget> Sync for Registration<T> {}

impl<T: KTarget> Registration<T> {
    /// `dm_register_target` of `T` under `prefix` + `name` (the kernel's
    /// `T::NAME` when the prefix is empty), its tables sharing `shared`.
    pub(crate) fn new(prefix: &[u8], name: &str, shared: T::Shared) -> Result<Self> {
        let mut n = KVec::with_capacity(prefix.len() + name.len() + 1, GFP_KERNEL)?;
        n.extend_from_slice(prefix, GFP_KERNEL)?;
        n.extend_from_slice(name.as_bytes(), GFP_KERNEL)?;
        n.push(0, GFP_KERNEL)?;
        let tt = bindings::target_type {
            name: n.as_ptr().cast(),
            version: T::VERSION,
            module: this_module!(),
            ctr: Some(TargetVTable::<T>::ctr),
            dtr: Some(TargetVTable::<T>::dtr),
            map: Some(TargetVTable::<T>::map),
            end_io: if T::HAS_END_IO { Some(TargetVTable::<T>::end_io) } else { None },
            status: Some(TargetVTable::<T>::status),
            message: if T::HAS_MESSAGE { Some(TargetVTable::<T>::message) } else { None },
            presuspend: Some(TargetVTable::<T>::presuspend),
            postsuspend: Some(TargetVTable::<T>::postsuspend),
            preresume: Some(TargetVTable::<T>::preresume),
            resume: Some(TargetVTable::<T>::resume),
            iterate_devices: Some(TargetVTable::<T>::iterate_devices),
            io_hints: if T::HAS_IO_HINTS { Some(TargetVTable::<T>::io_hints) } else { None },
            ..Default::default()
        };
        let reg = KBox::into_raw(KBox::new(TypeReg::<T> { tt, shared, _name: n }, GFP_KERNEL)?);
        // SAFETY: a filled, heap-pinned target_type that outlives the registration.
        let r = unsafe { bindings::dm_register_target(core::ptr::addr_of_mut!((*reg).tt)) };
        if r != 0 {
            // SAFETY: not registered; still ours.
            drop(unsafe { KBox::from_raw(reg) });
            return Err(kernel::error::Error::from_errno(r));
        }
        Ok(Registration { reg, _t: PhantomData })
    }
}

impl<T: KTarget> Drop for Registration<T> {
    fn drop(&mut self) {
        // SAFETY: registered in `new`; no table uses it once the module is unloading.
        unsafe {
            bindings::dm_unregister_target(core::ptr::addr_of_mut!((*self.reg).tt));
            drop(KBox::from_raw(self.reg));
        }
    }
}
