// SPDX-License-Identifier: GPL-2.0-only
//! dm-clone: background hydration racing a write to the region it copies,
//! on the real clone target.
//!
//! Invariant: the write survives — no copy of the region from the source
//! lands on the destination after the write's data; a region is copied at
//! most once; at the end every region is hydrated and reads back the
//! source's data except where it was written.
//!
//! Guards against a hydration slot freed before its region is recorded as
//! hydrated: in between, background hydration finds the region neither in
//! flight nor hydrated and copies it again, over the write (dm-clone keeps
//! the `dm_clone_region_hydration` in its hash table until
//! `hydration_complete` has set the region).
#![cfg(loom)]

use dmrs_core::clone::target::CloneTarget;
use dmrs_core::platform::{BlockDevice, RamDev, ReqFlags, SyncCopier};
use dmrs_loom_tests::Dev;
use loom::sync::Arc;
use loom::thread;

fn model(broken: bool) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(move || {
        let meta = dmrs_loom_tests::dev(RamDev::new(64 * 8, 512).unwrap(), 1, "meta");
        let dest = dmrs_loom_tests::dev(RamDev::new(16, 512).unwrap(), 2, "dest");
        let src = dmrs_loom_tests::dev(RamDev::from_bytes(&[0x5a; 16 * 512], 512).unwrap(), 3, "src");
        let (m, d, s) = (meta.clone(), dest.clone(), src.clone());
        let mut c = <CloneTarget<Dev, SyncCopier>>::ctr(
            16,
            &["meta", "dest", "src", "8"],
            &mut |p| {
                Ok(match p {
                    "meta" => m.clone(),
                    "dest" => d.clone(),
                    _ => s.clone(),
                })
            },
            SyncCopier::default(),
        )
        .unwrap();
        if broken {
            c.break_hydration_order_for_loom();
        }
        let c = Arc::new(c);
        let w = {
            let c = c.clone();
            thread::spawn(move || c.write("c", 1, &[0x33; 512], ReqFlags::empty()).unwrap())
        };
        while c.hydration_active() {
            if c.hydrate_step().unwrap() == 0 {
                // The write holds the last region: let it finish.
                thread::yield_now();
            }
        }
        w.join().unwrap();
        let mut region0 = [0u8; 4096];
        dest.read(0, &mut region0).unwrap();
        assert!(region0[512..1024].iter().all(|&x| x == 0x33), "the write was lost under a second copy of its region");
        assert!(region0[..512].iter().chain(&region0[1024..]).all(|&x| x == 0x5a));
        assert_eq!(c.progress(), (2, 2));
    });
}

#[test]
fn hydration_never_copies_over_a_write() {
    model(false);
}

#[test]
#[should_panic(expected = "the write was lost under a second copy of its region")]
fn freeing_the_slot_before_recording_the_region_is_caught() {
    model(true);
}
