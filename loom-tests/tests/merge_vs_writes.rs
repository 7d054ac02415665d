// SPDX-License-Identifier: GPL-2.0-only
//! Merge against writes to the chunk being merged, on the real driver.
//!
//! Invariant: a write through snapshot-merge during the merge is never
//! lost: it either lands in the COW before the chunk is merged (and is
//! merged with it) or on the origin after — "Incoming bios that overlap
//! with chunks being merged must wait for them to be committed"
//! (`bios_queued_during_merge` in dm-snap.c; dmrs holds the merging
//! snapshot's lock across a merge step).
#![cfg(loom)]

use dmrs_core::dm::SyncIo;
use dmrs_core::platform::{BlockDevice, RamDev, ReqFlags, SyncCopier};
use dmrs_core::snapshot::{MergeProgress, SnapshotDriver};
use dmrs_loom_tests::Dev;
use loom::sync::Arc;
use loom::thread;

fn model(unlocked_writer: bool) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(move || {
        let origin = dmrs_loom_tests::dev(RamDev::from_bytes(&[0x11; 32 * 512], 512).unwrap(), 1, "origin");
        let cow = dmrs_loom_tests::dev(RamDev::new(16, 512).unwrap(), 2, "cow");
        let drv = Arc::new(SnapshotDriver::new(SyncIo::<_, SyncCopier>::default()).unwrap());
        let (o, c) = (origin.clone(), cow.clone());
        let mut get = |p: &str| Ok(if p == "origin" { o.clone() } else { c.clone() });
        let snap = drv.snapshot_ctr(false, 32, &["origin", "cow", "P", "2"], &mut get).unwrap();
        drv.snapshot_resume(snap).unwrap();
        drv.snapshot_write(snap, 0, &[0x44; 1024], ReqFlags::empty()).unwrap();
        let merge = drv.snapshot_ctr(true, 32, &["origin", "cow", "P", "2"], &mut get).unwrap();
        drv.set_suspended(snap, true).unwrap();
        drv.snapshot_resume(merge).unwrap();
        drv.snapshot_dtr(snap);

        let m = {
            let drv = drv.clone();
            thread::spawn(move || while matches!(drv.merge_step(merge).unwrap(), MergeProgress::Merged(_)) {})
        };
        // Write sector 1 through the merging device while it merges.
        if unlocked_writer {
            // Broken: find the chunk's COW copy, then write it without the lock.
            match drv.snapshot_remap(merge, 1).unwrap() {
                Some(cs) => cow.write(cs, &[0x55; 512], ReqFlags::empty()).unwrap(),
                None => drv.snapshot_write(merge, 1, &[0x55; 512], ReqFlags::empty()).unwrap(),
            }
        } else {
            drv.snapshot_write(merge, 1, &[0x55; 512], ReqFlags::empty()).unwrap();
        }
        m.join().unwrap();
        while matches!(drv.merge_step(merge).unwrap(), MergeProgress::Merged(_)) {}
        let mut got = [0u8; 1024];
        origin.read(0, &mut got).unwrap();
        assert!(got[..512].iter().all(|&x| x == 0x44), "merged snapshot data missing");
        assert!(got[512..].iter().all(|&x| x == 0x55), "a write during the merge was lost");
    });
}

#[test]
fn writes_to_a_merging_chunk_wait_for_it() {
    model(false);
}

#[test]
#[should_panic(expected = "a write during the merge was lost")]
fn writing_the_cow_copy_outside_the_lock_is_caught() {
    model(true);
}
