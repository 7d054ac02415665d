// SPDX-License-Identifier: GPL-2.0-only
//! The hosted device mapper: named devices with a live and an inactive
//! table, suspend/resume with dm-ioctl's table swap, and I/O routed to the
//! targets in the core. One `DeviceMapper` is one "kernel": `dmrs run`
//! keeps it for a whole script; single `dmrs` commands rebuild it from the
//! state journal first (see `state.rs`).

use dmrs_core::clone::dm_clone::DmClone;
use dmrs_core::dm::{BioInfo, BioOp, Data, MapResult, PerBio, SyncIo, Target, TargetCtx};
use dmrs_core::emit::{Emitter, StatusType};
use dmrs_core::mem::TryVec;
use dmrs_core::platform::{split_io, BlockDevice, DmDevice, QueueLimits, ReqFlags, SyncCopier, SECTOR_SIZE};
use dmrs_core::snapshot::target::{OriginTarget, SnapshotTarget};
use dmrs_core::snapshot::{InMemory, SnapId, SnapshotDriver};
use dmrs_core::{Errno, Result as KResult, TargetError};
use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::filedev::{FileDev, OpenMode};

/// A device a table holds: a shared open file plus the name as written in
/// the table (what `dmsetup table` shows).
pub type HostDev = dmrs_core::platform::TableDev<Arc<FileDev>, Arc<str>>;

/// A failed device-mapper operation: the text dmsetup and the kernel log
/// would print, exit code 1, and the errno (hosted's one error type).
pub type DmError = crate::error::Error;

/// `strerror`.
pub fn strerror(e: Errno) -> String {
    let s = std::io::Error::from_raw_os_error(e.0).to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn err(errno: Errno, msg: impl Into<String>) -> DmError {
    DmError::errno(errno, msg)
}

type Result<T> = std::result::Result<T, DmError>;

/// A device that does not exist, as dmsetup reports it: the failed ioctl
/// (`device-mapper: status ioctl on NAME  failed: …`, the name then an
/// empty uuid), or, where dmsetup asks for the device's info first
/// (`status`, `info`), "Device does not exist.".
fn no_device(name: &str, ioctl: Option<&str>) -> DmError {
    match ioctl {
        Some(op) => {
            err(Errno::ENXIO, format!("device-mapper: {op} ioctl on {name}  failed: No such device or address"))
        }
        None => err(Errno::ENXIO, "Device does not exist."),
    }
}

/// The hosted platform: no bios, copies inline.
type Io = SyncIo<HostDev>;
/// Every table shares one snapshot driver (dm-snap.c's `_origins`).
type Snapshots = Arc<SnapshotDriver<Io>>;
type OriginType = OriginTarget<Snapshots>;
type SnapshotType = SnapshotTarget<Snapshots, false>;
type MergeType = SnapshotTarget<Snapshots, true>;
type CloneType = DmClone<Io, SyncCopier>;

/// A table's target as the hosted device mapper drives it: the core's
/// [`Target`], object-safe (any target type behind one `Box`).
trait HostTarget: Send + Sync {
    fn map(&self, bio: &BioInfo, pb: &mut PerBio) -> MapResult<HostDev>;
    fn work(&self, bio: &BioInfo, data: Data<'_>) -> KResult<()>;
    fn end_io(&self, pb: &mut PerBio);
    fn status(&self, ty: StatusType, out: &mut Emitter<'_>);
    /// `None`: the target type takes no messages.
    fn message(&self, argv: &[&str]) -> Option<KResult<()>>;
    fn presuspend(&self);
    fn postsuspend(&self);
    fn preresume(&self) -> KResult<()>;
    fn resume(&self);
    fn devices(&self) -> Vec<(HostDev, u64, u64)>;
    fn io_hints(&self, limits: &mut QueueLimits);
    fn background(&self) -> KResult<bool>;
    fn remaining(&self) -> Option<u64>;
    fn periodic(&self);
    fn events(&self) -> u64;
    fn as_any(&self) -> &dyn Any;
}

impl<T: Target<Io = Io> + 'static> HostTarget for T {
    fn map(&self, bio: &BioInfo, pb: &mut PerBio) -> MapResult<HostDev> {
        Target::map(self, bio, pb)
    }
    fn work(&self, bio: &BioInfo, data: Data<'_>) -> KResult<()> {
        Target::work(self, bio, data)
    }
    fn end_io(&self, pb: &mut PerBio) {
        Target::end_io(self, pb)
    }
    fn status(&self, ty: StatusType, out: &mut Emitter<'_>) {
        Target::status(self, ty, false, out)
    }
    fn message(&self, argv: &[&str]) -> Option<KResult<()>> {
        T::HAS_MESSAGE.then(|| Target::message(self, argv))
    }
    fn presuspend(&self) {
        Target::presuspend(self)
    }
    fn postsuspend(&self) {
        Target::postsuspend(self)
    }
    fn preresume(&self) -> KResult<()> {
        Target::preresume(self)
    }
    fn resume(&self) {
        Target::resume(self)
    }
    fn devices(&self) -> Vec<(HostDev, u64, u64)> {
        let mut v = Vec::new();
        let _ = Target::iterate_devices::<()>(self, &mut |d, start, len| {
            v.push((d.clone(), start, len));
            Ok(())
        });
        v
    }
    fn io_hints(&self, limits: &mut QueueLimits) {
        Target::io_hints(self, limits)
    }
    fn background(&self) -> KResult<bool> {
        Target::background(self)
    }
    fn remaining(&self) -> Option<u64> {
        Target::remaining(self)
    }
    fn periodic(&self) {
        Target::periodic(self)
    }
    fn events(&self) -> u64 {
        Target::events(self)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `struct dm_target` while its constructor runs.
struct HostCtx<'a> {
    files: &'a mut HashMap<PathBuf, Arc<FileDev>>,
    /// The state directory holding the files (claimed exclusively).
    holder: Option<&'a Path>,
    /// Files this table opened.
    opened: Vec<PathBuf>,
    name: &'a str,
    begin: u64,
    len: u64,
    max_io_len: u32,
    num_flush_bios: u32,
    num_discard_bios: u32,
}

impl TargetCtx<Io> for HostCtx<'_> {
    fn begin(&self) -> u64 {
        self.begin
    }
    fn len(&self) -> u64 {
        self.len
    }
    fn get_device(&mut self, path: &str) -> KResult<HostDev> {
        let canon = std::fs::canonicalize(path).map_err(|e| Errno(e.raw_os_error().unwrap_or(2)))?;
        if let Some(holder) = self.holder {
            crate::holders::claim(&canon, holder).map_err(Errno)?;
        }
        let dev = DeviceMapper::open(self.files, &canon, path)?;
        self.opened.push(canon);
        Ok(dev)
    }
    /// Events are counted per target ([`Target::events`]).
    fn table_handle(&self) -> u64 {
        0
    }
    fn md_name(&self) -> &str {
        self.name
    }
    fn io(&mut self) -> dmrs_core::Result<Io> {
        Ok(SyncIo::default())
    }
    fn set_num_flush_bios(&mut self, n: u32) {
        self.num_flush_bios = n;
    }
    fn set_num_discard_bios(&mut self, n: u32) {
        self.num_discard_bios = n;
    }
    fn set_discards_supported(&mut self) {}
    fn set_flush_supported(&mut self) {}
    fn set_max_io_len(&mut self, sectors: u32) {
        self.max_io_len = sectors;
    }
}

/// A target type's constructor, boxed.
fn construct<T: Target<Io = Io> + 'static>(
    shared: &T::Shared,
    ti: &mut HostCtx<'_>,
    argv: &[&str],
) -> std::result::Result<Box<dyn HostTarget>, TargetError> {
    T::ctr(shared, ti, argv).map(|t| Box::new(t) as Box<dyn HostTarget>)
}

/// One target of a table (`struct dm_target`).
struct Ti {
    start: u64,
    len: u64,
    ttype: String,
    /// `ti->max_io_len`: dm core splits bios at multiples of it (0: no limit).
    max_io_len: u64,
    /// `ti->num_discard_bios`: 0 and dm core fails discards.
    discards: bool,
    /// `ti->num_flush_bios`: how many empty flushes dm core sends it.
    num_flush_bios: u32,
    /// The backing files its target opened.
    files: Vec<PathBuf>,
    target: Box<dyn HostTarget>,
}

/// A table (`struct dm_table`): its targets in order, the first at sector
/// 0 and each next where the previous ends (`dm_table_add_target`).
struct Table {
    targets: Vec<Ti>,
}

impl Table {
    /// The mapped device's size in sectors (`dm_table_get_size`).
    fn len(&self) -> u64 {
        self.targets.last().map_or(0, |t| t.start + t.len)
    }

    /// `dm_table_find_target`: the target mapping `sector`.
    fn find(&self, sector: u64) -> Option<&Ti> {
        self.targets.iter().find(|t| sector >= t.start && sector - t.start < t.len)
    }

    /// Every event its targets raised.
    fn events(&self) -> u64 {
        self.targets.iter().map(|t| t.target.events()).sum()
    }

    fn files(&self) -> impl Iterator<Item = &Path> {
        self.targets.iter().flat_map(|t| t.files.iter().map(PathBuf::as_path))
    }

    /// `dm_table_presuspend_targets` then `dm_table_postsuspend_targets`:
    /// every target's presuspend, then every target's postsuspend.
    fn suspend_targets(&self) {
        for t in &self.targets {
            t.target.presuspend();
        }
        for t in &self.targets {
            t.target.postsuspend();
        }
    }

    /// `dm_table_resume_targets`: every target's preresume (the first
    /// failure stops there: the device stays suspended), then every
    /// target's resume.
    fn resume_targets(&self) -> KResult<()> {
        for t in &self.targets {
            t.target.preresume()?;
        }
        for t in &self.targets {
            t.target.resume();
        }
        Ok(())
    }
}

#[derive(Default)]
struct Device {
    live: Option<Table>,
    inactive: Option<Table>,
    suspended: bool,
    /// Events of tables no longer live (`md->event_nr` counts on).
    event_base: u64,
}

/// The targets dmrs registers, with the kernel's versions.
pub const TARGETS: [(&str, [u32; 3]); 4] = [
    (CloneType::NAME, CloneType::VERSION),
    (MergeType::NAME, MergeType::VERSION),
    (OriginType::NAME, OriginType::VERSION),
    (SnapshotType::NAME, SnapshotType::VERSION),
];

/// Named devices and the snapshot driver behind them.
pub struct DeviceMapper {
    devices: BTreeMap<String, Device>,
    snap: Snapshots,
    files: HashMap<PathBuf, Arc<FileDev>>,
    /// Rebuilding devices from the state directory's journal: a COW that
    /// held a snapshot then and is blank now was wiped, not new.
    pub replaying: bool,
    /// The state directory whose tables hold the files ([`crate::holders`]).
    pub holder: Option<PathBuf>,
}

fn status_text(f: impl FnOnce(&mut Emitter<'_>)) -> String {
    let mut buf = vec![0u8; 4096];
    let mut e = Emitter::new(&mut buf);
    f(&mut e);
    e.as_str().to_string()
}

impl DeviceMapper {
    /// No devices.
    pub fn new() -> Result<Self> {
        let snap = SnapshotDriver::new(SyncIo::default()).map_err(|e| err(e, "out of memory"))?;
        Ok(DeviceMapper {
            devices: BTreeMap::new(),
            snap: Arc::new(snap),
            files: HashMap::new(),
            replaying: false,
            holder: None,
        })
    }

    /// `dm_get_device`: opens (or reuses) the file behind `path`.
    fn get_device(files: &mut HashMap<PathBuf, Arc<FileDev>>, path: &str) -> KResult<HostDev> {
        let canon = std::fs::canonicalize(path).map_err(|e| Errno(e.raw_os_error().unwrap_or(2)))?;
        Self::open(files, &canon, path)
    }

    /// The file at canonical path `canon` (opened once, then shared),
    /// named `path` as the table wrote it.
    fn open(files: &mut HashMap<PathBuf, Arc<FileDev>>, canon: &Path, path: &str) -> KResult<HostDev> {
        let dev = match files.get(canon) {
            Some(d) => d.clone(),
            None => {
                let d = FileDev::open(canon, OpenMode::default()).map_err(|e| Errno(e.raw_os_error().unwrap_or(5)))?;
                let d = Arc::new(d);
                files.insert(canon.to_path_buf(), d.clone());
                d
            }
        };
        Ok(HostDev::new(dev.clone(), dev.id(), Arc::from(path)))
    }

    fn device(&mut self, name: &str, ioctl: &str) -> Result<&mut Device> {
        self.devices.get_mut(name).ok_or_else(|| no_device(name, Some(ioctl)))
    }

    fn get(&self, name: &str, ioctl: Option<&str>) -> Result<&Device> {
        self.devices.get(name).ok_or_else(|| no_device(name, ioctl))
    }

    /// `dm_table_create` + `dm_table_add_target` for every line of the
    /// table (each target's ctr, in order), then dm core's checks of the
    /// devices the targets use.
    fn build_table(&mut self, name: &str, text: &str) -> Result<Table> {
        let ioctl = |errno: Errno| format!("device-mapper: reload ioctl on {name} failed: {}", strerror(errno));
        let fail = |e: TargetError, ttype: &str| {
            err(e.errno, format!("device-mapper: table: {name}: {ttype}: {e}\n{}", ioctl(e.errno)))
        };
        // A DMERR of dm-table.c naming no target type.
        let table_err =
            |msg: &str| err(Errno::EINVAL, format!("device-mapper: table: {name}: {msg}\n{}", ioctl(Errno::EINVAL)));
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        if lines.is_empty() {
            return Err(err(Errno::EINVAL, format!("dmrs: {name}: the table has no target line")));
        }
        // Destroyed (each target's dtr) if a later line fails.
        let mut targets: Vec<Ti> = Vec::with_capacity(lines.len());
        for l in lines {
            let mut w = l.split_whitespace();
            let (Some(start), Some(len), Some(ttype)) = (w.next(), w.next(), w.next()) else {
                return Err(fail(
                    TargetError::inval(c"invalid table: expected <start> <length> <target> <args>"),
                    "table",
                ));
            };
            let start: u64 = start.parse().map_err(|_| fail(TargetError::inval(c"Invalid start sector"), ttype))?;
            let len: u64 = len.parse().map_err(|_| fail(TargetError::inval(c"Invalid length"), ttype))?;
            // dm_table_add_target's checks, in its order.
            if len == 0 {
                return Err(table_err("zero-length target"));
            }
            if start.checked_add(len).is_none_or(|end| end > (i64::MAX as u64) >> 9) {
                return Err(table_err("too large device"));
            }
            if !TARGETS.iter().any(|(t, _)| *t == ttype) {
                return Err(table_err(&format!("{ttype}: unknown target type")));
            }
            // None of the four types is a singleton or immutable type
            // (their `struct target_type`s set no `.features`), so they
            // mix freely. `adjoin`:
            if start != targets.last().map_or(0, |t| t.start + t.len) {
                return Err(fail(TargetError::inval(c"Gap in table"), ttype));
            }
            let params: Vec<&str> = w.collect();
            if self.replaying && matches!(ttype, "snapshot" | "snapshot-merge") {
                self.refuse_blank_cow(name, &params)?;
            }
            let holder = self.holder.as_deref();
            let mut ti = HostCtx {
                files: &mut self.files,
                holder,
                opened: Vec::new(),
                name,
                begin: start,
                len,
                max_io_len: 0,
                num_flush_bios: 0,
                num_discard_bios: 0,
            };
            // `dm_get_target_type`.
            let r = match ttype {
                OriginType::NAME => construct::<OriginType>(&self.snap, &mut ti, &params),
                SnapshotType::NAME => construct::<SnapshotType>(&self.snap, &mut ti, &params),
                MergeType::NAME => construct::<MergeType>(&self.snap, &mut ti, &params),
                _ => construct::<CloneType>(&(), &mut ti, &params),
            };
            let (max_io_len, num_flush_bios, discards, files) =
                (ti.max_io_len as u64, ti.num_flush_bios, ti.num_discard_bios > 0, ti.opened);
            let target = r.map_err(|e| fail(e, ttype))?;
            targets.push(Ti {
                start,
                len,
                ttype: ttype.to_string(),
                max_io_len,
                discards,
                num_flush_bios,
                files,
                target,
            });
        }
        // dm_calculate_queue_limits: every device a target uses must
        // cover the part it maps (`device_area_is_invalid`); then the
        // targets' io_hints (dm-clone turns passdown off there when the
        // destination cannot discard).
        for t in &targets {
            for (d, start, dlen) in t.target.devices() {
                if d.size_sectors() < start + dlen {
                    return Err(err(
                        Errno::EINVAL,
                        format!(
                            "device-mapper: table: {name}: {} too small for target: start={start}, len={dlen}, dev_size={}",
                            d.name(),
                            d.size_sectors()
                        ),
                    ));
                }
            }
        }
        for t in &targets {
            t.target.io_hints(&mut QueueLimits::default());
        }
        Ok(Table { targets })
    }

    /// On replay, a persistent snapshot's COW must still carry what the kernel wrote
    /// at the table's first load (a header, or at least not all zeros):
    /// formatting it again would show the origin's new data as the
    /// snapshot's.
    fn refuse_blank_cow(&mut self, name: &str, params: &[&str]) -> Result<()> {
        let Some(cow) = params.get(1) else { return Ok(()) };
        // A transient store (N) never writes to its COW's header.
        if !params.get(2).is_some_and(|t| t.to_ascii_uppercase().starts_with('P')) {
            return Ok(());
        }
        let Ok(dev) = Self::get_device(&mut self.files, cow) else { return Ok(()) };
        let mut first = [0u8; 512];
        if dev.read(0, &mut first).is_ok() && first.iter().all(|&b| b == 0) {
            return Err(err(
                Errno::EINVAL,
                format!(
                    "dmrs: {name}: the COW {cow} held a snapshot and is blank now (wiped?): not formatting it again"
                ),
            ));
        }
        Ok(())
    }

    /// Every target's `dtr` (its drop).
    fn destroy_table(&mut self, t: Table) {
        drop(t)
    }

    /// Drops the claims on files no table uses any more (the end of an
    /// invocation: the state directory keeps the others).
    pub fn release_unused_claims(&self) {
        let Some(holder) = &self.holder else { return };
        let tables = self.devices.values().flat_map(|d| [&d.live, &d.inactive]).flatten();
        let used: Vec<&Path> = tables.flat_map(Table::files).collect();
        crate::holders::release_unused(holder, &used);
    }

    /// What the periodic work of a live kernel would have done by now
    /// (a clone's commit; called when a `dmrs` invocation ends).
    pub fn sync(&self) {
        for d in self.devices.values() {
            if let (false, Some(t)) = (d.suspended, &d.live) {
                for ti in &t.targets {
                    ti.target.periodic();
                }
            }
        }
    }

    /// `dmsetup create NAME [--table T]` (no table: `--notable`).
    pub fn create(&mut self, name: &str, table: Option<&str>) -> Result<()> {
        if self.devices.contains_key(name) {
            return Err(err(
                Errno::EBUSY,
                format!("device-mapper: create ioctl on {name} failed: Device or resource busy"),
            ));
        }
        self.devices.insert(name.to_string(), Device::default());
        if let Some(t) = table {
            if let Err(e) = self.load(name, t).and_then(|_| self.resume(name)) {
                // dmsetup removes the half-made device.
                let _ = self.remove(name);
                return Err(e);
            }
        }
        Ok(())
    }

    /// `dmsetup load NAME --table T`: constructs the inactive table.
    pub fn load(&mut self, name: &str, table: &str) -> Result<()> {
        self.device(name, "reload")?;
        let t = self.build_table(name, table)?;
        let old = self.device(name, "reload")?.inactive.replace(t);
        if let Some(o) = old {
            self.destroy_table(o);
        }
        Ok(())
    }

    /// `dmsetup suspend NAME`.
    pub fn suspend(&mut self, name: &str) -> Result<()> {
        let d = self.device(name, "suspend")?;
        let was = std::mem::replace(&mut d.suspended, true);
        if let (false, Some(t)) = (was, &d.live) {
            t.suspend_targets();
        }
        Ok(())
    }

    /// `dmsetup resume NAME`: swaps in the inactive table if there is one
    /// (the old one is destroyed), then preresume and resume.
    pub fn resume(&mut self, name: &str) -> Result<()> {
        let d = self.device(name, "resume")?;
        let mut old = None;
        if let Some(new) = d.inactive.take() {
            d.suspended = true;
            old = d.live.replace(new);
        }
        let gone = old.as_ref().map(Table::events).unwrap_or(0);
        d.event_base += gone;
        let r = match &d.live {
            Some(t) => t.resume_targets(),
            None => Ok(()),
        };
        if let Some(o) = old {
            self.destroy_table(o);
        }
        match r {
            Ok(()) => {
                self.device(name, "resume")?.suspended = false;
                Ok(())
            }
            Err(e) => Err(err(e, format!("device-mapper: resume ioctl on {name} failed: {}", strerror(e)))),
        }
    }

    /// `dmsetup remove NAME`.
    pub fn remove(&mut self, name: &str) -> Result<()> {
        self.device(name, "remove")?;
        let Some(d) = self.devices.remove(name) else { return Ok(()) };
        // __dm_destroy suspends a live device first (postsuspend commits).
        if let (false, Some(t)) = (d.suspended, &d.live) {
            t.suspend_targets();
        }
        for t in [d.inactive, d.live].into_iter().flatten() {
            self.destroy_table(t);
        }
        Ok(())
    }

    fn line(t: &Ti, ty: StatusType) -> String {
        let params = status_text(|e| t.target.status(ty, e));
        format!("{} {} {} {}", t.start, t.len, t.ttype, params)
    }

    /// `dmsetup status NAME` / `dmsetup table NAME`: one line per target
    /// of the live table, in order.
    pub fn status(&self, name: &str, ty: StatusType) -> Result<Option<Vec<String>>> {
        // dmsetup asks for info first on `status`, not on `table`.
        let d = self.get(name, (ty == StatusType::Table).then_some("table"))?;
        Ok(d.live.as_ref().map(|t| t.targets.iter().map(|ti| Self::line(ti, ty)).collect()))
    }

    /// Device names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.devices.keys().cloned().collect()
    }

    /// The device's event number (`dmsetup info`'s `Event number`, what
    /// `dmsetup wait` waits on): every event its targets raised.
    pub fn event_nr(&self, name: &str) -> Result<u64> {
        let d = self.get(name, Some("waitevent"))?;
        Ok(d.event_base + d.live.as_ref().map(Table::events).unwrap_or(0))
    }

    /// `dmsetup info NAME`.
    pub fn info(&self, name: &str) -> Result<String> {
        let d = self.get(name, None)?;
        let event_nr = self.event_nr(name)?;
        let tables = match (d.live.is_some(), d.inactive.is_some()) {
            (true, true) => "LIVE & INACTIVE",
            (true, false) => "LIVE",
            (false, true) => "INACTIVE",
            (false, false) => "None",
        };
        Ok(format!(
            "Name:              {name}\nState:             {}\nTables present:    {tables}\nEvent number:      {event_nr}\nNumber of targets: {}\n",
            if d.suspended { "SUSPENDED" } else { "ACTIVE" },
            d.live.as_ref().map_or(0, |t| t.targets.len())
        ))
    }

    fn live(&self, name: &str) -> Result<&Table> {
        let d = self.get(name, None)?;
        if d.suspended {
            return Err(err(Errno::EBUSY, format!("dmrs: {name} is suspended: I/O would block until resume")));
        }
        d.live.as_ref().ok_or_else(|| err(Errno::ENXIO, format!("dmrs: {name} has no live table")))
    }

    fn check_range(t: &Table, name: &str, offset: u64, len: usize) -> Result<u64> {
        let ss = SECTOR_SIZE as u64;
        if offset % ss != 0 || len as u64 % ss != 0 {
            return Err(err(Errno::EINVAL, "dmrs: offset and length must be multiples of 512"));
        }
        if offset / ss + len as u64 / ss > t.len() {
            return Err(err(
                Errno::ENOSPC,
                format!("dmrs: {name}: I/O beyond the end of the device ({} sectors)", t.len()),
            ));
        }
        Ok(offset / ss)
    }

    fn io_err(name: &str, e: Errno) -> DmError {
        err(e, format!("dmrs: {name}: {}", strerror(e)))
    }

    /// dm core's part of a bio: an empty flush goes to every target
    /// (`num_flush_bios` of them each); any other bio is split at target
    /// boundaries, each piece going to its target with target-relative
    /// sectors (`dm_target_offset`), where [`Self::submit_to`] goes on.
    fn submit(t: &Table, op: BioOp, sector: u64, nr_sectors: u64, data: Data<'_>) -> KResult<()> {
        if op == BioOp::Flush {
            let mut first_err = Ok(());
            for ti in &t.targets {
                for _ in 0..ti.num_flush_bios {
                    let r = Self::submit_to(ti, op, 0, 0, Data::None);
                    if first_err.is_ok() {
                        first_err = r;
                    }
                }
            }
            return first_err;
        }
        if nr_sectors == 0 {
            return match t.find(sector) {
                Some(ti) => Self::submit_to(ti, op, sector - ti.start, 0, data),
                None => Ok(()),
            };
        }
        let (mut sector, mut left, mut off) = (sector, nr_sectors, 0usize);
        let mut data = data;
        while left > 0 {
            let ti = t.find(sector).ok_or(Errno::EIO)?;
            let rel = sector - ti.start;
            let n = left.min(ti.len - rel);
            let bytes = n as usize * SECTOR_SIZE;
            let piece = match &mut data {
                Data::Read(b) => Data::Read(&mut b[off..off + bytes]),
                Data::Write(b) => Data::Write(&b[off..off + bytes]),
                Data::None => Data::None,
            };
            Self::submit_to(ti, op, rel, n, piece)?;
            (sector, left) = (sector + n, left - n);
            if !matches!(data, Data::None) {
                off += bytes;
            }
        }
        Ok(())
    }

    /// One target's part of a bio: a read or write is split where the
    /// target's `max_io_len` splits bios (chunk or region size), each piece
    /// goes through the target's `map`, and a remapped piece is file I/O on
    /// the device `map` chose (then `end_io`); the others run the target's
    /// synchronous path, as the kernel module's worker does.
    fn submit_to(t: &Ti, op: BioOp, sector: u64, nr_sectors: u64, mut data: Data<'_>) -> KResult<()> {
        if op == BioOp::Discard && !t.discards {
            // num_discard_bios = 0: dm core fails the discard.
            return Err(Errno::EOPNOTSUPP);
        }
        let len = match &data {
            Data::Read(b) => b.len(),
            Data::Write(b) => b.len(),
            Data::None => 0,
        };
        // No data or no boundary: one piece.
        let whole = (len == 0 || t.max_io_len == 0).then_some((sector, 0..len));
        let split = split_io(sector, if whole.is_some() { 0 } else { len }, t.max_io_len.max(1));
        for (s, r) in whole.into_iter().chain(split) {
            let info = BioInfo {
                op,
                sector: s,
                nr_sectors: if len == 0 { nr_sectors } else { (r.len() / SECTOR_SIZE) as u64 },
                flags: ReqFlags::empty(),
            };
            let mut pb = PerBio::new();
            let piece = match &mut data {
                Data::Read(b) => Data::Read(&mut b[r]),
                Data::Write(b) => Data::Write(&b[r]),
                Data::None => Data::None,
            };
            let res = match (t.target.map(&info, &mut pb), piece) {
                (MapResult::Remapped { dev, sector }, Data::Read(b)) => dev.read(sector, b),
                (MapResult::Remapped { dev, sector }, Data::Write(b)) => dev.write(sector, b, info.flags),
                (MapResult::Remapped { dev, .. }, Data::None) if op == BioOp::Flush => dev.flush(),
                (MapResult::Remapped { dev, sector }, Data::None) => dev.discard(sector, info.nr_sectors),
                (MapResult::Kill(e), _) => Err(e),
                (MapResult::Done(res), _) => res,
                (MapResult::Submitted, piece) => t.target.work(&info, piece),
            };
            t.target.end_io(&mut pb);
            res?;
        }
        Ok(())
    }

    /// Reads `len` bytes at byte `offset` of device `name`.
    pub fn read(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let t = self.live(name)?;
        let sector = Self::check_range(t, name, offset, len)?;
        let mut buf = vec![0u8; len];
        let n = (len / SECTOR_SIZE) as u64;
        Self::submit(t, BioOp::Read, sector, n, Data::Read(&mut buf)).map_err(|e| Self::io_err(name, e))?;
        Ok(buf)
    }

    /// Writes `data` at byte `offset` of device `name`.
    pub fn write(&self, name: &str, offset: u64, data: &[u8]) -> Result<()> {
        let t = self.live(name)?;
        let sector = Self::check_range(t, name, offset, data.len())?;
        let n = (data.len() / SECTOR_SIZE) as u64;
        Self::submit(t, BioOp::Write, sector, n, Data::Write(data)).map_err(|e| Self::io_err(name, e))
    }

    /// Flushes device `name` (fsync on a dm device: an empty PREFLUSH bio).
    pub fn flush(&self, name: &str) -> Result<()> {
        let t = self.live(name)?;
        Self::submit(t, BioOp::Flush, 0, 0, Data::None).map_err(|e| Self::io_err(name, e))
    }

    /// Discards a byte range (`blkdiscard`).
    pub fn discard(&self, name: &str, offset: u64, len: u64) -> Result<()> {
        let t = self.live(name)?;
        let sector = Self::check_range(t, name, offset, len as usize)?;
        let n = len / SECTOR_SIZE as u64;
        Self::submit(t, BioOp::Discard, sector, n, Data::None).map_err(|e| Self::io_err(name, e))
    }

    /// `dmsetup message NAME SECTOR MSG`.
    pub fn message(&self, name: &str, sector: u64, msg: &[String]) -> Result<()> {
        self.get(name, Some("message"))?;
        let t = self.live(name)?;
        // dm-ioctl's target_message: the sector picks the target
        // (`dm_table_find_target`), and its type must take messages.
        let refused = |why: &str| {
            err(
                Errno::EINVAL,
                format!("device-mapper: ioctl: {why}\ndevice-mapper: message ioctl on {name} failed: Invalid argument"),
            )
        };
        let Some(ti) = t.find(sector) else {
            return Err(refused("Target message sector outside device."));
        };
        let argv: Vec<&str> = msg.iter().map(String::as_str).collect();
        match ti.target.message(&argv) {
            Some(r) => r.map_err(|e| err(e, format!("device-mapper: message ioctl on {name} failed: {}", strerror(e)))),
            None => Err(refused("Target type does not support messages")),
        }
    }

    /// A target's snapshot in the driver, if it is one.
    fn snap_id(t: &Ti) -> Option<SnapId> {
        let a = t.target.as_any();
        a.downcast_ref::<SnapshotType>().map(|s| s.id()).or_else(|| a.downcast_ref::<MergeType>().map(|s| s.id()))
    }

    /// Every snapshot target: its device, its slot (`live` or `inactive`
    /// for a table's first target, `live#I`/`inactive#I` for its target I
    /// after that) and its snapshot.
    fn snapshot_tables(&self) -> impl Iterator<Item = (&str, String, SnapId)> {
        self.devices.iter().flat_map(|(n, d)| {
            [("live", &d.live), ("inactive", &d.inactive)].into_iter().flat_map(move |(slot, t)| {
                t.iter().flat_map(|t| t.targets.iter().enumerate()).filter_map(move |(i, ti)| {
                    let slot = if i == 0 { slot.to_string() } else { format!("{slot}#{i}") };
                    Self::snap_id(ti).map(|id| (n.as_str(), slot, id))
                })
            })
        })
    }

    /// What the snapshots keep only in memory, one line per snapshot
    /// target: `NAME SLOT valid=1 overflowed=0 merge_failed=0
    /// [transient=NEXT_FREE ranges=OLD:NEW:COUNT,...]` (SLOT as
    /// [`Self::snapshot_tables`] names it).
    pub fn save_volatile(&self) -> String {
        let mut out = String::new();
        for name in self.devices.keys() {
            match self.event_nr(name) {
                Ok(n) if n > 0 => out += &format!("{name} events {n}\n"),
                _ => {}
            }
        }
        for (name, slot, id) in self.snapshot_tables() {
            let Ok(v) = self.snap.volatile(id) else { continue };
            out += &format!(
                "{name} {slot} valid={} overflowed={} merge_failed={}",
                v.valid as u8, v.overflowed as u8, v.merge_failed as u8
            );
            if let Some((nf, ranges)) = &v.transient {
                let r: Vec<String> = ranges.iter().map(|(o, n, c)| format!("{o}:{n}:{c}")).collect();
                out += &format!(" transient={nf} ranges={}", r.join(","));
            }
            out.push('\n');
        }
        out
    }

    /// Puts back what [`Self::save_volatile`] saved.
    pub fn restore_volatile(&mut self, text: &str) -> std::result::Result<(), String> {
        let tables: Vec<(String, String, SnapId)> =
            self.snapshot_tables().map(|(n, s, id)| (n.to_string(), s, id)).collect();
        for line in text.lines() {
            let mut w = line.split_whitespace();
            let (Some(name), Some(slot)) = (w.next(), w.next()) else { continue };
            if slot == "events" {
                // The targets were rebuilt with none: the device keeps its count.
                let n = w.next().and_then(|n| n.parse::<u64>().ok()).ok_or_else(|| format!("bad line {line:?}"))?;
                if let Some(d) = self.devices.get_mut(name) {
                    d.event_base = n;
                }
                continue;
            }
            let Some((_, _, id)) = tables.iter().find(|(n, s, _)| n == name && *s == slot) else { continue };
            let mut v = InMemory { valid: true, ..InMemory::default() };
            let mut nf = None;
            let mut ranges = TryVec::new();
            for kv in w {
                let (k, val) = kv.split_once('=').ok_or_else(|| format!("bad field {kv:?}"))?;
                let num = |x: &str| x.parse::<u64>().map_err(|_| format!("bad number in {kv:?}"));
                match k {
                    "valid" => v.valid = num(val)? != 0,
                    "overflowed" => v.overflowed = num(val)? != 0,
                    "merge_failed" => v.merge_failed = num(val)? != 0,
                    "transient" => nf = Some(num(val)?),
                    "ranges" => {
                        for r in val.split(',').filter(|r| !r.is_empty()) {
                            let p: Vec<&str> = r.split(':').collect();
                            let [o, n, c] = p[..] else { return Err(format!("bad range {r:?}")) };
                            let c = u32::try_from(num(c)?).map_err(|_| format!("bad range {r:?}"))?;
                            ranges.try_push((num(o)?, num(n)?, c)).map_err(|e| e.to_string())?;
                        }
                    }
                    _ => {}
                }
            }
            v.transient = nf.map(|nf| (nf, ranges));
            self.snap.restore_volatile(*id, &v).map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(())
    }

    /// Runs the background work of `name` (a merge, a hydration: of every
    /// target that has some) to completion, with the targets' periodic
    /// work (a clone's commit) about once a second, reporting `(done,
    /// total)` to `progress` in the targets' units (sectors merged,
    /// regions hydrated), summed over the targets.
    pub fn wait(&self, name: &str, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        let d = self.get(name, Some("waitevent"))?;
        let Some(t) = &d.live else { return Ok(()) };
        let busy: Vec<&Ti> = t.targets.iter().filter(|ti| ti.target.remaining().is_some()).collect();
        if busy.is_empty() {
            return Ok(());
        }
        if d.suspended {
            return Err(err(
                Errno::EBUSY,
                format!("dmrs: {name} is suspended: background work is stopped until resume"),
            ));
        }
        let left = || busy.iter().map(|ti| ti.target.remaining().unwrap_or(0)).sum::<u64>();
        let total = left();
        let report = |progress: &mut dyn FnMut(u64, u64)| {
            let left = left();
            progress(total.saturating_sub(left), total);
        };
        let mut running = vec![true; busy.len()];
        let mut last = std::time::Instant::now();
        while running.iter().any(|&r| r) {
            for (ti, more) in busy.iter().zip(running.iter_mut()).filter(|(_, r)| **r) {
                *more = ti.target.background().map_err(|e| {
                    err(e, format!("dmrs: {name}: background work failed: {} (see the log above)", strerror(e)))
                })?;
            }
            if last.elapsed() >= std::time::Duration::from_secs(1) {
                for ti in &busy {
                    ti.target.periodic();
                }
                last = std::time::Instant::now();
                report(progress);
            }
        }
        for ti in &busy {
            ti.target.periodic();
        }
        report(progress);
        for ti in &busy {
            let left = ti.target.remaining().unwrap_or(0);
            if left > 0 && ti.ttype == CloneType::NAME {
                return Err(err(
                    Errno::EAGAIN,
                    format!("dmrs: {name}: hydration is not running ({left} regions left; enable_hydration first)"),
                ));
            }
        }
        Ok(())
    }
}
