// SPDX-License-Identifier: GPL-2.0-only
//! Clone metadata on a RAM device: format, reopen, the two-phase commit
//! across power cuts, range and mode errors, commit cost.

use super::metadata::CloneMetadata;
use crate::errno::Errno;
use crate::pdata::block::{BlockManager, BLOCK_SECTORS};
use crate::pdata::space_map::MetadataSpaceMap;
use crate::platform::{BlockDevice, RamDev};
use alloc::vec::Vec;

const META: u64 = 1024 * BLOCK_SECTORS; // 4 MiB

fn open(d: &RamDev, target: u64) -> CloneMetadata<&RamDev> {
    CloneMetadata::open(d, target, 8).unwrap()
}

/// Every block the space map counts is used exactly as often.
fn space_map_exact(d: &RamDev) -> u64 {
    let bm = BlockManager::new(d);
    let mut b0 = alloc::vec![0u8; 4096];
    bm.read_raw(0, &mut b0).unwrap();
    let sb = super::superblock::check(&b0).unwrap();
    let sm = MetadataSpaceMap::open(&bm, sb.sm_root).unwrap();
    let counts = sm.counts(&bm).unwrap();
    let mut refs = alloc::vec![0u32; counts.len()];
    refs[0] += 1;
    sm.own_blocks(&mut |b| refs[b as usize] += 1);
    crate::pdata::btree::walk(&bm, sb.sm_root.ref_count_root.get(), 4, &mut |b| refs[b as usize] += 1, &mut |_, _| {
        Ok(())
    })
    .unwrap();
    let nr = sb.target_size.div_ceil(sb.region_size);
    crate::pdata::bitset::load(&bm, sb.bitset_root, nr, &mut |b| refs[b as usize] += 1).unwrap();
    assert_eq!(&counts[..], &refs[..], "space map counts differ from references");
    assert_eq!(sb.sm_root.nr_allocated.get(), counts.iter().filter(|&&c| c > 0).count() as u64);
    sb.sm_root.nr_allocated.get()
}

#[test]
fn format_then_reopen() {
    let d = RamDev::new(META, 512).unwrap();
    let m = open(&d, 131072);
    assert_eq!((m.nr_regions(), m.nr_of_hydrated_regions()), (16384, 0));
    assert_eq!(m.metadata_dev_blocks(), Ok(1024));
    // sb, index, bitmap, ref-count root, one array block, one btree leaf.
    assert_eq!(space_map_exact(&d), 6);
    assert_eq!(m.nr_free_metadata_blocks(), Ok(1018));
    drop(m);
    let m = open(&d, 131072);
    assert_eq!(m.nr_of_hydrated_regions(), 0);
    // Another geometry is refused.
    assert_eq!(CloneMetadata::open(&d, 131072, 16).err(), Some(Errno::EINVAL));
    assert_eq!(CloneMetadata::open(&d, 65536, 8).err(), Some(Errno::EINVAL));
}

#[test]
fn two_phase_commit_survives_power_cuts() {
    let d = RamDev::new(META, 512).unwrap();
    let m = open(&d, 131072);
    m.set_region_hydrated(5).unwrap();
    m.cond_set_range(100, 3).unwrap();
    assert!(m.changed_this_transaction());
    m.pre_commit().unwrap();
    // Set after pre_commit: belongs to the next transaction.
    m.set_region_hydrated(7).unwrap();
    m.commit().unwrap();
    assert!(m.changed_this_transaction(), "region 7 is still pending");
    d.crash();
    let m = open(&d, 131072);
    assert!(m.is_region_hydrated(5) && m.is_range_hydrated(100, 3));
    assert!(!m.is_region_hydrated(7), "a region set after pre_commit must not be committed");
    assert_eq!(m.nr_of_hydrated_regions(), 4);
    m.set_region_hydrated(7).unwrap();
    m.pre_commit().unwrap();
    m.commit().unwrap();
    assert!(!m.changed_this_transaction());
    d.crash();
    let m = open(&d, 131072);
    assert_eq!(m.nr_of_hydrated_regions(), 5);
    assert_eq!(m.find_next_unhydrated_region(5), 6);
    space_map_exact(&d);
}

#[test]
fn commits_across_many_transactions_keep_the_space_map_exact() {
    let d = RamDev::new(META, 512).unwrap();
    let m = open(&d, 1 << 24); // 2 Mi regions: 32768 words, 65 array blocks
    for t in 0..20u64 {
        for k in 0..50u64 {
            m.set_region_hydrated((t * 7919 + k * 104_729) % m.nr_regions()).unwrap();
        }
        m.pre_commit().unwrap();
        m.commit().unwrap();
    }
    let n = m.nr_of_hydrated_regions();
    drop(m);
    let m = open(&d, 1 << 24);
    assert_eq!(m.nr_of_hydrated_regions(), n);
    space_map_exact(&d);
}

#[test]
fn commit_cost_scales_with_dirty_words() {
    let d = RamDev::new(META, 512).unwrap();
    let m = open(&d, 8_000_000); // 1,000,000 regions
    d.record_writes(true);
    m.set_region_hydrated(123_456).unwrap();
    m.pre_commit().unwrap();
    m.commit().unwrap();
    let mut n = 0;
    d.for_each_write(|_| n += 1);
    // array block + btree leaf + bitmap + index + superblock.
    assert_eq!(n, 5);
}

#[test]
fn ranges_and_modes() {
    let d = RamDev::new(META, 512).unwrap();
    let m = open(&d, 131072);
    assert_eq!(m.set_region_hydrated(16384), Err(Errno::ERANGE));
    assert_eq!(m.cond_set_range(16383, 2), Err(Errno::ERANGE));
    assert_eq!(m.cond_set_range(u64::MAX, 2), Err(Errno::ERANGE));
    assert_eq!(m.cond_set_range(0, u64::MAX), Err(Errno::ERANGE));
    assert_eq!(m.commit(), Err(Errno::EINVAL), "commit without pre_commit");
    m.set_read_only();
    assert_eq!(m.set_region_hydrated(1), Err(Errno::EPERM));
    assert_eq!(m.pre_commit(), Err(Errno::EPERM));
    m.set_read_write();
    m.set_region_hydrated(1).unwrap();
    m.pre_commit().unwrap();
    assert_eq!(m.pre_commit(), Err(Errno::EINVAL), "a commit is pending");
    m.commit().unwrap();
}

#[test]
fn abort_returns_to_the_last_commit() {
    let d = RamDev::new(META, 512).unwrap();
    let m = open(&d, 131072);
    m.set_region_hydrated(1).unwrap();
    m.pre_commit().unwrap();
    m.commit().unwrap();
    m.set_region_hydrated(2).unwrap();
    m.pre_commit().unwrap();
    d.fail_writes_after(Some(0));
    assert_eq!(m.commit(), Err(Errno::EIO));
    d.fail_writes_after(None);
    m.abort().unwrap();
    m.set_read_only();
    m.reload_in_core_bitset().unwrap();
    assert!(m.is_region_hydrated(1) && !m.is_region_hydrated(2));
    let _ = Vec::<u8>::new();
}

#[test]
fn corrupt_metadata_is_refused() {
    let d = RamDev::new(META, 512).unwrap();
    drop(open(&d, 131072));
    let mut b = alloc::vec![0u8; 512];
    d.peek(0, &mut b).unwrap();
    b[33] ^= 1; // magic
    d.write(0, &b, crate::platform::ReqFlags::empty()).unwrap();
    assert_eq!(CloneMetadata::open(&d, 131072, 8).err(), Some(Errno::EILSEQ));
}

/// `clone_io_hints`: region-sized io_min/io_opt unless io_opt is already a
/// multiple; discard limits from the destination with passdown, virtual
/// ones without; a destination that cannot discard turns passdown off.
#[test]
fn io_hints_set_the_kernels_limits() {
    use super::target::CloneTarget;
    use crate::emit::{Emitter, StatusType};
    use crate::platform::{DmDevice, QueueLimits, SyncCopier};
    let meta = RamDev::new(META, 512).unwrap().named("meta");
    let src = RamDev::new(2048, 512).unwrap().named("src");
    let capable = QueueLimits {
        max_discard_sectors: 1024,
        max_hw_discard_sectors: 2048,
        discard_granularity: 4096,
        discard_alignment: 512,
        max_discard_segments: 3,
        ..QueueLimits::default()
    };
    let info_status = |c: &CloneTarget<&RamDev, SyncCopier>| {
        let mut buf = [0u8; 256];
        let mut e = Emitter::new(&mut buf);
        c.status("253:0", StatusType::Info, true, &mut e);
        let n = e.len();
        alloc::string::String::from_utf8(buf[..n].to_vec()).unwrap()
    };
    let mut seen = Vec::new();
    for (dest_limits, region, io_opt, want_passdown) in [
        (capable, 8u64, 0u32, true),
        // max_discard_sectors (1024) smaller than a region of 2048 sectors.
        (capable, 2048, 0, false),
        (QueueLimits::default(), 8, 65536, false),
    ] {
        let dest = RamDev::new(2048, 512).unwrap().named("dest").with_limits(dest_limits);
        let devs = [&meta, &dest, &src];
        let region_arg = alloc::format!("{region}");
        let argv = ["meta", "dest", "src", region_arg.as_str()];
        let mut get = |p: &str| Ok(*devs.iter().find(|d| d.name() == p).unwrap());
        let c = <CloneTarget<_, _>>::ctr(2048, &argv, &mut get, SyncCopier::default()).unwrap();
        let mut l = QueueLimits { io_opt, ..QueueLimits::default() };
        c.io_hints(&mut l);
        let region_bytes = (region << 9) as u32;
        if io_opt == 65536 {
            assert_eq!((l.io_min, l.io_opt), (0, 65536), "io_opt is a multiple of the region: kept");
        } else {
            assert_eq!((l.io_min, l.io_opt), (region_bytes, region_bytes));
        }
        if want_passdown {
            assert_eq!(
                (l.max_hw_discard_sectors, l.discard_granularity, l.discard_alignment, l.max_discard_segments),
                (2048, 4096, 512, 3)
            );
            assert!(!info_status(&c).contains("no_discard_passdown"));
        } else {
            let max = (u32::MAX >> 9) as u64;
            assert_eq!(l.discard_granularity, region_bytes);
            assert_eq!(l.max_hw_discard_sectors as u64, max - max % region);
            assert!(info_status(&c).contains("1 no_discard_passdown"), "{}", info_status(&c));
        }
        let mut devs_seen = Vec::new();
        c.iterate_devices::<()>(&mut |d, start, len| {
            devs_seen.push((alloc::string::String::from(d.name()), start, len));
            Ok(())
        })
        .unwrap();
        assert_eq!(devs_seen, [("src".into(), 0, 2048), ("dest".into(), 0, 2048)]);
        seen.push(want_passdown);
        drop(c);
        // A fresh metadata device per geometry.
        meta.write(0, &[0u8; 4096], crate::platform::ReqFlags::FUA).unwrap();
    }
    assert_eq!(seen, [true, false, false]);
}

extern crate std;

/// A platform with bios whose copies wait for the test (kcopyd's notify
/// is the test calling `copy_done`); `submit`/`endio` are logged.
#[derive(Default)]
struct HydrationIo {
    jobs: std::sync::Arc<std::sync::Mutex<Vec<(u64, u64, u64)>>>,
    log: std::sync::Arc<std::sync::Mutex<Vec<alloc::string::String>>>,
}

#[derive(Debug)]
struct TestBio {
    id: u32,
    dev: &'static str,
    sector: u64,
}

impl crate::dm::IoPlatform for HydrationIo {
    type Dev = &'static RamDev;
    type Bio = TestBio;
    type BioList = HydrationQueue;
    fn bio_list_add(l: &mut HydrationQueue, b: TestBio) {
        l.0.push(b)
    }
    fn bio_list_pop(l: &mut HydrationQueue) -> Option<TestBio> {
        (!l.0.is_empty()).then(|| l.0.remove(0))
    }
    fn bio_sectors(_: &TestBio) -> (u64, u64) {
        (0, 8)
    }
    fn remap(b: &mut TestBio, dev: &&'static RamDev, sector: u64) {
        b.dev = if dev.size_sectors() == 2048 { "dest" } else { "other" };
        b.sector = sector;
    }
    fn submit(&self, b: TestBio) {
        self.log.lock().unwrap().push(alloc::format!("submit {} {}@{}", b.id, b.dev, b.sector));
    }
    fn endio(&self, b: TestBio, r: crate::Result<()>) {
        self.log.lock().unwrap().push(alloc::format!("end {} {r:?}", b.id));
    }
    fn start_copy(&self, _: &&'static RamDev, s: u64, _: &&'static RamDev, _: u64, n: u64, ctx: u64) -> Option<bool> {
        self.jobs.lock().unwrap().push((s, n, ctx));
        None
    }
    fn copy(&self, from: &&'static RamDev, fs: u64, to: &&'static RamDev, ts: u64, n: u64) -> crate::Result<()> {
        crate::platform::ChunkCopier::copy(&crate::platform::SyncCopier::default(), *from, fs, *to, ts, n)
    }
}

#[derive(Default)]
struct HydrationQueue(Vec<TestBio>);

impl crate::dm::BioQueue for HydrationQueue {
    type Bio = TestBio;
    fn push(&mut self, b: TestBio) {
        self.0.push(b)
    }
    fn pop(&mut self) -> Option<TestBio> {
        (!self.0.is_empty()).then(|| self.0.remove(0))
    }
}

/// `struct dm_target` while a test constructs a target.
struct TestCtx {
    devs: [&'static RamDev; 3],
    io: HydrationIo,
    max_io_len: u32,
    discard_bios: u32,
}

impl crate::dm::TargetCtx<HydrationIo> for TestCtx {
    fn begin(&self) -> u64 {
        0
    }
    fn len(&self) -> u64 {
        2048
    }
    fn get_device(&mut self, p: &str) -> crate::Result<&'static RamDev> {
        use crate::platform::DmDevice;
        self.devs.iter().find(|d| d.name() == p).copied().ok_or(Errno::ENOENT)
    }
    fn table_handle(&self) -> u64 {
        0
    }
    fn md_name(&self) -> &str {
        "253:0"
    }
    fn io(&mut self) -> crate::Result<HydrationIo> {
        Ok(HydrationIo { jobs: self.io.jobs.clone(), log: self.io.log.clone() })
    }
    fn set_num_flush_bios(&mut self, _: u32) {}
    fn set_num_discard_bios(&mut self, n: u32) {
        self.discard_bios = n;
    }
    fn set_discards_supported(&mut self) {}
    fn set_flush_supported(&mut self) {}
    fn set_max_io_len(&mut self, s: u32) {
        self.max_io_len = s;
    }
}

/// dm-clone-target.c's I/O model through the core's `Target`: a write to
/// an unhydrated region waits on the region's hydration, whose copy runs
/// without waiting; a second write joins it; the copy's completion
/// (`copy_done`) issues both to the destination, and later bios are
/// remapped. Background hydration keeps `hydration_threshold` regions in
/// flight, each completion starting the next, until every region is
/// hydrated (then the commit raises the event).
#[test]
fn dm_clone_hydrates_asynchronously_through_the_target_layer() {
    use super::dm_clone::DmClone;
    use crate::dm::{BioInfo, BioOp, MapResult, PerBio, Queued, Target};
    use crate::platform::{BlockDevice, ReqFlags, SyncCopier};
    let leak = |d: RamDev| -> &'static RamDev { alloc::boxed::Box::leak(alloc::boxed::Box::new(d)) };
    let meta = leak(RamDev::new(META, 512).unwrap().named("meta"));
    let dest = leak(RamDev::new(2048, 512).unwrap().named("dest"));
    let src = leak(RamDev::from_bytes(&[0x5a; 2048 * 512], 512).unwrap().named("src"));
    let mut ti = TestCtx { devs: [meta, dest, src], io: HydrationIo::default(), max_io_len: 0, discard_bios: 0 };
    let argv = ["meta", "dest", "src", "64", "1", "no_hydration", "2", "hydration_threshold", "4"];
    let c = <DmClone<HydrationIo, SyncCopier> as Target>::ctr(&(), &mut ti, &argv).unwrap();
    assert_eq!((ti.max_io_len, ti.discard_bios), (64, 1), "bios split at regions; discards taken");
    let (jobs, log) = (ti.io.jobs.clone(), ti.io.log.clone());
    let info = |op, sector| BioInfo { op, sector, nr_sectors: 8, flags: ReqFlags::empty() };
    let mut pb = PerBio::new();
    // A read of an unhydrated region goes to the source, untouched.
    assert!(
        matches!(c.map(&info(BioOp::Read, 72), &mut pb), MapResult::Remapped { dev, sector: 72 } if core::ptr::eq(dev, src))
    );
    // Writes to region 1: the first starts its hydration, the second joins it.
    let w = info(BioOp::Write, 72);
    assert!(matches!(c.map(&w, &mut pb), MapResult::Submitted));
    assert!(matches!(c.map_bio(TestBio { id: 1, dev: "?", sector: 72 }, &w, false), Queued::Queued));
    let w2 = info(BioOp::Write, 96);
    assert!(matches!(c.map_bio(TestBio { id: 2, dev: "?", sector: 96 }, &w2, false), Queued::Queued));
    assert_eq!(*jobs.lock().unwrap(), [(64, 64, 0)], "one copy for the region, in flight");
    assert!(log.lock().unwrap().is_empty(), "nothing issued before the region is copied");
    // kcopyd's notify: copy, then complete.
    let run = |(s, n, ctx): (u64, u64, u64)| {
        crate::platform::ChunkCopier::copy(&SyncCopier::default(), src, s, dest, s, n).unwrap();
        c.copy_done(ctx, true);
    };
    run(jobs.lock().unwrap().remove(0));
    assert_eq!(*log.lock().unwrap(), ["submit 1 dest@72", "submit 2 dest@96"]);
    assert!(matches!(c.map(&w, &mut pb), MapResult::Remapped { dev, sector: 72 } if core::ptr::eq(dev, dest)));
    // A whole-region write takes the synchronous path (no copy).
    let whole = BioInfo { nr_sectors: 64, ..info(BioOp::Write, 128) };
    assert!(matches!(c.map_bio(TestBio { id: 3, dev: "?", sector: 128 }, &whole, false), Queued::Retry(_)));
    // Background hydration: nothing while disabled or suspended.
    assert_eq!(c.background(), Ok(false));
    c.message(&["enable_hydration"]).unwrap();
    assert_eq!(c.background(), Ok(false));
    assert!(jobs.lock().unwrap().is_empty(), "not resumed: no hydration starts");
    c.resume();
    assert_eq!(c.background(), Ok(false), "copies complete later: the worker does not spin");
    assert_eq!(jobs.lock().unwrap().len(), 4, "hydration_threshold regions in flight");
    assert_eq!(c.remaining(), Some(31));
    // `<#hydrating regions>` (dmsetup's field 8) counts the copies in flight.
    let info = |c: &DmClone<HydrationIo, SyncCopier>| {
        let mut buf = [0u8; 256];
        let mut e = crate::emit::Emitter::new(&mut buf);
        c.status(crate::emit::StatusType::Info, true, &mut e);
        alloc::string::String::from(e.as_str())
    };
    let fields = info(&c);
    let fields: Vec<&str> = fields.split_whitespace().collect();
    assert_eq!((fields[3], fields[4]), ("1/32", "4"), "{fields:?}");
    let mut rounds = 0;
    while let Some(job) = {
        let j = jobs.lock().unwrap().pop();
        j
    } {
        run(job);
        rounds += 1;
        assert!(jobs.lock().unwrap().len() <= 4, "never more than the threshold in flight");
    }
    assert_eq!((rounds, c.remaining()), (31, Some(0)), "each completion started the next");
    assert_eq!(c.events(), 1, "the commit once everything is hydrated raised the event");
    assert!(info(&c).starts_with("8 6/1024 64 32/32 0 "), "{}", info(&c));
    let mut b = [0u8; 512];
    dest.read(2047, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0x5a));
}

#[test]
fn superblock_fields_sit_at_the_kernel_offsets() {
    use super::superblock::{Superblock, SuperblockDisk, SB_VALIDATOR, SUPERBLOCK_MAGIC};
    use crate::endian::{read_le32, read_le64, Le64, OnDisk};
    use crate::pdata::space_map::DiskSmRoot;
    let root = DiskSmRoot {
        nr_blocks: Le64::new(1024),
        nr_allocated: Le64::new(6),
        bitmap_root: Le64::new(2),
        ref_count_root: Le64::new(4),
    };
    let mut b = alloc::vec![0u8; 4096];
    Superblock::prepare(&root, 8, 800, 5, &mut b).unwrap();
    // struct superblock_disk: magic at 32, version at 40, the space-map
    // root at the unaligned 44, region_size 172, target_size 180, bitset_root 188.
    assert_eq!(read_le64(&b, 32), Some(SUPERBLOCK_MAGIC));
    assert_eq!(read_le32(&b, 40), Some(1));
    assert_eq!(
        (read_le64(&b, 44), read_le64(&b, 52), read_le64(&b, 60), read_le64(&b, 68)),
        (Some(1024), Some(6), Some(2), Some(4))
    );
    assert!(b[76..172].iter().all(|&x| x == 0));
    assert_eq!((read_le64(&b, 172), read_le64(&b, 180), read_le64(&b, 188)), (Some(8), Some(800), Some(5)));
    assert!(b[196..].iter().all(|&x| x == 0));
    assert_eq!(SB_VALIDATOR.blocknr_offset, 8);
    SB_VALIDATOR.prepare_for_write(0, &mut b).unwrap();
    let sb = super::superblock::check(&b).unwrap();
    assert_eq!((sb.version, sb.sm_root, sb.region_size, sb.target_size, sb.bitset_root), (1, root, 8, 800, 5));
    assert_eq!(SuperblockDisk::unpack(&b[..195]), None);
    // A short or corrupt block is an error, not a panic.
    assert!(super::superblock::check(&b[..4095]).is_err());
    b[190] ^= 1;
    assert!(matches!(super::superblock::check(&b), Err(super::superblock::SbProblem::Checksum(..))));
}
