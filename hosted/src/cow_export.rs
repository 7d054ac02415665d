// SPDX-License-Identifier: GPL-2.0-only
//! `dmrs cow export`: the snapshot's view (what a read of the snapshot
//! device returns) written as a raw image, without the kernel: a chunk with
//! an exception comes from the COW, every other one from the origin. Zero
//! chunks are left as holes, so the image is sparse; with `changed_only`
//! chunks without an exception are left as holes too, giving just the
//! changed chunks at their offsets (an incremental image).
//!
//! The COW is walked, not scanned whole: once to count and find problems,
//! once for the check, once to collect `(old_chunk, new_chunk)` pairs
//! (16 bytes an exception), sorted by origin chunk for the export's pass
//! over the origin.

use crate::cow::{self, CowImage, Header};
use crate::error::Error;
use dmrs_core::platform::BlockDevice;
use std::os::unix::fs::FileExt;

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    /// Chunks taken from the COW.
    pub from_cow: u64,
    /// Chunks written (the rest are holes).
    pub written: u64,
}

fn changed(img: &CowImage, again: &CowImage) -> Result<(), String> {
    if again.fatal != img.fatal || again.header != img.header {
        return Err("the COW changed while it was exported".into());
    }
    Ok(())
}

/// Exports the view of the COW `cow_dev` over `origin` into `out`.
pub fn export(
    origin: &dyn BlockDevice,
    cow_dev: &dyn BlockDevice,
    out: &std::fs::File,
    changed_only: bool,
    progress: &dyn Fn(u64),
) -> Result<Exported, Error> {
    let mut n = 0u64;
    let img = cow::walk(cow_dev, None, &mut |_| n += 1);
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
    let checked =
        cow::check_stream(&img, n, Some(origin_sectors), &mut |f| changed(&img, &cow::walk(cow_dev, None, f)))
            .map_err(Error::failed)?;
    if let Some(problem) = checked.problems.first() {
        return Err(Error::failed(problem.clone()));
    }
    // n came from a walk of the COW, so it is bounded by its chunks.
    let mut map: Vec<(u64, u64)> = Vec::new();
    let want = usize::try_from(n).map_err(|_| Error::failed(format!("cannot hold {n} exceptions")))?;
    map.try_reserve_exact(want).map_err(|_| Error::failed(format!("cannot allocate {n} exceptions")))?;
    let again = cow::walk(cow_dev, None, &mut |e| {
        if map.len() < want {
            map.push((e.old_chunk, e.new_chunk));
        }
    });
    changed(&img, &again).map_err(Error::failed)?;
    if map.len() != want {
        return Err(Error::failed("the COW changed while it was exported"));
    }
    // The check refused an origin chunk remapped twice: the keys are unique.
    map.sort_unstable();
    out.set_len(origin_sectors * 512).map_err(|e| Error::usage_or_io(format!("output: {e}")))?;
    // A new COW (no exceptions) shows the origin: export in 64 KiB pieces.
    let cs = if cs == 0 { 128 } else { cs };
    let mut buf = vec![0u8; cs as usize * 512];
    let mut done = Exported { from_cow: 0, written: 0 };
    let write = |piece: &[u8], sector: u64, done: &mut Exported| -> Result<(), Error> {
        if piece.iter().any(|&byte| byte != 0) {
            out.write_all_at(piece, sector * 512).map_err(|e| Error::usage_or_io(format!("output: {e}")))?;
            done.written += 1;
        }
        progress(piece.len() as u64);
        Ok(())
    };
    let read_cow = |new_chunk: u64, piece: &mut [u8]| {
        cow_dev.read(new_chunk * cs, piece).map_err(|e| Error::usage_or_io(format!("COW chunk {new_chunk}: {e}")))
    };
    let chunks = origin_sectors.div_ceil(cs);
    if changed_only {
        // Only the exceptions: the chunks between them stay holes.
        let mut next = 0u64;
        for &(chunk, new_chunk) in &map {
            let sector = chunk * cs;
            progress((chunk - next) * cs * 512);
            let len = (origin_sectors - sector).min(cs) as usize * 512;
            let piece = &mut buf[..len];
            read_cow(new_chunk, piece)?;
            done.from_cow += 1;
            write(piece, sector, &mut done)?;
            next = chunk + 1;
        }
        progress((origin_sectors * 512).saturating_sub(next * cs * 512));
    } else {
        let mut exceptions = map.iter().peekable();
        for chunk in 0..chunks {
            let sector = chunk * cs;
            let len = (origin_sectors - sector).min(cs) as usize * 512;
            let piece = &mut buf[..len];
            match exceptions.next_if(|e| e.0 == chunk) {
                Some(&(_, new_chunk)) => {
                    read_cow(new_chunk, piece)?;
                    done.from_cow += 1;
                }
                None => origin
                    .read(sector, piece)
                    .map_err(|e| Error::usage_or_io(format!("origin sector {sector}: {e}")))?,
            }
            write(piece, sector, &mut done)?;
        }
    }
    out.sync_all().map_err(|e| Error::usage_or_io(format!("output: {e}")))?;
    Ok(done)
}
