// SPDX-License-Identifier: GPL-2.0-only
//! The kernel's bug history as tests: each is named after the mainline
//! commit subject of a fix to dm-snapshot or dm-clone
//! (../shared/reference/kernel-facts.md §5) and checks that dmrs behaves as
//! the fixed kernel does. Fixes covered by tests elsewhere say where.
//!
//! Elsewhere: "dm snapshot: avoid snapshot space leak on crash"
//! (`copies_complete_out_of_order_and_commit_in_order`, core/src/snapshot/
//! tests), "dm snapshot: flush merged data before committing metadata"
//! (`merge_flushes_merged_data_before_committing_metadata`, and the merge
//! power-cut sweep in hosted/tests/power_cut.rs), "dm clone metadata: Use a
//! two phase commit" and "dm clone: Flush destination device before
//! committing metadata" (core/tests/clone_target.rs, the clone power-cut
//! sweep), "dm clone: Fix handling of partial region discards"
//! (`partial_region_discards_mark_only_whole_regions`), "dm snapshot: avoid
//! having two exceptions for the same chunk" (core/tests/
//! snapshot_concurrency.rs), "dm snapshot: fix race during exception
//! creation" (loom-tests/tests/tracked_chunk.rs).
#![allow(clippy::disallowed_types, clippy::disallowed_methods, clippy::disallowed_macros)] // a std test

use dmrs_core::clone::target::CloneTarget;
use dmrs_core::dm::SyncIo;
use dmrs_core::emit::{Emitter, StatusType};
use dmrs_core::platform::{BlockDevice, RamDev, ReqFlags, SyncCopier, TableDev};
use dmrs_core::snapshot::{SnapId, SnapshotDriver};
use dmrs_core::Errno;
use std::sync::Arc;

type Dev = TableDev<Arc<RamDev>>;

fn dev(ram: RamDev, id: u64, name: &'static str) -> Dev {
    Dev::new(Arc::new(ram), id, name)
}

struct Snaps {
    devs: Vec<Dev>,
    drv: SnapshotDriver<SyncIo<Dev>>,
}

impl Snaps {
    /// An origin of 1 MiB filled with 0x11 and two COWs of 1 MiB.
    fn new() -> Snaps {
        let devs = vec![
            dev(RamDev::from_bytes(&vec![0x11; 1 << 20], 512).unwrap(), 1, "origin"),
            dev(RamDev::new(2048, 512).unwrap(), 2, "cow1"),
            dev(RamDev::new(2048, 512).unwrap(), 3, "cow2"),
        ];
        Snaps { devs, drv: SnapshotDriver::new(SyncIo::default()).unwrap() }
    }
    fn ctr(&self, merge: bool, table: &str) -> Result<SnapId, &'static str> {
        let argv: Vec<&str> = table.split_whitespace().collect();
        let devs = &self.devs;
        self.drv
            .snapshot_ctr(merge, 2048, &argv, &mut |p| devs.iter().find(|d| d.name == p).cloned().ok_or(Errno::ENOENT))
            .map_err(|e| e.msg())
    }
    fn snap(&self, table: &str) -> SnapId {
        let id = self.ctr(false, table).unwrap();
        self.drv.snapshot_resume(id).unwrap();
        id
    }
    fn info(&self, id: SnapId) -> String {
        let mut b = [0u8; 64];
        let mut e = Emitter::new(&mut b);
        self.drv.snapshot_status(id, StatusType::Info, &mut e).unwrap();
        e.as_str().to_string()
    }
}

#[test]
fn dm_snapshot_fix_crash_with_transient_storage_and_zero_chunk_size() {
    let s = Snaps::new();
    assert_eq!(s.ctr(false, "origin cow1 N 0"), Err("Chunk size not set"));
}

#[test]
fn dm_snapshot_fix_a_crash_when_an_origin_has_no_snapshots() {
    let s = Snaps::new();
    s.drv.origin_write(&s.devs[0], 8, &[0x22; 512], ReqFlags::empty()).unwrap();
    let mut b = [0u8; 512];
    s.devs[0].read(8, &mut b).unwrap();
    assert!(b.iter().all(|&v| v == 0x22));
}

/// A copy error: the snapshot is invalidated and the origin write that
/// waited for the copy completes (it hung before the fix).
#[test]
fn dm_snapshot_fix_hung_bios_when_copy_error_occurs() {
    let s = Snaps::new();
    let id = s.snap("origin cow1 P 16");
    s.devs[1].dev.fail_writes_after(Some(0));
    s.drv.origin_write(&s.devs[0], 0, &[0x33; 512], ReqFlags::empty()).unwrap();
    s.devs[1].dev.fail_writes_after(None);
    assert_eq!(s.info(id), "Invalid");
    let mut b = [0u8; 512];
    s.devs[0].read(0, &mut b).unwrap();
    assert!(b.iter().all(|&v| v == 0x33), "the origin write went through");
}

/// Invalidation writes the header from its own buffer (`header_area`): the
/// metadata area written by commits is untouched, the header says invalid.
#[test]
fn dm_snapshot_fix_header_corruption_race_on_invalidation() {
    let s = Snaps::new();
    let id = s.snap("origin cow1 P 16");
    s.drv.origin_write(&s.devs[0], 0, &[0x44; 512], ReqFlags::empty()).unwrap();
    let mut area = [0u8; 512];
    s.devs[1].read(16, &mut area).unwrap();
    // The next copy cannot read the origin: invalidation, whose header
    // write succeeds.
    s.devs[0].dev.fail_reads(true);
    s.drv.origin_write(&s.devs[0], 16, &[0x44; 512], ReqFlags::empty()).unwrap();
    s.devs[0].dev.fail_reads(false);
    assert_eq!(s.info(id), "Invalid");
    let (mut header, mut after) = ([0u8; 512], [0u8; 512]);
    s.devs[1].read(0, &mut header).unwrap();
    s.devs[1].read(16, &mut after).unwrap();
    assert_eq!(&header[..8], &[0x53, 0x6e, 0x41, 0x70, 0, 0, 0, 0], "magic, valid = 0");
    assert_eq!(area, after, "the metadata area is intact");
}

/// A merge makes the copies other snapshots of the origin need before it
/// changes the origin under them.
#[test]
fn dm_snapshot_trigger_exceptions_in_remaining_snapshots_during_merge() {
    let s = Snaps::new();
    let a = s.snap("origin cow1 P 16");
    let other = s.snap("origin cow2 P 16");
    s.drv.snapshot_write(a, 0, &[0x55; 8192], ReqFlags::empty()).unwrap();
    s.drv.set_suspended(a, true).unwrap();
    s.drv.snapshot_dtr(a);
    let m = s.ctr(true, "origin cow1 P 16").unwrap();
    s.drv.snapshot_resume(m).unwrap();
    while let Ok(dmrs_core::snapshot::MergeProgress::Merged(_)) = s.drv.merge_step(m) {}
    let mut b = vec![0u8; 8192];
    s.devs[0].read(0, &mut b).unwrap();
    assert!(b.iter().all(|&v| v == 0x55), "merged into the origin");
    s.drv.snapshot_read(other, 0, &mut b).unwrap();
    assert!(b.iter().all(|&v| v == 0x11), "the other snapshot kept the origin as it was");
}

/// A device that reports 2^40 sectors and holds nothing (only its size is
/// read before the region count is checked).
#[derive(Clone)]
struct Huge;

impl BlockDevice for Huge {
    fn read(&self, _: u64, b: &mut [u8]) -> dmrs_core::Result<()> {
        b.fill(0);
        Ok(())
    }
    fn write(&self, _: u64, _: &[u8], _: ReqFlags) -> dmrs_core::Result<()> {
        Ok(())
    }
    fn flush(&self) -> dmrs_core::Result<()> {
        Ok(())
    }
    fn size_sectors(&self) -> u64 {
        1 << 40
    }
    fn logical_block_size(&self) -> u32 {
        512
    }
}

impl dmrs_core::platform::DmDevice for Huge {
    fn bdev_id(&self) -> u64 {
        1
    }
    fn name(&self) -> &str {
        "huge"
    }
}

#[test]
fn dm_clone_add_overflow_check_for_number_of_regions() {
    let argv = ["meta", "dest", "src", "8"];
    let r = <CloneTarget<Huge, SyncCopier>>::ctr(1 << 40, &argv, &mut |_| Ok(Huge), SyncCopier::default());
    assert_eq!(r.err().map(|e| e.msg()), Some("Too many regions. Consider increasing the region size"));
}
