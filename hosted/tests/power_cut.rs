// SPDX-License-Identifier: GPL-2.0-only
//! Write-point power-cut sweep (snapshot writes, a merge in progress,
//! clone hydration): a scripted workload runs on RAM devices
//! that share one power rail; the power is cut after its k-th write, for
//! every k the workload reaches. What was flushed or written with FUA is
//! kept and (a) the rest dropped (`RamDev::crash`), (b) every write issued
//! before the cut kept, or (c) a pseudo-random subset of the unflushed
//! sectors kept, which tears multi-sector writes (metadata areas, chunk
//! copies) at any sector (`RamDev::crash_keeping`; two subsets per cut).
//! Then the targets are built
//! again from the devices ("reboot") and checked:
//! - the metadata opens, and `cow check`/`clone check` find it consistent;
//! - every snapshot shows, for every chunk, the origin as it was when the
//!   snapshot was taken, except what was written to the snapshot itself;
//! - every write acknowledged and then made durable (a flush or FUA that
//!   also completed) reads back;
//! - every other sector holds its old data or data issued to it;
//! - a clone's region recorded hydrated holds the source's data or data
//!   written to it.

use dmrs_core::clone::target::CloneTarget;
use dmrs_core::dm::SyncIo;
use dmrs_core::platform::{BlockDevice, DmDevice, RamDev, ReqFlags, SyncCopier};
use dmrs_core::snapshot::{SnapId, SnapshotDriver};
use dmrs_core::{Errno, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What happens to a workload's I/O, counted over every device at once.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Power cut after this many writes: later writes and flushes fail
    /// (the machine is off).
    Cut(u64),
    /// Only write number n (from 0) fails with EIO.
    FailWrite(u64),
    /// Only read number n fails with EIO.
    FailRead(u64),
}

/// One power supply for every device of a workload, with its fault.
struct Rail {
    issued: AtomicU64,
    reads: AtomicU64,
    fault: Fault,
}

impl Rail {
    fn new(cut_at: u64) -> Arc<Rail> {
        Rail::with(Fault::Cut(cut_at))
    }
    fn with(fault: Fault) -> Arc<Rail> {
        Arc::new(Rail { issued: AtomicU64::new(0), reads: AtomicU64::new(0), fault })
    }
    fn write_point(&self) -> Result<()> {
        let n = self.issued.fetch_add(1, Ordering::SeqCst);
        match self.fault {
            Fault::Cut(k) if n >= k => Err(Errno::EIO),
            Fault::FailWrite(k) if n == k => Err(Errno::EIO),
            _ => Ok(()),
        }
    }
    fn read_point(&self) -> Result<()> {
        let n = self.reads.fetch_add(1, Ordering::SeqCst);
        match self.fault {
            Fault::FailRead(k) if n == k => Err(Errno::EIO),
            _ => Ok(()),
        }
    }
    fn on(&self) -> Result<()> {
        match self.fault {
            Fault::Cut(k) if self.issued.load(Ordering::SeqCst) >= k => Err(Errno::EIO),
            _ => Ok(()),
        }
    }
    fn writes(&self) -> u64 {
        self.issued.load(Ordering::SeqCst)
    }
}

/// A RAM device on a rail.
#[derive(Clone)]
struct Dev {
    ram: Arc<RamDev>,
    rail: Arc<Rail>,
    id: u64,
    name: &'static str,
}

impl BlockDevice for Dev {
    fn read(&self, s: u64, b: &mut [u8]) -> Result<()> {
        self.rail.read_point()?;
        self.ram.read(s, b)
    }
    fn write(&self, s: u64, b: &[u8], f: ReqFlags) -> Result<()> {
        self.rail.write_point()?;
        self.ram.write(s, b, f)
    }
    fn flush(&self) -> Result<()> {
        self.rail.on()?;
        self.ram.flush()
    }
    fn discard(&self, s: u64, n: u64) -> Result<()> {
        self.rail.write_point()?;
        self.ram.discard(s, n)
    }
    fn size_sectors(&self) -> u64 {
        self.ram.size_sectors()
    }
    fn logical_block_size(&self) -> u32 {
        512
    }
}

impl DmDevice for Dev {
    fn bdev_id(&self) -> u64 {
        self.id
    }
    fn name(&self) -> &str {
        self.name
    }
}

/// What was done to one 512-byte sector: values issued to it in order, and
/// the prefix of them that must have survived (acknowledged, then flushed).
#[derive(Clone, Default)]
struct SectorLog {
    issued: Vec<u8>,
    durable: usize,
    /// Discarded: its data is undefined from then on (a discard promises
    /// nothing, and dm-clone completes one it cannot record as a success).
    discarded: bool,
}

/// Expected contents of a device, sector by sector.
struct Model {
    initial: Vec<u8>,
    sectors: Vec<SectorLog>,
    /// Sectors acknowledged since the last completed flush.
    unflushed: Vec<(usize, usize)>,
}

impl Model {
    fn new(initial: Vec<u8>) -> Model {
        let sectors = vec![SectorLog::default(); initial.len()];
        Model { initial, sectors, unflushed: Vec::new() }
    }
    /// A write of `v` to sectors `s..s+n` was issued; `acked` when it
    /// completed, `fua` when it was durable on completion.
    fn write(&mut self, s: usize, n: usize, v: u8, acked: bool, fua: bool) {
        for x in s..s + n {
            self.sectors[x].issued.push(v);
            if acked {
                let len = self.sectors[x].issued.len();
                if fua {
                    self.sectors[x].durable = len;
                } else {
                    self.unflushed.push((x, len));
                }
            }
        }
    }
    /// A discard of sectors `s..s+n` was issued.
    fn discard(&mut self, s: usize, n: usize) {
        for x in s..s + n {
            self.sectors[x].discarded = true;
        }
    }
    /// A flush failed: what was acknowledged since the last good flush is
    /// no longer promised, even by a later flush that succeeds (as fsync:
    /// dm-clone aborts to its last commit, for one).
    fn flush_failed(&mut self) {
        self.unflushed.clear();
    }
    /// A flush completed: everything acknowledged before it is durable.
    fn flushed(&mut self) {
        for (x, len) in self.unflushed.drain(..) {
            let d = &mut self.sectors[x].durable;
            *d = (*d).max(len);
        }
    }
    /// `got` (one byte value per sector, checked over the whole sector) is
    /// possible after a power cut.
    fn check(&self, what: &str, x: usize, got: &[u8]) {
        let v = got[0];
        assert!(got.iter().all(|&b| b == v), "{what}: sector {x} torn");
        let log = &self.sectors[x];
        if log.discarded {
            return;
        }
        let allowed_from = log.durable; // values issued at or after the last durable one
        let ok = if log.durable == 0 {
            v == self.initial[x] || log.issued.contains(&v)
        } else {
            log.issued[allowed_from - 1..].contains(&v)
        };
        assert!(
            ok,
            "{what}: sector {x} holds {v:#x}; initial {:#x}, issued {:?}, durable {}",
            self.initial[x], log.issued, log.durable
        );
    }
}

fn lcg(x: &mut u64) -> u64 {
    *x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *x >> 33
}

fn fill(v: u8, sectors: usize) -> Vec<u8> {
    vec![v; sectors * 512]
}

const ORIGIN_SECTORS: usize = 2048; // 1 MiB
const COW_SECTORS: u64 = 2048;

/// The origin's initial data: one value per 8-sector block.
fn origin_initial() -> Vec<u8> {
    (0..ORIGIN_SECTORS).map(|s| 0x10 + (s / 8 % 64) as u8).collect()
}

struct SnapLab {
    origin: Dev,
    cows: [Dev; 2],
}

impl SnapLab {
    /// The origin with its initial data and two blank COWs, on `rail`.
    fn new(rail: &Arc<Rail>) -> (SnapLab, Vec<u8>) {
        let initial = origin_initial();
        let bytes: Vec<u8> = initial.iter().flat_map(|&v| [v; 512]).collect();
        let ram = |r: RamDev| Arc::new(r);
        let origin =
            Dev { ram: ram(RamDev::from_bytes(&bytes, 512).unwrap()), rail: rail.clone(), id: 1, name: "origin" };
        let cow = |id, name| Dev { ram: ram(RamDev::new(COW_SECTORS, 512).unwrap()), rail: rail.clone(), id, name };
        (SnapLab { origin, cows: [cow(2, "cow1"), cow(3, "cow2")] }, initial)
    }
}

/// A snapshot workload as it ended: devices, what was acknowledged, the
/// driver still loaded, and the I/O it did.
struct SnapRun {
    lab: SnapLab,
    origin_model: Model,
    snap_model: Model,
    drv: SnapshotDriver<SyncIo<Dev>>,
    ids: Option<(SnapId, SnapId)>,
    rail: Arc<Rail>,
}

/// Origin writes with two snapshots of different chunk sizes (P 16 and
/// P 8), snapshot writes (some FUA) and flushes, under `fault`.
fn snapshot_workload(fault: Fault) -> SnapRun {
    let rail = Rail::with(fault);
    let (lab, initial) = SnapLab::new(&rail);
    let mut origin_model = Model::new(initial.clone());
    let mut snap_model = Model::new(initial);
    let drv = SnapshotDriver::new(SyncIo::<Dev, SyncCopier>::default()).unwrap();
    let devs = [lab.origin.clone(), lab.cows[0].clone(), lab.cows[1].clone()];
    let mut get = |p: &str| devs.iter().find(|d| d.name == p).cloned().ok_or(Errno::ENOENT);
    let s1 = drv.snapshot_ctr(false, ORIGIN_SECTORS as u64, &["origin", "cow1", "P", "16"], &mut get);
    let s2 = drv.snapshot_ctr(false, ORIGIN_SECTORS as u64, &["origin", "cow2", "P", "8"], &mut get);
    let (Ok(s1), Ok(s2)) = (s1, s2) else {
        return SnapRun { lab, origin_model, snap_model, drv, ids: None, rail };
    };
    let _ = drv.snapshot_resume(s1);
    let _ = drv.snapshot_resume(s2);
    let mut x = 7u64;
    for i in 0..48u64 {
        let v = 0x80 + (i % 120) as u8;
        let s = (lcg(&mut x) % (ORIGIN_SECTORS as u64 - 8)) as usize;
        let n = 1 + (lcg(&mut x) % 8) as usize;
        match i % 6 {
            // A snapshot write (FUA every other time).
            4 => {
                let fua = i % 12 == 4;
                let f = if fua { ReqFlags::FUA } else { ReqFlags::empty() };
                let acked = drv.snapshot_write(s1, s as u64, &fill(v, n), f).is_ok();
                snap_model.write(s, n, v, acked, fua);
            }
            // A flush of origin and snapshot (fsync on both devices).
            5 => {
                match lab.origin.flush() {
                    Ok(()) => origin_model.flushed(),
                    Err(_) => origin_model.flush_failed(),
                }
                match drv.snapshot_flush(s1) {
                    Ok(()) => snap_model.flushed(),
                    Err(_) => snap_model.flush_failed(),
                }
            }
            _ => {
                let acked = drv.origin_write(&lab.origin, s as u64, &fill(v, n), ReqFlags::empty()).is_ok();
                origin_model.write(s, n, v, acked, false);
            }
        }
    }
    SnapRun { lab, origin_model, snap_model, drv, ids: Some((s1, s2)), rail }
}

/// What the power cut leaves of the writes not yet flushed.
#[derive(Clone, Copy, Debug)]
enum Lost {
    /// (a) All of them are lost.
    All,
    /// (b) None: every issued write reached the medium.
    Nothing,
    /// (c) A pseudo-random subset of their sectors, from this seed.
    Some(u64),
}

/// The variants swept at every cut point.
const LOST: [Lost; 4] = [Lost::All, Lost::Nothing, Lost::Some(1), Lost::Some(2)];

/// Reboot after a cut: the devices alone, without the rail.
fn reboot(d: &Dev, lost: Lost) -> Dev {
    match lost {
        Lost::All => d.ram.crash(),
        Lost::Nothing => {}
        Lost::Some(seed) => {
            let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ d.id;
            d.ram.crash_keeping(&mut |_| lcg(&mut x) % 2 == 1);
        }
    }
    Dev { ram: d.ram.clone(), rail: Rail::new(u64::MAX), id: d.id, name: d.name }
}

fn read(dev: &dyn BlockDevice, s: u64, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n * 512];
    dev.read(s, &mut b).unwrap();
    b
}

fn check_snapshots(lab: &SnapLab, origin_model: &Model, snap_model: &Model, crash: Lost, cut: u64) {
    let origin = reboot(&lab.origin, crash);
    let cows = [reboot(&lab.cows[0], crash), reboot(&lab.cows[1], crash)];
    for c in &cows {
        let r = dmrs_hosted::cow::check_device(c, Some(ORIGIN_SECTORS as u64), &|_| {});
        assert!(r.problems.is_empty(), "cut {cut} {crash:?}: cow check of {}: {:?}", c.name, r.problems);
    }
    let drv = SnapshotDriver::new(SyncIo::<Dev, SyncCopier>::default()).unwrap();
    let devs = [origin.clone(), cows[0].clone(), cows[1].clone()];
    let mut get = |p: &str| devs.iter().find(|d| d.name == p).cloned().ok_or(Errno::ENOENT);
    let open =
        |drv: &SnapshotDriver<SyncIo<Dev>>, get: &mut dyn FnMut(&str) -> Result<Dev>, cow, chunk| -> Option<SnapId> {
            // A COW the cut left without a header is a snapshot never made.
            let id = drv.snapshot_ctr(false, ORIGIN_SECTORS as u64, &["origin", cow, "P", chunk], get).unwrap();
            drv.snapshot_resume(id).unwrap();
            Some(id)
        };
    let s1 = open(&drv, &mut get, "cow1", "16");
    let s2 = open(&drv, &mut get, "cow2", "8");
    for x in 0..ORIGIN_SECTORS {
        origin_model.check(&format!("cut {cut} {crash:?} origin"), x, &read(&origin, x as u64, 1));
        let initial = origin_model.initial[x];
        if let Some(s2) = s2 {
            let mut b = vec![0u8; 512];
            drv.snapshot_read(s2, x as u64, &mut b).unwrap();
            assert!(
                b.iter().all(|&v| v == initial),
                "cut {cut} {crash:?}: snapshot 2 sector {x} is not the origin as it was"
            );
        }
        if let Some(s1) = s1 {
            let mut b = vec![0u8; 512];
            drv.snapshot_read(s1, x as u64, &mut b).unwrap();
            snap_model.check(&format!("cut {cut} {crash:?} snapshot 1"), x, &b);
        }
    }
}

/// Every cut point of the snapshot workload, dropping what was not durable
/// and keeping every issued write.
#[test]
fn snapshot_metadata_and_data_survive_a_power_cut_after_any_write() {
    let total = snapshot_workload(Fault::Cut(u64::MAX)).rail.writes();
    assert!(total > 100, "the workload writes enough to sweep: {total}");
    for cut in 0..=total {
        for crash in LOST {
            let run = snapshot_workload(Fault::Cut(cut));
            drop(run.drv);
            check_snapshots(&run.lab, &run.origin_model, &run.snap_model, crash, cut);
        }
    }
    eprintln!("snapshot workload: {} cut points x {} variants", total + 1, LOST.len());
}

const CLONE_SECTORS: u64 = 1024; // 64 regions of 16 sectors
const REGION: u64 = 16;

/// A clone workload as it ended.
struct CloneRun {
    devs: [Dev; 3],
    model: Model,
    clone: Option<CloneTarget<Dev, SyncCopier>>,
    rail: Arc<Rail>,
}

/// Clone hydration with writes, discards and commits (flushes, FUA).
fn clone_workload(fault: Fault) -> CloneRun {
    let rail = Rail::with(fault);
    let src_initial: Vec<u8> = (0..CLONE_SECTORS as usize).map(|s| 0x20 + (s / 16 % 64) as u8).collect();
    let bytes: Vec<u8> = src_initial.iter().flat_map(|&v| [v; 512]).collect();
    let src = Dev { ram: Arc::new(RamDev::from_bytes(&bytes, 512).unwrap()), rail: rail.clone(), id: 3, name: "src" };
    let meta = Dev { ram: Arc::new(RamDev::new(4096, 512).unwrap()), rail: rail.clone(), id: 1, name: "meta" };
    let dest = Dev { ram: Arc::new(RamDev::new(CLONE_SECTORS, 512).unwrap()), rail: rail.clone(), id: 2, name: "dest" };
    let devs = [meta, dest, src];
    let mut model = Model::new(src_initial);
    let region = REGION.to_string();
    let argv = ["meta", "dest", "src", region.as_str(), "1", "no_hydration"];
    let mut get = |p: &str| devs.iter().find(|d| d.name == p).cloned().ok_or(Errno::ENOENT);
    let Ok(c) = <CloneTarget<Dev, SyncCopier>>::ctr(CLONE_SECTORS, &argv, &mut get, SyncCopier::default()) else {
        return CloneRun { devs, model, clone: None, rail };
    };
    let mut x = 11u64;
    for i in 0..40u64 {
        let v = 0x90 + (i % 100) as u8;
        let s = lcg(&mut x) % (CLONE_SECTORS - 8);
        let n = 1 + lcg(&mut x) % 8;
        match i % 8 {
            3 => {
                let _ = c.message("cl", &["enable_hydration"]);
                let _ = c.hydrate_step();
            }
            5 => match c.flush("cl") {
                Ok(()) => model.flushed(),
                Err(_) => model.flush_failed(),
            },
            6 => {
                // A discard of whole regions: no data promised for them.
                let first = (s / REGION) * REGION;
                let _ = c.discard("cl", first, REGION);
                model.discard(first as usize, REGION as usize);
            }
            _ => {
                let fua = i % 8 == 7;
                let f = if fua { ReqFlags::FUA } else { ReqFlags::empty() };
                let acked = c.write("cl", s, &fill(v, n as usize), f).is_ok();
                model.write(s as usize, n as usize, v, acked, fua);
            }
        }
    }
    let _ = c.commit_metadata("cl");
    CloneRun { devs, model, clone: Some(c), rail }
}

/// Every cut point of the clone workload.
#[test]
fn clone_metadata_and_data_survive_a_power_cut_after_any_write() {
    let total = clone_workload(Fault::Cut(u64::MAX)).rail.writes();
    assert!(total > 50, "the workload writes enough to sweep: {total}");
    for cut in 0..=total {
        for crash in LOST {
            let CloneRun { devs, model, clone, .. } = clone_workload(Fault::Cut(cut));
            drop(clone);
            let devs: Vec<Dev> = devs.iter().map(|d| reboot(d, crash)).collect();
            let img = dmrs_hosted::clone::inspect(&devs[0]);
            if img.all_zero {
                continue; // cut before the metadata was formatted
            }
            assert!(img.problems.is_empty(), "cut {cut} {crash:?}: clone check: {:?}", img.problems);
            let region = REGION.to_string();
            let argv = ["meta", "dest", "src", region.as_str(), "1", "no_hydration"];
            let mut get = |p: &str| devs.iter().find(|d| d.name == p).cloned().ok_or(Errno::ENOENT);
            let c = <CloneTarget<Dev, SyncCopier>>::ctr(CLONE_SECTORS, &argv, &mut get, SyncCopier::default())
                .unwrap_or_else(|e| panic!("cut {cut}: metadata does not open: {e}"));
            for s in 0..CLONE_SECTORS as usize {
                let mut b = vec![0u8; 512];
                c.read(s as u64, &mut b).unwrap();
                model.check(&format!("cut {cut} {crash:?} clone"), s, &b);
            }
        }
    }
    eprintln!("clone workload: {} cut points x {} variants", total + 1, LOST.len());
}

/// A merge in progress with I/O through the merge target: snapshot writes
/// (FUA) to a P 16 snapshot, then snapshot-merge takes over and merges
/// step by step while writes go through it. After any cut the merge
/// target, loaded again, shows the snapshot's data for every sector.
fn merge_workload(cut_at: u64) -> (SnapLab, Model, u64) {
    let rail = Rail::new(cut_at);
    let (lab, initial) = SnapLab::new(&rail);
    let mut view = Model::new(initial);
    let drv = SnapshotDriver::new(SyncIo::<Dev, SyncCopier>::default()).unwrap();
    let devs = [lab.origin.clone(), lab.cows[0].clone()];
    let mut get = |p: &str| devs.iter().find(|d| d.name == p).cloned().ok_or(Errno::ENOENT);
    let table = ["origin", "cow1", "P", "16"];
    let Ok(s) = drv.snapshot_ctr(false, ORIGIN_SECTORS as u64, &table, &mut get) else {
        return (lab, view, rail.writes());
    };
    let _ = drv.snapshot_resume(s);
    let mut x = 5u64;
    for i in 0..12u64 {
        let (v, sec) = (0x70 + i as u8, lcg(&mut x) % (ORIGIN_SECTORS as u64 - 16));
        let acked = drv.snapshot_write(s, sec, &fill(v, 16), ReqFlags::FUA).is_ok();
        view.write(sec as usize, 16, v, acked, true);
    }
    let _ = drv.set_suspended(s, true);
    drv.snapshot_dtr(s);
    let Ok(m) = drv.snapshot_ctr(true, ORIGIN_SECTORS as u64, &table, &mut get) else {
        return (lab, view, rail.writes());
    };
    let _ = drv.snapshot_resume(m);
    for i in 0..40u64 {
        if i % 3 == 1 {
            let (v, sec) = (0xc0 + i as u8, lcg(&mut x) % (ORIGIN_SECTORS as u64 - 4));
            let acked = drv.snapshot_write(m, sec, &fill(v, 4), ReqFlags::FUA).is_ok();
            view.write(sec as usize, 4, v, acked, true);
        } else if !matches!(drv.merge_step(m), Ok(dmrs_core::snapshot::MergeProgress::Merged(_))) {
            break;
        }
    }
    drop(drv);
    let n = rail.writes();
    (lab, view, n)
}

#[test]
fn a_merge_survives_a_power_cut_after_any_write() {
    let (_, _, total) = merge_workload(u64::MAX);
    assert!(total > 50, "the workload writes enough to sweep: {total}");
    for cut in 0..=total {
        for crash in LOST {
            let (lab, view, _) = merge_workload(cut);
            let origin = reboot(&lab.origin, crash);
            let cow = reboot(&lab.cows[0], crash);
            let r = dmrs_hosted::cow::check_device(&cow, Some(ORIGIN_SECTORS as u64), &|_| {});
            assert!(r.problems.is_empty(), "cut {cut}: cow check: {:?}", r.problems);
            let drv = SnapshotDriver::new(SyncIo::<Dev, SyncCopier>::default()).unwrap();
            let devs = [origin.clone(), cow.clone()];
            let mut get = |p: &str| devs.iter().find(|d| d.name == p).cloned().ok_or(Errno::ENOENT);
            // Whether the cut came before or after snapshot-merge was
            // loaded, the kernel would load it now to go on merging.
            let m = drv.snapshot_ctr(true, ORIGIN_SECTORS as u64, &["origin", "cow1", "P", "16"], &mut get).unwrap();
            drv.snapshot_resume(m).unwrap();
            for x in 0..ORIGIN_SECTORS {
                let mut b = vec![0u8; 512];
                drv.snapshot_read(m, x as u64, &mut b).unwrap();
                view.check(&format!("cut {cut} {crash:?} merge target"), x, &b);
            }
        }
    }
    eprintln!("merge workload: {} cut points x {} variants", total + 1, LOST.len());
}

fn info(drv: &SnapshotDriver<SyncIo<Dev>>, id: SnapId) -> String {
    let mut b = [0u8; 128];
    let mut e = dmrs_core::emit::Emitter::new(&mut b);
    drv.snapshot_status(id, dmrs_core::emit::StatusType::Info, &mut e).unwrap();
    e.as_str().to_string()
}

/// After an I/O error anywhere: every acknowledged origin write reads
/// back, a snapshot is either valid and shows what it should or
/// `Invalid` and fails its I/O (dm-snap.c's `__invalidate_snapshot`), and
/// the origin goes on working.
fn check_after_eio(mut run: SnapRun, what: &str) {
    // No power was lost: everything acknowledged is on the devices.
    run.origin_model.flushed();
    run.snap_model.flushed();
    let origin = reboot(&run.lab.origin, Lost::Nothing);
    for x in 0..ORIGIN_SECTORS {
        run.origin_model.check(&format!("{what}: origin"), x, &read(&origin, x as u64, 1));
    }
    let Some((s1, s2)) = run.ids else { return };
    let initial = Model::new(run.origin_model.initial.clone());
    for (id, model) in [(s1, &run.snap_model), (s2, &initial)] {
        let status = info(&run.drv, id);
        let mut b = vec![0u8; 512];
        if status == "Invalid" {
            assert_eq!(run.drv.snapshot_read(id, 0, &mut b), Err(Errno::EIO), "{what}");
            continue;
        }
        assert!(status.ends_with(" 32") || status.ends_with(" 16"), "{what}: status {status}");
        for x in 0..ORIGIN_SECTORS {
            run.drv.snapshot_read(id, x as u64, &mut b).unwrap_or_else(|e| panic!("{what}: read {x}: {e}"));
            model.check(&format!("{what}: snapshot {status}"), x, &b);
        }
    }
    // The origin keeps working.
    run.drv.origin_write(&origin, 0, &fill(0xee, 1), ReqFlags::empty()).unwrap();
    assert!(read(&origin, 0, 1).iter().all(|&v| v == 0xee), "{what}");
}

#[test]
fn snapshots_degrade_as_the_kernel_does_on_eio_at_every_io() {
    let clean = snapshot_workload(Fault::Cut(u64::MAX));
    let (writes, reads) = (clean.rail.writes(), clean.rail.reads.load(Ordering::SeqCst));
    assert!(writes > 100 && reads > 50, "{writes} writes, {reads} reads");
    let mut invalid = 0;
    for k in 0..writes {
        let run = snapshot_workload(Fault::FailWrite(k));
        invalid += run
            .ids
            .map(|(s1, s2)| (info(&run.drv, s1) == "Invalid") as u32 + (info(&run.drv, s2) == "Invalid") as u32)
            .unwrap_or(0);
        check_after_eio(run, &format!("write {k} failed"));
    }
    for k in 0..reads {
        check_after_eio(snapshot_workload(Fault::FailRead(k)), &format!("read {k} failed"));
    }
    assert!(invalid > 0, "some failed writes invalidate a snapshot");
    eprintln!("snapshot workload: EIO at {writes} writes and {reads} reads; {invalid} invalidations");
}

/// After an I/O error anywhere in the clone workload: no panic; the clone
/// either works, and every acknowledged write reads back through it, or
/// reports `Fail` (metadata I/O failed: dm-clone's fail mode) and errors
/// its I/O; the metadata on the device is consistent.
#[test]
fn clone_degrades_as_the_kernel_does_on_eio_at_every_io() {
    let clean = clone_workload(Fault::Cut(u64::MAX));
    let (writes, reads) = (clean.rail.writes(), clean.rail.reads.load(Ordering::SeqCst));
    assert!(writes > 50 && reads > 20, "{writes} writes, {reads} reads");
    let faults = (0..writes).map(Fault::FailWrite).chain((0..reads).map(Fault::FailRead));
    let mut failed_mode = 0;
    for fault in faults {
        // Unlike the snapshots, writes acknowledged but not yet flushed may
        // be gone: a failed metadata operation aborts to the last commit
        // (`dm_clone_metadata_abort`), and their regions read from the
        // source again. Flushed or FUA writes must stay.
        let CloneRun { devs, model, clone, .. } = clone_workload(fault);
        let Some(c) = clone else { continue };
        let mut b = [0u8; 256];
        let mut e = dmrs_core::emit::Emitter::new(&mut b);
        c.status("cl", dmrs_core::emit::StatusType::Info, true, &mut e);
        let status = e.as_str().to_string();
        if status == "Fail" {
            failed_mode += 1;
            assert!(c.read(0, &mut [0u8; 512]).is_err(), "a failed clone errors its I/O");
        } else {
            for s in 0..CLONE_SECTORS as usize {
                let mut b = vec![0u8; 512];
                c.read(s as u64, &mut b).unwrap();
                model.check(&format!("{} clone ({status})", describe(fault)), s, &b);
            }
        }
        drop(c);
        let devs: Vec<Dev> = devs.iter().map(|d| reboot(d, Lost::Nothing)).collect();
        let img = dmrs_hosted::clone::inspect(&devs[0]);
        assert!(img.all_zero || img.problems.is_empty(), "{}: clone check: {:?}", describe(fault), img.problems);
    }
    eprintln!("clone workload: EIO at {writes} writes and {reads} reads; {failed_mode} ended in Fail mode");
}

fn describe(f: Fault) -> String {
    match f {
        Fault::Cut(k) => format!("cut after write {k}"),
        Fault::FailWrite(k) => format!("write {k} failed"),
        Fault::FailRead(k) => format!("read {k} failed"),
    }
}
