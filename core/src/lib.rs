// SPDX-License-Identifier: GPL-2.0-only
//! dmrs core: the kernel's dm-snapshot and dm-clone structures in `no_std`
//! Rust, shared by the Rust-for-Linux module and the hosted shim.
//!
//! Reading guide (C file → Rust module; core/README.md has the full table):
//! - `device-mapper.h` (`struct target_type`, `map`) → [`dm`]
//! - `dm-exception-store.{c,h}` → [`exception_store`], [`exception`]
//! - `dm-snap-persistent.c` → [`exception_store::persistent`] (`pstore`),
//!   its on-disk structures in [`exception_store::disk`]
//! - `dm-snap-transient.c` → [`exception_store::transient`]
//! - `dm_exception_table` in `dm-snap.c` → [`exception_table`]
//! - `dm-snap.c` → [`snapshot`]
//! - `dm-clone-target.c`, `dm-clone-metadata.c` → [`clone`], over the
//!   persistent-data library in [`pdata`]
//!
//! The platform seam — the only thing a platform implements — is
//! [`platform`] (block I/O, chunk copy), [`sync`] (spinlock, rwsem,
//! atomics), [`mem`] (fallible allocation) and [`log`] (DMERR/DMWARN).
//! Kernel rules hold everywhere: no `std`, fallible allocation only, no
//! panic reachable from disk contents or table arguments.

#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]
// No panic reachable from outside data: the library code has no unwrap,
// expect, panic, unreachable or unchecked indexing (clippy enforces it; CI
// denies warnings).
#![cfg_attr(
    not(test),
    warn(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented,
        clippy::indexing_slicing
    )
)]
// Tests may allocate freely; the kernel rules bind the library code.
#![cfg_attr(test, allow(clippy::disallowed_methods, clippy::disallowed_macros, clippy::disallowed_types))]

#[cfg(not(kernel))]
extern crate alloc;

pub mod args;
pub mod clone;
pub mod dm;
pub mod emit;
pub mod endian;
pub mod errno;
pub mod exception;
pub mod exception_store;
pub mod exception_table;
pub mod log;
pub mod mem;
pub mod pdata;
pub mod platform;
pub mod snapshot;
pub mod sync;

pub use errno::{Errno, Result, TargetError};
