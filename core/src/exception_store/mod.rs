// SPDX-License-Identifier: GPL-2.0-only
//! `dm-exception-store.{c,h}`: the exception store interface the snapshot
//! targets drive, store-type parsing, chunk-size validation, and dispatch to
//! the persistent ([`persistent`], `P`/`PO`) and transient ([`transient`],
//! `N`) implementations.
//!
//! Contract (as the kernel's): `read_metadata` before anything else;
//! `prepare_exception` allocates, `commit_exception` records — commits are
//! never called concurrently with each other, and every prepare is followed
//! by exactly one commit. The caller provides the locking.

pub mod disk;
pub mod persistent;
pub mod transient;

use crate::args::kstrtouint;
use crate::emit::{Emitter, StatusType};
use crate::errno::{Errno, Result, TargetError};
use crate::exception::{Chunk, DmException};
use crate::platform::{BlockDevice, SECTOR_SHIFT};

use persistent::PStore;
use transient::TransientC;

/// `DM_MSG_PREFIX` of dm-exception-store.c.
pub const DM_MSG_PREFIX: &str = "snapshot exception stores";

/// Chunk size and its derived mask and shift (all zero = not set yet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkSize {
    /// In sectors; a power of two.
    pub size: u32,
    /// `size - 1`.
    pub mask: u32,
    /// `log2(size)`.
    pub shift: u32,
}

/// `dm_exception_store_set_chunk_size`: validates `chunk_size` (sectors)
/// against the COW and origin logical block sizes (bytes). The error is the
/// kernel's `ti->error` text; the errno is always `-EINVAL`.
pub fn dm_exception_store_set_chunk_size(
    chunk_size: u32,
    cow_lbs: u32,
    origin_lbs: u32,
) -> core::result::Result<ChunkSize, &'static core::ffi::CStr> {
    if !chunk_size.is_power_of_two() {
        return Err(c"Chunk size is not a power of 2");
    }
    let (c, o) = ((cow_lbs >> SECTOR_SHIFT).max(1), (origin_lbs >> SECTOR_SHIFT).max(1));
    if chunk_size % c != 0 || chunk_size % o != 0 {
        return Err(c"Chunk size is not a multiple of device blocksize");
    }
    if chunk_size > (i32::MAX as u32) >> SECTOR_SHIFT {
        return Err(c"Chunk size is too high");
    }
    Ok(ChunkSize { size: chunk_size, mask: chunk_size - 1, shift: chunk_size.trailing_zeros() })
}

/// The two store types (`P` and `N`, with their long names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// `P` / "persistent".
    Persistent,
    /// `N` / "transient".
    Transient,
}

/// What `read_metadata` found, when it succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metadata {
    /// Exceptions loaded (or a new store initialised): the kernel's 0.
    Loaded,
    /// "Metadata are valid, but snapshot is invalidated": the kernel's 1.
    Invalidated,
}

/// The most recent run of mergeable exceptions (`prepare_merge`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MergeRun {
    /// How many consecutive exceptions end at the last one (at least 1).
    pub nr_consecutive: u32,
    /// Origin chunk of the last exception.
    pub last_old_chunk: Chunk,
    /// COW chunk of the last exception.
    pub last_new_chunk: Chunk,
}

/// What `usage` reports, in sectors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Size of the COW device.
    pub total_sectors: u64,
    /// Data and metadata allocated.
    pub sectors_allocated: u64,
    /// Metadata alone.
    pub metadata_sectors: u64,
}

/// `struct dm_exception_store` without its context: what every store type
/// shares.
pub struct Store<D> {
    /// `P` or `N`.
    pub kind: StoreKind,
    /// Chunk size (may be replaced by the on-disk one in `read_metadata`).
    pub chunk: ChunkSize,
    /// `PO`: userspace understands `Overflow` in the status.
    pub userspace_supports_overflow: bool,
    /// The COW device.
    pub cow: D,
    /// Logical block size of the origin, for chunk-size validation.
    pub origin_lbs: u32,
}

enum Context<C> {
    Persistent(PStore<C>),
    Transient(TransientC),
}

/// An exception store: common part plus the type's context. `C` is what a
/// commit callback is called with (the kernel's `callback_context`).
pub struct ExceptionStore<D, C> {
    store: Store<D>,
    ctx: Context<C>,
}

impl<D, C> ExceptionStore<D, C> {
    /// Exchanges the COW devices of two stores. A handover moves the store
    /// to the destination table, but each table keeps using the COW device
    /// it opened itself (C: `snap_dest->store->snap = snap_dest`): the
    /// source's handle is released when the source table goes.
    pub fn swap_cow(&mut self, other: &mut Self) {
        core::mem::swap(&mut self.store.cow, &mut other.store.cow);
    }

    /// The COW device this store does I/O on.
    pub fn cow(&self) -> &D {
        &self.store.cow
    }
}

fn type_ctr_persistent(options: Option<&str>) -> core::result::Result<bool, TargetError> {
    match options {
        None => Ok(false),
        Some(o) if o.as_bytes().first().map(u8::to_ascii_uppercase) == Some(b'O') => Ok(true),
        Some(o) => {
            crate::dm_err!(persistent::DM_MSG_PREFIX, "Unsupported persistent store option: {}", o);
            Err(TargetError::inval(c"Exception store type constructor failed"))
        }
    }
}

impl<D: BlockDevice, C> ExceptionStore<D, C> {
    /// `dm_exception_store_create`: parses `<P|PO|N> <chunk_size>` from
    /// `argv` (the rest is ignored) and builds the store over `cow`.
    /// Returns the store and the number of arguments used (2).
    pub fn create(argv: &[&str], cow: D, origin_lbs: u32) -> core::result::Result<(Self, usize), TargetError> {
        let (Some(ty), Some(chunk_arg)) = (argv.first(), argv.get(1)) else {
            return Err(TargetError::inval(c"Insufficient exception store arguments"));
        };
        let kind = match ty.as_bytes().first().map(u8::to_ascii_uppercase) {
            Some(b'P') => StoreKind::Persistent,
            Some(b'N') => StoreKind::Transient,
            _ => return Err(TargetError::inval(c"Exception store type is not P or N")),
        };
        let Some(chunk_size) = kstrtouint(chunk_arg) else {
            return Err(TargetError::inval(c"Invalid chunk size"));
        };
        let chunk = if chunk_size == 0 {
            ChunkSize::default()
        } else {
            dm_exception_store_set_chunk_size(chunk_size, cow.logical_block_size(), origin_lbs)
                .map_err(TargetError::inval)?
        };
        let options = ty.get(1..).filter(|o| !o.is_empty());
        let (ctx, overflow) = match kind {
            StoreKind::Persistent => (Context::Persistent(PStore::new()), type_ctr_persistent(options)?),
            StoreKind::Transient => (Context::Transient(TransientC::default()), false),
        };
        let store = Store { kind, chunk, userspace_supports_overflow: overflow, cow, origin_lbs };
        Ok((ExceptionStore { store, ctx }, 2))
    }

    /// The shared part (chunk size, COW device, type).
    pub fn store(&self) -> &Store<D> {
        &self.store
    }

    /// Chunk size in sectors.
    pub fn chunk_size(&self) -> u32 {
        self.store.chunk.size
    }

    /// `log2(chunk_size)`.
    pub fn chunk_shift(&self) -> u32 {
        self.store.chunk.shift
    }

    /// A handover destination does not read metadata: its chunk size is
    /// set to zero "to ensure it's ignored" until the handover.
    pub fn clear_chunk_size(&mut self) {
        self.store.chunk = ChunkSize::default();
    }

    /// The transient store's next free sector (`None` for persistent).
    pub fn transient_next_free(&self) -> Option<u64> {
        match &self.ctx {
            Context::Transient(tc) => Some(tc.next_free),
            Context::Persistent(_) => None,
        }
    }

    /// Restores a transient store's allocation point (a hosted process
    /// restarting with the in-memory state the kernel would still have).
    pub fn set_transient_next_free(&mut self, next_free: u64) {
        if let Context::Transient(tc) = &mut self.ctx {
            tc.next_free = next_free;
        }
    }

    /// `PO`: userspace understands `Overflow`.
    pub fn userspace_supports_overflow(&self) -> bool {
        self.store.userspace_supports_overflow
    }

    /// Handover keeps the destination table's `P`/`PO` choice.
    pub fn set_userspace_supports_overflow(&mut self, v: bool) {
        self.store.userspace_supports_overflow = v;
    }

    /// The persistent context, for inspection.
    pub fn pstore(&self) -> Option<&PStore<C>> {
        match &self.ctx {
            Context::Persistent(ps) => Some(ps),
            Context::Transient(_) => None,
        }
    }

    /// True when the type implements `prepare_merge`/`commit_merge`
    /// (only persistent stores can be merged).
    pub fn supports_merge(&self) -> bool {
        matches!(self.ctx, Context::Persistent(_))
    }

    /// `read_metadata`: loads existing exceptions, reporting each through
    /// `callback(old, new)`; initialises a new store.
    pub fn read_metadata(&mut self, callback: &mut dyn FnMut(Chunk, Chunk) -> Result<()>) -> Result<Metadata> {
        match &mut self.ctx {
            Context::Persistent(ps) => ps.read_metadata(&mut self.store, callback),
            Context::Transient(_) => Ok(Metadata::Loaded),
        }
    }

    /// `prepare_exception`: picks the COW chunk for `e` (sets `new_chunk`).
    pub fn prepare_exception(&mut self, e: &mut DmException) -> Result<()> {
        match &mut self.ctx {
            Context::Persistent(ps) => ps.prepare_exception(&self.store, e),
            Context::Transient(tc) => tc.prepare_exception(&self.store, e),
        }
    }

    /// `commit_exception`: records `e`. `done(context, valid)` is called —
    /// now or with a later commit's batch — once the record is durable (or
    /// failed: `valid` false).
    pub fn commit_exception(&mut self, e: &DmException, valid: bool, context: C, done: &mut dyn FnMut(C, bool)) {
        match &mut self.ctx {
            Context::Persistent(ps) => ps.commit_exception(&self.store, e, valid, context, done),
            Context::Transient(_) => done(context, valid),
        }
    }

    /// `prepare_merge`: `None` when nothing is left to merge.
    pub fn prepare_merge(&mut self) -> Result<Option<MergeRun>> {
        match &mut self.ctx {
            Context::Persistent(ps) => ps.prepare_merge(&self.store),
            Context::Transient(_) => Err(Errno::EOPNOTSUPP),
        }
    }

    /// `commit_merge`: forgets the last `nr_merged` exceptions on disk.
    pub fn commit_merge(&mut self, nr_merged: u32) -> Result<()> {
        match &mut self.ctx {
            Context::Persistent(ps) => ps.commit_merge(&self.store, nr_merged),
            Context::Transient(_) => Err(Errno::EOPNOTSUPP),
        }
    }

    /// `drop_snapshot`: marks the store invalid (on disk for `P`).
    pub fn drop_snapshot(&mut self) {
        if let Context::Persistent(ps) = &mut self.ctx {
            ps.drop_snapshot(&self.store)
        }
    }

    /// `usage`.
    pub fn usage(&self) -> Usage {
        match &self.ctx {
            Context::Persistent(ps) => ps.usage(&self.store),
            Context::Transient(tc) => tc.usage(&self.store),
        }
    }

    /// `status`: the store's part of the status line (` P 16`, ` PO 16`,
    /// ` N 16` for TABLE; nothing for INFO and IMA).
    pub fn status(&self, ty: StatusType, out: &mut Emitter<'_>) {
        if ty != StatusType::Table {
            return;
        }
        let name = match (self.store.kind, self.store.userspace_supports_overflow) {
            (StoreKind::Transient, _) => "N",
            (StoreKind::Persistent, false) => "P",
            (StoreKind::Persistent, true) => "PO",
        };
        crate::dmemit!(out, " {} {}", name, self.store.chunk.size);
    }
}

#[cfg(test)]
mod tests;
