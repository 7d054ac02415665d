// SPDX-License-Identifier: GPL-2.0-only
//! The allocation seam: a vector whose every allocation is fallible.
//!
//! The kernel has no infallible allocation, and 6.12's `kernel::alloc::KVec`
//! offers only `push(v, flags) -> Result`, `with_capacity`, `reserve`,
//! `extend_from_slice`, `from_elem` and slices. [`TryVec`] is exactly that
//! surface plus the few removals the core needs, so the module build can
//! back it with `KVVec` (see core/README.md) while cargo builds back it with
//! `alloc::vec::Vec`. Nothing else in the core allocates.
//!
//! Allocation failure is [`Errno::ENOMEM`], never an abort.

// This is the one file allowed to call the infallible `Vec` methods: each
// call below runs only after `try_reserve` made room, so none can allocate.
#![allow(clippy::disallowed_methods)]

use crate::errno::{Errno, Result};
use core::ops::{Deref, DerefMut};

use imp::Vec;

// One backend per platform, as in `sync.rs`: the vector and the few
// operations whose signatures differ.
#[cfg(not(kernel))]
mod imp {
    use alloc::collections::TryReserveError;
    pub use alloc::vec::Vec;

    pub fn reserve<T>(v: &mut Vec<T>, n: usize) -> Result<(), TryReserveError> {
        v.try_reserve(n)
    }
    pub fn reserve_exact<T>(v: &mut Vec<T>, n: usize) -> Result<(), TryReserveError> {
        v.try_reserve_exact(n)
    }
    /// The caller made room first.
    pub fn push_in_capacity<T>(v: &mut Vec<T>, x: T) {
        v.push(x)
    }
    pub fn pop<T>(v: &mut Vec<T>) -> Option<T> {
        v.pop()
    }
    pub fn from_elem<T: Clone>(x: T, n: usize) -> Result<Vec<T>, TryReserveError> {
        let mut v = Vec::new();
        v.try_reserve_exact(n)?;
        v.resize(n, x);
        Ok(v)
    }
    pub fn extend_from_slice<T: Clone>(v: &mut Vec<T>, s: &[T]) -> Result<(), TryReserveError> {
        v.try_reserve(s.len())?;
        v.extend_from_slice(s);
        Ok(())
    }
}

// `kvmalloc`-backed: large tables fall back to vmalloc like the C code's
// `kvzalloc`/`dm_vcalloc`. Every call passes GFP_KERNEL: the core never
// allocates under a spinlock (see `push_within_capacity`).
#[cfg(kernel)]
#[allow(unsafe_code)]
mod imp {
    use kernel::alloc::flags::GFP_KERNEL;
    use kernel::alloc::AllocError;
    pub type Vec<T> = kernel::alloc::KVVec<T>;

    pub fn reserve<T>(v: &mut Vec<T>, n: usize) -> Result<(), AllocError> {
        v.reserve(n, GFP_KERNEL)
    }
    /// `KVVec::reserve` allocates exactly what is asked for.
    pub fn reserve_exact<T>(v: &mut Vec<T>, n: usize) -> Result<(), AllocError> {
        v.reserve(n, GFP_KERNEL)
    }
    /// The caller made room first: cannot fail or allocate.
    pub fn push_in_capacity<T>(v: &mut Vec<T>, x: T) {
        let _ = v.push(x, GFP_KERNEL);
    }
    /// 6.12's KVec has no `pop`: the one unsafe step, kept to this module.
    pub fn pop<T>(v: &mut Vec<T>) -> Option<T> {
        let n = v.len().checked_sub(1)?;
        // SAFETY: element `n` is initialised; shrinking the length first
        // hands its ownership to the `read` below, so it is dropped once.
        unsafe {
            v.set_len(n);
            Some(core::ptr::read(v.as_ptr().add(n)))
        }
    }
    pub fn from_elem<T: Clone>(x: T, n: usize) -> Result<Vec<T>, AllocError> {
        Vec::from_elem(x, n, GFP_KERNEL)
    }
    pub fn extend_from_slice<T: Clone>(v: &mut Vec<T>, s: &[T]) -> Result<(), AllocError> {
        v.extend_from_slice(s, GFP_KERNEL)
    }
}

/// A growable array with fallible allocation only.
#[derive(Debug, PartialEq, Eq)]
pub struct TryVec<T>(Vec<T>);

impl<T> Default for TryVec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> TryVec<T> {
    /// An empty vector; does not allocate.
    pub const fn new() -> Self {
        TryVec(Vec::new())
    }

    /// An empty vector with room for `n` elements.
    pub fn try_with_capacity(n: usize) -> Result<Self> {
        let mut v = Self::new();
        v.try_reserve_exact(n)?;
        Ok(v)
    }

    /// Makes room for `additional` more elements.
    pub fn try_reserve(&mut self, additional: usize) -> Result<()> {
        imp::reserve(&mut self.0, additional).map_err(|_| Errno::ENOMEM)
    }

    /// Makes room for exactly `additional` more elements.
    pub fn try_reserve_exact(&mut self, additional: usize) -> Result<()> {
        imp::reserve_exact(&mut self.0, additional).map_err(|_| Errno::ENOMEM)
    }

    /// Appends, allocating if needed.
    pub fn try_push(&mut self, v: T) -> Result<()> {
        self.try_reserve(1)?;
        self.push_within_capacity(v).map_err(|_| Errno::ENOMEM)
    }

    /// Appends only if there is spare capacity: never allocates, so it is
    /// usable where sleeping is not allowed. Gives the value back when full.
    pub fn push_within_capacity(&mut self, v: T) -> core::result::Result<(), T> {
        if self.0.len() < self.0.capacity() {
            imp::push_in_capacity(&mut self.0, v);
            Ok(())
        } else {
            Err(v)
        }
    }

    /// Inserts at `idx` (clamped to the length), shifting the tail.
    pub fn try_insert(&mut self, idx: usize, v: T) -> Result<()> {
        let idx = idx.min(self.0.len());
        self.try_push(v)?;
        if let Some(tail) = self.0.get_mut(idx..) {
            tail.rotate_right(1);
        }
        Ok(())
    }

    /// Removes and returns the element at `idx`, shifting the tail.
    pub fn remove(&mut self, idx: usize) -> Option<T> {
        if idx < self.0.len() {
            if let Some(tail) = self.0.get_mut(idx..) {
                tail.rotate_left(1);
            }
            self.pop()
        } else {
            None
        }
    }

    /// Removes the last element.
    pub fn pop(&mut self) -> Option<T> {
        imp::pop(&mut self.0)
    }

    /// Shortens to `len` elements.
    pub fn truncate(&mut self, len: usize) {
        while self.0.len() > len {
            drop(self.pop());
        }
    }

    /// Removes every element, keeping the allocation.
    pub fn clear(&mut self) {
        self.truncate(0)
    }

    /// Passes every element to `f` in order and leaves the vector empty,
    /// keeping its allocation (used to run batched callbacks).
    pub fn drain_each(&mut self, mut f: impl FnMut(T)) {
        // In order: reverse, then take from the end.
        self.0.reverse();
        while let Some(v) = self.pop() {
            f(v)
        }
    }

    /// Number of elements that fit without allocating.
    pub fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

impl<T: Clone> TryVec<T> {
    /// `n` copies of `v`.
    pub fn try_from_elem(v: T, n: usize) -> Result<Self> {
        imp::from_elem(v, n).map(TryVec).map_err(|_| Errno::ENOMEM)
    }

    /// Appends a copy of every element of `s`.
    pub fn try_extend_from_slice(&mut self, s: &[T]) -> Result<()> {
        imp::extend_from_slice(&mut self.0, s).map_err(|_| Errno::ENOMEM)
    }
}

impl<T> Deref for TryVec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T> DerefMut for TryVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

/// A zero-filled byte buffer of `len` bytes (`vzalloc`).
pub fn try_zeroed(len: usize) -> Result<TryVec<u8>> {
    TryVec::try_from_elem(0u8, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallible_growth_and_removal() {
        let mut v = TryVec::try_with_capacity(2).unwrap();
        v.try_push(1).unwrap();
        assert_eq!(v.push_within_capacity(2), Ok(()));
        assert_eq!(v.push_within_capacity(3), Err(3));
        v.try_insert(0, 0).unwrap();
        assert_eq!(&v[..], &[0, 1, 2]);
        assert_eq!(v.remove(1), Some(1));
        assert_eq!(v.remove(9), None);
        let mut seen = 0;
        v.drain_each(|x| seen += x);
        assert_eq!((seen, v.len()), (2, 0));
    }

    #[test]
    fn impossible_allocation_is_enomem_not_abort() {
        let r = TryVec::<u64>::try_with_capacity(usize::MAX / 4);
        assert_eq!(r.err(), Some(Errno::ENOMEM));
        assert_eq!(try_zeroed(isize::MAX as usize).err(), Some(Errno::ENOMEM));
    }
}
