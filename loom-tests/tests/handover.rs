// SPDX-License-Identifier: GPL-2.0-only
//! Exception store handover: the resume of the destination table racing a
//! write to the origin and the destructor of the source, on the real
//! snapshot driver.
//!
//! Invariant: no exception is lost. After the race the destination owns
//! every exception — the one made before the handover and the one the
//! origin write made in whichever snapshot was active — so reads through it
//! give the data from before the writes, its status counts each copy once,
//! and the COW reloads with both after a power cut. If the source's
//! destructor comes first it cancels the handover ("Cancelling snapshot
//! handover."), and the destination must then be invalid rather than show
//! origin data. The lock order registry (`_origins_lock`) → source →
//! destination never deadlocks (loom reports a deadlock itself).
//!
//! Guards against "dm snapshot: suspend origin when doing exception
//! handover" (b735fede8d95) and "dm snapshot: suspend merging snapshot when
//! doing exception handover" (09ee96b21456): origin I/O must be held off
//! from before the exceptions move until the destination is active. dmrs
//! holds the registry write lock across both; the broken variant drops it
//! in between (`break_handover_for_loom`), so an origin write finds the
//! source already invalid and the destination not yet active.
#![cfg(loom)]

use dmrs_core::dm::SyncIo;
use dmrs_core::emit::{Emitter, StatusType};
use dmrs_core::platform::{BlockDevice, RamDev, ReqFlags, SyncCopier};
use dmrs_core::snapshot::SnapshotDriver;
use dmrs_core::Errno;
use dmrs_loom_tests::Dev;
use loom::sync::Arc;
use loom::thread;

/// Chunk size 2: header, area, then data chunks; the target covers origin
/// chunks 0..4.
const ARGS: [&str; 4] = ["origin", "cow", "P", "2"];
const LEN: u64 = 8;

fn driver(broken: bool) -> SnapshotDriver<SyncIo<Dev>> {
    let mut drv = SnapshotDriver::new(SyncIo::<_, SyncCopier>::default()).unwrap();
    if broken {
        drv.break_handover_for_loom();
    }
    drv
}

fn model(source_dtr: bool, broken: bool) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(move || {
        let origin = dmrs_loom_tests::dev(RamDev::from_bytes(&[0x11; LEN as usize * 512], 512).unwrap(), 1, "origin");
        let cow = dmrs_loom_tests::dev(RamDev::new(16, 512).unwrap(), 2, "cow");
        let drv = Arc::new(driver(broken));
        let (o, c) = (origin.clone(), cow.clone());
        let mut get = move |p: &str| Ok(if p == "origin" { o.clone() } else { c.clone() });
        let src = drv.snapshot_ctr(false, LEN, &ARGS, &mut get).unwrap();
        drv.snapshot_resume(src).unwrap();
        // Chunk 0 is copied into the source.
        drv.origin_write(&origin, 0, &[0x22; 512], ReqFlags::empty()).unwrap();
        // dmsetup load: a second table on the same COW is the handover
        // destination; dmsetup suspend: the source table is suspended.
        let dest = drv.snapshot_ctr(false, LEN, &ARGS, &mut get).unwrap();
        drv.set_suspended(src, true).unwrap();

        // dmsetup resume of the destination.
        let resume = {
            let drv = drv.clone();
            thread::spawn(move || drv.snapshot_preresume(dest).and_then(|_| drv.snapshot_resume(dest)))
        };
        // A write to origin chunk 1 meanwhile.
        let write = {
            let (drv, origin) = (drv.clone(), origin.clone());
            thread::spawn(move || drv.origin_write(&origin, 2, &[0x33; 512], ReqFlags::empty()))
        };
        // The source table is destroyed (dmsetup remove, or the table swap).
        if source_dtr {
            drv.snapshot_dtr(src);
        }
        resume.join().unwrap().unwrap();
        write.join().unwrap().unwrap();

        let mut got = [0u8; 4 * 512];
        origin.read(0, &mut got).unwrap();
        assert!(got[..512].iter().all(|&x| x == 0x22) && got[1024..1536].iter().all(|&x| x == 0x33));
        match drv.snapshot_read(dest, 0, &mut got) {
            Err(Errno::EIO) => {
                assert!(source_dtr, "the destination is invalid, yet no handover was cancelled");
                return;
            }
            r => r.unwrap(),
        }
        assert!(
            got.iter().all(|&x| x == 0x11),
            "the destination shows origin data written after the snapshot: an exception was lost"
        );
        let mut st = [0u8; 64];
        let mut e = Emitter::new(&mut st);
        drv.snapshot_status(dest, StatusType::Info, &mut e).unwrap();
        assert_eq!(e.as_str(), "8/16 4", "exactly one copy of chunks 0 and 1");
        // The source is gone or invalid.
        let r = drv.snapshot_read(src, 0, &mut got[..512]);
        assert_eq!(r, Err(if source_dtr { Errno::ENODEV } else { Errno::EIO }));

        // Power cut, reload the COW in a new table: both exceptions are on disk.
        drv.snapshot_dtr(dest);
        drv.snapshot_dtr(src);
        cow.dev.crash();
        let again = driver(false);
        let (o, c) = (origin.clone(), cow.clone());
        let id = again
            .snapshot_ctr(false, LEN, &ARGS, &mut |p| Ok(if p == "origin" { o.clone() } else { c.clone() }))
            .unwrap();
        again.snapshot_resume(id).unwrap();
        again.snapshot_read(id, 0, &mut got).unwrap();
        assert!(got.iter().all(|&x| x == 0x11), "an exception of the destination was not on disk");
    });
}

#[test]
fn resume_of_the_destination_racing_an_origin_write_loses_no_exception() {
    model(false, false);
}

#[test]
fn and_racing_the_source_destructor_cancels_or_completes_the_handover() {
    model(true, false);
}

#[test]
#[should_panic(expected = "an exception was lost")]
fn letting_origin_writes_in_between_handover_and_activation_is_caught() {
    model(false, true);
}
