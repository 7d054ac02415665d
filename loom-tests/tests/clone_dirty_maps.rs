// SPDX-License-Identifier: GPL-2.0-only
//! Clone dirty maps: `set_region_hydrated` racing `pre_commit` + `commit`.
//!
//! Invariant: after a power cut, every region the metadata says is
//! hydrated has its data durable on the destination — "dm-clone should
//! only commit the metadata of regions that were properly flushed to the
//! destination device beforehand". And a region whose hydration finished
//! before `pre_commit` started is committed; no region is committed that
//! was never set; `changed_this_transaction` is true while a region is not
//! committed.
//!
//! Guards against the v5.4 single-phase commit fixed by "dm clone metadata:
//! Track exact changes per transaction", "dm clone metadata: Use a two phase
//! commit" and "dm clone: Flush destination device before committing
//! metadata" (e6a505f3f9fa, 8fdbfe8d1690, 8b3fd1f53af3): committing the
//! map that hydrations keep writing to commits regions whose data was
//! written after the destination flush.
#![cfg(loom)]

use dmrs_core::clone::metadata::CloneMetadata;
use dmrs_core::platform::{BlockDevice, RamDev, ReqFlags};
use dmrs_loom_tests::Dev;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;

const REGION: u64 = 8;
const TARGET: u64 = 2 * REGION;

/// A hydration: copy the region's data to the destination (no flush), then
/// mark it hydrated, as `hydration_complete` does.
fn hydrate(dest: &Dev, md: &CloneMetadata<Dev>, region: u64) {
    dest.write(region * REGION, &[0xAB; 4096], ReqFlags::empty()).unwrap();
    md.set_region_hydrated(region).unwrap();
}

fn model(old_protocol: bool) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(move || {
        let meta = dmrs_loom_tests::dev(RamDev::new(64 * 8, 512).unwrap(), 1, "meta");
        let dest = dmrs_loom_tests::dev(RamDev::new(TARGET, 512).unwrap(), 2, "dest");
        let md = Arc::new(CloneMetadata::open(meta.clone(), TARGET, REGION).unwrap());
        let hydrated_first = Arc::new(AtomicBool::new(false));
        let t = {
            let (md, dest, h) = (md.clone(), dest.clone(), hydrated_first.clone());
            thread::spawn(move || {
                hydrate(&dest, &md, 1);
                h.store(true, Ordering::Release);
            })
        };
        // commit_metadata: pre_commit, flush the destination, commit.
        let before = hydrated_first.load(Ordering::Acquire);
        if old_protocol {
            // v5.4: flush, then commit whatever the live map holds.
            dest.flush().unwrap();
            md.pre_commit().unwrap();
        } else {
            md.pre_commit().unwrap();
            dest.flush().unwrap();
        }
        md.commit().unwrap();
        t.join().unwrap();
        let committed = CloneMetadata::open(meta.clone(), TARGET, REGION).unwrap().is_region_hydrated(1);
        if before {
            assert!(committed, "a region hydrated before pre_commit must be committed");
        }
        assert!(md.is_region_hydrated(1));
        assert_eq!(md.changed_this_transaction(), !committed, "changed_this_transaction lies");
        assert!(!md.is_region_hydrated(0));
        // Power cut: every committed region's data must be durable.
        meta.dev.crash();
        dest.dev.crash();
        let after = CloneMetadata::open(meta.clone(), TARGET, REGION).unwrap();
        for r in 0..TARGET / REGION {
            if after.is_region_hydrated(r) {
                let mut b = [0u8; 4096];
                dest.read(r * REGION, &mut b).unwrap();
                assert!(b.iter().all(|&x| x == 0xAB), "region {r} committed but its data was not flushed");
            }
        }
    });
}

#[test]
fn two_phase_commit_only_commits_flushed_regions() {
    model(false);
}

#[test]
#[should_panic(expected = "committed but its data was not flushed")]
fn single_phase_commit_of_v5_4_is_caught() {
    model(true);
}
