// SPDX-License-Identifier: GPL-2.0-only
//! The hosted device mapper: named devices with a live and an inactive
//! table, suspend/resume with dm-ioctl's table swap, and I/O routed to the
//! targets in the core. One `DeviceMapper` is one "kernel": `dmrs run`
//! keeps it for a whole script; single `dmrs` commands rebuild it from the
//! state journal first (see `state.rs`).

use dmrs_core::dm::{BioInfo, BioOp, MapResult, PerBio, SyncIo};
use dmrs_core::emit::{Emitter, StatusType};
use dmrs_core::mem::TryVec;
use dmrs_core::platform::{split_io, BlockDevice, DmDevice, QueueLimits, ReqFlags, SyncCopier, SECTOR_SIZE};
use dmrs_core::snapshot::{self, ctr::parse_origin_args, MergeProgress, SnapId, SnapshotDriver, Volatile};
use dmrs_core::{Errno, Result as KResult, TargetError};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::filedev::{FileDev, OpenMode};

/// A device a table holds: a shared open file plus the name as written in
/// the table (what `dmsetup table` shows).
#[derive(Clone, Debug)]
pub struct HostDev {
    dev: Arc<FileDev>,
    name: Arc<str>,
}

impl BlockDevice for HostDev {
    fn read(&self, s: u64, b: &mut [u8]) -> KResult<()> {
        self.dev.read(s, b)
    }
    fn write(&self, s: u64, b: &[u8], f: ReqFlags) -> KResult<()> {
        self.dev.write(s, b, f)
    }
    fn flush(&self) -> KResult<()> {
        self.dev.flush()
    }
    fn size_sectors(&self) -> u64 {
        self.dev.size_sectors()
    }
    fn logical_block_size(&self) -> u32 {
        self.dev.logical_block_size()
    }
    fn prefetch(&self, s: u64, n: u64) {
        self.dev.prefetch(s, n)
    }
    fn discard(&self, s: u64, n: u64) -> KResult<()> {
        self.dev.discard(s, n)
    }
    fn queue_limits(&self) -> QueueLimits {
        self.dev.queue_limits()
    }
}

impl DmDevice for HostDev {
    fn bdev_id(&self) -> u64 {
        self.dev.id()
    }
    fn name(&self) -> &str {
        &self.name
    }
}

/// A failed device-mapper operation: the text dmsetup and the kernel log
/// would print, and the errno.
#[derive(Debug)]
pub struct DmError {
    /// Lines for stderr.
    pub msg: String,
    /// The errno.
    pub errno: Errno,
}

impl fmt::Display for DmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

/// `strerror`.
pub fn strerror(e: Errno) -> String {
    let s = std::io::Error::from_raw_os_error(e.0).to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn err(errno: Errno, msg: impl Into<String>) -> DmError {
    DmError { msg: msg.into(), errno }
}

type Result<T> = std::result::Result<T, DmError>;

type Clone = dmrs_core::clone::target::CloneTarget<HostDev, SyncCopier>;

/// A bio's data: where a read lands or what a write carries.
enum Io<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

impl Io<'_> {
    fn len(&self) -> usize {
        match self {
            Io::Read(b) => b.len(),
            Io::Write(b) => b.len(),
        }
    }
    fn is_read(&self) -> bool {
        matches!(self, Io::Read(_))
    }
}

enum Target {
    Origin(HostDev),
    Snapshot(SnapId),
    Clone(Box<Clone>),
}

struct Table {
    start: u64,
    len: u64,
    ttype: String,
    target: Target,
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
    ("clone", dmrs_core::clone::target::CLONE_VERSION),
    ("snapshot-merge", snapshot::MERGE_VERSION),
    ("snapshot-origin", snapshot::ORIGIN_VERSION),
    ("snapshot", snapshot::SNAPSHOT_VERSION),
];

/// Named devices and the snapshot driver behind them.
pub struct DeviceMapper {
    devices: BTreeMap<String, Device>,
    snap: SnapshotDriver<SyncIo<HostDev>>,
    files: HashMap<PathBuf, Arc<FileDev>>,
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
        Ok(DeviceMapper { devices: BTreeMap::new(), snap, files: HashMap::new() })
    }

    /// `dm_get_device`: opens (or reuses) the file behind `path`.
    fn get_device(files: &mut HashMap<PathBuf, Arc<FileDev>>, path: &str) -> KResult<HostDev> {
        let canon = std::fs::canonicalize(path).map_err(|e| Errno(e.raw_os_error().unwrap_or(2)))?;
        let dev = match files.get(&canon) {
            Some(d) => d.clone(),
            None => {
                let d = FileDev::open(Path::new(&canon), OpenMode::default())
                    .map_err(|e| Errno(e.raw_os_error().unwrap_or(5)))?;
                let d = Arc::new(d);
                files.insert(canon, d.clone());
                d
            }
        };
        Ok(HostDev { dev, name: Arc::from(path) })
    }

    fn device(&mut self, name: &str) -> Result<&mut Device> {
        self.devices.get_mut(name).ok_or_else(|| err(Errno::ENXIO, format!("Device {name} not found")))
    }

    /// `dm_table_create` + the target's ctr for a one-line table.
    fn build_table(&mut self, name: &str, line: &str) -> Result<Table> {
        let fail = |e: TargetError, ttype: &str| {
            err(
                e.errno,
                format!(
                    "device-mapper: table: {name}: {ttype}: {e}\ndevice-mapper: reload ioctl on {name} failed: {}",
                    strerror(e.errno)
                ),
            )
        };
        let lines: Vec<&str> = line.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let [l] = lines[..] else {
            return Err(err(Errno::EINVAL, format!("dmrs: {name}: a table must have exactly one target line")));
        };
        let mut w = l.split_whitespace();
        let (Some(start), Some(len), Some(ttype)) = (w.next(), w.next(), w.next()) else {
            return Err(fail(TargetError::inval("invalid table: expected <start> <length> <target> <args>"), "table"));
        };
        let start: u64 = start.parse().map_err(|_| fail(TargetError::inval("Invalid start sector"), ttype))?;
        let len: u64 = len.parse().map_err(|_| fail(TargetError::inval("Invalid length"), ttype))?;
        if start != 0 {
            return Err(fail(TargetError::inval("dmrs supports tables of one target starting at sector 0"), ttype));
        }
        if len == 0 {
            return Err(fail(TargetError::inval("zero-length target"), ttype));
        }
        let params: Vec<&str> = w.collect();
        let files = &mut self.files;
        let too_small = |d: &HostDev| {
            format!("{} too small for target: start=0, len={len}, dev_size={}", d.name(), d.size_sectors())
        };
        let target = match ttype {
            "snapshot-origin" => {
                let path = parse_origin_args(&params).map_err(|e| fail(e, ttype))?;
                let d = Self::get_device(files, path)
                    .map_err(|e| fail(TargetError::new(e, "Cannot get target device"), ttype))?;
                if d.size_sectors() < len {
                    return Err(err(Errno::EINVAL, format!("device-mapper: table: {name}: {}", too_small(&d))));
                }
                Target::Origin(d)
            }
            "snapshot" | "snapshot-merge" => {
                let merge = ttype == "snapshot-merge";
                if let Some(o) = params.first() {
                    if let Ok(d) = Self::get_device(files, o) {
                        if d.size_sectors() < len {
                            return Err(err(Errno::EINVAL, format!("device-mapper: table: {name}: {}", too_small(&d))));
                        }
                    }
                }
                let id = self
                    .snap
                    .snapshot_ctr(merge, len, &params, &mut |p| Self::get_device(files, p))
                    .map_err(|e| fail(e, ttype))?;
                Target::Snapshot(id)
            }
            "clone" => {
                let c = Clone::ctr(len, &params, &mut |p| Self::get_device(files, p), SyncCopier::default())
                    .map_err(|e| fail(e, ttype))?;
                // dm core calculates the queue limits when the table is
                // bound; `clone_io_hints` turns passdown off there when
                // the destination cannot discard.
                c.io_hints(&mut QueueLimits::default());
                Target::Clone(Box::new(c))
            }
            other => {
                return Err(err(
                    Errno::EINVAL,
                    format!(
                        "device-mapper: table: {name}: {other}: unknown target type\ndevice-mapper: reload ioctl on {name} failed: Invalid argument"
                    ),
                ))
            }
        };
        Ok(Table { start, len, ttype: ttype.to_string(), target })
    }

    fn destroy_table(&mut self, t: Table) {
        if let Target::Snapshot(id) = t.target {
            self.snap.snapshot_dtr(id);
        }
    }

    /// What the periodic commit of a live kernel would have done by now:
    /// commit every clone's metadata (called when a `dmrs` invocation ends).
    pub fn sync(&self) {
        for (name, d) in &self.devices {
            if let Some(Table { target: Target::Clone(c), .. }) = &d.live {
                if !d.suspended {
                    let _ = c.commit_metadata(name);
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
        self.device(name)?;
        let t = self.build_table(name, table)?;
        let old = self.device(name)?.inactive.replace(t);
        if let Some(o) = old {
            self.destroy_table(o);
        }
        Ok(())
    }

    /// `dmsetup suspend NAME`.
    pub fn suspend(&mut self, name: &str) -> Result<()> {
        let d = self.device(name)?;
        let was = std::mem::replace(&mut d.suspended, true);
        match &d.live {
            Some(Table { target: Target::Snapshot(id), .. }) => {
                let id = *id;
                // snapshot_merge_presuspend stops a merge; it restarts on resume.
                let _ = self.snap.set_suspended(id, true);
            }
            Some(Table { target: Target::Clone(c), .. }) if !was => c.postsuspend(name),
            _ => {}
        }
        Ok(())
    }

    /// `dmsetup resume NAME`: swaps in the inactive table if there is one
    /// (the old one is destroyed), then preresume and resume.
    pub fn resume(&mut self, name: &str) -> Result<()> {
        let d = self.device(name)?;
        let mut old = None;
        if let Some(new) = d.inactive.take() {
            d.suspended = true;
            old = d.live.replace(new);
        }
        let live = d.live.as_ref().map(|t| match &t.target {
            Target::Snapshot(id) => Some(*id),
            _ => None,
        });
        let gone = old.as_ref().map(|t| self.target_events(t)).unwrap_or(0);
        self.device(name)?.event_base += gone;
        let r = match live {
            Some(Some(id)) => self.snap.snapshot_preresume(id).and_then(|_| self.snap.snapshot_resume(id)),
            _ => Ok(()),
        };
        if let Some(o) = old {
            self.destroy_table(o);
        }
        match r {
            Ok(()) => {
                self.device(name)?.suspended = false;
                Ok(())
            }
            Err(e) => Err(err(e, format!("device-mapper: resume ioctl on {name} failed: {}", strerror(e)))),
        }
    }

    /// `dmsetup remove NAME`.
    pub fn remove(&mut self, name: &str) -> Result<()> {
        self.device(name)?;
        let Some(d) = self.devices.remove(name) else { return Ok(()) };
        // __dm_destroy suspends a live device first (postsuspend commits).
        if let (false, Some(Table { target: Target::Clone(c), .. })) = (d.suspended, &d.live) {
            c.postsuspend(name);
        }
        for t in [d.inactive, d.live].into_iter().flatten() {
            self.destroy_table(t);
        }
        Ok(())
    }

    fn line(&self, name: &str, t: &Table, ty: StatusType) -> String {
        let params = match &t.target {
            Target::Origin(d) => match ty {
                StatusType::Table => d.name().to_string(),
                _ => String::new(),
            },
            Target::Snapshot(id) => status_text(|e| {
                let _ = self.snap.snapshot_status(*id, ty, e);
            }),
            Target::Clone(c) => status_text(|e| c.status(name, ty, false, e)),
        };
        format!("{} {} {} {}", t.start, t.len, t.ttype, params)
    }

    /// `dmsetup status NAME` / `dmsetup table NAME` line (live table).
    pub fn status(&self, name: &str, ty: StatusType) -> Result<Option<String>> {
        let d = self.devices.get(name).ok_or_else(|| err(Errno::ENXIO, format!("Device {name} not found")))?;
        Ok(d.live.as_ref().map(|t| self.line(name, t, ty)))
    }

    /// Device names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.devices.keys().cloned().collect()
    }

    /// Events a table's target raised (`dm_table_event`).
    fn target_events(&self, t: &Table) -> u64 {
        match &t.target {
            Target::Origin(_) => 0,
            Target::Snapshot(id) => self.snap.snapshot_events(*id).unwrap_or(0),
            Target::Clone(c) => c.events(),
        }
    }

    /// The device's event number (`dmsetup info`'s `Event number`, what
    /// `dmsetup wait` waits on): every event its targets raised.
    pub fn event_nr(&self, name: &str) -> Result<u64> {
        let d = self.devices.get(name).ok_or_else(|| err(Errno::ENXIO, format!("Device {name} not found")))?;
        Ok(d.event_base + d.live.as_ref().map(|t| self.target_events(t)).unwrap_or(0))
    }

    /// `dmsetup info NAME`.
    pub fn info(&self, name: &str) -> Result<String> {
        let event_nr = self.event_nr(name)?;
        let d = self.devices.get(name).ok_or_else(|| err(Errno::ENXIO, format!("Device {name} not found")))?;
        let tables = match (d.live.is_some(), d.inactive.is_some()) {
            (true, true) => "LIVE & INACTIVE",
            (true, false) => "LIVE",
            (false, true) => "INACTIVE",
            (false, false) => "None",
        };
        Ok(format!(
            "Name:              {name}\nState:             {}\nTables present:    {tables}\nEvent number:      {event_nr}\nNumber of targets: {}\n",
            if d.suspended { "SUSPENDED" } else { "ACTIVE" },
            d.live.is_some() as u32
        ))
    }

    fn live(&self, name: &str) -> Result<&Table> {
        let d = self.devices.get(name).ok_or_else(|| err(Errno::ENXIO, format!("Device {name} not found")))?;
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
        if offset / ss + len as u64 / ss > t.len {
            return Err(err(
                Errno::ENOSPC,
                format!("dmrs: {name}: I/O beyond the end of the device ({} sectors)", t.len),
            ));
        }
        Ok(offset / ss)
    }

    fn io_err(name: &str, e: Errno) -> DmError {
        err(e, format!("dmrs: {name}: {}", strerror(e)))
    }

    /// dm core's part of a read or write: the buffer is split where the
    /// target's `max_io_len` splits bios (chunk or region size), each piece
    /// goes through the target's `map`, and a remapped piece is file I/O on
    /// the device `map` chose (then `end_io`); the others run the target's
    /// deferred path, as the kernel module's worker does.
    fn submit(&self, name: &str, t: &Table, sector: u64, mut data: Io<'_>) -> KResult<()> {
        let boundary = match &t.target {
            Target::Origin(_) => 0,
            Target::Snapshot(id) => self.snap.snapshot_chunk_size(*id)? as u64,
            Target::Clone(c) => c.region_size(),
        };
        let len = data.len();
        // No boundary (the origin): one piece.
        let whole = (boundary == 0).then_some((sector, 0..len));
        let split = split_io(sector, if boundary == 0 { 0 } else { len }, boundary);
        for (s, r) in whole.into_iter().chain(split) {
            let info = BioInfo {
                op: if data.is_read() { BioOp::Read } else { BioOp::Write },
                sector: s,
                nr_sectors: (r.len() / SECTOR_SIZE) as u64,
                flags: ReqFlags::empty(),
            };
            let mut pb = PerBio::new();
            let decision = match &t.target {
                Target::Origin(d) => self.snap.origin_map(d, &info),
                Target::Snapshot(id) => self.snap.snapshot_map(*id, &info, &mut pb),
                Target::Clone(c) => c.map(&info),
            };
            let r = match (decision, &mut data) {
                (MapResult::Remapped { dev, sector }, Io::Read(b)) => dev.read(sector, &mut b[r]),
                (MapResult::Remapped { dev, sector }, Io::Write(b)) => dev.write(sector, &b[r], info.flags),
                (MapResult::Kill(e), _) => Err(e),
                (MapResult::Done(res), _) => res,
                (MapResult::Submitted, Io::Read(b)) => match &t.target {
                    Target::Origin(d) => d.read(s, &mut b[r]),
                    Target::Snapshot(id) => self.snap.snapshot_read(*id, s, &mut b[r]),
                    Target::Clone(c) => c.read(s, &mut b[r]),
                },
                (MapResult::Submitted, Io::Write(b)) => match &t.target {
                    Target::Origin(d) => self.snap.origin_write(d, s, &b[r], info.flags),
                    Target::Snapshot(id) => self.snap.snapshot_write(*id, s, &b[r], info.flags),
                    Target::Clone(c) => c.write(name, s, &b[r], info.flags),
                },
            };
            if let Target::Snapshot(_) = &t.target {
                self.snap.snapshot_end_io(&mut pb);
            }
            r?;
        }
        Ok(())
    }

    /// Reads `len` bytes at byte `offset` of device `name`.
    pub fn read(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let t = self.live(name)?;
        let sector = Self::check_range(t, name, offset, len)?;
        let mut buf = vec![0u8; len];
        self.submit(name, t, sector, Io::Read(&mut buf)).map_err(|e| Self::io_err(name, e))?;
        Ok(buf)
    }

    /// Writes `data` at byte `offset` of device `name`.
    pub fn write(&self, name: &str, offset: u64, data: &[u8]) -> Result<()> {
        let t = self.live(name)?;
        let sector = Self::check_range(t, name, offset, data.len())?;
        self.submit(name, t, sector, Io::Write(data)).map_err(|e| Self::io_err(name, e))
    }

    /// Flushes device `name` (fsync on a dm device: an empty PREFLUSH bio).
    pub fn flush(&self, name: &str) -> Result<()> {
        let t = self.live(name)?;
        match &t.target {
            Target::Origin(d) => d.flush(),
            Target::Snapshot(id) => self.snap.snapshot_flush(*id),
            Target::Clone(c) => c.flush(name),
        }
        .map_err(|e| Self::io_err(name, e))
    }

    /// Discards a byte range (`blkdiscard`).
    pub fn discard(&self, name: &str, offset: u64, len: u64) -> Result<()> {
        let t = self.live(name)?;
        let sector = Self::check_range(t, name, offset, len as usize)?;
        match &t.target {
            Target::Origin(d) => d.discard(sector, len / SECTOR_SIZE as u64),
            Target::Snapshot(id) => self.snap.snapshot_discard(*id, sector, len / SECTOR_SIZE as u64),
            Target::Clone(c) => c.discard(name, sector, len / SECTOR_SIZE as u64),
        }
        .map_err(|e| Self::io_err(name, e))
    }

    /// `dmsetup message NAME SECTOR MSG`: only clone takes messages.
    pub fn message(&self, name: &str, _sector: u64, msg: &[String]) -> Result<()> {
        let t = self.live(name)?;
        if let Target::Clone(c) = &t.target {
            let argv: Vec<&str> = msg.iter().map(String::as_str).collect();
            return c
                .message(name, &argv)
                .map_err(|e| err(e, format!("device-mapper: message ioctl on {name} failed: {}", strerror(e))));
        }
        Err(err(
            Errno::EINVAL,
            format!(
                "device-mapper: target message: {name}: Target type does not support messages\ndevice-mapper: message ioctl on {name} failed: Invalid argument"
            ),
        ))
    }

    fn snapshot_tables(&self) -> impl Iterator<Item = (&str, &'static str, SnapId)> {
        self.devices.iter().flat_map(|(n, d)| {
            [("live", &d.live), ("inactive", &d.inactive)].into_iter().filter_map(move |(slot, t)| match t {
                Some(Table { target: Target::Snapshot(id), .. }) => Some((n.as_str(), slot, *id)),
                _ => None,
            })
        })
    }

    /// What the snapshots keep only in memory, one line per table:
    /// `NAME live|inactive valid=1 overflowed=0 merge_failed=0
    /// [transient=NEXT_FREE ranges=OLD:NEW:COUNT,...]`.
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
        let tables: Vec<(String, &'static str, SnapId)> =
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
            let mut v = Volatile { valid: true, ..Volatile::default() };
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

    /// Background hydration to completion, committing about once a second
    /// (`COMMIT_PERIOD`) and at the end.
    fn wait_hydration(name: &str, c: &Clone, suspended: bool, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        if suspended {
            return Err(err(Errno::EBUSY, format!("dmrs: {name} is suspended: hydration is stopped until resume")));
        }
        let mut last = std::time::Instant::now();
        while c.hydration_active() {
            c.hydrate_step().map_err(|e| Self::io_err(name, e))?;
            if last.elapsed() >= std::time::Duration::from_secs(1) {
                let _ = c.commit_metadata(name);
                last = std::time::Instant::now();
                let (h, t) = c.progress();
                progress(h, t);
            }
        }
        let _ = c.commit_metadata(name);
        let (h, t) = c.progress();
        progress(h, t);
        if h < t {
            return Err(err(
                Errno::EAGAIN,
                format!("dmrs: {name}: hydration is not running ({h}/{t} regions hydrated; enable_hydration first)"),
            ));
        }
        Ok(())
    }

    /// Runs background work of `name` (a merge) to completion, reporting
    /// `(done, total)` chunks-left estimates to `progress`.
    pub fn wait(&self, name: &str, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        let d = self.devices.get(name).ok_or_else(|| err(Errno::ENXIO, format!("Device {name} not found")))?;
        if let Some(Table { target: Target::Clone(c), .. }) = &d.live {
            return Self::wait_hydration(name, c, d.suspended, progress);
        }
        let Some(Table { target: Target::Snapshot(id), .. }) = &d.live else { return Ok(()) };
        if d.suspended {
            return Err(err(Errno::EBUSY, format!("dmrs: {name} is suspended: merging is stopped until resume")));
        }
        let usage = |s: &Self| {
            let line = status_text(|e| {
                let _ = s.snap.snapshot_status(*id, StatusType::Info, e);
            });
            let mut it = line.split(['/', ' ']);
            let a = it.next().and_then(|v| v.parse::<u64>().ok());
            let _ = it.next();
            let m = it.next().and_then(|v| v.parse::<u64>().ok());
            a.zip(m).map(|(a, m)| a.saturating_sub(m))
        };
        let total = usage(self).unwrap_or(0);
        loop {
            match self.snap.merge_step(*id).map_err(|e| Self::io_err(name, e))? {
                MergeProgress::Merged(_) => {
                    let left = usage(self).unwrap_or(0);
                    progress(total.saturating_sub(left), total);
                }
                MergeProgress::Done => return Ok(()),
                MergeProgress::Failed => {
                    return Err(err(Errno::EIO, format!("dmrs: {name}: merge failed (see the log above)")))
                }
            }
        }
    }
}
