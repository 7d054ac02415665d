// SPDX-License-Identifier: GPL-2.0-only
//! `dmrs cow repair`: salvages the exceptions of a damaged COW that can be
//! trusted into a fresh COW the kernel loads, copying their data chunks.
//!
//! What is lost, by case (the note printed after a repair counts each):
//! - areas after the first unreadable or truncated one: unknowable, the
//!   walk stops there (the kernel's `read_exceptions` stops there too);
//! - an exception whose new_chunk is beyond the device, on the header or
//!   on a metadata area: its data was never where it points;
//! - every exception sharing a new_chunk with another: the chunk holds the
//!   data of at most one of them and nothing says which, so none is kept;
//! - an old_chunk remapped again: the first mapping is kept, later ones are
//!   dropped (the kernel never writes a second one; the first is the one
//!   whose data the snapshot had when the damage happened);
//! - with --origin-sectors, an old_chunk beyond the origin.
//!
//! A dropped exception makes the snapshot show the origin's current data
//! for that chunk. An invalidated snapshot stays invalid (valid=0).

use crate::cow::{CowImage, Header};
use crate::cow_format::Dump;
use crate::error::Error;
use dmrs_core::exception_store::disk::{self, NUM_SNAPSHOT_HDR_CHUNKS, SNAPSHOT_DISK_VERSION};
use dmrs_core::platform::{BlockDevice, ReqFlags, SECTOR_SIZE};
use std::collections::{HashMap, HashSet};

/// What a repair kept and dropped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Note {
    /// Exceptions kept (and their chunks copied).
    pub kept: u64,
    /// Dropped: new_chunk beyond the device.
    pub beyond_device: u64,
    /// Dropped: new_chunk on the header or a metadata area.
    pub on_metadata: u64,
    /// Dropped: new_chunk shared with another exception.
    pub shared_new: u64,
    /// Dropped: old_chunk remapped again.
    pub duplicate_old: u64,
    /// Dropped: old_chunk beyond the origin.
    pub beyond_origin: u64,
    /// Dropped: no room on the new COW (the last ones, in on-disk order).
    pub no_room: u64,
    /// Why the walk stopped early, if it did (later areas are lost).
    pub stopped: Option<String>,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kept {} exceptions; dropped {} beyond the device, {} on metadata, {} sharing a new_chunk, \
             {} remapping an old_chunk again, {} beyond the origin, {} for lack of room",
            self.kept,
            self.beyond_device,
            self.on_metadata,
            self.shared_new,
            self.duplicate_old,
            self.beyond_origin,
            self.no_room
        )?;
        if let Some(s) = &self.stopped {
            write!(f, "; walk stopped, later areas lost: {s}")?;
        }
        Ok(())
    }
}

/// Picks the trusted exceptions of `img` (in on-disk order).
pub fn salvage(img: &CowImage, chunk_size: u32, origin_sectors: Option<u64>) -> (Vec<(u64, u64)>, Note) {
    let mut note = Note { stopped: img.fatal.first().cloned(), ..Note::default() };
    let cs = chunk_size.max(1) as u64;
    let epa = disk::exceptions_per_area(chunk_size).max(1);
    let dev_chunks = img.dev_sectors / cs;
    let origin_chunks = origin_sectors.map(|s| s.div_ceil(cs));
    let mut uses: HashMap<u64, u32> = HashMap::new();
    for e in &img.exceptions {
        *uses.entry(e.new_chunk).or_default() += 1;
    }
    let mut seen_old = HashSet::new();
    let mut kept = Vec::new();
    for e in &img.exceptions {
        if e.new_chunk >= dev_chunks {
            note.beyond_device += 1;
        } else if disk::is_metadata_chunk(epa, e.new_chunk) {
            note.on_metadata += 1;
        } else if uses.get(&e.new_chunk).copied().unwrap_or(0) > 1 {
            note.shared_new += 1;
        } else if origin_chunks.is_some_and(|o| e.old_chunk >= o) {
            note.beyond_origin += 1;
        } else if !seen_old.insert(e.old_chunk) {
            note.duplicate_old += 1;
        } else {
            kept.push((e.old_chunk, e.new_chunk));
        }
    }
    note.kept = kept.len() as u64;
    (kept, note)
}

/// Drops the last exceptions that a COW of `out_sectors` cannot hold with
/// its metadata (a truncated COW repaired onto a device of its own size
/// cannot keep a full last area: the kernel needs room for the next one).
pub fn fit(kept: &mut Vec<(u64, u64)>, note: &mut Note, chunk_size: u32, out_sectors: u64) {
    let fits = |n: usize| {
        crate::cow_size::layout((n as u64).saturating_mul(chunk_size as u64), chunk_size)
            .is_some_and(|l| l.sectors <= out_sectors)
    };
    // Binary search for the largest n that fits (fits is monotonic in n).
    let (mut lo, mut hi) = (0usize, kept.len());
    if !fits(hi) {
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        note.no_room += (kept.len() - lo) as u64;
        kept.truncate(lo);
        note.kept = lo as u64;
    }
}

/// The COW chunks the kernel hands out in order (`persistent_prepare_exception`):
/// from the first data chunk on, stepping over every metadata area.
pub fn kernel_allocation(epa: u32) -> impl Iterator<Item = u64> {
    let stride = epa as u64 + 1;
    (NUM_SNAPSHOT_HDR_CHUNKS + 1..).filter(move |c| (c - NUM_SNAPSHOT_HDR_CHUNKS) % stride != 0)
}

/// Writes the salvaged exceptions into `out` as a fresh COW: their data
/// chunks copied to the chunks the kernel would have allocated, in the same
/// order, then the metadata (via restore's writer, after validation).
/// `fresh`: `out` was just created (all holes).
pub fn write_repaired(
    input: &dyn BlockDevice,
    out: &dyn BlockDevice,
    header: Header,
    kept: &[(u64, u64)],
    fresh: bool,
    progress: &dyn Fn(u64),
) -> Result<(), Error> {
    let Header::Snap { valid, chunk_size, .. } = header else {
        return Err(Error::usage_or_io("no chunk size: give --chunk-size"));
    };
    let cs = chunk_size as u64;
    let epa = disk::exceptions_per_area(chunk_size).max(1);
    let exceptions: Vec<(u64, u64)> = kept.iter().zip(kernel_allocation(epa)).map(|(&(o, _), n)| (o, n)).collect();
    let d = Dump { header: Header::Snap { valid, version: SNAPSHOT_DISK_VERSION, chunk_size }, exceptions };
    crate::cow_restore::validate(&d, out)?;
    let mut buf = vec![0u8; chunk_size as usize * SECTOR_SIZE];
    for (&(_, from), &(_, to)) in kept.iter().zip(d.exceptions.iter()) {
        input.read(from * cs, &mut buf).map_err(|e| Error::usage_or_io(format!("read chunk {from}: {e}")))?;
        // A file repair just created reads as zeros: zero chunks stay
        // holes, so a sparse COW repairs into a sparse one.
        if !(fresh && buf.iter().all(|&b| b == 0)) {
            out.write(to * cs, &buf, ReqFlags::empty())
                .map_err(|e| Error::usage_or_io(format!("write chunk {to}: {e}")))?;
        }
        progress(buf.len() as u64);
    }
    // Data before the metadata that points at it, as the kernel orders them.
    out.flush().map_err(|e| Error::usage_or_io(format!("flush: {e}")))?;
    crate::cow_restore::write_store(out, &d)
}
