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

/// Exceptions made together (one metadata write for them): 16 chunks, a
/// 64 KiB write with 4 KiB chunks, kept small as it lives on the stack.
pub(crate) const EXCEPTION_BATCH: usize = 16;

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

    /// Allocates, fills and commits the exception for origin chunk `chunk`
    /// (`make_exceptions` with one chunk); `full` holds a whole chunk of
    /// new data (`start_full_bio`) or the origin's chunk is copied.
    ///
    /// `Err(ENOSPC)` means nothing was allocated: the caller decides between
    /// overflow and invalidation. Any later failure invalidates.
    pub(crate) fn make_exception(
        &mut self,
        copier: &dyn ChunkCopier,
        chunk: Chunk,
        full: Option<&[u8]>,
        conflicting_io: &dyn Fn(Chunk, Chunk),
    ) -> Result<Chunk> {
        let mut new_chunk = [0];
        match self.make_exceptions(copier, &[chunk], full, &mut new_chunk, conflicting_io)? {
            0 => Err(Errno::ENOSPC),
            _ => Ok(new_chunk[0]),
        }
    }

    /// Makes the exceptions for `chunks` (none of them remapped yet, at
    /// most [`EXCEPTION_BATCH`]) as one batch: `__insert_pending_exception`
    /// for each, then every `start_copy` (or `start_full_bio` with `full`,
    /// one chunk only), then every `complete_exception`, so a persistent
    /// store writes the batch's area entries with one PREFLUSH|FUA write
    /// after all the copied data — what the kernel's concurrent kcopyd
    /// completions give its commit batching. Then `pending_complete` for
    /// each: into the complete table. New chunks go to `new_chunks`.
    /// Before that, `conflicting_io(first, last)` waits for bios remapped to
    /// the origin on those chunks (`__check_for_conflicting_io` in
    /// `pending_complete`): once an exception is visible, origin writes to
    /// its chunk go ahead.
    ///
    /// Returns how many were made: fewer than asked means the store had no
    /// room for the next one (nothing allocated for it; the caller decides
    /// between overflow and invalidation). Any other failure invalidates
    /// and returns `Err(EIO)`.
    pub(crate) fn make_exceptions(
        &mut self,
        copier: &dyn ChunkCopier,
        chunks: &[Chunk],
        full: Option<&[u8]>,
        new_chunks: &mut [Chunk],
        conflicting_io: &dyn Fn(Chunk, Chunk),
    ) -> Result<usize> {
        if chunks.len() > EXCEPTION_BATCH || new_chunks.len() < chunks.len() || (full.is_some() && chunks.len() != 1) {
            return Err(Errno::EINVAL);
        }
        let mut es: heapless::Vec<DmException, EXCEPTION_BATCH> = heapless::Vec::new();
        for &chunk in chunks {
            let mut e = DmException::new(chunk, 0);
            if self.store.prepare_exception(&mut e).is_err() {
                break;
            }
            // Capacity: chunks.len() <= EXCEPTION_BATCH, checked above.
            let _ = es.push(e);
        }
        let cs = self.chunk_size();
        let mut filled = [false; EXCEPTION_BATCH];
        if let Some(data) = full {
            if let Some(d) = es.first().and_then(|e| e.new_chunk.checked_mul(cs)) {
                filled[0] = self.cow.write(d, data, ReqFlags::empty()).is_ok();
            }
        } else {
            // Chunks consecutive on both devices (the usual case: the store
            // allocates in order) are copied as one run, as kcopyd would
            // have them in flight together.
            let mut i = 0;
            while i < es.len() {
                let mut n = 1;
                while i + n < es.len()
                    && es[i + n].old_chunk == es[i].old_chunk + n as u64
                    && es[i + n].new_chunk == es[i].new_chunk + n as u64
                {
                    n += 1;
                }
                let src = es[i].old_chunk << self.chunk_shift();
                // The last chunk of the origin may be short.
                let count = (cs * n as u64).min(self.origin.size_sectors().saturating_sub(src));
                let ok = match es[i].new_chunk.checked_mul(cs) {
                    Some(d) => copier.copy(&self.origin, src, &self.cow, d, count).is_ok(),
                    None => false,
                };
                filled[i..i + n].fill(ok);
                i += n;
            }
        }
        // Callbacks run when the batch's area write completes: at the last
        // commit at the latest, as nothing else is pending (our lock).
        let (mut completed, mut all_valid) = (0, true);
        for (e, ok) in es.iter().zip(filled) {
            self.store.commit_exception(e, ok, (), &mut |(), valid| {
                completed += 1;
                all_valid &= valid;
            });
        }
        if completed != es.len() || !all_valid {
            // pending_complete(success = 0): read/write error.
            self.invalidate(Errno::EIO);
            return Err(Errno::EIO);
        }
        if let (Some(first), Some(last)) = (es.first(), es.last()) {
            conflicting_io(first.old_chunk, last.old_chunk);
        }
        for (e, n) in es.iter().zip(new_chunks.iter_mut()) {
            if self.complete.insert(e.old_chunk, e.new_chunk).is_err() {
                self.invalidate(Errno::ENOMEM);
                return Err(Errno::EIO);
            }
            *n = e.new_chunk;
        }
        Ok(es.len())
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
