// SPDX-License-Identifier: GPL-2.0-only
//! Several threads write the origin and read the snapshot at once: every
//! chunk is copied exactly once, and the snapshot never shows origin data
//! written after it was taken (no reader sees a half-copied chunk).
#![allow(clippy::disallowed_types, clippy::disallowed_methods, clippy::disallowed_macros)] // a std test

use dmrs_core::dm::SyncIo;
use dmrs_core::emit::{Emitter, StatusType};
use dmrs_core::platform::{BlockDevice, RamDev, ReqFlags, SyncCopier};
use dmrs_core::snapshot::SnapshotDriver;

#[test]
fn concurrent_writers_make_one_copy_per_chunk() {
    let origin = RamDev::from_bytes(&vec![0x11u8; 8 << 20], 512).unwrap().named("origin");
    let cow = RamDev::new(65536, 512).unwrap().named("cow");
    let drv = SnapshotDriver::new(SyncIo::<_, SyncCopier>::default()).unwrap();
    let s = drv
        .snapshot_ctr(false, 16384, &["origin", "cow", "P", "16"], &mut |p| {
            Ok(if p == "origin" { &origin } else { &cow })
        })
        .unwrap();
    drv.snapshot_resume(s).unwrap();
    std::thread::scope(|sc| {
        for t in 0..4u8 {
            let (drv, origin) = (&drv, &origin);
            sc.spawn(move || {
                let mut b = vec![0u8; 8192];
                for round in 0..3u64 {
                    for c in 0..64u64 {
                        // Every thread hits the same chunks, in different orders.
                        let c = (c * 7 + t as u64 * 13 + round) % 64;
                        if t % 2 == 0 {
                            drv.origin_write(&origin, c * 16 + t as u64, &[0x80 + t; 512], ReqFlags::empty()).unwrap();
                        } else {
                            drv.snapshot_read(s, c * 16, &mut b).unwrap();
                            assert!(b.iter().all(|&x| x == 0x11), "snapshot chunk {c} changed");
                        }
                    }
                }
            });
        }
    });
    let mut buf = [0u8; 64];
    let mut e = Emitter::new(&mut buf);
    drv.snapshot_status(s, StatusType::Info, &mut e).unwrap();
    // 64 chunks copied once each: header + area + 64 data chunks of 16 sectors.
    assert_eq!(e.as_str(), "1056/65536 32");
    let mut all = vec![0u8; 64 * 8192];
    drv.snapshot_read(s, 0, &mut all).unwrap();
    assert!(all.iter().all(|&x| x == 0x11));
    let mut o = [0u8; 512];
    origin.read(2, &mut o).unwrap();
    assert!(o.iter().all(|&x| x == 0x82));
}
