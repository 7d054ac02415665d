// SPDX-License-Identifier: GPL-2.0-only
//! Offline reading of a persistent COW device: `dmrs cow dump` and
//! `dmrs cow check`. The walk reads the header and the metadata areas the
//! way `read_exceptions` does, but keeps going past problems so `check` can
//! list them all, and lists exceptions of invalidated snapshots too.

use dmrs_core::endian::OnDisk;
use dmrs_core::exception_store::disk::{self, DiskHeader, NUM_SNAPSHOT_HDR_CHUNKS, SNAPSHOT_DISK_VERSION, SNAP_MAGIC};
use dmrs_core::exception_store::dm_exception_store_set_chunk_size;
use dmrs_core::platform::{BlockDevice, SECTOR_SIZE};
use std::collections::HashMap;
use std::fmt::Write as _;

/// What chunk 0 says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// Magic 0: the kernel would initialise a new snapshot.
    New,
    /// A header with the snapshot magic (fields not yet validated).
    Snap {
        /// `valid`.
        valid: u32,
        /// `version`.
        version: u32,
        /// `chunk_size` in sectors.
        chunk_size: u32,
    },
    /// Some other magic.
    BadMagic(u32),
}

/// One exception as found on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Metadata area index.
    pub area: u64,
    /// Slot in the area.
    pub slot: u32,
    /// Origin chunk.
    pub old_chunk: u64,
    /// COW chunk.
    pub new_chunk: u64,
}

/// The result of walking a COW device.
#[derive(Debug)]
pub struct CowImage {
    /// The header.
    pub header: Header,
    /// Device size in sectors.
    pub dev_sectors: u64,
    /// Exceptions in on-disk order, up to the terminator.
    pub exceptions: Vec<Slot>,
    /// Metadata areas read (the last one holds the terminator).
    pub areas: u64,
    /// Problems that stop the walk (unreadable, truncated, bad header).
    pub fatal: Vec<String>,
}

impl CowImage {
    /// Chunk size of a valid header, if it has one.
    pub fn chunk_size(&self) -> Option<u32> {
        match self.header {
            Header::Snap { chunk_size, .. } => Some(chunk_size),
            _ => None,
        }
    }
}

/// Reads the header and walks the areas of `dev`.
pub fn scan(dev: &dyn BlockDevice) -> CowImage {
    scan_with(dev, None)
}

/// As [`scan`]; with `forced_chunk`, a header that is unusable (bad magic,
/// version or chunk size) is reported but the areas are walked anyway with
/// that chunk size, which is how `cow repair` salvages a COW whose header
/// was overwritten.
pub fn scan_with(dev: &dyn BlockDevice, forced_chunk: Option<u32>) -> CowImage {
    let mut all = Vec::new();
    let mut img = walk(dev, forced_chunk, &mut |e| all.push(e));
    img.exceptions = all;
    img
}

/// As [`scan_with`], but hands each exception to `visit` instead of
/// keeping it: the returned image's `exceptions` stays empty. This is what
/// lets check, dump and changed run over millions of exceptions in
/// bounded memory.
pub fn walk(dev: &dyn BlockDevice, forced_chunk: Option<u32>, visit: &mut dyn FnMut(Slot)) -> CowImage {
    let mut img = CowImage {
        header: Header::New,
        dev_sectors: dev.size_sectors(),
        exceptions: Vec::new(),
        areas: 0,
        fatal: Vec::new(),
    };
    let mut first = [0u8; SECTOR_SIZE];
    if let Err(e) = dev.read(0, &mut first) {
        img.fatal
            .push(format!("truncated: cannot read the header sector ({e}); device has {} sectors", img.dev_sectors));
        return img;
    }
    let Some(dh) = DiskHeader::unpack(&first) else {
        img.fatal.push("header unreadable".into());
        return img;
    };
    img.header = match dh.magic.get() {
        0 => Header::New,
        SNAP_MAGIC => {
            Header::Snap { valid: dh.valid.get(), version: dh.version.get(), chunk_size: dh.chunk_size.get() }
        }
        m => Header::BadMagic(m),
    };
    let chunk_size = match (img.header, forced_chunk) {
        (Header::New, None) => return img,
        (Header::Snap { version: SNAPSHOT_DISK_VERSION, chunk_size, .. }, Some(f)) if chunk_size == f => f,
        (h, Some(f)) => {
            if let Err(msg) = dm_exception_store_set_chunk_size(f, dev.logical_block_size(), 512) {
                img.fatal.push(format!("invalid chunk size {f}: {}", msg.to_string_lossy()));
                return img;
            }
            if h != Header::New {
                img.fatal.push(format!("header {h:?} ignored: walking the areas with chunk size {f}"));
            }
            img.header = Header::Snap { valid: dh.valid.get(), version: SNAPSHOT_DISK_VERSION, chunk_size: f };
            f
        }
        (Header::BadMagic(m), None) => {
            img.fatal.push(format!("bad magic 0x{m:08x} (expected 0x{SNAP_MAGIC:08x}): Invalid or corrupt snapshot"));
            return img;
        }
        (Header::Snap { version, chunk_size, .. }, None) => {
            if version != SNAPSHOT_DISK_VERSION {
                img.fatal.push(format!("unable to handle snapshot disk version {version}"));
            }
            if let Err(msg) = dm_exception_store_set_chunk_size(chunk_size, dev.logical_block_size(), 512) {
                img.fatal.push(format!("invalid on-disk chunk size {chunk_size}: {}", msg.to_string_lossy()));
                return img;
            }
            chunk_size
        }
    };
    let epa = disk::exceptions_per_area(chunk_size);
    let dev_chunks = img.dev_sectors / chunk_size as u64;
    let mut area = vec![0u8; chunk_size as usize * SECTOR_SIZE];
    let mut area_index = 0u64;
    let mut prefetched = 0u64;
    while let Some(loc) = disk::area_location(epa, area_index) {
        if loc >= dev_chunks {
            img.fatal.push(format!(
                "truncated: metadata area {area_index} at chunk {loc} is beyond the end of the device ({dev_chunks} chunks)"
            ));
            break;
        }
        // Read ahead as read_exceptions does (each area hinted once).
        while prefetched <= area_index + disk::DM_PREFETCH_CHUNKS {
            match disk::area_location(epa, prefetched) {
                Some(pf) if pf < dev_chunks => dev.prefetch(pf * chunk_size as u64, chunk_size as u64),
                _ => break,
            }
            prefetched += 1;
        }
        if let Err(e) = dev.read(loc * chunk_size as u64, &mut area) {
            img.fatal.push(format!("cannot read metadata area {area_index} at chunk {loc}: {e}"));
            break;
        }
        img.areas = area_index + 1;
        let mut terminator = None;
        for slot in 0..epa {
            let Some((old, new)) = disk::read_exception(&area, slot) else { break };
            if new == 0 {
                terminator = Some(slot);
                break;
            }
            visit(Slot { area: area_index, slot, old_chunk: old, new_chunk: new });
        }
        if let Some(t) = terminator {
            // The kernel stops at the terminator but keeps the whole area in
            // memory and writes it back on the next commit: a slot after it
            // with a new_chunk becomes a live exception once the terminator's
            // slot is filled.
            let live: Vec<u32> = (t + 1..epa)
                .filter(|&slot| matches!(disk::read_exception(&area, slot), Some((_, new)) if new != 0))
                .collect();
            if let Some(first) = live.first() {
                img.fatal.push(format!(
                    "area {area_index} slot {first}: a non-zero exception after the terminator (slot {t}); {} such slot(s) become live exceptions at the next commit",
                    live.len()
                ));
            }
            break;
        }
        area_index += 1;
    }
    img
}

/// The most metadata bytes a walk of `dev` can read (every area the device
/// could hold), for sizing a progress bar; 0 without a usable header.
pub fn metadata_bound(dev: &dyn BlockDevice) -> u64 {
    let Header::Snap { chunk_size, .. } = read_header(dev) else { return 0 };
    if chunk_size == 0 || !chunk_size.is_power_of_two() {
        return 0;
    }
    let epa = disk::exceptions_per_area(chunk_size) as u64;
    (dev.size_sectors() / chunk_size as u64 / (epa + 1)).saturating_mul(chunk_size as u64 * SECTOR_SIZE as u64)
}

/// The header alone, as [`scan`] reads it (`New` when unreadable: the walk
/// reports why), so a streaming dump can print it before the exceptions.
pub fn read_header(dev: &dyn BlockDevice) -> Header {
    let mut first = [0u8; SECTOR_SIZE];
    if dev.read(0, &mut first).is_err() {
        return Header::New;
    }
    match DiskHeader::unpack(&first) {
        None => Header::New,
        Some(dh) => match dh.magic.get() {
            0 => Header::New,
            SNAP_MAGIC => {
                Header::Snap { valid: dh.valid.get(), version: dh.version.get(), chunk_size: dh.chunk_size.get() }
            }
            m => Header::BadMagic(m),
        },
    }
}

/// `dmrs cow dump` text.
pub fn dump_text(img: &CowImage) -> String {
    let mut s = String::new();
    match img.header {
        Header::New => s.push_str("header new\n"),
        Header::Snap { valid, version, chunk_size } => {
            let _ =
                writeln!(s, "header magic=0x{SNAP_MAGIC:08x} valid={valid} version={version} chunk_size={chunk_size}");
        }
        Header::BadMagic(m) => {
            let _ = writeln!(s, "header magic=0x{m:08x}");
        }
    }
    for e in &img.exceptions {
        let _ = writeln!(s, "{} {}", e.old_chunk, e.new_chunk);
    }
    s
}

/// The `header` member of the JSON dump.
pub fn json_header(header: &Header) -> serde_json::Value {
    match *header {
        Header::New => serde_json::json!("new"),
        Header::Snap { valid, version, chunk_size } => serde_json::json!({
            "magic": SNAP_MAGIC, "valid": valid, "version": version, "chunk_size": chunk_size
        }),
        Header::BadMagic(m) => serde_json::json!({ "magic": m }),
    }
}

/// `dmrs cow dump --json`: one object, built whole (`cow dump` streams the
/// same bytes with `cow_format::dump_json_stream`).
pub fn dump_json(img: &CowImage) -> serde_json::Value {
    let header = json_header(&img.header);
    let exceptions: Vec<_> = img
        .exceptions
        .iter()
        .map(|e| serde_json::json!({ "old_chunk": e.old_chunk, "new_chunk": e.new_chunk }))
        .collect();
    serde_json::json!({ "header": header, "exceptions": exceptions, "errors": img.fatal })
}

/// The outcome of `dmrs cow check`.
#[derive(Debug)]
pub struct CheckReport {
    /// One line per problem; empty when consistent.
    pub problems: Vec<String>,
    /// The one-line summary.
    pub summary: String,
}

/// Problem lines kept in full; past this many the rest are only counted
/// (a garbage area can make every slot a problem, and each line costs memory).
pub const MAX_PROBLEM_LINES: usize = 10_000;

/// Checks a scanned image; `origin_sectors` enables the origin bound check.
pub fn check(img: &CowImage, origin_sectors: Option<u64>) -> CheckReport {
    check_stream(img, img.exceptions.len() as u64, origin_sectors, &mut |f| {
        img.exceptions.iter().for_each(|&e| f(e));
        Ok(())
    })
    .unwrap_or_else(|e| CheckReport { problems: vec![e], summary: String::new() })
}

/// Checks a COW device by walking it (twice when an old or new chunk
/// repeats, to name the first use), holding a bitmap of the device's
/// chunks and the sorted old chunks: 8 bytes per exception plus one bit
/// per COW chunk, not the exceptions themselves.
/// `progress` gets the bytes of slots read in the first walk.
pub fn check_device(dev: &dyn BlockDevice, origin_sectors: Option<u64>, progress: &dyn Fn(u64)) -> CheckReport {
    let mut slots = 0u64;
    let img = walk(dev, None, &mut |_| {
        slots += 1;
        progress(disk::DiskException::SIZE as u64);
    });
    check_stream(&img, slots, origin_sectors, &mut |f| {
        let again = walk(dev, None, f);
        if again.fatal != img.fatal || again.header != img.header {
            return Err("the device changed while it was checked".into());
        }
        Ok(())
    })
    .unwrap_or_else(|e| CheckReport { problems: vec![e], summary: String::new() })
}

/// A bitmap of `n` bits, sized from the device (bounded by its chunks).
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: u64) -> Result<Self, String> {
        let words = usize::try_from(n.div_ceil(64)).map_err(|_| "device too large".to_string())?;
        let mut v = Vec::new();
        v.try_reserve_exact(words).map_err(|_| format!("cannot allocate a bitmap of {n} chunks"))?;
        v.resize(words, 0);
        Ok(Bits(v))
    }
    /// Sets bit `i` (< n); returns whether it was set already.
    fn test_and_set(&mut self, i: u64) -> bool {
        let (word, bit) = ((i / 64) as usize, 1u64 << (i % 64));
        let old = self.0[word] & bit != 0;
        self.0[word] |= bit;
        old
    }
}

/// Feeds every exception, in on-disk order, to the visitor it is given.
pub type Feed<'a> = dyn FnMut(&mut dyn FnMut(Slot)) -> Result<(), String> + 'a;

/// The check over exceptions fed (in on-disk order, `n` of them) by
/// `each`, which is called once, and again only when a chunk repeats.
pub fn check_stream(
    img: &CowImage,
    n: u64,
    origin_sectors: Option<u64>,
    each: &mut Feed<'_>,
) -> Result<CheckReport, String> {
    let mut problems = img.fatal.clone();
    let Header::Snap { valid, chunk_size, .. } = img.header else {
        let summary = match img.header {
            Header::New => "new COW (all-zero header): no exceptions".to_string(),
            _ => "not a persistent snapshot".to_string(),
        };
        return Ok(CheckReport { problems, summary });
    };
    let cs = chunk_size.max(1) as u64;
    let epa = disk::exceptions_per_area(chunk_size).max(1);
    let dev_chunks = img.dev_sectors / cs;
    let origin_chunks = origin_sectors.map(|s| s.div_ceil(cs));
    // Pass 1: per-slot bounds, repeated new chunks (bitmap), old chunks kept to sort.
    let mut seen_new = Bits::new(dev_chunks)?;
    let mut dup_new: Vec<u64> = Vec::new();
    let mut olds: Vec<u64> = Vec::new();
    // n comes from a walk of this device, so it is bounded by its chunks.
    olds.try_reserve_exact(n.min(dev_chunks) as usize).map_err(|_| format!("cannot allocate {n} old chunks"))?;
    let mut lines: Vec<(u64, String)> = Vec::new();
    let mut extra = 0u64;
    let mut push = |lines: &mut Vec<(u64, String)>, idx: u64, msg: String| {
        if lines.len() < MAX_PROBLEM_LINES {
            lines.push((idx, msg));
        } else {
            extra += 1;
        }
    };
    let mut next_free = NUM_SNAPSHOT_HDR_CHUNKS + 1;
    let mut idx = 0u64;
    each(&mut |e: Slot| {
        let at = format!("area {} slot {}", e.area, e.slot);
        if e.new_chunk >= dev_chunks {
            push(
                &mut lines,
                idx,
                format!("{at}: new_chunk {} is beyond the end of the device ({dev_chunks} chunks)", e.new_chunk),
            );
        } else {
            if disk::is_metadata_chunk(epa, e.new_chunk) {
                let what = if e.new_chunk < NUM_SNAPSHOT_HDR_CHUNKS { "the header" } else { "a metadata area" };
                push(&mut lines, idx, format!("{at}: new_chunk {} is on {what}", e.new_chunk));
            }
            if seen_new.test_and_set(e.new_chunk) {
                dup_new.push(e.new_chunk);
            }
        }
        if let Some(o) = origin_chunks {
            if e.old_chunk >= o {
                push(&mut lines, idx, format!("{at}: old_chunk {} is beyond the origin ({o} chunks)", e.old_chunk));
            }
        }
        if olds.len() < olds.capacity() {
            olds.push(e.old_chunk);
        }
        next_free = next_free.max(e.new_chunk.saturating_add(1));
        idx += 1;
    })?;
    // Beyond-the-device new chunks cannot be in the bitmap: find their repeats too.
    olds.sort_unstable();
    let mut dup_old: Vec<u64> = olds.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]).collect();
    drop(olds);
    dup_old.dedup();
    dup_new.sort_unstable();
    dup_new.dedup();
    if !dup_new.is_empty() || !dup_old.is_empty() {
        // Pass 2: name the first use of every repeated chunk.
        let mut first_new: HashMap<u64, Slot> = HashMap::new();
        let mut first_old: HashMap<u64, Slot> = HashMap::new();
        let mut idx = 0u64;
        each(&mut |e: Slot| {
            let at = format!("area {} slot {}", e.area, e.slot);
            if dup_new.binary_search(&e.new_chunk).is_ok() {
                match first_new.get(&e.new_chunk) {
                    Some(p) => push(
                        &mut lines,
                        idx,
                        format!("{at}: new_chunk {} is used twice (also area {} slot {})", e.new_chunk, p.area, p.slot),
                    ),
                    None => {
                        first_new.insert(e.new_chunk, e);
                    }
                }
            }
            if dup_old.binary_search(&e.old_chunk).is_ok() {
                match first_old.get(&e.old_chunk) {
                    Some(p) => push(
                        &mut lines,
                        idx,
                        format!(
                            "{at}: old_chunk {} is remapped twice (also area {} slot {})",
                            e.old_chunk, p.area, p.slot
                        ),
                    ),
                    None => {
                        first_old.insert(e.old_chunk, e);
                    }
                }
            }
            idx += 1;
        })?;
    }
    // Slot order; within a slot, the order the checks were made in.
    lines.sort_by_key(|l| l.0);
    problems.extend(lines.into_iter().map(|l| l.1));
    if extra > 0 {
        problems.push(format!("… and {extra} more problems"));
    }
    // skip_metadata, as the kernel does after loading.
    if next_free % (epa as u64 + 1) == NUM_SNAPSHOT_HDR_CHUNKS {
        next_free = next_free.saturating_add(1);
    }
    let current_area = img.areas.saturating_sub(1);
    let summary = format!(
        "{}: chunk_size={} valid={} exceptions={} areas={} usage={}/{} {}",
        if problems.is_empty() { "consistent" } else { "inconsistent" },
        chunk_size,
        valid,
        n,
        img.areas,
        // Saturating: a damaged slot may name any chunk.
        next_free.saturating_mul(cs),
        img.dev_sectors,
        current_area.saturating_add(1 + NUM_SNAPSHOT_HDR_CHUNKS).saturating_mul(cs),
    );
    Ok(CheckReport { problems, summary })
}
