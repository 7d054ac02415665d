// SPDX-License-Identifier: GPL-2.0-only
//! `struct dm_snapshot`: one snapshot's state and the per-snapshot steps of
//! dm-snap.c (making an exception, invalidating, status). Always used under
//! the snapshot's own lock (`s->lock`), which the driver holds.

use super::pending::PendingTable;
use super::DM_MSG_PREFIX;
use crate::dm::IoPlatform;
use crate::emit::{Emitter, StatusType};
use crate::errno::Errno;
use crate::exception_store::ExceptionStore;
use crate::exception_table::ExceptionTable;
use crate::platform::{DmDevice, SECTOR_SHIFT};

/// One `snapshot` or `snapshot-merge` target's state.
pub struct DmSnapshot<P: IoPlatform> {
    pub(crate) origin: P::Dev,
    pub(crate) cow: P::Dev,
    /// The target is `snapshot-merge`.
    pub(crate) is_merge: bool,
    /// Target length in sectors (`dm_table_get_size`).
    pub(crate) ti_len: u64,
    /// "You can't use a snapshot if this is 0 (e.g. if full)."
    pub(crate) valid: bool,
    /// A snapshot write could not allocate (`PO`): further writes fail.
    pub(crate) snapshot_overflowed: bool,
    /// Origin writes trigger exceptions only once resumed.
    pub(crate) active: bool,
    pub(crate) merge_failed: bool,
    /// The table is suspended (`dm_suspended(ti)`), set by the platform.
    pub(crate) suspended: bool,
    pub(crate) discard_zeroes_cow: bool,
    pub(crate) discard_passdown_origin: bool,
    /// The commit context is the pending exception's slot.
    pub(crate) store: ExceptionStore<P::Dev, u32>,
    pub(crate) complete: ExceptionTable,
    /// Exceptions being made (`pending`, `pending_pool`).
    pub(crate) pending: PendingTable<P::BioList>,
    /// `exception_start_sequence`: the next pending exception's number.
    pub(crate) exception_start_sequence: u64,
    /// `exception_complete_sequence`: the next one to commit.
    pub(crate) exception_complete_sequence: u64,
    /// `first_merging_chunk`, `num_merging_chunks`: chunks a merge step is
    /// copying back to the origin; writes to them wait.
    pub(crate) merging: Option<(u64, u64)>,
    /// `RUNNING_MERGE`.
    pub(crate) running_merge: bool,
    /// Events this target raised (`dm_table_event`).
    pub(crate) events: u64,
    /// The platform's handle of this target's table, for its events.
    pub(crate) event_handle: u64,
}

impl<P: IoPlatform> DmSnapshot<P> {
    pub(crate) fn chunk_size(&self) -> u64 {
        self.store.chunk_size() as u64
    }

    pub(crate) fn chunk_shift(&self) -> u32 {
        self.store.chunk_shift()
    }

    /// `__invalidate_snapshot`: the snapshot is unusable from now on, and
    /// says so on disk (`drop_snapshot`).
    pub(crate) fn invalidate(&mut self, err: Errno) {
        if !self.valid {
            return;
        }
        if err == Errno::EIO {
            crate::dm_err!(DM_MSG_PREFIX, "Invalidating snapshot: Error reading/writing.");
        } else if err == Errno::ENOMEM {
            crate::dm_err!(DM_MSG_PREFIX, "Invalidating snapshot: Unable to allocate exception.");
        }
        self.store.drop_snapshot();
        self.valid = false;
        self.events += 1;
        crate::dm::table_event(self.event_handle);
    }

    /// The store says the snapshot was invalidated before: loaded invalid.
    pub(crate) fn loaded_invalid(&mut self) {
        self.valid = false;
        crate::dm_warn!(DM_MSG_PREFIX, "Snapshot is marked invalid.");
    }

    /// A handover's destination is cancelled with its source
    /// (`snapshot_dtr` of the source): it stays invalid.
    pub(crate) fn cancel_handover(&mut self) {
        self.valid = false;
    }

    /// `snapshot_dtr`'s first steps: no merge, and origin writes make no
    /// more exceptions in it.
    pub(crate) fn deactivate(&mut self) {
        self.running_merge = false;
        self.active = false;
    }

    /// `snapshot_resume`: active (origin writes make exceptions), resumed,
    /// and a merge target merges.
    pub(crate) fn activate(&mut self) {
        self.active = true;
        self.suspended = false;
        if self.is_merge {
            self.running_merge = true;
        }
    }

    /// A `PO` store ran out of room: further snapshot writes fail, the
    /// snapshot stays valid for reads.
    pub(crate) fn overflow(&mut self) {
        if self.valid && !self.snapshot_overflowed {
            self.snapshot_overflowed = true;
            crate::dm_err!(DM_MSG_PREFIX, "Snapshot overflowed: Unable to allocate exception.");
        }
    }

    /// A merge step takes `n` chunks from `first`: writes to them wait.
    pub(crate) fn start_merging(&mut self, first: u64, n: u64) {
        self.merging = Some((first, n));
    }

    /// The merge step's chunks are back in the origin.
    pub(crate) fn end_merging(&mut self) {
        self.merging = None;
    }

    /// The merge stops (`failed`: `merge_failed`, shown in the status).
    pub(crate) fn stop_merge(&mut self, failed: bool) {
        if failed {
            self.merge_failed = true;
        }
        self.running_merge = false;
        self.merging = None;
    }

    /// `__handover_exceptions(src, self)`: this destination takes the
    /// source's exception table and store (keeping its own table's `PO`
    /// choice) and its state; the source becomes invalid in memory only.
    pub(crate) fn handover_from(&mut self, src: &mut DmSnapshot<P>) {
        core::mem::swap(&mut src.complete, &mut self.complete);
        core::mem::swap(&mut src.store, &mut self.store);
        // Each side goes on using the COW device its own table opened.
        src.store.swap_cow(&mut self.store);
        let po = src.store.userspace_supports_overflow();
        self.store.set_userspace_supports_overflow(po);
        self.valid = src.valid;
        self.snapshot_overflowed = src.snapshot_overflowed;
        src.valid = false;
    }

    /// The COW sector holding origin `sector` if its chunk is remapped.
    pub(crate) fn remap(&self, sector: u64) -> Option<u64> {
        let chunk = sector >> self.chunk_shift();
        let e = self.complete.lookup(chunk)?;
        let mask = self.chunk_size() - 1;
        Some((e.remap(chunk) << self.chunk_shift()) + (sector & mask))
    }

    /// `snapshot_status`.
    pub(crate) fn status(&self, ty: StatusType, out: &mut Emitter<'_>) {
        match ty {
            StatusType::Info => {
                if !self.valid {
                    crate::dmemit!(out, "Invalid");
                } else if self.merge_failed {
                    crate::dmemit!(out, "Merge failed");
                } else if self.snapshot_overflowed {
                    crate::dmemit!(out, "Overflow");
                } else {
                    let u = self.store.usage();
                    crate::dmemit!(out, "{}/{} {}", u.sectors_allocated, u.total_sectors, u.metadata_sectors);
                }
            }
            StatusType::Table => {
                crate::dmemit!(out, "{} {}", self.origin.name(), self.cow.name());
                self.store.status(ty, out);
                let n = self.discard_zeroes_cow as u32 + self.discard_passdown_origin as u32;
                if n > 0 {
                    crate::dmemit!(out, " {}", n);
                    if self.discard_zeroes_cow {
                        crate::dmemit!(out, " discard_zeroes_cow");
                    }
                    if self.discard_passdown_origin {
                        crate::dmemit!(out, " discard_passdown_origin");
                    }
                }
            }
            StatusType::Ima => {
                let yn = |b: bool| if b { 'y' } else { 'n' };
                crate::dmemit!(
                    out,
                    "target_name={},target_version={}.{}.{},snap_origin_name={},snap_cow_name={},snap_valid={},snap_merge_failed={},snapshot_overflowed={};",
                    if self.is_merge { "snapshot-merge" } else { "snapshot" },
                    if self.is_merge { super::MERGE_VERSION[0] } else { super::SNAPSHOT_VERSION[0] },
                    if self.is_merge { super::MERGE_VERSION[1] } else { super::SNAPSHOT_VERSION[1] },
                    if self.is_merge { super::MERGE_VERSION[2] } else { super::SNAPSHOT_VERSION[2] },
                    self.origin.name(),
                    self.cow.name(),
                    yn(self.valid),
                    yn(self.merge_failed),
                    yn(self.snapshot_overflowed)
                );
            }
        }
    }

    /// Bytes in one chunk.
    pub(crate) fn chunk_bytes(&self) -> usize {
        (self.chunk_size() as usize) << SECTOR_SHIFT
    }
}
