// SPDX-License-Identifier: GPL-2.0-only
//! Pending exceptions completing asynchronously, on the real snapshot
//! driver with a platform whose copies finish on other threads (kcopyd).
//!
//! Invariant: copies may finish in any order, but exceptions are committed
//! in allocation order, so the metadata area lists them by COW chunk (the
//! merge reads runs of consecutive exceptions from its end); an origin
//! write is released only once the exception it waited for is in the
//! area; each bio is released exactly once.
//!
//! A second model races an origin write and a snapshot write to one chunk
//! against the completion of its exception: the snapshot keeps the old
//! origin data beside its own write, the origin gets the new data.
//!
//! Guards against the out-of-order commits that `exception_complete_sequence` and the
//! `out_of_order_tree` prevent in dm-snap.c. The broken variant commits
//! each exception as its copy finishes
//! (`SnapshotDriver::break_commit_order_for_loom`).
#![cfg(loom)]

use dmrs_core::dm::Queued;
use dmrs_core::platform::{BlockDevice, RamDev};
use dmrs_core::snapshot::{SnapId, SnapshotDriver};
use dmrs_loom_tests::{snapshot, AsyncIo, Dev, TestBio};
use loom::sync::Arc;
use loom::thread;

type Driver = SnapshotDriver<AsyncIo>;

/// An origin of 8 chunks of 2 sectors (bytes 0x11) and a snapshot of it on
/// a 16-sector COW (header chunk 0, area in chunk 1 at sector 2), on the
/// asynchronous platform; `hook` may break the driver first.
fn setup(hook: impl FnOnce(&mut Driver)) -> (Arc<Driver>, SnapId, Dev) {
    let origin = dmrs_loom_tests::dev(RamDev::from_bytes(&[0x11; 16 * 512], 512).unwrap(), 1, "origin");
    let cow = dmrs_loom_tests::dev(RamDev::new(16, 512).unwrap(), 2, "cow");
    let mut drv = SnapshotDriver::new(AsyncIo::new(cow.clone(), 2, vec![origin.clone(), cow.clone()])).unwrap();
    hook(&mut drv);
    let id = snapshot(&drv, &origin, &cow, 16, "2");
    (Arc::new(drv), id, origin)
}

fn model(broken: bool) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(move || {
        let (drv, _, origin) = setup(|d| {
            if broken {
                d.break_commit_order_for_loom();
            }
        });
        for (n, chunk) in [(1, 0u64), (2, 1)] {
            let bio = TestBio { id: n, sector: chunk * 2, nr: 2, dev: "origin", fill: 0 };
            assert!(matches!(drv.origin_write_bio(&origin, bio, false), Queued::Queued));
        }
        // Two kcopyd threads finish the copies, chunk 1's and chunk 0's.
        let kcopyd: Vec<_> = [2u64, 0]
            .into_iter()
            .map(|sector| {
                let drv = drv.clone();
                thread::spawn(move || {
                    let job = drv.platform().take_job(sector).unwrap();
                    let ok = dmrs_loom_tests::asyncio_run(&job);
                    drv.copy_callback(job.5, ok);
                })
            })
            .collect();
        kcopyd.into_iter().for_each(|t| t.join().unwrap());
        let log = drv.platform().log.lock().unwrap().clone();
        assert_eq!(log.len(), 2, "each origin write released once: {log:?}");
        for line in &log {
            let chunk = if line.starts_with("submit 1 ") { 0 } else { 1 };
            let area = &line[line.find("area=").unwrap() + 5..];
            assert!(
                area.contains(&chunk.to_string()),
                "an origin write was released before its exception was durable: {line}"
            );
        }
        assert_eq!(drv.platform().area_entries(), [0, 1], "the area lists exceptions out of allocation order");
    });
}

#[test]
fn out_of_order_copies_commit_in_allocation_order() {
    model(false);
}

#[test]
#[should_panic(expected = "the area lists exceptions out of allocation order")]
fn committing_as_copies_finish_is_caught() {
    model(true);
}

fn same_chunk(broken: bool) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(move || {
        let (drv, id, origin) = setup(|d| {
            if broken {
                d.break_pending_lookup_for_loom();
            }
        });
        // Origin sector 0 and snapshot sector 1, both in chunk 0.
        let w = {
            let (drv, origin) = (drv.clone(), origin.clone());
            thread::spawn(move || {
                let bio = TestBio { id: 1, sector: 0, nr: 1, dev: "origin", fill: 0x22 };
                match drv.origin_write_bio(&origin, bio, true) {
                    Queued::Remapped(bio) => drv.platform().submit_now(bio),
                    Queued::Queued => {}
                    other => panic!("origin write: {other:?}"),
                }
            })
        };
        let s = {
            let drv = drv.clone();
            thread::spawn(move || {
                let bio = TestBio { id: 2, sector: 1, nr: 1, dev: "snap", fill: 0x33 };
                match drv.snapshot_write_bio(id, bio, true) {
                    Queued::Remapped(bio) => drv.platform().submit_now(bio),
                    Queued::Queued => {}
                    other => panic!("snapshot write: {other:?}"),
                }
            })
        };
        // kcopyd: exactly one copy of chunk 0.
        let job = loop {
            if let Some(job) = drv.platform().take_job(0) {
                break job;
            }
            thread::yield_now();
        };
        let ok = dmrs_loom_tests::asyncio_run(&job);
        drv.copy_callback(job.5, ok);
        w.join().unwrap();
        s.join().unwrap();
        assert!(drv.platform().jobs.lock().unwrap().is_empty(), "a second copy of the chunk");
        assert_eq!(drv.platform().log.lock().unwrap().len(), 2, "each write released once");
        let mut buf = [0u8; 1024];
        drv.snapshot_read(id, 0, &mut buf).unwrap();
        assert!(buf[..512].iter().all(|&x| x == 0x11), "the snapshot shows the origin write");
        assert!(buf[512..].iter().all(|&x| x == 0x33), "the snapshot write was lost");
        origin.read(0, &mut buf[..512]).unwrap();
        assert!(buf[..512].iter().all(|&x| x == 0x22), "the origin write was lost");
    });
}

#[test]
fn origin_and_snapshot_writes_to_a_chunk_while_its_exception_completes() {
    same_chunk(false);
}

#[test]
#[should_panic(expected = "a second copy of the chunk")]
fn a_second_exception_for_a_pending_chunk_is_caught() {
    same_chunk(true);
}
