// SPDX-License-Identifier: GPL-2.0-only
//! The synchronisation seam. Every lock and atomic in the core comes from
//! here, so the implementation can be swapped as a whole:
//! - cargo builds: `spin` (no_std);
//! - `--cfg loom`: loom's model-checked primitives (loom-tests/);
//! - `--cfg kernel`: the kernel's `spinlock_t` and `rw_semaphore`
//!   (rust-for-linux/, see core/README.md).
//!
//! [`SpinLock`] is for short sections that never sleep (no I/O, no
//! allocation that may sleep). [`RwSem`] may be held across I/O, like the
//! kernel's `down_read`/`down_write`.

use crate::errno::Result;
use core::ffi::CStr;

#[cfg(not(loom))]
pub use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// The lockdep class of a kind of lock: one `static` per lock field, as
/// each C `spin_lock_init`/`init_rwsem` call site has its own
/// `static struct lock_class_key`. Lockdep learns the lock order per class,
/// so two kinds of lock must not share one (nesting them would look like
/// recursive locking). Outside the kernel only the name is kept.
pub struct LockClass {
    name: &'static CStr,
    #[cfg(kernel)]
    key: kernel::sync::LockClassKey,
}

impl LockClass {
    /// A class named `name` (shown by lockdep and `/proc/lockdep`).
    pub const fn new(name: &'static CStr) -> Self {
        LockClass {
            name,
            #[cfg(kernel)]
            // SAFETY: lockdep expects a static `lock_class_key` to be left
            // uninitialised; `LockClassKey` is an `Opaque` wrapper (maybe-uninit).
            #[allow(unsafe_code)]
            key: unsafe { core::mem::MaybeUninit::uninit().assume_init() },
        }
    }

    /// The class name.
    pub fn name(&self) -> &'static CStr {
        self.name
    }
}

impl core::fmt::Debug for LockClass {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("LockClass").field(&self.name).finish()
    }
}

#[cfg(all(not(loom), not(kernel)))]
mod imp {
    use super::LockClass;
    use crate::errno::Result;

    pub type SpinInner<T> = spin::Mutex<T>;
    pub type SpinGuard<'a, T> = spin::MutexGuard<'a, T>;
    pub type MutexInner<T> = spin::Mutex<T>;
    pub type MutexGuard<'a, T> = spin::MutexGuard<'a, T>;
    pub type RwInner<T> = spin::RwLock<T>;
    pub type ReadGuard<'a, T> = spin::RwLockReadGuard<'a, T>;
    pub type WriteGuard<'a, T> = spin::RwLockWriteGuard<'a, T>;

    pub fn new_spin<T>(v: T, _c: &'static LockClass) -> Result<SpinInner<T>> {
        Ok(spin::Mutex::new(v))
    }
    pub fn new_rw<T>(v: T, _c: &'static LockClass) -> Result<RwInner<T>> {
        Ok(spin::RwLock::new(v))
    }
    pub fn spin_lock<T>(m: &SpinInner<T>) -> SpinGuard<'_, T> {
        m.lock()
    }
    pub fn new_mutex<T>(v: T, c: &'static LockClass) -> Result<MutexInner<T>> {
        new_spin(v, c)
    }
    pub fn mutex_lock<T>(m: &MutexInner<T>) -> MutexGuard<'_, T> {
        spin_lock(m)
    }
    pub fn read<T>(m: &RwInner<T>) -> ReadGuard<'_, T> {
        m.read()
    }
    pub fn write<T>(m: &RwInner<T>) -> WriteGuard<'_, T> {
        m.write()
    }
    pub fn try_read<T>(m: &RwInner<T>) -> Option<ReadGuard<'_, T>> {
        m.try_read()
    }
    pub fn try_write<T>(m: &RwInner<T>) -> Option<WriteGuard<'_, T>> {
        m.try_write()
    }
    /// No scheduler here: let the other threads run.
    pub fn sleep_short() {
        #[cfg(not(test))]
        core::hint::spin_loop();
        #[cfg(test)]
        {
            extern crate std;
            std::thread::yield_now();
        }
    }
}

#[cfg(loom)]
mod imp {
    use super::LockClass;
    use crate::errno::Result;

    pub type SpinInner<T> = loom::sync::Mutex<T>;
    pub type SpinGuard<'a, T> = loom::sync::MutexGuard<'a, T>;
    pub type MutexInner<T> = loom::sync::Mutex<T>;
    pub type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;
    pub type RwInner<T> = loom::sync::RwLock<T>;
    pub type ReadGuard<'a, T> = loom::sync::RwLockReadGuard<'a, T>;
    pub type WriteGuard<'a, T> = loom::sync::RwLockWriteGuard<'a, T>;

    pub fn new_spin<T>(v: T, _c: &'static LockClass) -> Result<SpinInner<T>> {
        Ok(loom::sync::Mutex::new(v))
    }
    pub fn new_rw<T>(v: T, _c: &'static LockClass) -> Result<RwInner<T>> {
        Ok(loom::sync::RwLock::new(v))
    }
    // A poisoned lock only follows a panic in another model thread; loom
    // reports that panic itself, so take the data and carry on.
    pub fn spin_lock<T>(m: &SpinInner<T>) -> SpinGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn new_mutex<T>(v: T, c: &'static LockClass) -> Result<MutexInner<T>> {
        new_spin(v, c)
    }
    pub fn mutex_lock<T>(m: &MutexInner<T>) -> MutexGuard<'_, T> {
        spin_lock(m)
    }
    pub fn read<T>(m: &RwInner<T>) -> ReadGuard<'_, T> {
        m.read().unwrap_or_else(|e| e.into_inner())
    }
    pub fn write<T>(m: &RwInner<T>) -> WriteGuard<'_, T> {
        m.write().unwrap_or_else(|e| e.into_inner())
    }
    pub fn try_read<T>(m: &RwInner<T>) -> Option<ReadGuard<'_, T>> {
        // Poisoned only after a panic in another model thread (reported
        // by loom itself): treat it as contended.
        m.try_read().ok()
    }
    pub fn try_write<T>(m: &RwInner<T>) -> Option<WriteGuard<'_, T>> {
        m.try_write().ok()
    }
    pub fn sleep_short() {
        loom::thread::yield_now();
    }
}

// The kernel's own locks: `spinlock_t` through the kernel crate's
// `SpinLock`, `struct rw_semaphore` directly (6.12 has no Rust wrapper).
#[cfg(all(kernel, not(loom)))]
#[allow(unsafe_code)]
mod imp {
    use super::LockClass;
    use crate::errno::{Errno, Result};
    use core::cell::UnsafeCell;
    use core::ops::{Deref, DerefMut};
    use kernel::alloc::{flags::GFP_KERNEL, KBox};
    use kernel::bindings;
    use kernel::init::InPlaceInit;
    use kernel::types::Opaque;

    fn kname(c: &'static LockClass) -> &'static kernel::str::CStr {
        // SAFETY: `to_bytes_with_nul` is NUL-terminated with no interior NUL.
        unsafe { kernel::str::CStr::from_bytes_with_nul_unchecked(c.name.to_bytes_with_nul()) }
    }

    pub struct SpinInner<T>(core::pin::Pin<KBox<kernel::sync::SpinLock<T>>>);
    pub type SpinGuard<'a, T> = kernel::sync::lock::Guard<'a, T, kernel::sync::lock::spinlock::SpinLockBackend>;

    impl<T> core::fmt::Debug for SpinInner<T> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str("spinlock_t")
        }
    }

    pub fn new_spin<T>(v: T, c: &'static LockClass) -> Result<SpinInner<T>> {
        KBox::pin_init(kernel::sync::SpinLock::new(v, kname(c), &c.key), GFP_KERNEL)
            .map(SpinInner)
            .map_err(|_| Errno::ENOMEM)
    }
    pub fn spin_lock<T>(m: &SpinInner<T>) -> SpinGuard<'_, T> {
        m.0.lock()
    }

    pub struct MutexInner<T>(core::pin::Pin<KBox<kernel::sync::Mutex<T>>>);
    pub type MutexGuard<'a, T> = kernel::sync::lock::Guard<'a, T, kernel::sync::lock::mutex::MutexBackend>;

    impl<T> core::fmt::Debug for MutexInner<T> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str("mutex")
        }
    }

    pub fn new_mutex<T>(v: T, c: &'static LockClass) -> Result<MutexInner<T>> {
        KBox::pin_init(kernel::sync::Mutex::new(v, kname(c), &c.key), GFP_KERNEL)
            .map(MutexInner)
            .map_err(|_| Errno::ENOMEM)
    }
    pub fn mutex_lock<T>(m: &MutexInner<T>) -> MutexGuard<'_, T> {
        m.0.lock()
    }

    /// The semaphore and its data, boxed: `rw_semaphore` holds a list head
    /// pointing at itself, so it must never move after `__init_rwsem`.
    struct RwCell<T> {
        sem: Opaque<bindings::rw_semaphore>,
        data: UnsafeCell<T>,
    }

    pub struct RwInner<T>(KBox<RwCell<T>>);

    // SAFETY: the data is only reached through guards that hold the
    // semaphore (shared for `&T`, exclusive for `&mut T`), like RwLock.
    unsafe impl<T: Send> Send for RwInner<T> {}
    // SAFETY: as above; readers share `&T`, so `T: Sync` is required.
    unsafe impl<T: Send + Sync> Sync for RwInner<T> {}

    impl<T> core::fmt::Debug for RwInner<T> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str("rw_semaphore")
        }
    }

    pub fn new_rw<T>(v: T, c: &'static LockClass) -> Result<RwInner<T>> {
        let cell = KBox::new(RwCell { sem: Opaque::uninit(), data: UnsafeCell::new(v) }, GFP_KERNEL)
            .map_err(|_| Errno::ENOMEM)?;
        let key = core::ptr::from_ref(&c.key).cast_mut().cast::<bindings::lock_class_key>();
        // SAFETY: `sem` is in its final (heap) place and not yet in use;
        // the name and key are static, as lockdep requires (`LockClassKey`
        // is a transparent wrapper of `lock_class_key`).
        unsafe { bindings::__init_rwsem(cell.sem.get(), c.name.as_ptr().cast(), key) };
        Ok(RwInner(cell))
    }

    pub struct ReadGuard<'a, T>(&'a RwCell<T>);
    pub struct WriteGuard<'a, T>(&'a RwCell<T>);

    pub fn read<T>(m: &RwInner<T>) -> ReadGuard<'_, T> {
        // SAFETY: the semaphore was initialised in `new_rw`.
        unsafe { bindings::down_read(m.0.sem.get()) };
        ReadGuard(&m.0)
    }
    pub fn write<T>(m: &RwInner<T>) -> WriteGuard<'_, T> {
        // SAFETY: as in `read`.
        unsafe { bindings::down_write(m.0.sem.get()) };
        WriteGuard(&m.0)
    }
    pub fn try_read<T>(m: &RwInner<T>) -> Option<ReadGuard<'_, T>> {
        // SAFETY: as in `read`; a guard is made only when the trylock succeeded.
        match unsafe { bindings::down_read_trylock(m.0.sem.get()) } {
            0 => None,
            _ => Some(ReadGuard(&m.0)),
        }
    }
    pub fn try_write<T>(m: &RwInner<T>) -> Option<WriteGuard<'_, T>> {
        // SAFETY: as in `read`; a guard is made only when the trylock succeeded.
        match unsafe { bindings::down_write_trylock(m.0.sem.get()) } {
            0 => None,
            _ => Some(WriteGuard(&m.0)),
        }
    }
    /// `fsleep(1000)` as `__check_for_conflicting_io` (msleep's minimum).
    pub fn sleep_short() {
        // SAFETY: process context (callers may sleep: they hold only rwsems).
        unsafe { bindings::msleep(1) };
    }
    pub fn write_nested<T>(m: &RwInner<T>, subclass: u32) -> WriteGuard<'_, T> {
        // Without lockdep C's down_write_nested is down_write (a macro).
        #[cfg(CONFIG_DEBUG_LOCK_ALLOC)]
        // SAFETY: as in `read`.
        unsafe {
            bindings::down_write_nested(m.0.sem.get(), subclass as core::ffi::c_int)
        };
        #[cfg(not(CONFIG_DEBUG_LOCK_ALLOC))]
        {
            let _ = subclass;
            // SAFETY: as in `read`.
            unsafe { bindings::down_write(m.0.sem.get()) };
        }
        WriteGuard(&m.0)
    }

    impl<T> Deref for ReadGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            // SAFETY: held shared: no writer exists.
            unsafe { &*self.0.data.get() }
        }
    }
    impl<T> Drop for ReadGuard<'_, T> {
        fn drop(&mut self) {
            // SAFETY: taken shared by `read`.
            unsafe { bindings::up_read(self.0.sem.get()) }
        }
    }
    impl<T> Deref for WriteGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            // SAFETY: held exclusive.
            unsafe { &*self.0.data.get() }
        }
    }
    impl<T> DerefMut for WriteGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            // SAFETY: held exclusive.
            unsafe { &mut *self.0.data.get() }
        }
    }
    impl<T> Drop for WriteGuard<'_, T> {
        fn drop(&mut self) {
            // SAFETY: taken exclusive by `write`.
            unsafe { bindings::up_write(self.0.sem.get()) }
        }
    }
}

/// lockdep's subclass for a second lock of one class (`SINGLE_DEPTH_NESTING`).
#[cfg(all(kernel, not(loom)))]
const SINGLE_DEPTH_NESTING: u32 = 1;

/// `spinlock_t` protecting a `T`. Never sleep while holding the guard.
#[derive(Debug)]
pub struct SpinLock<T>(imp::SpinInner<T>);

/// Guard of a [`SpinLock`].
pub type SpinLockGuard<'a, T> = imp::SpinGuard<'a, T>;

impl<T> SpinLock<T> {
    /// `spin_lock_init`. Fallible because the kernel backend must give the
    /// C lock a stable (allocated) address.
    pub fn new(v: T, class: &'static LockClass) -> Result<Self> {
        imp::new_spin(v, class).map(SpinLock)
    }
    /// `spin_lock`.
    pub fn lock(&self) -> SpinLockGuard<'_, T> {
        imp::spin_lock(&self.0)
    }
}

/// `struct mutex` protecting a `T`: a sleeping lock only ever taken
/// exclusively (it may be held across I/O; never under a [`SpinLock`]).
#[derive(Debug)]
pub struct Mutex<T>(imp::MutexInner<T>);

/// Guard of a [`Mutex`].
pub type MutexGuard<'a, T> = imp::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    /// `mutex_init`. Fallible for the same reason as [`SpinLock::new`].
    pub fn new(v: T, class: &'static LockClass) -> Result<Self> {
        imp::new_mutex(v, class).map(Mutex)
    }
    /// `mutex_lock`.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        imp::mutex_lock(&self.0)
    }
}

/// A value set once at start and read without a lock afterwards (the
/// platform's logger, its `dm_table_event`). Statics are outside loom's
/// models, so every backend uses the same cell.
pub use spin::Once;

/// `struct rw_semaphore` protecting a `T`: sleeping reader-writer lock.
#[derive(Debug)]
pub struct RwSem<T>(imp::RwInner<T>);

/// Shared guard of an [`RwSem`].
pub type RwSemReadGuard<'a, T> = imp::ReadGuard<'a, T>;
/// Exclusive guard of an [`RwSem`].
pub type RwSemWriteGuard<'a, T> = imp::WriteGuard<'a, T>;

impl<T> RwSem<T> {
    /// `init_rwsem`. Fallible for the same reason as [`SpinLock::new`].
    pub fn new(v: T, class: &'static LockClass) -> Result<Self> {
        imp::new_rw(v, class).map(RwSem)
    }
    /// `down_read`.
    pub fn down_read(&self) -> RwSemReadGuard<'_, T> {
        imp::read(&self.0)
    }
    /// `down_write`.
    pub fn down_write(&self) -> RwSemWriteGuard<'_, T> {
        imp::write(&self.0)
    }
    /// `down_read_trylock`: `None` when a writer holds or waits for it.
    /// For paths that must not wait (`map`): they defer the work instead.
    pub fn try_down_read(&self) -> Option<RwSemReadGuard<'_, T>> {
        imp::try_read(&self.0)
    }
    /// `down_write_trylock`.
    pub fn try_down_write(&self) -> Option<RwSemWriteGuard<'_, T>> {
        imp::try_write(&self.0)
    }
    /// `down_write_nested(sem, SINGLE_DEPTH_NESTING)`: a second lock of
    /// this class taken while holding one, always in the same order (a
    /// handover's source, then its destination). Tells lockdep this is not
    /// recursion; elsewhere the same as [`RwSem::down_write`].
    pub fn down_write_nested(&self) -> RwSemWriteGuard<'_, T> {
        #[cfg(all(kernel, not(loom)))]
        return imp::write_nested(&self.0, SINGLE_DEPTH_NESTING);
        #[cfg(not(all(kernel, not(loom))))]
        imp::write(&self.0)
    }
}

/// Sleeps briefly (about a millisecond in the kernel, `fsleep(1000)`), for
/// waits that poll a condition that is almost never true, as
/// `__check_for_conflicting_io` does. Never call it under a [`SpinLock`].
pub fn sleep_short() {
    imp::sleep_short()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn locks_guard_their_data() {
        static S: LockClass = LockClass::new(c"test_spin");
        static R: LockClass = LockClass::new(c"test_rw");
        assert_eq!(S.name(), c"test_spin");
        let s = SpinLock::new(1u32, &S).unwrap();
        *s.lock() += 1;
        assert_eq!(*s.lock(), 2);
        let r = RwSem::new(5u32, &R).unwrap();
        {
            let a = r.down_read();
            let b = r.down_read();
            assert_eq!(*a + *b, 10);
        }
        *r.down_write() = 6;
        assert_eq!(*r.down_read(), 6);
        static M: LockClass = LockClass::new(c"test_mutex");
        let m = Mutex::new(1u32, &M).unwrap();
        *m.lock() += 2;
        assert_eq!(*m.lock(), 3);
        let a = AtomicU32::new(1);
        assert_eq!(a.fetch_sub(1, Ordering::AcqRel), 1);
    }
}
