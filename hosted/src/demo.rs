// SPDX-License-Identifier: GPL-2.0-only
//! `dmrs demo`: a snapshot of an origin file on a COW file, made in a fresh
//! temporary directory, written through both sides, with status lines and
//! the COW dump printed along the way.
//!
//! Until the snapshot targets land in the core, the copy-on-write steps
//! here are the plain sequence dm-snap.c performs for one chunk: look the
//! chunk up, prepare an exception, copy the origin chunk (skipped for a
//! whole-chunk snapshot write), commit, then let the write proceed.

use crate::cow;
use crate::filedev::{FileDev, OpenMode};
use dmrs_core::emit::{Emitter, StatusType};
use dmrs_core::exception::DmException;
use dmrs_core::exception::DM_CHUNK_CONSECUTIVE_BITS;
use dmrs_core::exception_store::{ExceptionStore, Metadata};
use dmrs_core::exception_table::{table_sizes, ExceptionTable};
use dmrs_core::platform::{BlockDevice, ChunkCopier, ReqFlags, SyncCopier, SECTOR_SIZE};
use std::io::{self, Write};
use std::path::Path;

/// A snapshot as the demo drives it (single-threaded).
struct DemoSnapshot<'a> {
    origin: &'a FileDev,
    store: ExceptionStore<&'a FileDev, ()>,
    complete: ExceptionTable,
}

fn err(e: dmrs_core::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.0)
}

impl<'a> DemoSnapshot<'a> {
    fn new(origin: &'a FileDev, cow: &'a FileDev, args: &[&str]) -> io::Result<Self> {
        let (mut store, _) = ExceptionStore::create(args, cow, origin.logical_block_size())
            .map_err(|e| io::Error::other(format!("snapshot: {}", e.msg)))?;
        let mut loaded = Vec::new();
        let m = store
            .read_metadata(&mut |o, n| {
                loaded.push((o, n));
                Ok(())
            })
            .map_err(err)?;
        if m == Metadata::Invalidated {
            return Err(io::Error::other("snapshot is invalidated"));
        }
        let shift = store.chunk_size().trailing_zeros();
        let (size, _) = table_sizes(cow.size_sectors(), shift);
        let mut complete = ExceptionTable::new(size, DM_CHUNK_CONSECUTIVE_BITS).map_err(err)?;
        for (o, n) in loaded {
            complete.insert(o, n).map_err(err)?;
        }
        Ok(DemoSnapshot { origin, store, complete })
    }

    fn chunk_sectors(&self) -> u64 {
        self.store.chunk_size() as u64
    }

    /// Allocates and commits an exception for `chunk`, copying the origin
    /// chunk unless the caller overwrites all of it.
    fn make_exception(&mut self, chunk: u64, copy: bool) -> io::Result<u64> {
        let mut e = DmException::new(chunk, 0);
        self.store.prepare_exception(&mut e).map_err(err)?;
        let cs = self.chunk_sectors();
        let cow = self.store.store().cow;
        let copied =
            if copy { SyncCopier::default().copy(self.origin, chunk * cs, cow, e.new_chunk * cs, cs) } else { Ok(()) };
        let mut ok = false;
        self.store.commit_exception(&e, copied.is_ok(), (), &mut |(), v| ok = v);
        if !ok {
            return Err(io::Error::other("exception commit failed: snapshot invalidated"));
        }
        self.complete.insert(chunk, e.new_chunk).map_err(err)?;
        Ok(e.new_chunk)
    }

    fn origin_write(&mut self, sector: u64, data: &[u8]) -> io::Result<()> {
        let cs = self.chunk_sectors();
        let last = sector + (data.len() / SECTOR_SIZE) as u64 - 1;
        for chunk in sector / cs..=last / cs {
            if self.complete.lookup(chunk).is_none() {
                self.make_exception(chunk, true)?;
            }
        }
        self.origin.write(sector, data, ReqFlags::empty()).map_err(err)
    }

    fn snapshot_write(&mut self, sector: u64, data: &[u8]) -> io::Result<()> {
        let cs = self.chunk_sectors();
        for (i, piece) in data.chunks(cs as usize * SECTOR_SIZE).enumerate() {
            let s = sector + i as u64 * cs;
            let chunk = s / cs;
            let new = match self.complete.lookup(chunk) {
                Some(e) => e.remap(chunk),
                None => self.make_exception(chunk, piece.len() as u64 != cs * SECTOR_SIZE as u64 || s % cs != 0)?,
            };
            self.store.store().cow.write(new * cs + s % cs, piece, ReqFlags::empty()).map_err(err)?;
        }
        Ok(())
    }

    fn snapshot_read(&self, sector: u64, buf: &mut [u8]) -> io::Result<()> {
        let cs = self.chunk_sectors();
        let chunk = sector / cs;
        match self.complete.lookup(chunk) {
            Some(e) => self.store.store().cow.read(e.remap(chunk) * cs + sector % cs, buf),
            None => self.origin.read(sector, buf),
        }
        .map_err(err)
    }

    fn status(&self, ty: StatusType) -> String {
        let mut b = [0u8; 256];
        let mut e = Emitter::new(&mut b);
        match ty {
            StatusType::Info => {
                let u = self.store.usage();
                dmrs_core::dmemit!(&mut e, "{}/{} {}", u.sectors_allocated, u.total_sectors, u.metadata_sectors);
            }
            _ => self.store.status(ty, &mut e),
        }
        e.as_str().to_string()
    }
}

fn pattern(text: &str, len: usize) -> Vec<u8> {
    // 16-byte records, as the kernel lab's patterns: text padded to 15 bytes, then '\n'.
    let mut rec = format!("{text:<15}").into_bytes();
    rec.truncate(15);
    rec.push(b'\n');
    rec.iter().copied().cycle().take(len).collect()
}

fn first_record(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..15]).trim_end().to_string()
}

/// Runs the demo in a new directory under `base`, writing to `out`.
pub fn run(base: &Path, out: &mut dyn Write) -> io::Result<()> {
    let dir = base.join(format!("dmrs-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (op, cp) = (dir.join("origin.img"), dir.join("cow.img"));
    std::fs::write(&op, pattern("origin v1", 8 << 20))?;
    std::fs::File::create(&cp)?.set_len(4 << 20)?;
    writeln!(out, "# work directory {}", dir.display())?;
    writeln!(out, "# origin.img 8 MiB of \"origin v1\", cow.img 4 MiB of zeros")?;

    let rw = OpenMode::default();
    let origin = FileDev::open(&op, rw)?;
    let cowdev = FileDev::open(&cp, rw)?;
    let len = origin.size_sectors();
    let mut snap = DemoSnapshot::new(&origin, &cowdev, &["P", "16"])?;
    let line = |s: &DemoSnapshot<'_>, ty| {
        format!("0 {len} snapshot{}{}", if ty == StatusType::Info { " " } else { "" }, s.status(ty))
    };
    writeln!(
        out,
        "$ dmrs table snap\n0 {len} snapshot {} {}{}",
        op.display(),
        cp.display(),
        snap.status(StatusType::Table)
    )?;
    writeln!(out, "$ dmrs status snap\n{}", line(&snap, StatusType::Info))?;

    writeln!(
        out,
        "# write \"origin v2\" to origin chunks 3-5 (24 KiB at offset 24 KiB): each chunk is copied to the COW first"
    )?;
    snap.origin_write(3 * 16, &pattern("origin v2", 3 * 8192))?;
    writeln!(out, "# write \"snapshot\" to a whole snapshot chunk 100 (no copy) and to half of chunk 200")?;
    snap.snapshot_write(100 * 16, &pattern("snapshot", 8192))?;
    snap.snapshot_write(200 * 16, &pattern("snapshot", 4096))?;
    writeln!(out, "$ dmrs status snap\n{}", line(&snap, StatusType::Info))?;

    let mut b = vec![0u8; 512];
    for (what, chunk) in [("chunk 4", 4u64), ("chunk 100", 100), ("chunk 200", 200), ("chunk 200 + 4 KiB", 200)] {
        let sector = chunk * 16 + if what.ends_with("KiB") { 8 } else { 0 };
        snap.snapshot_read(sector, &mut b)?;
        let s = first_record(&b);
        origin.read(sector, &mut b).map_err(err)?;
        writeln!(out, "read {what:<18} snapshot: {s:<10} origin: {}", first_record(&b))?;
    }
    drop(snap);

    writeln!(out, "$ dmrs cow dump cow.img")?;
    let img = cow::scan(&cowdev);
    write!(out, "{}", cow::dump_text(&img))?;
    let r = cow::check(&img, Some(len));
    writeln!(out, "$ dmrs cow check cow.img --origin-sectors {len}\n{}", r.summary)?;
    for p in &r.problems {
        writeln!(out, "{p}")?;
    }
    // Reload from disk as a new activation would.
    let again = DemoSnapshot::new(&origin, &cowdev, &["P", "16"])?;
    writeln!(out, "# reloaded from disk: {}", line(&again, StatusType::Info))?;
    Ok(())
}
