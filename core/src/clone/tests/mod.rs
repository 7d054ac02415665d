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
