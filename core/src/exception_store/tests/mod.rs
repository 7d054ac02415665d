// SPDX-License-Identifier: GPL-2.0-only
//! Unit tests of the exception stores on a RAM device.

use super::disk::{self, SNAP_MAGIC};
use super::*;
use crate::emit::Emitter;
use crate::log::{self, Level, Log};
use crate::platform::{RamDev, ReqFlags};
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::{self, Write};

struct Capture(spin::Mutex<Vec<String>>);
impl Log for Capture {
    fn log(&self, _level: Level, prefix: &str, args: fmt::Arguments<'_>) {
        let mut s = String::new();
        let _ = write!(s, "{}: {}", prefix, args);
        self.0.lock().push(s);
    }
}
static CAPTURE: Capture = Capture(spin::Mutex::new(Vec::new()));

fn logged(text: &str) -> bool {
    log::set_logger(&CAPTURE);
    CAPTURE.0.lock().iter().any(|l| l.contains(text))
}

const MIB: u64 = 2048;
type PS<'a> = ExceptionStore<&'a RamDev, u32>;

fn cow(sectors: u64) -> RamDev {
    RamDev::new(sectors, 512).unwrap()
}

fn create<'a>(dev: &'a RamDev, ty: &str, chunk: &str) -> PS<'a> {
    log::set_logger(&CAPTURE);
    ExceptionStore::create(&[ty, chunk], dev, 512).unwrap().0
}

fn load(s: &mut PS<'_>) -> (Metadata, Vec<(u64, u64)>) {
    let mut v = Vec::new();
    let m = s
        .read_metadata(&mut |o, n| {
            v.push((o, n));
            Ok(())
        })
        .unwrap();
    (m, v)
}

/// prepare + commit one exception, returning its COW chunk and validity.
fn add(s: &mut PS<'_>, old: u64) -> (u64, bool) {
    let mut e = DmException::new(old, 0);
    s.prepare_exception(&mut e).unwrap();
    let mut ok = None;
    s.commit_exception(&e, true, 0, &mut |_, v| ok = Some(v));
    (e.new_chunk, ok.unwrap())
}

fn chunk_bytes(dev: &RamDev, chunk: u64, chunk_size: u64) -> Vec<u8> {
    let mut b = vec![0u8; (chunk_size * 512) as usize];
    dev.peek(chunk * chunk_size, &mut b).unwrap();
    b
}

fn status(s: &PS<'_>) -> String {
    let mut b = [0u8; 64];
    let mut e = Emitter::new(&mut b);
    s.status(crate::emit::StatusType::Table, &mut e);
    e.as_str().to_string()
}

#[test]
fn store_type_and_chunk_size_errors_are_the_kernels() {
    let d = cow(MIB);
    let err = |argv: &[&str], olbs: u32| ExceptionStore::<&RamDev, u32>::create(argv, &d, olbs).err().map(|e| e.msg());
    assert_eq!(err(&["P"], 512), Some("Insufficient exception store arguments"));
    assert_eq!(err(&["X", "16"], 512), Some("Exception store type is not P or N"));
    assert_eq!(err(&["", "16"], 512), Some("Exception store type is not P or N"));
    assert_eq!(err(&["P", "sixteen"], 512), Some("Invalid chunk size"));
    assert_eq!(err(&["P", "-16"], 512), Some("Invalid chunk size"));
    assert_eq!(err(&["P", "12"], 512), Some("Chunk size is not a power of 2"));
    assert_eq!(err(&["P", "4"], 4096), Some("Chunk size is not a multiple of device blocksize"));
    assert_eq!(err(&["P", "4194304"], 512), Some("Chunk size is too high"));
    assert_eq!(err(&["PX", "16"], 512), Some("Exception store type constructor failed"));
    assert!(logged("persistent snapshot: Unsupported persistent store option: X"));
    // Accepted forms: case-insensitive, options, 0 = on-disk/default.
    for (ty, chunk, shown) in
        [("p", "16", " P 16"), ("Po", "16", " PO 16"), ("n", "8", " N 8"), ("P", "2097152", " P 2097152")]
    {
        let (s, used) = ExceptionStore::<&RamDev, u32>::create(&[ty, chunk, "extra"], &d, 512).unwrap();
        assert_eq!((used, status(&s).as_str()), (2, shown));
    }
    let (s, _) = ExceptionStore::<&RamDev, u32>::create(&["P", "0"], &d, 512).unwrap();
    assert_eq!(s.chunk_size(), 0);
    assert!(err(&["P", "8"], 8192).is_some());
    assert_eq!(
        dm_exception_store_set_chunk_size(4, 512, 4096),
        Err(c"Chunk size is not a multiple of device blocksize")
    );
    assert_eq!(dm_exception_store_set_chunk_size(0, 512, 512), Err(c"Chunk size is not a power of 2"));
}

#[test]
fn fresh_p16_header_golden_bytes() {
    let d = cow(MIB);
    // Garbage in area 0 must be wiped by a new snapshot.
    d.write(16, &[0xAA; 8192], ReqFlags::empty()).unwrap();
    let mut s = create(&d, "P", "16");
    assert_eq!(load(&mut s), (Metadata::Loaded, vec![]));
    let h = chunk_bytes(&d, 0, 16);
    assert_eq!(&h[..16], &[0x53, 0x6e, 0x41, 0x70, 1, 0, 0, 0, 1, 0, 0, 0, 0x10, 0, 0, 0]);
    assert!(h[16..].iter().all(|&b| b == 0));
    assert!(chunk_bytes(&d, 1, 16).iter().all(|&b| b == 0));
    assert_eq!(s.usage(), Usage { total_sectors: MIB, sectors_allocated: 32, metadata_sectors: 32 });
}

#[test]
fn default_chunk_size_is_32_or_the_block_size() {
    let d = cow(MIB);
    let mut s = create(&d, "P", "0");
    load(&mut s);
    assert_eq!(s.chunk_size(), 32);
    let big = RamDev::new(MIB, 32768).unwrap();
    let (mut s, _) = ExceptionStore::<&RamDev, u32>::create(&["P", "0"], &big, 512).unwrap();
    load(&mut s);
    assert_eq!(s.chunk_size(), 64);
}

#[test]
fn multi_area_layout_and_next_free_skip_metadata() {
    // The kernel image cow-P16: 32 MiB, chunk 16, 1034 exceptions.
    let d = cow(32 * MIB);
    let mut s = create(&d, "P", "16");
    load(&mut s);
    let mut chunks = Vec::new();
    for i in 0..1034 {
        let (c, ok) = add(&mut s, 5000 + i);
        assert!(ok);
        chunks.push(c);
    }
    // Areas at chunks 1, 514 and 1027 are never handed out.
    assert_eq!(chunks[0], 2);
    assert_eq!(chunks[511], 513);
    assert_eq!(chunks[512], 515);
    assert!(!chunks.iter().any(|c| [0, 1, 514, 1027].contains(c)));
    let ps = s.pstore().unwrap();
    assert_eq!((ps.current_area(), ps.current_committed(), ps.next_free()), (2, 10, 1038));
    // The kernel printed 16608/65536 64.
    assert_eq!(s.usage(), Usage { total_sectors: 65536, sectors_allocated: 16608, metadata_sectors: 64 });
    // On disk: area 1 slot 0 is exception #512; area 2 has 10 then a terminator.
    let a1 = chunk_bytes(&d, 514, 16);
    assert_eq!(disk::read_exception(&a1, 0), Some((5512, 515)));
    let a2 = chunk_bytes(&d, 1027, 16);
    assert_eq!(disk::read_exception(&a2, 9), Some((5000 + 1033, chunks[1033])));
    assert_eq!(disk::read_exception(&a2, 10), Some((0, 0)));
    // Reload sees exactly the same.
    let mut r = create(&d, "P", "16");
    let (m, v) = load(&mut r);
    assert_eq!(m, Metadata::Loaded);
    assert_eq!(v.len(), 1034);
    assert!(v.iter().zip(chunks.iter()).enumerate().all(|(i, (&(o, n), &c))| o == 5000 + i as u64 && n == c));
    assert_eq!(r.usage(), s.usage());
}

#[test]
fn batching_writes_one_area_for_n_commits() {
    let d = cow(4 * MIB);
    let mut s = create(&d, "P", "16");
    load(&mut s);
    let mut es = Vec::new();
    for i in 0..5 {
        let mut e = DmException::new(i, 0);
        s.prepare_exception(&mut e).unwrap();
        es.push(e);
    }
    assert_eq!(s.pstore().unwrap().pending_count(), 5);
    d.record_writes(true);
    let mut calls = Vec::new();
    for (i, e) in es.iter().enumerate() {
        s.commit_exception(e, true, i as u32, &mut |c, v| calls.push((c, v)));
        if i < 4 {
            assert!(calls.is_empty(), "callback before the batch was written");
        }
    }
    assert_eq!(calls, vec![(0, true), (1, true), (2, true), (3, true), (4, true)]);
    let mut writes = Vec::new();
    d.for_each_write(|w| writes.push(*w));
    assert_eq!(writes.len(), 1);
    assert_eq!((writes[0].sector, writes[0].nr_sectors), (16, 16));
    assert_eq!(writes[0].flags, ReqFlags::PREFLUSH | ReqFlags::FUA | ReqFlags::SYNC);
    assert_eq!(s.pstore().unwrap().pending_count(), 0);
}

#[test]
fn a_full_area_is_written_even_with_commits_in_flight_after_zeroing_the_next() {
    let d = cow(4 * MIB);
    let mut s = create(&d, "P", "1"); // 32 exceptions per area
    load(&mut s);
    // Poison area 1's location so zeroing is visible.
    d.write(34, &[0xFF; 512], ReqFlags::empty()).unwrap();
    let mut es = Vec::new();
    for i in 0..33 {
        let mut e = DmException::new(i, 0);
        s.prepare_exception(&mut e).unwrap();
        es.push(e);
    }
    d.record_writes(true);
    let mut n = 0;
    for e in &es[..32] {
        s.commit_exception(e, true, 0, &mut |_, _| n += 1);
    }
    assert_eq!(n, 32, "a full area completes its batch");
    let mut w = Vec::new();
    d.for_each_write(|r| w.push((r.sector, r.flags)));
    // Zero area 1 (chunk 34) with a plain write, then area 0 (chunk 1) with FUA.
    assert_eq!(w, vec![(34, ReqFlags::empty()), (1, ReqFlags::PREFLUSH | ReqFlags::FUA | ReqFlags::SYNC)]);
    assert!(chunk_bytes(&d, 34, 1).iter().all(|&b| b == 0));
    let ps = s.pstore().unwrap();
    assert_eq!((ps.current_area(), ps.current_committed(), ps.pending_count()), (1, 0, 1));
    s.commit_exception(&es[32], true, 0, &mut |_, _| n += 1);
    assert_eq!(n, 33);
}

#[test]
fn enospc_when_the_cow_is_full() {
    let d = cow(64); // 4 chunks of 16: header, area, 2 data
    let mut s = create(&d, "P", "16");
    load(&mut s);
    assert!(add(&mut s, 1).1 && add(&mut s, 2).1);
    let mut e = DmException::new(3, 0);
    assert_eq!(s.prepare_exception(&mut e), Err(Errno::ENOSPC));
    assert_eq!(s.usage().sectors_allocated, 64);
}

#[test]
fn io_error_during_commit_invalidates_and_reports() {
    let d = cow(MIB);
    let mut s = create(&d, "P", "16");
    load(&mut s);
    d.fail_writes_after(Some(0));
    assert!(!add(&mut s, 1).1);
    d.fail_writes_after(None);
    assert!(!s.pstore().unwrap().valid());
    // Later commits report invalid too, and write nothing.
    d.record_writes(true);
    assert!(!add(&mut s, 2).1);
    let mut n = 0;
    d.for_each_write(|_| n += 1);
    assert_eq!(n, 0);
    // commit_exception(valid = false) from a failed copy invalidates.
    let d2 = cow(MIB);
    let mut s2 = create(&d2, "P", "16");
    load(&mut s2);
    let mut e = DmException::new(9, 0);
    s2.prepare_exception(&mut e).unwrap();
    let mut got = None;
    s2.commit_exception(&e, false, 7, &mut |c, v| got = Some((c, v)));
    assert_eq!(got, Some((7, false)));
}

#[test]
fn drop_snapshot_rewrites_the_header_and_reload_reports_invalidated() {
    let d = cow(MIB);
    let mut s = create(&d, "PO", "16");
    load(&mut s);
    add(&mut s, 1);
    s.drop_snapshot();
    let h = chunk_bytes(&d, 0, 16);
    assert_eq!(&h[..16], &[0x53, 0x6e, 0x41, 0x70, 0, 0, 0, 0, 1, 0, 0, 0, 0x10, 0, 0, 0]);
    let mut r = create(&d, "P", "16");
    assert_eq!(load(&mut r), (Metadata::Invalidated, vec![]));
    // Exceptions are still on disk.
    assert_eq!(disk::read_exception(&chunk_bytes(&d, 1, 16), 0), Some((1, 2)));
}

#[test]
fn merge_bookkeeping_walks_back_over_consecutive_runs() {
    let d = cow(4 * MIB);
    let mut s = create(&d, "P", "1"); // 32 per area, stride 33
    load(&mut s);
    // 40 exceptions: old 100.. consecutive, but new chunks jump at area 1.
    for i in 0..40 {
        add(&mut s, 100 + i);
    }
    let ps = s.pstore().unwrap();
    assert_eq!((ps.current_area(), ps.current_committed()), (1, 8));
    // Area 1 holds old 132..139 -> new 35..42: one run of 8.
    let run = s.prepare_merge().unwrap().unwrap();
    assert_eq!(run, MergeRun { nr_consecutive: 8, last_old_chunk: 139, last_new_chunk: 42 });
    // Merge 3 of them.
    d.record_writes(true);
    s.commit_merge(3).unwrap();
    let mut w = Vec::new();
    d.for_each_write(|r| w.push((r.sector, r.flags)));
    assert_eq!(w, vec![(34, ReqFlags::PREFLUSH | ReqFlags::FUA)]);
    let a1 = chunk_bytes(&d, 34, 1);
    assert_eq!(disk::read_exception(&a1, 4), Some((136, 39)));
    assert_eq!(disk::read_exception(&a1, 5), Some((0, 0)));
    let ps = s.pstore().unwrap();
    assert_eq!((ps.current_committed(), ps.next_free()), (5, 34 + 5 + 1));
    assert_eq!(s.commit_merge(6), Err(Errno::EINVAL));
    let run = s.prepare_merge().unwrap().unwrap();
    assert_eq!(run.nr_consecutive, 5);
    s.commit_merge(5).unwrap();
    // Back into area 0: old 100..131 -> new 2..33, all consecutive.
    let run = s.prepare_merge().unwrap().unwrap();
    assert_eq!(run, MergeRun { nr_consecutive: 32, last_old_chunk: 131, last_new_chunk: 33 });
    assert_eq!(s.pstore().unwrap().current_area(), 0);
    s.commit_merge(32).unwrap();
    assert_eq!(s.prepare_merge().unwrap(), None);
    assert_eq!(s.usage().sectors_allocated, s.usage().metadata_sectors);
    assert!(chunk_bytes(&d, 1, 1).iter().all(|&b| b == 0));
    // Header untouched, and a reload finds nothing.
    assert_eq!(disk::read_exception(&chunk_bytes(&d, 0, 1), 0).map(|(m, _)| m as u32), Some(SNAP_MAGIC));
    let mut r = create(&d, "P", "1");
    assert_eq!(load(&mut r).1.len(), 0);
}

#[test]
fn on_disk_chunk_size_overrides_the_table() {
    let d = cow(MIB);
    let mut s = create(&d, "P", "16");
    load(&mut s);
    add(&mut s, 77);
    let mut r = create(&d, "P", "64");
    let (_, v) = load(&mut r);
    assert_eq!((r.chunk_size(), v), (16, vec![(77, 2)]));
    assert!(logged("chunk size 16 in device metadata overrides table chunk size of 64."));
}

fn header(magic: u32, valid: u32, version: u32, chunk: u32) -> [u8; 512] {
    let mut b = [0u8; 512];
    for (i, v) in [magic, valid, version, chunk].iter().enumerate() {
        b[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    b
}

fn load_err(d: &RamDev, chunk: &str) -> Errno {
    let mut s = create(d, "P", chunk);
    s.read_metadata(&mut |_, _| Ok(())).err().unwrap()
}

#[test]
fn corrupt_metadata_is_an_error_never_a_panic() {
    let d = cow(MIB);
    d.write(0, &header(0xdeadbeef, 1, 1, 16), ReqFlags::empty()).unwrap();
    assert_eq!(load_err(&d, "16"), Errno::ENXIO);
    assert!(logged("persistent snapshot: Invalid or corrupt snapshot"));
    d.write(0, &header(SNAP_MAGIC, 1, 2, 16), ReqFlags::empty()).unwrap();
    assert_eq!(load_err(&d, "16"), Errno::EINVAL);
    assert!(logged("unable to handle snapshot disk version 2"));
    for bad in [0u32, 12, 1 << 30] {
        d.write(0, &header(SNAP_MAGIC, 1, 1, bad), ReqFlags::empty()).unwrap();
        assert_eq!(load_err(&d, "16"), Errno::EINVAL, "chunk size {bad}");
    }
    assert!(logged("invalid on-disk chunk size 12: Chunk size is not a power of 2."));
    // A chunk size larger than the device: the first area cannot be read.
    d.write(0, &header(SNAP_MAGIC, 1, 1, 4096), ReqFlags::empty()).unwrap();
    assert_eq!(load_err(&d, "16"), Errno::EIO);
    // Exceptions pointing at metadata, beyond the device.
    d.write(0, &header(SNAP_MAGIC, 1, 1, 16), ReqFlags::empty()).unwrap();
    for new in [1u64, 0xffff_ffff_ffff_ffff, 128] {
        let mut area = [0u8; 512];
        disk::write_exception(&mut area, 0, 5, new).unwrap();
        d.write(16, &area, ReqFlags::empty()).unwrap();
        assert_eq!(load_err(&d, "16"), Errno::EINVAL, "new_chunk {new}");
    }
    // Every slot full, area after area, until the device ends.
    let small = cow(16 * 40);
    small.write(0, &header(SNAP_MAGIC, 1, 1, 16), ReqFlags::empty()).unwrap();
    let mut full = vec![0u8; 8192];
    for i in 0..512 {
        disk::write_exception(&mut full, i, i as u64, 2 + (i as u64 % 30)).unwrap();
    }
    small.write(16, &full, ReqFlags::empty()).unwrap();
    assert_eq!(load_err(&small, "16"), Errno::EIO);
    // A device smaller than one chunk.
    let tiny = cow(4);
    assert_eq!(load_err(&tiny, "16"), Errno::EIO);
    // Read errors.
    let d = cow(MIB);
    d.fail_reads(true);
    assert_eq!(load_err(&d, "16"), Errno::EIO);
    // A callback error stops the load.
    let d = cow(MIB);
    let mut s = create(&d, "P", "16");
    load(&mut s);
    add(&mut s, 3);
    let mut r = create(&d, "P", "16");
    assert_eq!(r.read_metadata(&mut |_, _| Err(Errno::ENOMEM)), Err(Errno::ENOMEM));
}

#[test]
fn transient_store_allocates_from_sector_zero() {
    let d = cow(64);
    let mut s = create(&d, "N", "16");
    assert_eq!(load(&mut s), (Metadata::Loaded, vec![]));
    assert_eq!(s.usage(), Usage { total_sectors: 64, sectors_allocated: 0, metadata_sectors: 0 });
    for want in 0..4 {
        let (c, ok) = add(&mut s, 100 + want);
        assert_eq!((c, ok), (want, true));
    }
    assert_eq!(s.usage().sectors_allocated, 64);
    let mut e = DmException::new(1, 0);
    assert_eq!(s.prepare_exception(&mut e), Err(Errno::ENOSPC));
    assert!(!s.supports_merge());
    assert_eq!(s.prepare_merge(), Err(Errno::EOPNOTSUPP));
    s.drop_snapshot();
    // Nothing written: N has no metadata.
    assert!(chunk_bytes(&d, 0, 16).iter().all(|&b| b == 0));
}
