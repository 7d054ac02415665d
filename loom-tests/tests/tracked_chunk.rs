// SPDX-License-Identifier: GPL-2.0-only
//! A snapshot read that `snapshot_map` remapped to the origin, in flight
//! while origin writes to the same chunk arrive, on the real snapshot
//! driver: one through the deferred path (`origin_write`, which makes the
//! exception) and one through `origin_map` (remapped straight to the origin
//! once every snapshot has its copy).
//!
//! Invariant: the read returns the origin as it was when the snapshot was
//! taken, whichever device `map` sent it to; afterwards the snapshot still
//! shows the old data and the origin the new.
//!
//! Guards against the class of "dm snapshot: fix race during exception
//! creation": the exception must not become visible — letting origin
//! writes through — while a tracked read of its chunk is in flight
//! (`__check_for_conflicting_io` in `pending_complete`). The broken variant
//! skips that wait (`SnapshotDriver::break_tracking_for_loom`).
#![cfg(loom)]

use dmrs_core::dm::{BioInfo, BioOp, MapResult, PerBio, SyncIo};
use dmrs_core::platform::{BlockDevice, RamDev, ReqFlags, SyncCopier};
use dmrs_core::snapshot::SnapshotDriver;
use dmrs_loom_tests::{snapshot, Dev};
use loom::sync::Arc;
use loom::thread;

fn bio(op: BioOp) -> BioInfo {
    BioInfo { op, sector: 0, nr_sectors: 1, flags: ReqFlags::empty() }
}

fn model(broken: bool) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(move || {
        let origin = dmrs_loom_tests::dev(RamDev::from_bytes(&[0x11; 16 * 512 * 2], 512).unwrap(), 1, "origin");
        let cow = dmrs_loom_tests::dev(RamDev::new(16, 512).unwrap(), 2, "cow");
        let mut drv = SnapshotDriver::new(SyncIo::<_, SyncCopier>::default()).unwrap();
        if broken {
            drv.break_tracking_for_loom();
        }
        let id = snapshot(&drv, &origin, &cow, 32, "2");
        let drv = Arc::new(drv);

        let writers = {
            let (drv, origin) = (drv.clone(), origin.clone());
            thread::spawn(move || {
                // Two origin writes to chunk 0, each as dm core would issue it.
                for byte in [0x22u8, 0x33] {
                    match drv.origin_map(&origin, &bio(BioOp::Write)) {
                        MapResult::Remapped { dev, sector } => dev.write(sector, &[byte; 512], ReqFlags::empty()),
                        MapResult::Submitted => drv.origin_write(&origin, 0, &[byte; 512], ReqFlags::empty()),
                        _ => panic!("origin write killed"),
                    }
                    .unwrap();
                }
            })
        };
        // The snapshot read: map, the I/O on the chosen device, end_io.
        let mut pb = PerBio::new();
        let mut buf = [0u8; 512];
        match drv.snapshot_map(id, &bio(BioOp::Read), &mut pb) {
            MapResult::Remapped { dev, sector } => dev.read(sector, &mut buf).unwrap(),
            MapResult::Submitted => drv.snapshot_read(id, 0, &mut buf).unwrap(),
            _ => panic!("snapshot read killed"),
        }
        drv.snapshot_end_io(&mut pb);
        assert!(buf.iter().all(|&x| x == 0x11), "a snapshot read saw origin data written after the snapshot");
        writers.join().unwrap();
        drv.snapshot_read(id, 0, &mut buf).unwrap();
        assert!(buf.iter().all(|&x| x == 0x11));
        origin.read(0, &mut buf).unwrap();
        assert!(buf.iter().all(|&x| x == 0x33));
    });
}

#[test]
fn a_tracked_read_holds_back_origin_writes_to_its_chunk() {
    model(false);
}

#[test]
#[should_panic(expected = "a snapshot read saw origin data written after the snapshot")]
fn making_the_exception_visible_under_a_tracked_read_is_caught() {
    model(true);
}
