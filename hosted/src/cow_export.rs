// SPDX-License-Identifier: GPL-2.0-only
//! `dmrs cow export`: the snapshot's view (what a read of the snapshot
//! device returns) written as a raw image, without the kernel: a chunk with
//! an exception comes from the COW, every other one from the origin. Zero
//! chunks are left as holes, so the image is sparse; with `changed_only`
//! chunks without an exception are left as holes too, giving just the
//! changed chunks at their offsets (an incremental image).

use crate::cow::{self, CowImage, Header};
use crate::error::Error;
use dmrs_core::platform::BlockDevice;
use std::collections::HashMap;
use std::os::unix::fs::FileExt;

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    /// Chunks taken from the COW.
    pub from_cow: u64,
    /// Chunks written (the rest are holes).
    pub written: u64,
}

/// Exports the view of `img` (scanned from `cow`) over `origin` into `out`.
pub fn export(
    origin: &dyn BlockDevice,
    cow_dev: &dyn BlockDevice,
    img: &CowImage,
    out: &std::fs::File,
    changed_only: bool,
    progress: &dyn Fn(u64),
) -> Result<Exported, Error> {
    if let Some(f) = img.fatal.first() {
        return Err(Error::failed(f.clone()));
    }
    let cs = match img.header {
        Header::Snap { valid: 0, .. } => return Err(Error::failed("the snapshot is invalid: its view is lost")),
        Header::Snap { chunk_size, .. } => chunk_size as u64,
        Header::New => 0,
        Header::BadMagic(m) => return Err(Error::failed(format!("bad magic 0x{m:08x}"))),
    };
    let origin_sectors = origin.size_sectors();
    // Every exception must be usable before any byte is written.
    let checked = cow::check(img, Some(origin_sectors));
    if let Some(problem) = checked.problems.first() {
        return Err(Error::failed(problem.clone()));
    }
    out.set_len(origin_sectors * 512).map_err(|e| Error::usage_or_io(format!("output: {e}")))?;
    let map: HashMap<u64, u64> = img.exceptions.iter().map(|e| (e.old_chunk, e.new_chunk)).collect();
    // A new COW (no exceptions) shows the origin: export in 64 KiB pieces.
    let cs = if cs == 0 { 128 } else { cs };
    let mut buf = vec![0u8; cs as usize * 512];
    let mut done = Exported { from_cow: 0, written: 0 };
    let chunks = origin_sectors.div_ceil(cs);
    for chunk in 0..chunks {
        let sector = chunk * cs;
        let len = (origin_sectors - sector).min(cs) as usize * 512;
        let piece = &mut buf[..len];
        match map.get(&chunk) {
            Some(&new_chunk) => {
                cow_dev
                    .read(new_chunk * cs, piece)
                    .map_err(|e| Error::usage_or_io(format!("COW chunk {new_chunk}: {e}")))?;
                done.from_cow += 1;
            }
            None if changed_only => {
                progress(len as u64);
                continue;
            }
            None => {
                origin.read(sector, piece).map_err(|e| Error::usage_or_io(format!("origin sector {sector}: {e}")))?
            }
        }
        if piece.iter().any(|&byte| byte != 0) {
            out.write_all_at(piece, sector * 512).map_err(|e| Error::usage_or_io(format!("output: {e}")))?;
            done.written += 1;
        }
        progress(len as u64);
    }
    out.sync_all().map_err(|e| Error::usage_or_io(format!("output: {e}")))?;
    Ok(done)
}
