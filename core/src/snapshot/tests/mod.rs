// SPDX-License-Identifier: GPL-2.0-only
//! The snapshot targets on RAM devices: table errors, copy-on-write to
//! several snapshots, snapshot writes, overflow and invalidation, handover
//! and its cancellation, merging.

extern crate std;
use super::*;
use crate::dm::SyncIo;
use crate::emit::{Emitter, StatusType};
use crate::errno::{Errno, Result};
use crate::platform::{BlockDevice, QueueLimits, RamDev, ReqFlags};
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

type Dev = crate::platform::TableDev<Arc<RamDev>>;

const NAMES: [&str; 5] = ["origin", "cow1", "cow2", "cow3", "cow4"];

/// An origin of 8 MiB filled with byte 0x11 and four COWs of `cow_sectors`.
struct Lab {
    devs: Vec<Dev>,
    drv: SnapshotDriver<SyncIo<Dev>>,
}

impl Lab {
    fn new(cow_sectors: u64) -> Lab {
        let mut devs = Vec::new();
        for (i, name) in NAMES.iter().enumerate() {
            let d = if i == 0 {
                RamDev::from_bytes(&vec![0x11u8; 8 << 20], 512).unwrap()
            } else {
                RamDev::new(cow_sectors, 512).unwrap()
            };
            devs.push(Dev::new(Arc::new(d), i as u64 + 1, name));
        }
        Lab { devs, drv: SnapshotDriver::new(SyncIo::default()).unwrap() }
    }

    fn ctr(&self, merge: bool, table: &str) -> core::result::Result<SnapId, &'static str> {
        let argv: Vec<&str> = table.split_whitespace().collect();
        let devs = self.devs.clone();
        self.drv
            .snapshot_ctr(merge, 16384, &argv, &mut |p| devs.iter().find(|d| d.name == p).cloned().ok_or(Errno::ENOENT))
            .map_err(|e| e.msg())
    }

    fn snap(&self, table: &str) -> SnapId {
        let id = self.ctr(false, table).unwrap();
        self.drv.snapshot_resume(id).unwrap();
        id
    }

    fn status(&self, id: SnapId, ty: StatusType) -> String {
        let mut b = [0u8; 256];
        let mut e = Emitter::new(&mut b);
        self.drv.snapshot_status(id, ty, &mut e).unwrap();
        e.as_str().to_string()
    }

    fn origin_write(&self, sector: u64, len: usize, byte: u8) {
        self.drv.origin_write(&self.devs[0], sector, &vec![byte; len], ReqFlags::empty()).unwrap();
    }

    fn read(&self, id: SnapId, sector: u64, len: usize) -> Result<Vec<u8>> {
        let mut b = vec![0u8; len];
        self.drv.snapshot_read(id, sector, &mut b)?;
        Ok(b)
    }

    fn origin(&self, sector: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.devs[0].read(sector, &mut b).unwrap();
        b
    }
}

fn all(b: &[u8], v: u8) -> bool {
    b.iter().all(|&x| x == v)
}

#[test]
fn table_errors_are_the_kernels() {
    let lab = Lab::new(2048);
    assert_eq!(lab.ctr(false, "origin cow1 P"), Err("requires 4 or more arguments"));
    assert_eq!(lab.ctr(false, "nosuch cow1 P 16"), Err("Cannot get origin device"));
    assert_eq!(lab.ctr(false, "origin nosuch P 16"), Err("Cannot get COW device"));
    assert_eq!(lab.ctr(false, "origin origin P 16"), Err("COW device cannot be the same as origin device"));
    assert_eq!(lab.ctr(false, "origin cow1 X 16"), Err("Couldn't create exception store"));
    assert_eq!(lab.ctr(false, "origin cow1 P 12"), Err("Couldn't create exception store"));
    assert_eq!(lab.ctr(true, "origin cow1 N 16"), Err("Snapshot exception store does not support snapshot-merge."));
    assert_eq!(lab.ctr(false, "origin cow1 N 0"), Err("Chunk size not set"));
    lab.devs[1].write(0, &[0xEEu8; 512], ReqFlags::empty()).unwrap();
    assert_eq!(lab.ctr(false, "origin cow1 P 16"), Err("Failed to read snapshot metadata"));
    assert_eq!(
        lab.ctr(false, "origin cow2 P 16 1 discard_passdown_origin"),
        Err("discard_passdown_origin feature depends on discard_zeroes_cow")
    );
    // A chunk larger than the COW (1 MiB here) cannot be read: refused as
    // the kernel's read of it fails, before 1 GiB of buffers is allocated;
    // the same for a header whose chunk size is that large.
    assert_eq!(lab.ctr(false, "origin cow3 P 2097152"), Err("Failed to read snapshot metadata"));
    let mut header: Vec<u8> = [0x70416e53u32, 1, 1, 1 << 20].iter().flat_map(|v| v.to_le_bytes()).collect();
    header.resize(512, 0);
    lab.devs[3].write(0, &header, ReqFlags::empty()).unwrap();
    assert_eq!(lab.ctr(false, "origin cow3 P 16"), Err("Failed to read snapshot metadata"));
    // Nothing was left registered by the failures.
    let id = lab.snap("origin cow2 P 16");
    assert_eq!(lab.status(id, StatusType::Info), "32/2048 32");
}

#[test]
fn origin_writes_copy_to_every_snapshot_with_its_own_chunk_size() {
    let lab = Lab::new(8192);
    let s8 = lab.snap("origin cow1 P 8");
    let s16 = lab.snap("origin cow2 P 16");
    let s32 = lab.snap("origin cow3 P 32 2 discard_zeroes_cow discard_passdown_origin");
    assert_eq!(lab.status(s32, StatusType::Table), "origin cow3 P 32 2 discard_zeroes_cow discard_passdown_origin");
    assert_eq!(lab.status(s8, StatusType::Table), "origin cow1 P 8");
    // 4 KiB at sector 40: chunk 5 of s8, chunk 2 of s16, chunk 1 of s32.
    lab.origin_write(40, 4096, 0x22);
    assert!(all(&lab.origin(40, 4096), 0x22));
    for id in [s8, s16, s32] {
        assert!(all(&lab.read(id, 0, 64 * 512).unwrap(), 0x11), "snapshot keeps the old data");
    }
    assert_eq!(lab.status(s8, StatusType::Info), "24/8192 16"); // header, area, 1 data chunk of 8
    assert_eq!(lab.status(s16, StatusType::Info), "48/8192 32");
    assert_eq!(lab.status(s32, StatusType::Info), "96/8192 64");
    // A second write to the same chunks copies nothing more.
    lab.origin_write(40, 4096, 0x33);
    assert_eq!(lab.status(s16, StatusType::Info), "48/8192 32");
    assert!(all(&lab.read(s16, 40, 4096).unwrap(), 0x11));
}

#[test]
fn snapshot_writes_partial_and_whole_chunk() {
    let lab = Lab::new(8192);
    let s = lab.snap("origin cow1 P 16");
    let reads = lab.devs[0].dev.stats().reads;
    // Whole chunk: no read of the origin.
    lab.drv.snapshot_write(s, 160, &[0x44u8; 8192], ReqFlags::empty()).unwrap();
    assert_eq!(lab.devs[0].dev.stats().reads, reads);
    // Half a chunk: the rest comes from the origin.
    lab.drv.snapshot_write(s, 320, &[0x55u8; 4096], ReqFlags::empty()).unwrap();
    assert!(lab.devs[0].dev.stats().reads > reads);
    let b = lab.read(s, 320, 8192).unwrap();
    assert!(all(&b[..4096], 0x55) && all(&b[4096..], 0x11));
    assert!(all(&lab.read(s, 160, 8192).unwrap(), 0x44));
    assert!(all(&lab.origin(160, 8192), 0x11));
    assert_eq!(lab.status(s, StatusType::Info), "64/8192 32");
    // A write spanning two chunks is split.
    lab.drv.snapshot_write(s, 8, &[0x66u8; 8192], ReqFlags::empty()).unwrap();
    assert_eq!(lab.status(s, StatusType::Info), "96/8192 32");
}

#[test]
fn po_overflow_then_invalidation_like_the_kernel() {
    // 1 MiB PO COW: header + area + 126 data chunks of 16 sectors.
    let lab = Lab::new(2048);
    let s = lab.snap("origin cow1 PO 16");
    for c in 0..126u64 {
        lab.drv.snapshot_write(s, c * 16, &[0x77u8; 8192], ReqFlags::empty()).unwrap();
    }
    assert_eq!(lab.status(s, StatusType::Info), "2048/2048 32");
    assert_eq!(lab.drv.snapshot_write(s, 126 * 16, &[0x77u8; 8192], ReqFlags::empty()), Err(Errno::EIO));
    assert_eq!(lab.status(s, StatusType::Info), "Overflow");
    assert_eq!(lab.status(s, StatusType::Table), "origin cow1 PO 16");
    // Further writes fail; reads still work.
    assert_eq!(lab.drv.snapshot_write(s, 0, &[1u8; 512], ReqFlags::empty()), Err(Errno::EIO));
    assert!(all(&lab.read(s, 0, 512).unwrap(), 0x77));
    // An origin write needing an exception invalidates; the origin write succeeds.
    lab.origin_write(200 * 16, 512, 0x99);
    assert_eq!(lab.status(s, StatusType::Info), "Invalid");
    assert!(all(&lab.origin(200 * 16, 512), 0x99));
    assert_eq!(lab.read(s, 0, 512), Err(Errno::EIO));
    let mut h = [0u8; 512];
    lab.devs[1].read(0, &mut h).unwrap();
    assert_eq!(&h[4..8], &[0, 0, 0, 0], "header valid=0 on disk");
}

#[test]
fn p_filled_until_invalid() {
    let lab = Lab::new(2048);
    let s = lab.snap("origin cow1 P 16");
    for c in 0..127u64 {
        lab.origin_write(c * 16, 512, 0x21);
    }
    assert_eq!(lab.status(s, StatusType::Info), "Invalid");
    // A snapshot write on a full P store invalidates too.
    let lab = Lab::new(2048);
    let s = lab.snap("origin cow1 P 16");
    for c in 0..126u64 {
        lab.drv.snapshot_write(s, c * 16, &[1u8; 8192], ReqFlags::empty()).unwrap();
    }
    assert_eq!(lab.drv.snapshot_write(s, 126 * 16, &[1u8; 8192], ReqFlags::empty()), Err(Errno::EIO));
    assert_eq!(lab.status(s, StatusType::Info), "Invalid");
}

#[test]
fn transient_store_status() {
    let lab = Lab::new(65536);
    let s = lab.snap("origin cow1 N 16");
    assert_eq!(lab.status(s, StatusType::Info), "0/65536 0");
    for c in 0..10u64 {
        lab.origin_write(c * 16, 512, 2);
    }
    assert_eq!(lab.status(s, StatusType::Info), "160/65536 0");
    assert_eq!(lab.status(s, StatusType::Table), "origin cow1 N 16");
    // N data starts at chunk 0.
    let mut b = [0u8; 512];
    lab.devs[1].read(0, &mut b).unwrap();
    assert!(all(&b, 0x11));
}

#[test]
fn origin_writes_before_resume_make_no_exceptions() {
    let lab = Lab::new(8192);
    let s = lab.ctr(false, "origin cow1 P 16").unwrap();
    lab.origin_write(0, 512, 0x42);
    lab.drv.snapshot_resume(s).unwrap();
    assert_eq!(lab.status(s, StatusType::Info), "32/8192 32");
}

#[test]
fn handover_sequence_of_seed_001() {
    let lab = Lab::new(8192);
    let old = lab.snap("origin cow1 P 16");
    lab.origin_write(0, 512, 0x31); // chunk 0 copied
                                    // load new: second table on the same COW, no metadata read.
    let new = lab.ctr(false, "origin cow1 PO 16").unwrap();
    // A third one cannot pair.
    assert_eq!(lab.ctr(false, "origin cow1 P 16"), Err("Snapshot cow pairing for exception table handover failed"));
    assert_eq!(lab.drv.snapshot_preresume(new), Err(Errno::EINVAL), "source not suspended");
    lab.drv.set_suspended(old, true).unwrap();
    assert_eq!(lab.drv.snapshot_preresume(old), Err(Errno::EINVAL), "source cannot resume first");
    lab.drv.snapshot_preresume(new).unwrap();
    lab.drv.snapshot_resume(new).unwrap();
    // The new table owns the exceptions, keeps its own PO.
    assert_eq!(lab.status(new, StatusType::Info), "48/8192 32");
    assert_eq!(lab.status(new, StatusType::Table), "origin cow1 PO 16");
    assert!(all(&lab.read(new, 0, 512).unwrap(), 0x11));
    assert_eq!(lab.read(old, 0, 512), Err(Errno::EIO));
    assert_eq!(lab.status(old, StatusType::Info), "Invalid");
    // Origin writes after the handover go to the new table.
    lab.origin_write(16, 512, 0x32);
    assert_eq!(lab.status(new, StatusType::Info), "64/8192 32");
    assert!(all(&lab.read(new, 16, 512).unwrap(), 0x11));
    lab.drv.snapshot_dtr(old);
    // Only in memory: the COW header is still valid.
    let mut h = [0u8; 512];
    lab.devs[1].read(0, &mut h).unwrap();
    assert_eq!(&h[4..8], &[1, 0, 0, 0]);
    assert!(all(&lab.read(new, 0, 1024).unwrap(), 0x11));
}

#[test]
fn removing_the_source_cancels_the_handover() {
    let lab = Lab::new(8192);
    let old = lab.snap("origin cow1 P 16");
    let new = lab.ctr(false, "origin cow1 P 16").unwrap();
    lab.drv.snapshot_dtr(old);
    assert_eq!(lab.status(new, StatusType::Info), "Invalid");
    // With the source gone the destination is alone; resume proceeds, invalid.
    lab.drv.snapshot_preresume(new).unwrap();
    lab.drv.snapshot_resume(new).unwrap();
    assert_eq!(lab.read(new, 0, 512), Err(Errno::EIO));
}

#[test]
fn merge_to_completion_with_origin_io() {
    let lab = Lab::new(8192);
    let s = lab.snap("origin cow1 P 16");
    let other = lab.snap("origin cow2 P 8");
    // Snapshot writes become the origin's data after the merge.
    for c in [3u64, 4, 5, 9] {
        lab.drv.snapshot_write(s, c * 16, &[0xA0 + c as u8; 8192], ReqFlags::empty()).unwrap();
    }
    lab.origin_write(20 * 16, 512, 0x5A); // chunk 20: origin data changes, snapshot keeps 0x11
    assert_eq!(lab.ctr(true, "origin cow1 N 16"), Err("Snapshot exception store does not support snapshot-merge."));
    let m = lab.ctr(true, "origin cow1 P 16").unwrap();
    assert_eq!(lab.ctr(true, "origin cow2 P 8"), Err("A snapshot is already merging."));
    lab.drv.set_suspended(s, true).unwrap();
    lab.drv.snapshot_resume(m).unwrap();
    assert!(lab.drv.merge_running(m).unwrap());
    assert_eq!(lab.read(s, 0, 512), Err(Errno::EIO), "old snapshot returns EIO once merging");
    // I/O through the merge target during the merge.
    let mut steps = 0;
    loop {
        match lab.drv.merge_step(m).unwrap() {
            MergeProgress::Merged(_) => steps += 1,
            MergeProgress::Done => break,
            MergeProgress::Failed => panic!("merge failed"),
        }
        // Reads through the merge target always show the snapshot's view.
        assert!(all(&lab.read(m, 3 * 16, 512).unwrap(), 0xA3));
    }
    assert!(steps >= 2, "runs: 3-5 and 9 and 20");
    assert!(!lab.drv.merge_running(m).unwrap());
    assert_eq!(lab.status(m, StatusType::Info), "32/8192 32");
    for c in [3u64, 4, 5, 9] {
        assert!(all(&lab.origin(c * 16, 8192), 0xA0 + c as u8));
    }
    assert!(all(&lab.origin(20 * 16, 512), 0x11), "origin chunk 20 back to the snapshot's data");
    // The other snapshot got copies before the origin changed under it.
    assert!(all(&lab.read(other, 3 * 16, 8192).unwrap(), 0x11));
    assert!(all(&lab.read(other, 20 * 16, 512).unwrap(), 0x11), "other was taken before the 0x5A write");
    // After the merge, writes through the merge target reach the origin and
    // trigger the other snapshot.
    lab.drv.snapshot_write(m, 40 * 16, &[0x77u8; 512], ReqFlags::empty()).unwrap();
    assert!(all(&lab.origin(40 * 16, 512), 0x77));
    assert!(all(&lab.read(other, 40 * 16, 512).unwrap(), 0x11));
}

/// "dm snapshot: flush merged data before committing metadata": a merge
/// step flushes the origin before the COW's metadata drops the merged
/// exceptions. A power cut right after the step must leave the merged
/// chunks readable through the merge target, from the origin (flushed) or
/// from the COW (exception still recorded), never the old origin data.
#[test]
fn merge_flushes_merged_data_before_committing_metadata() {
    let lab = Lab::new(8192);
    let s = lab.snap("origin cow1 P 16");
    for c in [3u64, 4] {
        lab.drv.snapshot_write(s, c * 16, &[0xA0 + c as u8; 8192], ReqFlags::empty()).unwrap();
    }
    let m = lab.ctr(true, "origin cow1 P 16").unwrap();
    lab.drv.set_suspended(s, true).unwrap();
    lab.drv.snapshot_resume(m).unwrap();
    assert!(matches!(lab.drv.merge_step(m).unwrap(), MergeProgress::Merged(2)));
    lab.devs[0].dev.crash();
    lab.devs[1].dev.crash();
    // Reboot: a fresh driver loads the merge target from the devices.
    let after = Lab { devs: lab.devs.clone(), drv: SnapshotDriver::new(SyncIo::default()).unwrap() };
    let m = after.ctr(true, "origin cow1 P 16").unwrap();
    after.drv.snapshot_resume(m).unwrap();
    for c in [3u64, 4] {
        assert!(all(&after.read(m, c * 16, 8192).unwrap(), 0xA0 + c as u8), "chunk {c} lost by the power cut");
    }
}

#[test]
fn copy_errors_invalidate_and_the_origin_keeps_working() {
    let lab = Lab::new(8192);
    let s = lab.snap("origin cow1 P 16");
    lab.devs[1].dev.fail_writes_after(Some(0));
    lab.origin_write(0, 512, 0x61);
    lab.devs[1].dev.fail_writes_after(None);
    assert_eq!(lab.status(s, StatusType::Info), "Invalid");
    assert!(all(&lab.origin(0, 512), 0x61), "origin write went through");
    assert_eq!(lab.read(s, 0, 512), Err(Errno::EIO));
}

#[test]
fn discard_features() {
    let lab = Lab::new(8192);
    let plain = lab.snap("origin cow1 P 16");
    assert_eq!(lab.drv.snapshot_discard(plain, 0, 16), Err(Errno::EOPNOTSUPP));
    let z = lab.snap("origin cow2 P 16 1 discard_zeroes_cow");
    lab.drv.snapshot_write(z, 0, &[0x71u8; 8192], ReqFlags::empty()).unwrap();
    // Unmapped chunk: completes, nothing changes.
    lab.drv.snapshot_discard(z, 32, 16).unwrap();
    assert!(all(&lab.read(z, 32, 8192).unwrap(), 0x11));
    // Whole remapped chunk: zeroed in the COW; the origin is untouched.
    lab.drv.snapshot_discard(z, 0, 16).unwrap();
    assert!(all(&lab.read(z, 0, 8192).unwrap(), 0));
    assert!(all(&lab.origin(0, 8192), 0x11));
    let p = lab.snap("origin cow3 P 16 2 discard_zeroes_cow discard_passdown_origin");
    lab.drv.snapshot_discard(p, 64, 16).unwrap();
    assert!(all(&lab.origin(64, 8192), 0), "passed down to the origin");
    // snapshot_io_hints: discards split on the chunk (granularity in
    // sectors, as the kernel writes it); untouched without the feature.
    let mut l = QueueLimits::default();
    lab.drv.snapshot_io_hints(plain, &mut l).unwrap();
    assert_eq!(l, QueueLimits::default());
    assert!(!lab.drv.snapshot_discards(plain).unwrap() && lab.drv.snapshot_discards(z).unwrap());
    lab.drv.snapshot_io_hints(p, &mut l).unwrap();
    assert_eq!((l.discard_granularity, l.max_hw_discard_sectors), (16, 16));
    // snapshot_iterate_devices: origin over the table, COW whole.
    let mut seen = Vec::new();
    lab.drv
        .snapshot_iterate_devices::<()>(p, 16384, &mut |d, start, len| {
            seen.push((d.name, start, len));
            Ok(())
        })
        .unwrap()
        .unwrap();
    assert_eq!(seen, [("origin", 0, 16384), ("cow3", 0, 8192)]);
}

/// An origin write over many chunks makes each snapshot's exceptions in
/// batches of EXCEPTION_BATCH: the copies first (consecutive chunks in one
/// run), then one PREFLUSH|FUA
/// metadata write per batch (the kernel's commit batching), never the
/// origin before its chunks are safe; running out of room midway
/// invalidates the snapshot and still writes the origin.
#[test]
fn origin_write_batches_exceptions() {
    let lab = Lab::new(8192);
    let a = lab.snap("origin cow1 P 16");
    let b = lab.snap("origin cow2 P 8");
    for d in &lab.devs[1..3] {
        d.dev.record_writes(true);
    }
    let chunks_a = 40u64; // 40 chunks of 16 sectors, 80 of 8
    lab.origin_write(0, (chunks_a * 16 * 512) as usize, 0x22);
    assert!(all(&lab.origin(0, (chunks_a * 16 * 512) as usize), 0x22));
    for id in [a, b] {
        assert!(all(&lab.read(id, 0, (chunks_a * 16 * 512) as usize).unwrap(), 0x11));
    }
    let log = |d: &Dev| {
        let mut v = Vec::new();
        d.dev.for_each_write(|r| v.push((r.sector, r.nr_sectors, r.flags)));
        v
    };
    let durable = ReqFlags::PREFLUSH | ReqFlags::FUA;
    // Every exception of one origin write is pending before the first copy
    // starts, so the persistent store commits them together: every copy,
    // then one PREFLUSH|FUA area write per snapshot (as concurrent kcopyd
    // completions give the kernel's batches).
    for (dev, cs, nr) in [(&lab.devs[1], 16u64, 40usize), (&lab.devs[2], 8, 80)] {
        let w = log(dev);
        assert_eq!(w.len(), nr + 1, "one copy per chunk, one metadata write");
        for (i, x) in w[..nr].iter().enumerate() {
            assert!(x.2.is_empty(), "{x:?}");
            assert_eq!((x.0, x.1), ((i as u64 + 2) * cs, cs), "copies in allocation order");
        }
        assert!(w[nr].2.contains(durable), "the area write comes after every copy");
    }
    // 40 data chunks + header + one area, 16 sectors each; 80 + 2 of 8.
    assert_eq!(lab.status(a, StatusType::Info), "672/8192 32");
    assert_eq!(lab.status(b, StatusType::Info), "656/8192 16");
    // Power cut: every exception made is in the metadata.
    for d in &lab.devs[1..3] {
        d.dev.crash();
    }
    drop(lab.drv);
    let lab2 = Lab { devs: lab.devs.clone(), drv: SnapshotDriver::new(SyncIo::default()).unwrap() };
    let a2 = lab2.snap("origin cow1 P 16");
    assert_eq!(lab2.status(a2, StatusType::Info), "672/8192 32");
    assert!(all(&lab2.read(a2, 0, (chunks_a * 16 * 512) as usize).unwrap(), 0x11));

    // Room for 10 chunks (header, one area, 10 data chunks of 16 sectors).
    let small = Lab::new(12 * 16);
    let s = small.snap("origin cow1 P 16");
    small.origin_write(0, 16 * 16 * 512, 0x33);
    assert_eq!(small.status(s, StatusType::Info), "Invalid");
    assert!(all(&small.origin(0, 16 * 16 * 512), 0x33), "the origin write is never failed");
}

fn bio(op: crate::dm::BioOp, sector: u64, nr_sectors: u64) -> crate::dm::BioInfo {
    crate::dm::BioInfo { op, sector, nr_sectors, flags: ReqFlags::empty() }
}

/// Where `map` sent a bio: device name and sector, or what else it did.
fn mapped(r: crate::dm::MapResult<Dev>) -> String {
    use crate::dm::MapResult;
    match r {
        MapResult::Remapped { dev, sector } => alloc::format!("{}@{}", dev.name, sector),
        MapResult::Submitted => "submitted".to_string(),
        MapResult::Kill(e) => alloc::format!("kill {}", e.name()),
        MapResult::Done(r) => alloc::format!("done {r:?}"),
    }
}

#[test]
fn map_remaps_what_needs_no_copy_and_defers_the_rest() {
    use crate::dm::{BioOp, PerBio};
    let lab = Lab::new(8192);
    let id = lab.snap("origin cow1 P 16");
    lab.origin_write(32, 512, 0x22); // chunk 2 gets COW chunk 2 (0: header, 1: area)
    let mut pb = PerBio::new();
    let m = |op, s, n, pb: &mut PerBio| mapped(lab.drv.snapshot_map(id, &bio(op, s, n), pb));
    // Reads of an uncopied chunk go to the origin, tracked until end_io.
    assert_eq!(m(BioOp::Read, 0, 8, &mut pb), "origin@0");
    assert!(pb.is_tracked());
    lab.drv.snapshot_end_io(&mut pb);
    assert!(!pb.is_tracked());
    // Reads and writes of a copied chunk go to its COW chunk, untracked.
    assert_eq!(m(BioOp::Read, 36, 4, &mut pb), "cow1@36");
    assert!(!pb.is_tracked());
    assert_eq!(m(BioOp::Write, 32, 16, &mut pb), "cow1@32");
    // A write to an uncopied chunk needs an exception: deferred.
    assert_eq!(m(BioOp::Write, 64, 8, &mut pb), "submitted");
    // A bio across a chunk boundary is split by the deferred path.
    assert_eq!(m(BioOp::Read, 8, 16, &mut pb), "submitted");
    assert_eq!(m(BioOp::Flush, 0, 0, &mut pb), "cow1@0");
    assert_eq!(m(BioOp::Discard, 0, 16, &mut pb), "submitted");
    // Origin writes: remapped where every snapshot has its copy.
    let om = |s, n| mapped(lab.drv.origin_map(&lab.devs[0], &bio(BioOp::Write, s, n)));
    assert_eq!(om(32, 16), "origin@32");
    assert_eq!(om(32, 32), "submitted", "chunk 3 has no copy yet");
    assert_eq!(om(16000, 8), "submitted");
    assert_eq!(mapped(lab.drv.origin_map(&lab.devs[0], &bio(BioOp::Read, 64, 8))), "origin@64");
    // Past the snapshot's length nothing needs copying.
    assert_eq!(om(16384, 8), "origin@16384");
    // A lock held by a copy or a merge step: deferred, never waited for.
    for held in [None, Some(id)] {
        lab.drv.with_lock_held(held, || {
            assert_eq!(m(BioOp::Read, 36, 4, &mut pb), "submitted");
            assert_eq!(om(32, 16), "submitted");
        });
    }
    // Invalid: killed; overflowed (PO): writes killed, reads still served.
    let po = lab.snap("origin cow2 PO 16");
    lab.drv.with_snap_mut(po, |s| s.snapshot_overflowed = true);
    assert_eq!(mapped(lab.drv.snapshot_map(po, &bio(BioOp::Write, 32, 8), &mut pb)), "kill EIO");
    assert_eq!(mapped(lab.drv.snapshot_map(po, &bio(BioOp::Read, 32, 8), &mut pb)), "origin@32");
    lab.drv.snapshot_end_io(&mut pb);
    lab.drv.with_snap_mut(id, |s| s.invalidate(Errno::EIO));
    assert_eq!(m(BioOp::Read, 36, 4, &mut pb), "kill EIO");
}

#[test]
fn merge_map_reads_both_ways_and_tracks_cow_writes() {
    use crate::dm::{BioOp, PerBio};
    let lab = Lab::new(8192);
    let id = lab.snap("origin cow1 P 16");
    lab.origin_write(32, 512, 0x22);
    lab.drv.set_suspended(id, true).unwrap();
    let mid = lab.ctr(true, "origin cow1 P 16").unwrap();
    lab.drv.snapshot_preresume(mid).unwrap();
    lab.drv.snapshot_resume(mid).unwrap();
    lab.drv.snapshot_dtr(id);
    let mut pb = PerBio::new();
    let m = |op, s, n, pb: &mut PerBio| mapped(lab.drv.snapshot_map(mid, &bio(op, s, n), pb));
    assert_eq!(m(BioOp::Read, 0, 8, &mut pb), "origin@0");
    assert!(!pb.is_tracked(), "the kernel tracks no merge reads");
    assert_eq!(m(BioOp::Read, 32, 8, &mut pb), "cow1@32");
    assert_eq!(m(BioOp::Write, 0, 8, &mut pb), "submitted", "an origin write");
    assert_eq!(m(BioOp::Flush, 0, 0, &mut pb), "submitted", "both devices are flushed");
    assert_eq!(m(BioOp::Write, 32, 8, &mut pb), "cow1@32");
    assert!(pb.is_tracked());
    // The merge of chunk 2 waits for that write to land.
    let drv = &lab.drv;
    std::thread::scope(|sc| {
        let h = sc.spawn(|| drv.merge_step(mid).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(!h.is_finished(), "merged under a write still in flight");
        lab.devs[1].write(32, &[0x33u8; 4096], ReqFlags::empty()).unwrap();
        drv.snapshot_end_io(&mut pb);
        assert_eq!(h.join().unwrap(), MergeProgress::Merged(1));
    });
    assert!(all(&lab.origin(32, 4096), 0x33), "the write made it into the merged origin");
}

#[test]
fn an_exception_waits_for_origin_reads_in_flight() {
    use crate::dm::{BioOp, MapResult, PerBio};
    let lab = Lab::new(8192);
    let id = lab.snap("origin cow1 P 16");
    let mut pb = PerBio::new();
    let MapResult::Remapped { dev, sector } = lab.drv.snapshot_map(id, &bio(BioOp::Read, 64, 16), &mut pb) else {
        panic!("an uncopied chunk's read is remapped")
    };
    assert_eq!((dev.name, sector), ("origin", 64));
    let drv = &lab.drv;
    std::thread::scope(|sc| {
        let writer = sc.spawn(|| lab.origin_write(64, 8192, 0x44));
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(!writer.is_finished(), "the origin changed under a snapshot read in flight");
        // The read is still served from the unchanged origin.
        let mut b = vec![0u8; 8192];
        dev.read(sector, &mut b).unwrap();
        assert!(all(&b, 0x11));
        drv.snapshot_end_io(&mut pb);
        writer.join().unwrap();
    });
    assert!(all(&lab.read(id, 64, 8192).unwrap(), 0x11));
    assert!(all(&lab.origin(64, 8192), 0x44));
}

/// A copy in flight: from, sector, to, sector, sectors, context.
type CopyJob = (Dev, u64, Dev, u64, u64, u64);

/// A platform with bios and asynchronous copies, driven by the test: bios
/// are numbered, `submit`/`endio` are logged, copies wait in `jobs` until
/// the test completes them (in any order) through `copy_callback`.
#[derive(Default)]
struct TestIo {
    log: Arc<std::sync::Mutex<Vec<String>>>,
    jobs: Arc<std::sync::Mutex<Vec<CopyJob>>>,
}

#[derive(Debug)]
struct TestBio {
    id: u32,
    sector: u64,
    nr: u64,
    dev: &'static str,
}

impl crate::dm::IoPlatform for TestIo {
    type Dev = Dev;
    type Bio = TestBio;
    type BioList = Vec<TestBio>;
    fn bio_list_add(l: &mut Vec<TestBio>, b: TestBio) {
        l.push(b)
    }
    fn bio_list_pop(l: &mut Vec<TestBio>) -> Option<TestBio> {
        (!l.is_empty()).then(|| l.remove(0))
    }
    fn bio_sectors(b: &TestBio) -> (u64, u64) {
        (b.sector, b.nr)
    }
    fn remap(b: &mut TestBio, dev: &Dev, sector: u64) {
        b.dev = dev.name;
        b.sector = sector;
    }
    fn submit(&self, b: TestBio) {
        self.log.lock().unwrap().push(alloc::format!("submit {} {}@{}", b.id, b.dev, b.sector));
    }
    fn endio(&self, b: TestBio, r: Result<()>) {
        self.log.lock().unwrap().push(alloc::format!("end {} {r:?}", b.id));
    }
    fn start_copy(&self, from: &Dev, fs: u64, to: &Dev, ts: u64, n: u64, ctx: u64) -> Option<bool> {
        self.jobs.lock().unwrap().push((from.clone(), fs, to.clone(), ts, n, ctx));
        None
    }
    fn copy(&self, from: &Dev, fs: u64, to: &Dev, ts: u64, n: u64) -> Result<()> {
        crate::platform::ChunkCopier::copy(&crate::platform::SyncCopier::default(), from, fs, to, ts, n)
    }
}

/// Runs the copy of origin chunk `old` (chunk size 16) and reports it.
fn complete_copy(drv: &SnapshotDriver<TestIo>, io: &TestIo, old: u64) {
    let job = {
        let mut jobs = io.jobs.lock().unwrap();
        let i = jobs.iter().position(|j| j.1 == old * 16).expect("no such copy in flight");
        jobs.remove(i)
    };
    let (from, fs, to, ts, n, ctx) = job;
    let ok = crate::platform::ChunkCopier::copy(&crate::platform::SyncCopier::default(), &from, fs, &to, ts, n).is_ok();
    drv.copy_callback(ctx, ok);
}

fn async_lab(cow_sectors: u64) -> (Lab, SnapshotDriver<TestIo>, SnapId) {
    let lab = Lab::new(cow_sectors);
    let drv = SnapshotDriver::new(TestIo::default()).unwrap();
    let devs = lab.devs.clone();
    let id = drv
        .snapshot_ctr(false, 16384, &["origin", "cow1", "P", "16"], &mut |p| {
            devs.iter().find(|d| d.name == p).cloned().ok_or(Errno::ENOENT)
        })
        .unwrap();
    drv.snapshot_resume(id).unwrap();
    (lab, drv, id)
}

fn origin_bio(id: u32, sector: u64) -> TestBio {
    TestBio { id, sector, nr: 8, dev: "origin" }
}

#[test]
fn copies_complete_out_of_order_and_commit_in_order() {
    use crate::dm::Queued;
    let (lab, drv, id) = async_lab(8192);
    lab.devs[1].dev.record_writes(true);
    for (n, chunk) in [(1, 0u64), (2, 1)] {
        assert!(matches!(drv.origin_write_bio(&lab.devs[0], origin_bio(n, chunk * 16), false), Queued::Queued));
    }
    // A second write to chunk 1 waits on the same exception.
    assert!(matches!(drv.origin_write_bio(&lab.devs[0], origin_bio(3, 16), false), Queued::Queued));
    assert_eq!(drv.platform().jobs.lock().unwrap().len(), 2, "one copy per chunk, both in flight");
    // Chunk 1's copy finishes first: it must wait for chunk 0's commit.
    complete_copy(&drv, drv.platform(), 1);
    assert!(drv.platform().log.lock().unwrap().is_empty(), "nothing released before chunk 0 commits");
    let mut writes = Vec::new();
    lab.devs[1].dev.for_each_write(|r| writes.push(r.flags));
    assert!(writes.iter().all(|f| f.is_empty()), "no metadata written yet: {writes:?}");
    complete_copy(&drv, drv.platform(), 0);
    assert_eq!(
        *drv.platform().log.lock().unwrap(),
        ["submit 1 origin@0", "submit 2 origin@16", "submit 3 origin@16"],
        "origin writes retried once their exceptions are durable"
    );
    let mut writes = Vec::new();
    lab.devs[1].dev.for_each_write(|r| writes.push((r.sector, r.flags)));
    assert_eq!(writes.len(), 3, "two copies, one area write for both: {writes:?}");
    assert!(writes[2].1.contains(ReqFlags::PREFLUSH | ReqFlags::FUA));
    // The area lists them in allocation order (merge relies on it).
    let mut area = [0u8; 512];
    lab.devs[1].read(16, &mut area).unwrap();
    let entry = |i: usize| u64::from_le_bytes(area[i * 16..i * 16 + 8].try_into().unwrap());
    assert_eq!((entry(0), entry(1)), (0, 1));
    let mut st = [0u8; 64];
    let mut e = Emitter::new(&mut st);
    drv.snapshot_status(id, StatusType::Info, &mut e).unwrap();
    assert_eq!(e.as_str(), "64/8192 32");
}

#[test]
fn snapshot_writes_wait_on_their_exception_pointed_at_the_cow() {
    use crate::dm::Queued;
    let (_lab, drv, id) = async_lab(8192);
    // Across a chunk boundary: the synchronous path splits it.
    let across = TestBio { id: 6, sector: 8, nr: 16, dev: "snap" };
    assert!(matches!(drv.snapshot_write_bio(id, across, true), Queued::Retry(_)));
    let bio = TestBio { id: 7, sector: 36, nr: 4, dev: "snap" };
    assert!(matches!(drv.snapshot_write_bio(id, bio, false), Queued::Queued));
    // The origin write to the same chunk waits on the same exception.
    assert!(matches!(drv.origin_write_bio(&_lab.devs[0], origin_bio(8, 32), false), Queued::Queued));
    complete_copy(&drv, drv.platform(), 2);
    assert_eq!(*drv.platform().log.lock().unwrap(), ["submit 7 cow1@36", "submit 8 origin@32"]);
}

#[test]
fn map_context_never_writes_metadata() {
    use crate::dm::Queued;
    // Room for one data chunk: header, area, one chunk.
    let (lab, drv, id) = async_lab(3 * 16);
    assert!(matches!(drv.origin_write_bio(&lab.devs[0], origin_bio(1, 0), false), Queued::Queued));
    complete_copy(&drv, drv.platform(), 0);
    lab.devs[1].dev.record_writes(true);
    // No room for chunk 1: invalidating writes the header, which a bio
    // submitted from `map` would wait for until `map` returns.
    let Queued::Retry(bio) = drv.origin_write_bio(&lab.devs[0], origin_bio(2, 16), false) else {
        panic!("map must defer")
    };
    let mut n = 0;
    lab.devs[1].dev.for_each_write(|_| n += 1);
    assert_eq!(n, 0, "map wrote to the COW");
    let Queued::Retry(bio) = drv.snapshot_write_bio(id, TestBio { id: 3, ..bio }, false) else {
        panic!("map must defer")
    };
    // From process context the snapshot is invalidated and the write goes on.
    assert!(matches!(drv.origin_write_bio(&lab.devs[0], TestBio { id: 2, ..bio }, true), Queued::Remapped(_)));
    let mut n = 0;
    lab.devs[1].dev.for_each_write(|_| n += 1);
    assert_eq!(n, 1, "the header, marked invalid");
}

static EVENTS_SEEN: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());

fn record_event(handle: u64) {
    EVENTS_SEEN.lock().unwrap().push(handle);
}

#[test]
fn invalidation_raises_a_table_event() {
    crate::dm::set_table_event(record_event);
    let lab = Lab::new(2048);
    let s = lab.snap("origin cow1 P 16");
    lab.drv.set_event_handle(s, 0xE1E1).unwrap();
    // Filling the COW: no event until the snapshot becomes invalid.
    for c in 0..126u64 {
        lab.origin_write(c * 16, 512, 0x21);
    }
    assert_eq!(lab.drv.snapshot_events(s), Ok(0));
    lab.origin_write(126 * 16, 512, 0x21);
    assert_eq!(lab.status(s, StatusType::Info), "Invalid");
    assert_eq!(lab.drv.snapshot_events(s), Ok(1));
    assert_eq!(EVENTS_SEEN.lock().unwrap().iter().filter(|&&h| h == 0xE1E1).count(), 1, "dm_table_event once");
    // Already invalid: no second event.
    lab.origin_write(127 * 16, 512, 0x21);
    assert_eq!(lab.drv.snapshot_events(s), Ok(1));
}

/// What `ctr` asks of dm core, for a snapshot target over the lab's
/// devices; `io()` gives the target a platform with its own copy list.
struct SnapCtx {
    devs: Vec<Dev>,
    own: Arc<std::sync::Mutex<Vec<CopyJob>>>,
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl crate::dm::TargetCtx<TestIo> for SnapCtx {
    fn begin(&self) -> u64 {
        0
    }
    fn len(&self) -> u64 {
        16384
    }
    fn get_device(&mut self, path: &str) -> Result<Dev> {
        self.devs.iter().find(|d| d.name == path).cloned().ok_or(Errno::ENOENT)
    }
    fn table_handle(&self) -> u64 {
        0
    }
    fn md_name(&self) -> &str {
        "snap"
    }
    fn io(&mut self) -> Result<TestIo> {
        Ok(TestIo { log: self.log.clone(), jobs: self.own.clone() })
    }
    fn set_num_flush_bios(&mut self, _: u32) {}
    fn set_num_discard_bios(&mut self, _: u32) {}
    fn set_discards_supported(&mut self) {}
    fn set_flush_supported(&mut self) {}
    fn set_max_io_len(&mut self, _: u32) {}
}

/// dm-snap.c gives each snapshot its own kcopyd client: a snapshot whose
/// COW lives on another snapshot commits from its client's thread, and
/// that write may need the lower snapshot's copy (lvm2's
/// snapshot-remove-dmsetup hung on one shared client). The target's copies
/// go to the platform its `ctr` got, never the driver's, and complete
/// through the target's `copy_done`; its `dtr` waits for them.
#[test]
fn a_snapshot_target_copies_with_its_own_copier() {
    use super::target::SnapshotTarget;
    use crate::dm::{Queued, Target};
    let lab = Lab::new(8192);
    let drv: &'static SnapshotDriver<TestIo> =
        alloc::boxed::Box::leak(alloc::boxed::Box::new(SnapshotDriver::new(TestIo::default()).unwrap()));
    let mut ctx = SnapCtx { devs: lab.devs.clone(), own: Default::default(), log: drv.platform().log.clone() };
    let own = ctx.own.clone();
    let t = Arc::new(SnapshotTarget::<_, false>::ctr(&drv, &mut ctx, &["origin", "cow1", "P", "16"]).unwrap());
    // Never dropped: a failing assertion must not hang in the drop's wait.
    core::mem::forget(t.clone());
    t.resume();
    for (n, chunk) in [(1, 0u64), (2, 1)] {
        assert!(matches!(drv.origin_write_bio(&lab.devs[0], origin_bio(n, chunk * 16), false), Queued::Queued));
    }
    assert!(drv.platform().jobs.lock().unwrap().is_empty(), "the driver's copier copied for the target");
    let jobs: Vec<CopyJob> = core::mem::take(&mut *own.lock().unwrap());
    assert_eq!(jobs.len(), 2, "one copy per chunk on the target's own copier");
    // The removal waits for the copies in flight.
    let remover = {
        let t = t.clone();
        std::thread::spawn(move || t.dtr())
    };
    std::thread::sleep(std::time::Duration::from_millis(30));
    assert!(!remover.is_finished(), "dtr returned with copies in flight");
    // Out of order, through the target: both commit, in order.
    for (from, fs, to, ts, n, ctx) in jobs.into_iter().rev() {
        let ok =
            crate::platform::ChunkCopier::copy(&crate::platform::SyncCopier::default(), &from, fs, &to, ts, n).is_ok();
        t.copy_done(ctx, ok);
    }
    remover.join().unwrap();
    assert_eq!(
        *drv.platform().log.lock().unwrap(),
        ["submit 1 origin@0", "submit 2 origin@16"],
        "origin writes go on once their exceptions are durable"
    );
    let mut area = [0u8; 512];
    lab.devs[1].read(16, &mut area).unwrap();
    let entry = |i: usize| u64::from_le_bytes(area[i * 16..i * 16 + 8].try_into().unwrap());
    assert_eq!((entry(0), entry(1)), (0, 1), "both exceptions committed");
}

/// A whole-chunk snapshot write is its own copy, but its exception commits
/// in order: with an earlier copy still in flight the write may not be
/// done (a flush after it would not make it durable), as the kernel ends
/// such a bio only in `pending_complete`. Found by mutation testing.
#[test]
fn a_whole_chunk_snapshot_write_is_done_once_its_exception_is_committed() {
    use crate::dm::Queued;
    let (lab, drv, id) = async_lab(8192);
    let drv = Arc::new(drv);
    assert!(matches!(drv.origin_write_bio(&lab.devs[0], origin_bio(1, 0), false), Queued::Queued));
    let writer = {
        let drv = drv.clone();
        std::thread::spawn(move || drv.snapshot_write(id, 32, &vec![0x77u8; 16 * 512], ReqFlags::FUA))
    };
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(!writer.is_finished(), "acknowledged before its exception (after chunk 0's) was committed");
    complete_copy(&drv, drv.platform(), 0);
    writer.join().unwrap().unwrap();
    let mut area = [0u8; 512];
    lab.devs[1].read(16, &mut area).unwrap();
    let entry = |i: usize| u64::from_le_bytes(area[i * 16..i * 16 + 8].try_into().unwrap());
    assert_eq!((entry(0), entry(1)), (0, 2), "both exceptions on disk when the write is done");
    let mut b = vec![0u8; 16 * 512];
    drv.snapshot_read(id, 32, &mut b).unwrap();
    assert!(all(&b, 0x77));
}
