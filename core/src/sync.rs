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

#[cfg(not(loom))]
pub use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

#[cfg(not(loom))]
mod imp {
    pub type SpinInner<T> = spin::Mutex<T>;
    pub type SpinGuard<'a, T> = spin::MutexGuard<'a, T>;
    pub type RwInner<T> = spin::RwLock<T>;
    pub type ReadGuard<'a, T> = spin::RwLockReadGuard<'a, T>;
    pub type WriteGuard<'a, T> = spin::RwLockWriteGuard<'a, T>;

    pub fn spin_lock<T>(m: &SpinInner<T>) -> SpinGuard<'_, T> {
        m.lock()
    }
    pub fn read<T>(m: &RwInner<T>) -> ReadGuard<'_, T> {
        m.read()
    }
    pub fn write<T>(m: &RwInner<T>) -> WriteGuard<'_, T> {
        m.write()
    }
}

#[cfg(loom)]
mod imp {
    pub type SpinInner<T> = loom::sync::Mutex<T>;
    pub type SpinGuard<'a, T> = loom::sync::MutexGuard<'a, T>;
    pub type RwInner<T> = loom::sync::RwLock<T>;
    pub type ReadGuard<'a, T> = loom::sync::RwLockReadGuard<'a, T>;
    pub type WriteGuard<'a, T> = loom::sync::RwLockWriteGuard<'a, T>;

    // A poisoned lock only follows a panic in another model thread; loom
    // reports that panic itself, so take the data and carry on.
    pub fn spin_lock<T>(m: &SpinInner<T>) -> SpinGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn read<T>(m: &RwInner<T>) -> ReadGuard<'_, T> {
        m.read().unwrap_or_else(|e| e.into_inner())
    }
    pub fn write<T>(m: &RwInner<T>) -> WriteGuard<'_, T> {
        m.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// `spinlock_t` protecting a `T`. Never sleep while holding the guard.
#[derive(Debug)]
pub struct SpinLock<T>(imp::SpinInner<T>);

/// Guard of a [`SpinLock`].
pub type SpinLockGuard<'a, T> = imp::SpinGuard<'a, T>;

impl<T> SpinLock<T> {
    /// `spin_lock_init`. Fallible because the kernel backend must give the
    /// C lock a stable (allocated) address.
    pub fn new(v: T) -> Result<Self> {
        Ok(SpinLock(imp::SpinInner::new(v)))
    }
    /// `spin_lock`.
    pub fn lock(&self) -> SpinLockGuard<'_, T> {
        imp::spin_lock(&self.0)
    }
    /// Exclusive access without locking.
    pub fn get_mut(&mut self) -> &mut T {
        #[cfg(not(loom))]
        {
            self.0.get_mut()
        }
        #[cfg(loom)]
        {
            self.0.get_mut().unwrap_or_else(|e| e.into_inner())
        }
    }
}

/// `struct rw_semaphore` protecting a `T`: sleeping reader-writer lock.
#[derive(Debug)]
pub struct RwSem<T>(imp::RwInner<T>);

/// Shared guard of an [`RwSem`].
pub type RwSemReadGuard<'a, T> = imp::ReadGuard<'a, T>;
/// Exclusive guard of an [`RwSem`].
pub type RwSemWriteGuard<'a, T> = imp::WriteGuard<'a, T>;

impl<T> RwSem<T> {
    /// `init_rwsem`. Fallible for the same reason as [`SpinLock::new`].
    pub fn new(v: T) -> Result<Self> {
        Ok(RwSem(imp::RwInner::new(v)))
    }
    /// `down_read`.
    pub fn down_read(&self) -> RwSemReadGuard<'_, T> {
        imp::read(&self.0)
    }
    /// `down_write`.
    pub fn down_write(&self) -> RwSemWriteGuard<'_, T> {
        imp::write(&self.0)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn locks_guard_their_data() {
        let s = SpinLock::new(1u32).unwrap();
        *s.lock() += 1;
        assert_eq!(*s.lock(), 2);
        let r = RwSem::new(5u32).unwrap();
        {
            let a = r.down_read();
            let b = r.down_read();
            assert_eq!(*a + *b, 10);
        }
        *r.down_write() = 6;
        assert_eq!(*r.down_read(), 6);
        let a = AtomicU32::new(1);
        assert_eq!(a.fetch_sub(1, Ordering::AcqRel), 1);
    }
}
