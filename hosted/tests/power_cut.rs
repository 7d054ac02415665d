// SPDX-License-Identifier: GPL-2.0-only
//! Write-point power-cut sweep (snapshot writes, a merge in progress,
//! clone hydration): a scripted workload runs on RAM devices
//! that share one power rail; the power is cut after its k-th write, for
//! every k the workload reaches. What was flushed or written with FUA is
//! kept and the rest dropped (`RamDev::crash`), or, in the second variant,
//! every write issued before the cut is kept. Then the targets are built
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

/// One power supply for every device of a workload: writes after the
/// `cut_at`-th fail (the machine is off), as do flushes once it is off.
struct Rail {
    issued: AtomicU64,
    cut_at: u64,
}

impl Rail {
    fn new(cut_at: u64) -> Arc<Rail> {
        Arc::new(Rail { issued: AtomicU64::new(0), cut_at })
    }
    fn write_point(&self) -> Result<()> {
        if self.issued.fetch_add(1, Ordering::SeqCst) >= self.cut_at {
            return Err(Errno::EIO);
        }
        Ok(())
    }
    fn on(&self) -> Result<()> {
        if self.issued.load(Ordering::SeqCst) >= self.cut_at {
            return Err(Errno::EIO);
        }
        Ok(())
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

/// Origin writes with two snapshots of different chunk sizes (P 16 and
/// P 8), snapshot writes (some FUA) and flushes; the power is cut after
/// write `cut_at`. Returns the devices, the models and the writes issued.
fn snapshot_workload(cut_at: u64) -> (SnapLab, Model, Model, u64) {
    let rail = Rail::new(cut_at);
    let initial = origin_initial();
    let bytes: Vec<u8> = initial.iter().flat_map(|&v| [v; 512]).collect();
    let origin =
        Dev { ram: Arc::new(RamDev::from_bytes(&bytes, 512).unwrap()), rail: rail.clone(), id: 1, name: "origin" };
    let cow = |id, name| Dev { ram: Arc::new(RamDev::new(COW_SECTORS, 512).unwrap()), rail: rail.clone(), id, name };
    let lab = SnapLab { origin, cows: [cow(2, "cow1"), cow(3, "cow2")] };
    let mut origin_model = Model::new(initial.clone());
    let mut snap_model = Model::new(initial);
    let drv = SnapshotDriver::new(SyncIo::<Dev, SyncCopier>::default()).unwrap();
    let devs = [lab.origin.clone(), lab.cows[0].clone(), lab.cows[1].clone()];
    let mut get = |p: &str| devs.iter().find(|d| d.name == p).cloned().ok_or(Errno::ENOENT);
    let Ok(s1) = drv.snapshot_ctr(false, ORIGIN_SECTORS as u64, &["origin", "cow1", "P", "16"], &mut get) else {
        return (lab, origin_model, snap_model, rail.writes());
    };
    let Ok(s2) = drv.snapshot_ctr(false, ORIGIN_SECTORS as u64, &["origin", "cow2", "P", "8"], &mut get) else {
        return (lab, origin_model, snap_model, rail.writes());
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
                if lab.origin.flush().is_ok() {
                    origin_model.flushed();
                }
                if drv.snapshot_flush(s1).is_ok() {
                    snap_model.flushed();
                }
            }
            _ => {
                let acked = drv.origin_write(&lab.origin, s as u64, &fill(v, n), ReqFlags::empty()).is_ok();
                origin_model.write(s, n, v, acked, false);
            }
        }
    }
    drop(drv);
    let n = rail.writes();
    (lab, origin_model, snap_model, n)
}

/// Reboot after a cut: the devices alone, without the rail.
fn reboot(d: &Dev, crash: bool) -> Dev {
    if crash {
        d.ram.crash();
    }
    Dev { ram: d.ram.clone(), rail: Rail::new(u64::MAX), id: d.id, name: d.name }
}

fn read(dev: &dyn BlockDevice, s: u64, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n * 512];
    dev.read(s, &mut b).unwrap();
    b
}

fn check_snapshots(lab: &SnapLab, origin_model: &Model, snap_model: &Model, crash: bool, cut: u64) {
    let origin = reboot(&lab.origin, crash);
    let cows = [reboot(&lab.cows[0], crash), reboot(&lab.cows[1], crash)];
    for c in &cows {
        let r = dmrs_hosted::cow::check_device(c, Some(ORIGIN_SECTORS as u64), &|_| {});
        assert!(r.problems.is_empty(), "cut {cut}: cow check of {}: {:?}", c.name, r.problems);
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
        origin_model.check(&format!("cut {cut} origin"), x, &read(&origin, x as u64, 1));
        let initial = origin_model.initial[x];
        if let Some(s2) = s2 {
            let mut b = vec![0u8; 512];
            drv.snapshot_read(s2, x as u64, &mut b).unwrap();
            assert!(b.iter().all(|&v| v == initial), "cut {cut}: snapshot 2 sector {x} is not the origin as it was");
        }
        if let Some(s1) = s1 {
            let mut b = vec![0u8; 512];
            drv.snapshot_read(s1, x as u64, &mut b).unwrap();
            snap_model.check(&format!("cut {cut} snapshot 1"), x, &b);
        }
    }
}

/// Every cut point of the snapshot workload, dropping what was not durable
/// and keeping every issued write.
#[test]
fn snapshot_metadata_and_data_survive_a_power_cut_after_any_write() {
    let (_, _, _, total) = snapshot_workload(u64::MAX);
    assert!(total > 100, "the workload writes enough to sweep: {total}");
    for cut in 0..=total {
        for crash in [true, false] {
            let (lab, om, sm, _) = snapshot_workload(cut);
            check_snapshots(&lab, &om, &sm, crash, cut);
        }
    }
    eprintln!("snapshot workload: {} cut points x 2 variants", total + 1);
}

const CLONE_SECTORS: u64 = 1024; // 64 regions of 16 sectors
const REGION: u64 = 16;

/// Clone hydration with writes, discards and commits (flushes, FUA).
fn clone_workload(cut_at: u64) -> ([Dev; 3], Model, u64) {
    let rail = Rail::new(cut_at);
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
        return (devs, model, rail.writes());
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
            5 => {
                if c.flush("cl").is_ok() {
                    model.flushed();
                }
            }
            6 => {
                // A discard of whole regions: no data promised for them.
                let first = (s / REGION) * REGION;
                let acked = c.discard("cl", first, REGION).is_ok();
                model.write(first as usize, REGION as usize, 0, acked, false);
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
    drop(c);
    let n = rail.writes();
    (devs, model, n)
}

/// Every cut point of the clone workload.
#[test]
fn clone_metadata_and_data_survive_a_power_cut_after_any_write() {
    let (_, _, total) = clone_workload(u64::MAX);
    assert!(total > 50, "the workload writes enough to sweep: {total}");
    for cut in 0..=total {
        for crash in [true, false] {
            let (devs, model, _) = clone_workload(cut);
            let devs: Vec<Dev> = devs.iter().map(|d| reboot(d, crash)).collect();
            let img = dmrs_hosted::clone::inspect(&devs[0]);
            if img.all_zero {
                continue; // cut before the metadata was formatted
            }
            assert!(img.problems.is_empty(), "cut {cut} crash {crash}: clone check: {:?}", img.problems);
            let region = REGION.to_string();
            let argv = ["meta", "dest", "src", region.as_str(), "1", "no_hydration"];
            let mut get = |p: &str| devs.iter().find(|d| d.name == p).cloned().ok_or(Errno::ENOENT);
            let c = <CloneTarget<Dev, SyncCopier>>::ctr(CLONE_SECTORS, &argv, &mut get, SyncCopier::default())
                .unwrap_or_else(|e| panic!("cut {cut}: metadata does not open: {e}"));
            for s in 0..CLONE_SECTORS as usize {
                let mut b = vec![0u8; 512];
                c.read(s as u64, &mut b).unwrap();
                model.check(&format!("cut {cut} crash {crash} clone"), s, &b);
            }
        }
    }
    eprintln!("clone workload: {} cut points x 2 variants", total + 1);
}

/// A merge in progress with I/O through the merge target: snapshot writes
/// (FUA) to a P 16 snapshot, then snapshot-merge takes over and merges
/// step by step while writes go through it. After any cut the merge
/// target, loaded again, shows the snapshot's data for every sector.
fn merge_workload(cut_at: u64) -> (SnapLab, Model, u64) {
    let rail = Rail::new(cut_at);
    let initial = origin_initial();
    let bytes: Vec<u8> = initial.iter().flat_map(|&v| [v; 512]).collect();
    let origin =
        Dev { ram: Arc::new(RamDev::from_bytes(&bytes, 512).unwrap()), rail: rail.clone(), id: 1, name: "origin" };
    let cow = |id, name| Dev { ram: Arc::new(RamDev::new(COW_SECTORS, 512).unwrap()), rail: rail.clone(), id, name };
    let lab = SnapLab { origin, cows: [cow(2, "cow1"), cow(3, "cow2")] };
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
        for crash in [true, false] {
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
                view.check(&format!("cut {cut} crash {crash} merge target"), x, &b);
            }
        }
    }
    eprintln!("merge workload: {} cut points x 2 variants", total + 1);
}
