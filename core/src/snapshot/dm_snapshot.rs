// SPDX-License-Identifier: GPL-2.0-only
//! `struct dm_snapshot`: one snapshot's state and the per-snapshot steps of
//! dm-snap.c (making an exception, invalidating, status). Always used under
//! the snapshot's own lock (`s->lock`), which the driver holds.

use super::DM_MSG_PREFIX;
use crate::emit::{Emitter, StatusType};
use crate::errno::{Errno, Result};
use crate::exception::{Chunk, DmException};
use crate::exception_store::ExceptionStore;
use crate::exception_table::ExceptionTable;
use crate::platform::{ChunkCopier, DmDevice, ReqFlags, SECTOR_SHIFT};

/// One `snapshot` or `snapshot-merge` target's state.
pub struct DmSnapshot<D: DmDevice> {
    pub(crate) origin: D,
    pub(crate) cow: D,
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
    pub(crate) store: ExceptionStore<D, ()>,
    pub(crate) complete: ExceptionTable,
    /// `RUNNING_MERGE`.
    pub(crate) running_merge: bool,
}

impl<D: DmDevice> DmSnapshot<D> {
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
    }

    /// Allocates, fills and commits the exception for origin chunk `chunk`:
    /// `__insert_pending_exception` + `start_copy` (or `start_full_bio` when
    /// `full` holds a whole chunk of new data) + `complete_exception` +
    /// `pending_complete`. The copied data is written before the commit
    /// writes the metadata with PREFLUSH|FUA.
    ///
    /// `Err(ENOSPC)` means nothing was allocated: the caller decides between
    /// overflow and invalidation. Any later failure invalidates.
    pub(crate) fn make_exception(
        &mut self,
        copier: &dyn ChunkCopier,
        chunk: Chunk,
        full: Option<&[u8]>,
    ) -> Result<Chunk> {
        let mut e = DmException::new(chunk, 0);
        self.store.prepare_exception(&mut e).map_err(|_| Errno::ENOSPC)?;
        let cs = self.chunk_size();
        let dest = e.new_chunk.checked_mul(cs).ok_or(Errno::EIO);
        let filled = match (dest, full) {
            (Ok(d), Some(data)) => self.cow.write(d, data, ReqFlags::empty()),
            (Ok(d), None) => {
                let src = chunk << self.chunk_shift();
                // The last chunk of the origin may be short.
                let count = cs.min(self.origin.size_sectors().saturating_sub(src));
                copier.copy(&self.origin, src, &self.cow, d, count)
            }
            (Err(x), _) => Err(x),
        };
        let mut committed = false;
        self.store.commit_exception(&e, filled.is_ok(), (), &mut |(), valid| committed = valid);
        if !committed {
            // pending_complete(success = 0): read/write error.
            self.invalidate(Errno::EIO);
            return Err(Errno::EIO);
        }
        if self.complete.insert(chunk, e.new_chunk).is_err() {
            self.invalidate(Errno::ENOMEM);
            return Err(Errno::EIO);
        }
        Ok(e.new_chunk)
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
