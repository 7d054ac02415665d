// SPDX-License-Identifier: GPL-2.0-only
//! The write-ordering rules, one small test each, written for mutants of
//! the ordering code that the other tests let survive (docs/
//! mutation-testing.md): what is written, with which flags, in which order,
//! and what must not be written at all.
#![allow(clippy::disallowed_types, clippy::disallowed_methods, clippy::disallowed_macros)] // a std test

use dmrs_core::clone::metadata::CloneMetadata;
use dmrs_core::clone::target::CloneTarget;
use dmrs_core::dm::SyncIo;
use dmrs_core::emit::{Emitter, StatusType};
use dmrs_core::platform::{BlockDevice, RamDev, ReqFlags, SyncCopier, TableDev};
use dmrs_core::snapshot::{SnapId, SnapshotDriver};
use dmrs_core::Errno;
use std::sync::{Arc, Mutex};

type Dev = TableDev<Arc<RamDev>>;

/// An origin and a COW on RAM devices, and a snapshot driver over them;
/// [`Snap::reboot`] keeps only what is durable and starts a new driver.
struct Snap {
    origin: Dev,
    cow: Dev,
    drv: SnapshotDriver<SyncIo<Dev>>,
}

impl Snap {
    fn new(origin: RamDev, cow: RamDev) -> Snap {
        Snap {
            origin: Dev::new(Arc::new(origin), 1, "origin"),
            cow: Dev::new(Arc::new(cow), 2, "cow"),
            drv: SnapshotDriver::new(SyncIo::default()).unwrap(),
        }
    }
    fn ctr(&self, merge: bool, table: &str) -> Result<SnapId, &'static str> {
        let argv: Vec<&str> = table.split_whitespace().collect();
        let devs = [&self.origin, &self.cow];
        let len = self.origin.size_sectors();
        let id = self
            .drv
            .snapshot_ctr(merge, len, &argv, &mut |p| {
                devs.iter().find(|d| d.name == p).map(|d| (*d).clone()).ok_or(Errno::ENOENT)
            })
            .map_err(|e| e.msg())?;
        self.drv.snapshot_resume(id).unwrap();
        Ok(id)
    }
    fn reboot(self) -> Snap {
        self.origin.dev.crash();
        self.cow.dev.crash();
        Snap { origin: self.origin, cow: self.cow, drv: SnapshotDriver::new(SyncIo::default()).unwrap() }
    }
    fn info(&self, id: SnapId) -> String {
        let mut b = [0u8; 64];
        let mut e = Emitter::new(&mut b);
        self.drv.snapshot_status(id, StatusType::Info, &mut e).unwrap();
        e.as_str().to_string()
    }
    fn read(&self, id: SnapId, sector: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.drv.snapshot_read(id, sector, &mut b).unwrap();
        b
    }
}

/// Every sector of `dev` as it is now (cache) and as it is durably.
fn image(dev: &RamDev) -> (Vec<u8>, Vec<u8>) {
    let n = (dev.size_sectors() * 512) as usize;
    let (mut cache, mut durable) = (vec![0u8; n], vec![0u8; n]);
    dev.peek(0, &mut cache).unwrap();
    dev.peek_durable(0, &mut durable).unwrap();
    (cache, durable)
}

/// "dm clone metadata: Use a two phase commit": a commit is refused once
/// the metadata went read-only between `pre_commit` and `commit`, and
/// nothing reaches the metadata device.
#[test]
fn clone_commit_after_going_read_only_writes_nothing() {
    let dev = RamDev::new(8192, 512).unwrap();
    let md = CloneMetadata::open(&dev, 16384, 8).unwrap();
    md.set_region_hydrated(3).unwrap();
    md.pre_commit().unwrap();
    md.set_read_only();
    let before = image(&dev);
    let writes = dev.stats().writes;
    assert_eq!(md.commit(), Err(Errno::EPERM));
    assert_eq!(dev.stats().writes, writes, "a read-only commit wrote to the metadata device");
    assert!(image(&dev) == before);
}

/// `dm_clone_metadata_abort` on read-only metadata is refused: the
/// in-core state is not replaced by a reopened copy behind the target's
/// back (and nothing is read or written).
#[test]
fn clone_abort_on_read_only_metadata_is_refused() {
    let dev = RamDev::new(8192, 512).unwrap();
    let md = CloneMetadata::open(&dev, 16384, 8).unwrap();
    md.set_region_hydrated(5).unwrap();
    md.set_read_only();
    let (reads, writes) = (dev.stats().reads, dev.stats().writes);
    assert_eq!(md.abort(), Err(Errno::EPERM));
    assert_eq!((dev.stats().reads, dev.stats().writes), (reads, writes), "abort reopened read-only metadata");
    assert!(md.is_region_hydrated(5), "the in-core map was replaced by the on-disk one");
}

/// A COW device that held something else before: the persistent store
/// wipes metadata area 0 when it creates the snapshot and the next area
/// before the first one fills up, so stale data is never loaded as
/// exceptions; filling an area is not an error.
#[test]
fn persistent_store_wipes_each_metadata_area_before_using_it() {
    // Chunks of one sector: 32 exceptions per area. Everything but the
    // header is stale.
    let mut stale = vec![0xEEu8; 256 * 512];
    stale[..512].fill(0);
    let s = Snap::new(RamDev::from_bytes(&[0x11; 128 * 512], 512).unwrap(), RamDev::from_bytes(&stale, 512).unwrap());
    s.ctr(false, "origin cow P 1").unwrap();
    let s = s.reboot();
    let id = s.ctr(false, "origin cow P 1").expect("a new snapshot's area 0 must be wiped on disk");
    // Fill area 0 exactly, and one more in area 1.
    for chunk in 0..33u64 {
        s.drv.origin_write(&s.origin, chunk, &[0x22; 512], ReqFlags::empty()).unwrap();
    }
    assert_ne!(s.info(id), "Invalid", "filling a metadata area invalidated the snapshot");
    let s = s.reboot();
    let id = s.ctr(false, "origin cow P 1").expect("area 1 must be wiped before area 0 fills");
    assert_ne!(s.info(id), "Invalid");
    assert!(s.read(id, 0, 40 * 512).iter().all(|&b| b == 0x11), "the snapshot lost chunks");
}

/// A FUA or PREFLUSH write to a clone commits the metadata (after flushing
/// the destination), then goes to the destination with FUA only: the
/// PREFLUSH was served by that flush.
#[test]
fn clone_flush_writes_go_down_fua_after_the_commit() {
    let devs = [
        Dev::new(Arc::new(RamDev::new(8192, 512).unwrap()), 1, "meta"),
        Dev::new(Arc::new(RamDev::new(16384, 512).unwrap()), 2, "dest"),
        Dev::new(Arc::new(RamDev::from_bytes(&vec![0x5a; 16384 * 512], 512).unwrap()), 3, "src"),
    ];
    let argv = ["meta", "dest", "src", "8", "1", "no_hydration"];
    let mut get = |p: &str| devs.iter().find(|d| d.name == p).cloned().ok_or(Errno::ENOENT);
    let c = <CloneTarget<Dev, SyncCopier>>::ctr(16384, &argv, &mut get, SyncCopier::default()).unwrap();
    devs[1].dev.record_writes(true);
    // Unhydrated region 12: copied first, then the write.
    c.write("cl", 100, &[1u8; 512], ReqFlags::PREFLUSH | ReqFlags::FUA).unwrap();
    // Region 12 is hydrated now: the write goes straight down.
    c.write("cl", 101, &[2u8; 512], ReqFlags::PREFLUSH).unwrap();
    let mut data = Vec::new();
    devs[1].dev.for_each_write(|w| {
        if w.sector == 100 || w.sector == 101 {
            data.push((w.sector, w.flags));
        }
    });
    assert_eq!(data, [(100, ReqFlags::FUA), (101, ReqFlags::FUA)]);
    let mut b = [0u8; 512];
    devs[1].dev.peek_durable(100, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 1), "a FUA write is durable when it completes");
}

/// A whole-chunk write to a snapshot is its own copy (`start_full_bio`):
/// with FUA the COW is flushed before the write is acknowledged — the
/// exception's commit may be batched with others and come later — and
/// without FUA nothing is flushed for it beyond the commit's own PREFLUSH.
#[test]
fn whole_chunk_snapshot_writes_flush_the_cow_only_for_fua() {
    let s = Snap::new(RamDev::from_bytes(&[0x11; 128 * 512], 512).unwrap(), RamDev::new(256, 512).unwrap());
    let id = s.ctr(false, "origin cow P 8").unwrap();
    let flushes = s.cow.dev.stats().flushes;
    s.drv.snapshot_write(id, 0, &[0x33; 4096], ReqFlags::empty()).unwrap();
    assert_eq!(s.cow.dev.stats().flushes, flushes, "a plain write flushed the COW");
    s.drv.snapshot_write(id, 8, &[0x44; 4096], ReqFlags::FUA).unwrap();
    assert_eq!(s.cow.dev.stats().flushes, flushes + 1, "a FUA write did not flush the COW");
    let s = s.reboot();
    let id = s.ctr(false, "origin cow P 8").unwrap();
    assert!(s.read(id, 8, 4096).iter().all(|&b| b == 0x44));
}

/// A device that logs its writes (first sector, flags) and flushes.
struct Logged<'a> {
    dev: &'a RamDev,
    log: Mutex<Vec<(Option<u64>, ReqFlags)>>,
}

impl BlockDevice for Logged<'_> {
    fn read(&self, s: u64, b: &mut [u8]) -> dmrs_core::Result<()> {
        self.dev.read(s, b)
    }
    fn write(&self, s: u64, b: &[u8], f: ReqFlags) -> dmrs_core::Result<()> {
        self.log.lock().unwrap().push((Some(s), f));
        self.dev.write(s, b, f)
    }
    fn flush(&self) -> dmrs_core::Result<()> {
        self.log.lock().unwrap().push((None, ReqFlags::empty()));
        self.dev.flush()
    }
    fn size_sectors(&self) -> u64 {
        self.dev.size_sectors()
    }
    fn logical_block_size(&self) -> u32 {
        512
    }
}

/// `dm_tm_pre_commit` flushes every block of the transaction
/// (`dm_bm_flush`) before `dm_tm_commit` writes the superblock with
/// PREFLUSH|FUA, last: a failed flush fails the commit before the
/// superblock is touched.
#[test]
fn clone_commit_flushes_the_transaction_then_writes_the_superblock_last() {
    let ram = RamDev::new(8192, 512).unwrap();
    let dev = Logged { dev: &ram, log: Mutex::new(Vec::new()) };
    let md = CloneMetadata::open(&dev, 16384, 8).unwrap();
    md.set_region_hydrated(3).unwrap();
    md.pre_commit().unwrap();
    dev.log.lock().unwrap().clear();
    md.commit().unwrap();
    let log = dev.log.lock().unwrap().clone();
    let (last, rest) = log.split_last().unwrap();
    assert_eq!(*last, (Some(0), ReqFlags::PREFLUSH | ReqFlags::FUA), "superblock last: {log:?}");
    let flush = rest.iter().rposition(|w| w.0.is_none()).unwrap_or_else(|| panic!("no flush: {log:?}"));
    assert!(flush > 0 && rest[..flush].iter().all(|w| w.0.is_some_and(|s| s > 0)), "{log:?}");
    assert_eq!(flush, rest.len() - 1, "a write between the flush and the superblock: {log:?}");
}
