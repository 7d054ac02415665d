// SPDX-License-Identifier: GPL-2.0-only
//! Safe `struct target_type`: a target implements [`DmTarget`] (a
//! `#[vtable]` trait: callbacks it leaves out stay NULL in the C table) and
//! [`Registration`] fills a `target_type` with the trampolines below, which
//! turn dm core's raw pointers into references and owned values.
//!
//! `map` gets `&T`: dm core calls it on many CPUs at once.

use crate::b;
use crate::bio::Bio;
use crate::kdev::KDev;
use core::ffi::CStr;
use kernel::ffi::{c_char, c_int, c_uint, c_void};
use core::marker::PhantomData;
use dmrs_core::args::Args;
use dmrs_core::dm::PerBio;
use dmrs_core::emit::{Emitter, StatusType};
use dmrs_core::platform::QueueLimits;
use dmrs_core::{Errno, TargetError};
use kernel::prelude::*;

/// What `map` did with a bio.
pub(crate) enum Mapped {
    /// Pointed at another device: dm core submits it (`DM_MAPIO_REMAPPED`).
    Remapped,
    /// Kept; the target ends it later (`DM_MAPIO_SUBMITTED`).
    Submitted,
}

/// The constructor's view of `struct dm_target`.
pub(crate) struct Ctor<'a> {
    ti: &'a mut b::dm_target,
    /// Devices opened so far, released by the destructor (or on failure).
    pub(crate) devs: KVec<*mut b::dm_dev>,
}

impl Ctor<'_> {
    pub(crate) fn len(&self) -> u64 {
        self.ti.len
    }

    pub(crate) fn begin(&self) -> u64 {
        self.ti.begin
    }

    /// `dm_get_device(ti, path, dm_table_get_mode(ti->table), &dev)`.
    pub(crate) fn get_device(&mut self, path: &str) -> dmrs_core::Result<KDev> {
        let mut p = [0u8; 256];
        if path.len() >= p.len() {
            return Err(Errno::EINVAL);
        }
        p[..path.len()].copy_from_slice(path.as_bytes());
        self.devs.reserve(1, GFP_KERNEL).map_err(|_| Errno::ENOMEM)?;
        let mut dev: *mut b::dm_dev = core::ptr::null_mut();
        // SAFETY: a constructing target and a NUL-terminated path.
        let r = unsafe { b::dm_get_device(self.ti, p.as_ptr().cast(), b::dm_table_get_mode(self.ti.table), &mut dev) };
        if r != 0 {
            return Err(Errno(-r));
        }
        // Capacity reserved above: cannot fail.
        let _ = self.devs.push(dev, GFP_KERNEL);
        // SAFETY: just opened; released by the destructor after the target is dropped.
        Ok(unsafe { KDev::new(dev) })
    }

    /// "major:minor" of the mapped device this table belongs to
    /// (`dm_device_name(dm_table_get_md(ti->table))`).
    pub(crate) fn md_name(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        // SAFETY: a constructing target's table has its mapped device.
        let s = unsafe { CStr::from_ptr(b::dm_device_name(b::dm_table_get_md(self.ti.table)).cast()) };
        let n = s.to_bytes().len().min(15);
        out[..n].copy_from_slice(&s.to_bytes()[..n]);
        out
    }

    /// The table this target belongs to, as the core's event handle
    /// (`dm_table_event(ti->table)`; the table outlives the target).
    pub(crate) fn table_handle(&self) -> u64 {
        self.ti.table as u64
    }

    pub(crate) fn set_num_flush_bios(&mut self, n: u32) {
        self.ti.num_flush_bios = n;
    }

    pub(crate) fn set_num_discard_bios(&mut self, n: u32) {
        self.ti.num_discard_bios = n;
    }

    /// dm core passes discards even if a device below cannot.
    pub(crate) fn set_discards_supported(&mut self) {
        self.ti.set_discards_supported(true);
    }

    pub(crate) fn set_flush_supported(&mut self) {
        self.ti.set_flush_supported(true);
    }

    /// `ti->max_io_len`: dm core splits bios so none crosses a multiple of
    /// `sectors` (the chunk or region size), so most fit one chunk and
    /// `map` can remap them whole (0: no limit).
    pub(crate) fn set_max_io_len(&mut self, sectors: u32) {
        self.ti.max_io_len = sectors;
    }
}

/// A device-mapper target type.
#[vtable]
pub(crate) trait DmTarget: Sized + Send + Sync {
    /// `ctr`: parse the table line's arguments.
    fn ctr(ctor: &mut Ctor<'_>, argv: &[&str]) -> core::result::Result<Self, TargetError>;
    /// `map`: remap the bio, or keep it and end it later. `pb` is the
    /// bio's per-bio data (zeroed), given back to `end_io`.
    fn map(&self, bio: Bio, pb: &mut PerBio) -> Mapped;
    /// `end_io`: a bio this target mapped completed (any context: never
    /// sleep). dm core calls it for every bio of the target.
    fn end_io(&self, _pb: &mut PerBio) {
        kernel::build_error(kernel::error::VTABLE_DEFAULT_ERROR)
    }
    /// `status` (INFO, TABLE, IMA); `noflush`: `DM_STATUS_NOFLUSH_FLAG`
    /// (`dmsetup status --noflush`: no metadata commit for it).
    fn status(&self, ty: StatusType, noflush: bool, out: &mut Emitter<'_>);
    /// `message`.
    fn message(&self, _argv: &[&str]) -> core::result::Result<(), Errno> {
        kernel::build_error(kernel::error::VTABLE_DEFAULT_ERROR)
    }
    /// `presuspend`.
    fn presuspend(&self) {
        kernel::build_error(kernel::error::VTABLE_DEFAULT_ERROR)
    }
    /// `postsuspend`.
    fn postsuspend(&self) {
        kernel::build_error(kernel::error::VTABLE_DEFAULT_ERROR)
    }
    /// `preresume`.
    fn preresume(&self) -> core::result::Result<(), Errno> {
        kernel::build_error(kernel::error::VTABLE_DEFAULT_ERROR)
    }
    /// `resume`.
    fn resume(&self) {
        kernel::build_error(kernel::error::VTABLE_DEFAULT_ERROR)
    }
    /// `iterate_devices`: calls `f(dev, start, len)` for every device the
    /// target maps to, stopping at the first error (dm core stacks their
    /// queue limits and checks their capabilities through it).
    fn iterate_devices(&self, _f: &mut dyn FnMut(&KDev, u64, u64) -> core::result::Result<(), c_int>) -> c_int {
        kernel::build_error(kernel::error::VTABLE_DEFAULT_ERROR)
    }
    /// `io_hints`: adjusts the limits dm core stacked from the devices.
    fn io_hints(&self, _limits: &mut QueueLimits) {
        kernel::build_error(kernel::error::VTABLE_DEFAULT_ERROR)
    }
}

/// `DM_STATUS_NOFLUSH_FLAG` (drivers/md/dm.h, not in the public headers).
const DM_STATUS_NOFLUSH_FLAG: c_uint = 1 << 0;

/// What `ti->private` points at.
struct Private<T> {
    target: T,
    devs: KVec<*mut b::dm_dev>,
}

/// One `ti->error` buffer: written by one failing constructor at a time
/// (each takes its own slot), read by dm core right after.
struct ErrSlot(core::cell::UnsafeCell<[u8; ERR_LEN]>);

// SAFETY: a slot is written only by the constructor that took it from
// `NEXT_ERR` (16 constructors failing at the same instant would be needed
// to reuse one while dm core prints it).
unsafe impl Sync for ErrSlot {}

const ERR_SLOTS: usize = 16;
const ERR_LEN: usize = 128;
static ERR: [ErrSlot; ERR_SLOTS] = [const { ErrSlot(core::cell::UnsafeCell::new([0; ERR_LEN])) }; ERR_SLOTS];
static NEXT_ERR: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// `ti->error` must outlive the constructor: the core's messages are
/// `&'static str` without a NUL, so they are copied into one of a few
/// static slots (dm core prints the message right after `ctr` returns).
fn set_error(ti: &mut b::dm_target, msg: &str) {
    let i = NEXT_ERR.fetch_add(1, core::sync::atomic::Ordering::Relaxed) % ERR_SLOTS;
    // SAFETY: this call took slot `i` (see `ErrSlot`).
    let slot = unsafe { &mut *ERR[i].0.get() };
    let n = msg.len().min(ERR_LEN - 1);
    slot[..n].copy_from_slice(&msg.as_bytes()[..n]);
    slot[n] = 0;
    ti.error = slot.as_mut_ptr().cast();
}

/// The target behind `ti`.
///
/// # Safety
/// `ti` is a target of type `T` between its `ctr` (which set `private`)
/// and its `dtr`: dm core's contract for every callback but those two.
unsafe fn private<'a, T>(ti: *mut b::dm_target) -> &'a T {
    // SAFETY: `private` is our `Private<T>` from `ctr` until `dtr` (caller).
    unsafe { &(*(*ti).private.cast::<Private<T>>()).target }
}

unsafe extern "C" fn ctr_tramp<T: DmTarget>(ti: *mut b::dm_target, argc: c_uint, argv: *mut *mut c_char) -> c_int {
    // SAFETY: dm core hands us the constructing target, exclusively.
    let ti = unsafe { &mut *ti };
    let mut words: Args<'_> = Args::new();
    for i in 0..argc as usize {
        // SAFETY: `argc` NUL-terminated words.
        let w = unsafe { CStr::from_ptr((*argv.add(i)).cast()) };
        let Ok(w) = w.to_str() else {
            set_error(ti, "Invalid argument");
            return -(Errno::EINVAL.0);
        };
        if words.push(w).is_err() {
            set_error(ti, "Too many arguments");
            return -(Errno::EINVAL.0);
        }
    }
    // Allocated first so that a failure after `ctr` cannot strand its devices.
    let Ok(slot) = KBox::<Private<T>>::new_uninit(GFP_KERNEL) else {
        set_error(ti, "Cannot allocate target context");
        return -(Errno::ENOMEM.0);
    };
    // Every target gets per-bio data (`map` and `end_io` find it with
    // `dm_per_bio_data`).
    ti.per_io_data_size = core::mem::size_of::<PerBio>() as c_uint;
    let mut ctor = Ctor { ti, devs: KVec::new() };
    let r = T::ctr(&mut ctor, &words);
    let Ctor { ti, devs } = ctor;
    let put_all = |ti: &mut b::dm_target, devs: &KVec<*mut b::dm_dev>| {
        for d in devs.iter() {
            // SAFETY: opened by `get_device` for this target.
            unsafe { b::dm_put_device(ti, *d) };
        }
    };
    match r {
        Ok(target) => {
            ti.private = KBox::into_raw(slot.write(Private { target, devs })).cast::<c_void>();
            0
        }
        Err(e) => {
            put_all(ti, &devs);
            set_error(ti, e.msg);
            -(e.errno.0)
        }
    }
}

unsafe extern "C" fn dtr_tramp<T: DmTarget>(ti: *mut b::dm_target) {
    // SAFETY: set by `ctr_tramp`; dm core calls dtr once, with no I/O in flight.
    let p = unsafe { KBox::from_raw((*ti).private.cast::<Private<T>>()) };
    let Private { target, devs } = KBox::into_inner(p);
    // The core lets go of every device before they are closed.
    drop(target);
    for d in devs.iter() {
        // SAFETY: opened in `ctr` for this target.
        unsafe { b::dm_put_device(ti, *d) };
    }
}

/// The bio's per-bio data: `ctr_tramp` sized it for a [`PerBio`].
///
/// # Safety
/// `bio` is a live bio dm core cloned for a target of this module.
unsafe fn per_bio<'a>(bio: *mut b::bio) -> &'a mut PerBio {
    // SAFETY: dm core reserved `per_io_data_size` bytes before the clone,
    // suitably aligned, for the target that owns it until it completes.
    unsafe { &mut *b::dm_per_bio_data(bio, core::mem::size_of::<PerBio>()).cast::<PerBio>() }
}

unsafe extern "C" fn map_tramp<T: DmTarget>(ti: *mut b::dm_target, bio: *mut b::bio) -> c_int {
    if bio.is_null() {
        return b::DM_MAPIO_KILL as c_int;
    }
    // SAFETY: a live clone of this target (dm core's contract for `map`);
    // its per-bio data is uninitialised, so it is written before use.
    let pb = unsafe {
        let p = b::dm_per_bio_data(bio, core::mem::size_of::<PerBio>()).cast::<PerBio>();
        p.write(PerBio::new());
        &mut *p
    };
    // SAFETY: dm core gives us a live bio to own until we end or remap it.
    let Some(bio) = (unsafe { Bio::from_raw(bio) }) else { return b::DM_MAPIO_KILL as c_int };
    // SAFETY: dm core calls `map` between `ctr` and `dtr`.
    match unsafe { private::<T>(ti) }.map(bio, pb) {
        Mapped::Remapped => b::DM_MAPIO_REMAPPED as c_int,
        Mapped::Submitted => b::DM_MAPIO_SUBMITTED as c_int,
    }
}

unsafe extern "C" fn end_io_tramp<T: DmTarget>(
    ti: *mut b::dm_target,
    bio: *mut b::bio,
    _error: *mut b::blk_status_t,
) -> c_int {
    // SAFETY: a completing clone of this target: `map_tramp` initialised
    // its per-bio data.
    // SAFETY: a completing bio of a live target (between `ctr` and `dtr`).
    unsafe { private::<T>(ti) }.end_io(unsafe { per_bio(bio) });
    b::DM_ENDIO_DONE as c_int
}

unsafe extern "C" fn status_tramp<T: DmTarget>(
    ti: *mut b::dm_target,
    ty: b::status_type_t,
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
        b::status_type_t_STATUSTYPE_INFO => StatusType::Info,
        b::status_type_t_STATUSTYPE_TABLE => StatusType::Table,
        _ => StatusType::Ima,
    };
    let n = {
        let mut e = Emitter::new(buf);
        // SAFETY: `status` runs between `ctr` and `dtr`.
        unsafe { private::<T>(ti) }.status(ty, flags & DM_STATUS_NOFLUSH_FLAG != 0, &mut e);
        e.len()
    };
    // The emitter keeps room for the NUL.
    if let Some(z) = buf.get_mut(n) {
        *z = 0;
    }
}

unsafe extern "C" fn message_tramp<T: DmTarget>(
    ti: *mut b::dm_target,
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
    match unsafe { private::<T>(ti) }.message(&words) {
        Ok(()) => 0,
        Err(e) => -e.0,
    }
}

unsafe extern "C" fn presuspend_tramp<T: DmTarget>(ti: *mut b::dm_target) {
    // SAFETY: suspend hooks run between `ctr` and `dtr`.
    unsafe { private::<T>(ti) }.presuspend()
}

unsafe extern "C" fn postsuspend_tramp<T: DmTarget>(ti: *mut b::dm_target) {
    // SAFETY: as in `presuspend_tramp`.
    unsafe { private::<T>(ti) }.postsuspend()
}

unsafe extern "C" fn preresume_tramp<T: DmTarget>(ti: *mut b::dm_target) -> c_int {
    // SAFETY: resume hooks run between `ctr` and `dtr`.
    match unsafe { private::<T>(ti) }.preresume() {
        Ok(()) => 0,
        Err(e) => -e.0,
    }
}

unsafe extern "C" fn resume_tramp<T: DmTarget>(ti: *mut b::dm_target) {
    // SAFETY: as in `preresume_tramp`.
    unsafe { private::<T>(ti) }.resume()
}

unsafe extern "C" fn iterate_devices_tramp<T: DmTarget>(
    ti: *mut b::dm_target,
    f: b::iterate_devices_callout_fn,
    data: *mut c_void,
) -> c_int {
    let Some(f) = f else { return 0 };
    // SAFETY: dm core iterates the devices of a constructed target.
    unsafe { private::<T>(ti) }.iterate_devices(&mut |dev, start, len| {
        // SAFETY: dm core's callout with its own `data`, on a device this
        // target opened.
        match unsafe { f(ti, dev.raw(), start, len, data) } {
            0 => Ok(()),
            r => Err(r),
        }
    })
}

unsafe extern "C" fn io_hints_tramp<T: DmTarget>(ti: *mut b::dm_target, limits: *mut b::queue_limits) {
    // SAFETY: dm core's limits for this target, ours for the call.
    let l = unsafe { &mut *limits };
    let mut q = crate::kdev::limits_from(l);
    // SAFETY: `io_hints` runs for a constructed target.
    unsafe { private::<T>(ti) }.io_hints(&mut q);
    l.io_min = q.io_min;
    l.io_opt = q.io_opt;
    l.max_discard_sectors = q.max_discard_sectors;
    l.max_hw_discard_sectors = q.max_hw_discard_sectors;
    l.discard_granularity = q.discard_granularity;
    l.discard_alignment = q.discard_alignment;
    l.max_discard_segments = q.max_discard_segments;
}

/// A registered target type; unregistered on drop.
pub(crate) struct Registration<T: DmTarget> {
    tt: *mut b::target_type,
    _name: KVec<u8>,
    _t: PhantomData<T>,
}

// SAFETY: only touched at module init and exit.
unsafe impl<T: DmTarget> Send for Registration<T> {}
// SAFETY: as above.
unsafe impl<T: DmTarget> Sync for Registration<T> {}

impl<T: DmTarget> Registration<T> {
    /// `dm_register_target` under `prefix` + `name`.
    pub(crate) fn new(prefix: &[u8], name: &str, version: [u32; 3]) -> Result<Self> {
        let mut n = KVec::with_capacity(prefix.len() + name.len() + 1, GFP_KERNEL)?;
        n.extend_from_slice(prefix, GFP_KERNEL)?;
        n.extend_from_slice(name.as_bytes(), GFP_KERNEL)?;
        n.push(0, GFP_KERNEL)?;
        let tt = b::target_type {
            name: n.as_ptr().cast(),
            version,
            module: this_module!(),
            ctr: Some(ctr_tramp::<T>),
            dtr: Some(dtr_tramp::<T>),
            map: Some(map_tramp::<T>),
            end_io: if T::HAS_END_IO { Some(end_io_tramp::<T>) } else { None },
            status: Some(status_tramp::<T>),
            message: if T::HAS_MESSAGE { Some(message_tramp::<T>) } else { None },
            presuspend: if T::HAS_PRESUSPEND { Some(presuspend_tramp::<T>) } else { None },
            postsuspend: if T::HAS_POSTSUSPEND { Some(postsuspend_tramp::<T>) } else { None },
            preresume: if T::HAS_PRERESUME { Some(preresume_tramp::<T>) } else { None },
            resume: if T::HAS_RESUME { Some(resume_tramp::<T>) } else { None },
            iterate_devices: if T::HAS_ITERATE_DEVICES { Some(iterate_devices_tramp::<T>) } else { None },
            io_hints: if T::HAS_IO_HINTS { Some(io_hints_tramp::<T>) } else { None },
            ..Default::default()
        };
        let tt = KBox::into_raw(KBox::new(tt, GFP_KERNEL)?);
        // SAFETY: a filled, heap-pinned target_type that outlives the registration.
        let r = unsafe { b::dm_register_target(tt) };
        if r != 0 {
            // SAFETY: not registered; still ours.
            drop(unsafe { KBox::from_raw(tt) });
            return Err(kernel::error::Error::from_errno(r));
        }
        Ok(Registration { tt, _name: n, _t: PhantomData })
    }
}

impl<T: DmTarget> Drop for Registration<T> {
    fn drop(&mut self) {
        // SAFETY: registered in `new`; no table uses it once the module is unloading.
        unsafe {
            b::dm_unregister_target(self.tt);
            drop(KBox::from_raw(self.tt));
        }
    }
}
