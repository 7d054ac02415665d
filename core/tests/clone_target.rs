// SPDX-License-Identifier: GPL-2.0-only
//! The clone target over RAM devices: write ordering (destination flushed
//! before the metadata that marks regions hydrated), power cuts, partial
//! region discards, overwrites without copies, messages, status, errors.
#![allow(clippy::disallowed_types, clippy::disallowed_methods, clippy::disallowed_macros)] // a std test

use dmrs_core::clone::target::CloneTarget;
use dmrs_core::emit::{Emitter, StatusType};
use dmrs_core::platform::{BlockDevice, DmDevice, RamDev, ReqFlags, SyncCopier};
use dmrs_core::Result;
use std::sync::Mutex;

/// A RAM device that logs writes and flushes into a shared event list.
#[derive(Clone, Copy)]
struct Dev<'a> {
    d: &'a RamDev,
    name: &'static str,
    log: &'a Mutex<Vec<String>>,
}

impl BlockDevice for Dev<'_> {
    fn read(&self, s: u64, b: &mut [u8]) -> Result<()> {
        self.d.read(s, b)
    }
    fn write(&self, s: u64, b: &[u8], f: ReqFlags) -> Result<()> {
        self.log.lock().unwrap().push(format!("{} write {} {:?}", self.name, s, f));
        self.d.write(s, b, f)
    }
    fn flush(&self) -> Result<()> {
        self.log.lock().unwrap().push(format!("{} flush", self.name));
        self.d.flush()
    }
    fn size_sectors(&self) -> u64 {
        self.d.size_sectors()
    }
    fn logical_block_size(&self) -> u32 {
        512
    }
    fn discard(&self, s: u64, n: u64) -> Result<()> {
        self.log.lock().unwrap().push(format!("{} discard {} {}", self.name, s, n));
        self.d.discard(s, n)
    }
}

impl DmDevice for Dev<'_> {
    fn bdev_id(&self) -> u64 {
        self.d as *const RamDev as u64
    }
    fn name(&self) -> &str {
        self.name
    }
}

struct Lab {
    meta: RamDev,
    dest: RamDev,
    src: RamDev,
    log: Mutex<Vec<String>>,
}

impl Lab {
    fn new() -> Lab {
        Lab {
            meta: RamDev::new(8192, 512).unwrap(),
            dest: RamDev::new(16384, 512).unwrap(),
            src: RamDev::from_bytes(&vec![0x5au8; 16384 * 512], 512).unwrap(),
            log: Mutex::new(Vec::new()),
        }
    }
    fn dev(&self, n: &str) -> Dev<'_> {
        let (d, name) = match n {
            "meta" => (&self.meta, "meta"),
            "dest" => (&self.dest, "dest"),
            _ => (&self.src, "src"),
        };
        Dev { d, name, log: &self.log }
    }
    fn ctr(&self, table: &str) -> std::result::Result<CloneTarget<Dev<'_>, SyncCopier>, &'static str> {
        let argv: Vec<&str> = table.split_whitespace().collect();
        <CloneTarget<_, _>>::ctr(16384, &argv, &mut |p| Ok(self.dev(p)), SyncCopier::default()).map_err(|e| e.msg())
    }
}

fn status<D: DmDevice>(c: &CloneTarget<D, SyncCopier>, ty: StatusType) -> String {
    let mut b = [0u8; 256];
    let mut e = Emitter::new(&mut b);
    c.status("cl", ty, false, &mut e);
    e.as_str().to_string()
}

#[test]
fn table_errors_are_the_kernels() {
    let lab = Lab::new();
    for (t, want) in [
        ("meta dest src", "Invalid number of arguments"),
        ("meta dest src 4", "Invalid region size"),
        ("meta dest src 4194304", "Invalid region size"),
        ("meta dest src 24", "Region size is not a power of 2"),
        ("meta dest src 8 3 a b c", "Invalid number of feature arguments"),
        ("meta dest src 8 1 bogus", "Invalid feature argument"),
        ("meta dest src 8 0 1 x", "Number of core arguments must be even"),
        ("meta dest src 8 0 6 a 1 b 2 c 3", "Invalid number of core arguments"),
        ("meta dest src 8 0 2 hydration_threshold x", "Invalid value for argument `hydration_threshold'"),
        ("meta dest src 8 0 2 hydration_batch_size -1", "Invalid value for argument `hydration_batch_size'"),
        ("meta dest src 8 0 2 bogus 1", "Invalid core argument"),
    ] {
        assert_eq!(lab.ctr(t).err(), Some(want), "{t}");
    }
    // Too many regions for the device size is checked against ti->len.
    let argv = ["meta", "dest", "src", "8"];
    let r = <CloneTarget<_, _>>::ctr(1 << 40, &argv, &mut |p| Ok(lab.dev(p)), SyncCopier::default());
    assert_eq!(r.err().map(|e| e.msg()), Some("Device size larger than destination device"));
}

#[test]
fn status_table_and_messages() {
    let lab = Lab::new();
    let c = lab.ctr("meta dest src 8 2 no_discard_passdown NO_HYDRATION 2 hydration_batch_size 16").unwrap();
    assert_eq!(
        status(&c, StatusType::Info),
        "8 6/1024 8 0/2048 0 2 no_hydration no_discard_passdown 4 hydration_threshold 1 hydration_batch_size 16 rw"
    );
    assert_eq!(
        status(&c, StatusType::Table),
        "meta dest src 8 2 no_discard_passdown NO_HYDRATION 2 hydration_batch_size 16"
    );
    c.message("cl", &["ENABLE_HYDRATION"]).unwrap();
    c.message("cl", &["hydration_threshold", "7"]).unwrap();
    assert_eq!(c.message("cl", &["hydration_threshold"]), Err(dmrs_core::Errno::EINVAL));
    assert_eq!(c.message("cl", &["hydration_threshold", "x"]), Err(dmrs_core::Errno::EINVAL));
    assert_eq!(c.message("cl", &["frobnicate", "1"]), Err(dmrs_core::Errno::EINVAL));
    assert_eq!(c.message("cl", &[]), Err(dmrs_core::Errno::EINVAL));
    assert_eq!(
        status(&c, StatusType::Info),
        "8 6/1024 8 0/2048 0 1 no_discard_passdown 4 hydration_threshold 7 hydration_batch_size 16 rw"
    );
    // The table keeps the constructor's arguments.
    assert!(status(&c, StatusType::Table).ends_with("NO_HYDRATION 2 hydration_batch_size 16"));
}

#[test]
fn destination_is_flushed_before_the_metadata_commit() {
    let lab = Lab::new();
    let c = lab.ctr("meta dest src 8 1 no_hydration").unwrap();
    lab.log.lock().unwrap().clear();
    // A partial write to an unhydrated region: copy, then the write; FUA commits.
    c.write("cl", 100, &[1u8; 512], ReqFlags::FUA).unwrap();
    let log = lab.log.lock().unwrap().clone();
    let flush = log.iter().position(|l| l == "dest flush").expect("dest flushed");
    let sb = log.iter().position(|l| l.starts_with("meta write 0 ")).expect("superblock written");
    let copy = log.iter().position(|l| l.starts_with("dest write 96 ")).expect("region copied");
    assert!(copy < flush && flush < sb, "{log:#?}");
    assert!(log[sb].contains("PREFLUSH") && log[sb].contains("FUA"), "{}", log[sb]);
    // Nothing after the superblock touches the metadata, then the FUA data write.
    assert!(log[sb + 1..].iter().all(|l| !l.starts_with("meta")), "{log:#?}");
}

#[test]
fn acknowledged_flushes_survive_power_cuts() {
    let lab = Lab::new();
    {
        let c = lab.ctr("meta dest src 8 1 no_hydration").unwrap();
        c.write("cl", 8, &[0x11u8; 512], ReqFlags::empty()).unwrap();
        c.flush("cl").unwrap();
        c.write("cl", 16, &[0x22u8; 4096], ReqFlags::empty()).unwrap(); // not flushed
    }
    lab.meta.crash();
    lab.dest.crash();
    let c = lab.ctr("meta dest src 8 1 no_hydration").unwrap();
    let mut b = vec![0u8; 4096];
    c.read(8, &mut b).unwrap();
    assert!(b[..512].iter().all(|&x| x == 0x11) && b[512..].iter().all(|&x| x == 0x5a));
    c.read(16, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0x5a), "an unflushed write may be lost, never half-visible");
    assert_eq!(c.progress().0, 1);
}

#[test]
fn whole_region_writes_skip_the_copy() {
    let lab = Lab::new();
    let c = lab.ctr("meta dest src 8 1 no_hydration").unwrap();
    let reads = lab.src.stats().reads;
    c.write("cl", 64, &[3u8; 4096], ReqFlags::empty()).unwrap();
    assert_eq!(lab.src.stats().reads, reads);
    c.write("cl", 72, &[3u8; 512], ReqFlags::empty()).unwrap();
    assert!(lab.src.stats().reads > reads);
    assert_eq!(c.progress(), (2, 2048));
}

#[test]
fn partial_region_discards_mark_only_whole_regions() {
    let lab = Lab::new();
    let c = lab.ctr("meta dest src 8 1 no_hydration").unwrap();
    // Inside one region: rs (rounded up) > re (rounded down) -> nothing.
    c.discard("cl", 9, 4).unwrap();
    assert_eq!(c.progress().0, 0);
    // Sectors 4..28 cover regions 1 and 2 only.
    lab.log.lock().unwrap().clear();
    c.discard("cl", 4, 24).unwrap();
    assert_eq!(c.progress().0, 2);
    let log = lab.log.lock().unwrap().clone();
    assert_eq!(log, ["dest discard 8 16"], "passed down trimmed to whole regions");
    let mut b = vec![0u8; 512];
    c.read(8, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0), "a discarded region reads from the destination");
    c.read(0, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0x5a));
    // no_discard_passdown: marked, not passed down.
    let lab2 = Lab::new();
    let c = lab2.ctr("meta dest src 8 2 no_hydration no_discard_passdown").unwrap();
    c.discard("cl", 0, 64).unwrap();
    assert_eq!(c.progress().0, 8);
    assert!(lab2.log.lock().unwrap().iter().all(|l| !l.contains("discard")));
}

#[test]
fn background_hydration_in_batches() {
    let lab = Lab::new();
    let c = lab.ctr("meta dest src 8 0 4 hydration_threshold 100 hydration_batch_size 100").unwrap();
    let mut steps = 0;
    while c.hydration_active() {
        assert!(c.hydrate_step().unwrap() <= 100);
        steps += 1;
    }
    assert_eq!((steps, c.progress()), (21, (2048, 2048)));
    // The threshold bounds the regions in flight, batches included
    // (do_hydration): with the default threshold of 1, batches of one.
    let lab2 = Lab::new();
    let c2 = lab2.ctr("meta dest src 8 0 2 hydration_batch_size 100").unwrap();
    assert_eq!((c2.hydrate_step().unwrap(), c2.hydrate_step().unwrap()), (1, 1));
    // A batch in flight keeps others from starting beyond the threshold.
    let c3 = Lab::new();
    let c3 = c3.ctr("meta dest src 8 0 4 hydration_threshold 3 hydration_batch_size 2").unwrap();
    let a = c3.next_hydration().unwrap();
    let b = c3.next_hydration().unwrap();
    assert_eq!((a.nr_sectors, b.sector, b.nr_sectors), (16, 16, 8), "2 regions, then the 1 the threshold leaves");
    assert_eq!(c3.next_hydration(), None);
    let (_, r) = c3.hydration_done(a.slot, true);
    r.unwrap();
    assert_eq!(c3.next_hydration().map(|j| (j.sector, j.nr_sectors)), Some((24, 16)));
    c.commit_metadata("cl").unwrap();
    let mut b = vec![0u8; 8192];
    c.read(16000, &mut b[..4096]).unwrap();
    lab.dest.read(16000, &mut b[4096..]).unwrap();
    assert!(b.iter().all(|&x| x == 0x5a));
    // threshold 0 stops hydration.
    let lab = Lab::new();
    let c = lab.ctr("meta dest src 8 0 2 hydration_threshold 0").unwrap();
    assert!(!c.hydration_active());
    assert_eq!(c.hydrate_step().unwrap(), 0);
}

#[test]
fn metadata_failure_goes_read_only() {
    let lab = Lab::new();
    let c = lab.ctr("meta dest src 8 1 no_hydration").unwrap();
    c.write("cl", 0, &[1u8; 4096], ReqFlags::empty()).unwrap();
    lab.meta.fail_writes_after(Some(0));
    assert!(c.flush("cl").is_err());
    lab.meta.fail_writes_after(None);
    assert!(status(&c, StatusType::Info).ends_with(" ro"), "{}", status(&c, StatusType::Info));
    // Hydrated regions are still served; new hydrations are not recorded.
    let mut b = vec![0u8; 512];
    c.read(0, &mut b).unwrap();
    assert_eq!(b[0], 0x5a, "the region was never committed: the reload shows it unhydrated");
}

#[test]
fn map_remaps_hydrated_regions_and_source_reads() {
    use dmrs_core::dm::{BioInfo, BioOp, MapResult};
    let lab = Lab::new();
    let c = lab.ctr("meta dest src 64").unwrap();
    let bio = |op, sector, nr_sectors, flags| BioInfo { op, sector, nr_sectors, flags };
    let m = |b: BioInfo| match c.map(&b) {
        MapResult::Remapped { dev, sector } => format!("{}@{sector}", dev.name),
        MapResult::Submitted => "submitted".into(),
        MapResult::Kill(e) => format!("kill {}", e.name()),
        MapResult::Done(r) => format!("done {r:?}"),
    };
    let none = ReqFlags::empty();
    assert_eq!(m(bio(BioOp::Read, 128, 8, none)), "src@128", "unhydrated reads come from the source");
    assert_eq!(m(bio(BioOp::Write, 128, 8, none)), "submitted", "the region is hydrated first");
    c.write("c", 128, &[7u8; 4096], none).unwrap();
    assert_eq!(m(bio(BioOp::Read, 128, 8, none)), "dest@128");
    assert_eq!(m(bio(BioOp::Write, 136, 8, none)), "dest@136");
    // FUA with the hydration not committed yet: commit first.
    assert_eq!(m(bio(BioOp::Write, 136, 8, ReqFlags::FUA)), "submitted");
    c.commit_metadata("c").unwrap();
    assert_eq!(m(bio(BioOp::Write, 136, 8, ReqFlags::FUA)), "dest@136");
    assert_eq!(m(bio(BioOp::Read, 120, 16, none)), "submitted", "crosses a region boundary");
    assert_eq!(m(bio(BioOp::Flush, 0, 0, none)), "submitted");
    assert_eq!(m(bio(BioOp::Discard, 0, 64, none)), "submitted");
    assert_eq!(m(bio(BioOp::Read, 16380, 8, none)), "kill EIO", "beyond the target");
}

/// Bios as numbers, for the bio paths.
#[derive(Default, Debug)]
struct Queue(Vec<u32>);

impl dmrs_core::dm::BioQueue for Queue {
    type Bio = u32;
    fn push(&mut self, bio: u32) {
        self.0.push(bio)
    }
    fn pop(&mut self) -> Option<u32> {
        (!self.0.is_empty()).then(|| self.0.remove(0))
    }
}

#[test]
fn writes_wait_on_the_hydration_of_their_region() {
    use dmrs_core::clone::target::WriteBio;
    let lab = Lab::new();
    let argv: Vec<&str> = "meta dest src 8 0 2 hydration_threshold 4".split_whitespace().collect();
    let c =
        <CloneTarget<Dev<'_>, SyncCopier, Queue>>::ctr(16384, &argv, &mut |p| Ok(lab.dev(p)), SyncCopier::default())
            .unwrap();
    let WriteBio::Start(job) = c.write_bio(5, 1) else { panic!("a hydration to start") };
    assert_eq!((job.sector, job.nr_sectors), (40, 8));
    assert!(matches!(c.write_bio(5, 2), WriteBio::Queued), "a second write waits on the same copy");
    // Background hydration skips the region in flight.
    assert_eq!(c.next_hydration().map(|j| j.sector), Some(0));
    assert!(c.hydrations_in_flight());
    let (bios, r) = c.hydration_done(job.slot, true);
    r.unwrap();
    assert_eq!(bios.0, [1, 2], "released in order once the region is hydrated");
    assert!(matches!(c.write_bio(5, 3), WriteBio::Hydrated(3)));
    // A failed copy marks nothing and fails its bios.
    let WriteBio::Start(job) = c.write_bio(9, 4) else { panic!() };
    let (bios, r) = c.hydration_done(job.slot, false);
    assert_eq!((bios.0, r), (vec![4], Err(dmrs_core::Errno::EIO)));
    assert!(matches!(c.write_bio(9, 5), WriteBio::Start(_)), "not hydrated: copied again");
}

#[test]
fn events_on_mode_changes_and_on_the_commit_after_hydration() {
    let lab = Lab::new();
    let c = lab.ctr("meta dest src 8 0 4 hydration_threshold 4096 hydration_batch_size 4096").unwrap();
    assert_eq!(c.events(), 0);
    c.hydrate_step().unwrap();
    assert!(!c.hydration_active());
    assert_eq!(c.events(), 0, "no event before the commit");
    assert_eq!(c.commit_metadata("cl"), Ok(true));
    assert_eq!(c.events(), 1, "the commit once every region is hydrated raises one");
    assert_eq!(c.commit_metadata("cl"), Ok(false), "nothing changed: no commit");
    assert_eq!(c.events(), 1);
    // A failed metadata write: read-only mode, an event.
    let lab = Lab::new();
    let c = lab.ctr("meta dest src 8 1 no_hydration").unwrap();
    c.write("cl", 0, &[1u8; 512], ReqFlags::empty()).unwrap();
    lab.meta.fail_writes_after(Some(0));
    assert!(c.commit_metadata("cl").is_err());
    assert_eq!((c.mode(), c.events()), (dmrs_core::clone::target::Mode::ReadOnly, 1));
}
