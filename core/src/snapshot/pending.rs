// SPDX-License-Identifier: GPL-2.0-only
//! Pending exceptions (`struct dm_snap_pending_exception`, the `pending`
//! exception table and the `pending_pool` mempool of dm-snap.c).
//!
//! A chunk whose copy is allocated but not yet committed has a pending
//! exception. Bios that must wait for it are queued on it — origin writes
//! (`origin_bios`, retried through `do_origin` once it completes) and
//! snapshot writes already pointed at the new COW chunk (`snapshot_bios`,
//! issued once it completes). Each gets a sequence number when allocated;
//! copies may finish in any order but are committed in that order
//! (`exception_complete_sequence`, the kernel's `out_of_order_tree`).
//!
//! The pool is allocated when the snapshot is constructed, so `map` never
//! allocates; when every slot is in use, a bio is queued on an exception
//! in flight and retried when it completes (the kernel's mempool would
//! make `map` wait for a free one instead).

use crate::exception::{Chunk, DmException};
use crate::mem::TryVec;
use crate::Result;

/// Pending exceptions per snapshot (dm-snap.c's `MIN_IOS`).
#[cfg(not(loom))]
pub const PENDING_POOL: usize = 256;
/// Under loom: small, every state is explored.
#[cfg(loom)]
pub const PENDING_POOL: usize = 4;

/// One `dm_snap_pending_exception`.
pub struct PendingException<L> {
    /// Origin chunk → the COW chunk `prepare_exception` chose.
    pub e: DmException,
    /// `exception_sequence`: allocation order, which is commit order.
    pub sequence: u64,
    /// The copy was handed to the copier.
    pub started: bool,
    /// The copy finished (`Some(ok)`) and waits for its turn to commit.
    pub copied: Option<bool>,
    /// The store's commit called back: `Some(valid)`.
    pub committed: Option<bool>,
    /// Origin writes waiting for this exception (retried when it completes).
    pub origin_bios: L,
    /// Snapshot writes to the new chunk (issued when it completes).
    pub snapshot_bios: L,
}

/// The pending table and its pool: slot numbers are stable while an
/// exception is pending (they are the copy's and the commit's context).
pub struct PendingTable<L> {
    slots: TryVec<Option<PendingException<L>>>,
    in_use: usize,
}

impl<L: Default> PendingTable<L> {
    /// A pool of [`PENDING_POOL`] free slots (`mempool_init`).
    pub fn new() -> Result<Self> {
        let mut slots = TryVec::try_with_capacity(PENDING_POOL)?;
        for _ in 0..PENDING_POOL {
            slots.try_push(None)?;
        }
        Ok(PendingTable { slots, in_use: 0 })
    }

    /// Exceptions in flight (`pending_exceptions_count`).
    pub fn count(&self) -> usize {
        self.in_use
    }

    /// `__lookup_pending_exception`: the slot of `chunk`'s pending exception.
    pub fn lookup(&self, chunk: Chunk) -> Option<u32> {
        self.slots.iter().position(|s| matches!(s, Some(p) if p.e.old_chunk == chunk)).map(|i| i as u32)
    }

    /// The pending exception in `slot`.
    pub fn get(&self, slot: u32) -> Option<&PendingException<L>> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    /// The pending exception in `slot`, to change it.
    pub fn get_mut(&mut self, slot: u32) -> Option<&mut PendingException<L>> {
        self.slots.get_mut(slot as usize).and_then(Option::as_mut)
    }

    /// `__insert_pending_exception` once the store prepared `e`: takes a
    /// free slot. `None` when the pool is exhausted.
    pub fn insert(&mut self, e: DmException, sequence: u64) -> Option<u32> {
        let i = self.slots.iter().position(Option::is_none)?;
        let slot = self.slots.get_mut(i)?;
        *slot = Some(PendingException {
            e,
            sequence,
            started: false,
            copied: None,
            committed: None,
            origin_bios: L::default(),
            snapshot_bios: L::default(),
        });
        self.in_use += 1;
        Some(i as u32)
    }

    /// True when no slot is free.
    pub fn is_full(&self) -> bool {
        self.in_use >= self.slots.len()
    }

    /// `dm_remove_exception` + `free_pending_exception`.
    pub fn remove(&mut self, slot: u32) -> Option<PendingException<L>> {
        let p = self.slots.get_mut(slot as usize)?.take()?;
        self.in_use -= 1;
        Some(p)
    }

    /// The copy not yet started with the lowest sequence: copies are
    /// started in allocation order.
    pub fn next_unstarted(&self) -> Option<u32> {
        self.first_by_sequence(|p| !p.started)
    }

    /// The exception with sequence `seq` if its copy has finished.
    pub fn copied_with_sequence(&self, seq: u64) -> Option<u32> {
        self.first_by_sequence(|p| p.sequence == seq && p.copied.is_some())
    }

    /// Exceptions whose commit called back, lowest sequence first.
    pub fn next_committed(&self) -> Option<u32> {
        self.first_by_sequence(|p| p.committed.is_some())
    }

    /// Any pending exception that has started (to park a bio on when the
    /// pool is exhausted).
    pub fn any_started(&self) -> Option<u32> {
        self.first_by_sequence(|p| p.started)
    }

    fn first_by_sequence(&self, f: impl Fn(&PendingException<L>) -> bool) -> Option<u32> {
        let mut best: Option<(u64, u32)> = None;
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(p) = s {
                if f(p) && best.is_none_or(|(seq, _)| p.sequence < seq) {
                    best = Some((p.sequence, i as u32));
                }
            }
        }
        best.map(|(_, i)| i)
    }
}
