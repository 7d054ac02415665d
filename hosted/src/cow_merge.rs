// SPDX-License-Identifier: GPL-2.0-only
//! `dmrs cow merge`: snapshot-merge without the kernel. It drives the
//! core's persistent store exactly as `snapshot_merge_next_chunks` and
//! `merge_callback` do: take the newest run of consecutive exceptions of
//! the current area (`persistent_prepare_merge`), copy it to the origin,
//! flush the origin, then zero those slots and write the area
//! (`persistent_commit_merge`, PREFLUSH|FUA). Every step leaves the
//! devices as the kernel would leave them at the same point, so a merge
//! interrupted anywhere is resumed by this tool or by the kernel's
//! snapshot-merge target, and the reverse: a chunk copied but not yet
//! forgotten is simply copied again.

use crate::error::Error;
use dmrs_core::exception_store::{ExceptionStore, Metadata};
use dmrs_core::platform::{BlockDevice, ChunkCopier, SyncCopier};

/// What a merge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merged {
    /// Exceptions merged.
    pub chunks: u64,
    /// Merge steps (runs).
    pub steps: u64,
    /// True when nothing is left to merge.
    pub finished: bool,
}

/// Merges `cow` into `origin`; stops after `max_steps` runs if given (a
/// deliberate interruption). `progress` gets the chunks merged per step.
/// Failures are the kernel's merge errors (exit code 1).
pub fn merge(
    origin: &dyn BlockDevice,
    cow: &dyn BlockDevice,
    chunk_size: u32,
    max_steps: Option<u64>,
    progress: &mut dyn FnMut(u64),
) -> Result<Merged, Error> {
    merge_runs(origin, cow, chunk_size, max_steps, progress).map_err(Error::failed)
}

fn merge_runs(
    origin: &dyn BlockDevice,
    cow: &dyn BlockDevice,
    chunk_size: u32,
    max_steps: Option<u64>,
    progress: &mut dyn FnMut(u64),
) -> Result<Merged, String> {
    let cs = chunk_size.to_string();
    let (mut store, _) = ExceptionStore::<&dyn BlockDevice, ()>::create(&["P", &cs], cow, origin.logical_block_size())
        .map_err(|e| format!("{e:?}"))?;
    match store.read_metadata(&mut |_, _| Ok(())) {
        Ok(Metadata::Loaded) => {}
        Ok(Metadata::Invalidated) => return Err("Snapshot is invalid: can't merge".into()),
        Err(e) => return Err(format!("cannot load the exception store: {e:?}")),
    }
    let shift = store.chunk_shift();
    let copier = SyncCopier::default();
    let mut done = Merged { chunks: 0, steps: 0, finished: false };
    loop {
        if max_steps.is_some_and(|m| done.steps >= m) {
            return Ok(done);
        }
        let run = match store.prepare_merge() {
            Ok(Some(run)) => run,
            Ok(None) => break,
            Err(e) => return Err(format!("Read error in exception store: shutting down merge ({e:?})")),
        };
        let n = run.nr_consecutive as u64;
        // prepare_merge returns runs ending at these, so they are >= n - 1.
        let old_chunk = run.last_old_chunk + 1 - n;
        let new_chunk = run.last_new_chunk + 1 - n;
        let dest = old_chunk.checked_shl(shift).filter(|d| d >> shift == old_chunk).ok_or("old chunk overflows")?;
        let io_size = n << shift;
        // As the kernel: the copy stops at the end of the origin.
        let count = io_size.min(origin.size_sectors().saturating_sub(dest));
        copier
            .copy(cow, new_chunk << shift, origin, dest, count)
            .map_err(|e| format!("Read error: shutting down merge. ({e:?})"))?;
        origin.flush().map_err(|e| format!("Flush after merge failed: shutting down merge ({e:?})"))?;
        store
            .commit_merge(run.nr_consecutive)
            .map_err(|e| format!("Write error in exception store: shutting down merge ({e:?})"))?;
        done.chunks += n;
        done.steps += 1;
        progress(n);
    }
    done.finished = true;
    Ok(done)
}
