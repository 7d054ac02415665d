// SPDX-License-Identifier: GPL-2.0-only
//! `dmrs`'s command line: dmsetup's verbs over files, I/O verbs, scripts
//! (`dmrs run`), and the offline tools. Each verb is one [`Verb`]; the
//! same parser reads script lines, so a script line is exactly a command
//! line without the leading `dmrs`.

use crate::dm::{DeviceMapper, TARGETS};
use crate::filedev::{FileDev, OpenMode};
use crate::state::{quote, split_words, State};
use crate::{cow, demo};
use clap::{Args, Parser, Subcommand};
use dmrs_core::emit::StatusType;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

/// dmrs: Linux device-mapper snapshots in Rust, byte-compatible with the
/// kernel, over plain files or block devices.
///
/// The device-mapper verbs work like dmsetup's. Devices and their tables
/// live in a state directory (--state, $DMRS_STATE, else ./.dmrs), so each
/// invocation sees what earlier ones made. Tables name files (or block
/// devices) where the kernel would name block devices:
///
///   dmrs create base --table "0 131072 snapshot-origin origin.img"
///   dmrs create snap --table "0 131072 snapshot origin.img cow.img P 16"
///   dmrs write base --offset 1048576 --pattern NEWDATA --length 65536
///   dmrs status snap            # 0 131072 snapshot 48/65536 32
#[derive(Parser, Debug)]
#[command(name = "dmrs", version, verbatim_doc_comment)]
pub struct Cli {
    /// State directory (default: $DMRS_STATE, else ./.dmrs).
    #[arg(long, global = true, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// The verb.
    #[command(subcommand)]
    pub verb: Verb,
}

/// Where a table comes from.
#[derive(Args, Debug, Clone)]
pub struct TableArg {
    /// The table: `<start> <length> <target> <args...>` (one line). Read
    /// from standard input when omitted.
    #[arg(long)]
    pub table: Option<String>,
}

/// One verb.
#[derive(Subcommand, Debug, Clone)]
pub enum Verb {
    /// Create a device and activate its table (create = load + resume).
    Create {
        /// Device name.
        name: String,
        #[command(flatten)]
        table: TableArg,
        /// Create the device without a table (load one later).
        #[arg(long, conflicts_with = "table")]
        notable: bool,
    },
    /// Load a table into the device's inactive slot (it goes live on resume).
    Load {
        /// Device name.
        name: String,
        #[command(flatten)]
        table: TableArg,
    },
    /// Suspend a device.
    Suspend {
        /// Device name.
        name: String,
    },
    /// Resume a device, swapping in its inactive table if it has one.
    Resume {
        /// Device name.
        name: String,
    },
    /// Remove a device and destroy its tables.
    Remove {
        /// Device name.
        name: String,
    },
    /// Print status lines as `dmsetup status` does (`0 131072 snapshot 32/65536 32`).
    Status {
        /// Device name; all devices (prefixed `NAME: `) when omitted.
        name: Option<String>,
    },
    /// Print table lines as `dmsetup table` does.
    Table {
        /// Device name; all devices when omitted.
        name: Option<String>,
    },
    /// Print device state as `dmsetup info` does.
    Info {
        /// Device name; all devices when omitted.
        name: Option<String>,
    },
    /// List devices.
    Ls,
    /// List targets with their versions.
    Targets,
    /// Send a message to a target: `message NAME SECTOR MESSAGE...`.
    Message {
        /// Device name.
        name: String,
        /// Sector (0).
        sector: u64,
        /// The message words.
        #[arg(required = true, num_args = 1..)]
        msg: Vec<String>,
    },
    /// Write to a device at a byte offset (multiples of 512): stdin, a
    /// file, or a lab pattern (16-byte records: TEXT padded to 15, newline).
    Write {
        /// Device name.
        name: String,
        /// Byte offset.
        #[arg(long)]
        offset: u64,
        /// Read the data from this file instead of stdin.
        #[arg(long, conflicts_with = "pattern")]
        input: Option<PathBuf>,
        /// Write this pattern (needs --length).
        #[arg(long, requires = "length")]
        pattern: Option<String>,
        /// Bytes of pattern.
        #[arg(long)]
        length: Option<u64>,
        /// Write in pieces of this many bytes, in order, each finished
        /// before the next and stopping at the first that fails, as
        /// `dd bs=BS oflag=direct` does (a multiple of 512).
        #[arg(long, default_value_t = 4096)]
        bs: u64,
    },
    /// Read from a device at a byte offset (multiples of 512).
    Read {
        /// Device name.
        name: String,
        /// Byte offset.
        #[arg(long)]
        offset: u64,
        /// Bytes to read.
        #[arg(long)]
        length: u64,
        /// Write to this file instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Instead of printing, check that the data is this lab pattern.
        #[arg(long, conflicts_with = "output")]
        expect_pattern: Option<String>,
    },
    /// Flush a device (an empty PREFLUSH bio, like fsync).
    Flush {
        /// Device name.
        name: String,
    },
    /// Discard a byte range of a device.
    Discard {
        /// Device name.
        name: String,
        /// Byte offset.
        #[arg(long)]
        offset: u64,
        /// Bytes.
        #[arg(long)]
        length: u64,
    },
    /// Run a device's background work (a merge, a hydration) to completion;
    /// with EVENT_NR, then succeed only if the device's event number is
    /// above it (`dmsetup wait NAME EVENT_NR`, which would sleep until it is).
    Wait {
        /// Device name.
        name: String,
        /// Event number to wait past (`dmsetup info`'s `Event number`).
        event_nr: Option<u64>,
    },
    /// Print the device's event number (`dmsetup info -c -o events`).
    Events {
        /// Device name.
        name: String,
    },
    /// Change directory (scripts; relative paths in tables resolve here).
    Cd {
        /// Directory.
        dir: PathBuf,
    },
    /// Print a line (scripts).
    Echo {
        /// Words.
        words: Vec<String>,
    },
    /// Run a script of verbs, one per line (`#` comments), in one process,
    /// so in-memory protocols such as handover run as in the kernel. It
    /// starts from the state directory's devices and records its changes
    /// there, like the same verbs run one by one.
    Run {
        /// Script file (`-` for stdin).
        script: PathBuf,
    },
    /// Offline tools for a persistent snapshot's COW device (P/PO).
    #[command(subcommand)]
    Cow(CowCmd),
    /// Offline tools for dm-clone metadata.
    #[command(subcommand)]
    Clone(CloneCmd),
    /// The kernel lab's scenarios (see lab/README.md).
    #[command(subcommand)]
    Lab(LabCmd),
    /// Make an origin and a COW in a fresh temporary directory, take a
    /// snapshot, write to both sides and print status lines and the dump.
    Demo {
        /// Directory to create the demo's work directory in.
        #[arg(long, default_value_os_t = std::env::temp_dir())]
        dir: PathBuf,
    },
}

/// `dmrs clone ...`.
///
/// Conventions of thin-provisioning-tools: -q prints nothing (exit status
/// only); -o FILE writes the report to FILE.
#[derive(Subcommand, Debug, Clone)]
#[command(after_help = crate::tool::EXIT_CODES)]
pub enum CloneCmd {
    /// Print the superblock summary and the hydrated regions.
    ///
    /// Text (the default): first line `superblock version=<n>
    /// region_size=<sectors> target_size=<sectors> regions=<n> hydrated=<n>
    /// metadata_blocks=<used>/<total>` (`superblock new` when block 0 is all
    /// zeros), then hydrated regions as `<first region> <count>` runs. JSON:
    /// one object. XML: a `<superblock>` root with `<range begin length/>`.
    #[command(after_help = crate::tool::EXIT_CODES)]
    Dump {
        /// Metadata file or block device.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: crate::cow_format::Format,
        /// Same as --format json.
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Write the dump to this file.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        opts: crate::tool::ToolOpts,
    },
    /// Check dm-clone metadata: superblock (location, magic, checksum,
    /// version), every btree node, array block and space-map block
    /// (location, checksum, shape), the bitset's length, and every block's
    /// reference count against what the structures use. Exit 0 with a
    /// summary when consistent; exit 1 with one line per problem.
    #[command(after_help = crate::tool::EXIT_CODES)]
    Check {
        /// Metadata file or block device.
        file: PathBuf,
        /// Write the report to this file.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        opts: crate::tool::ToolOpts,
    },
    /// Build fresh dm-clone metadata from a dump (text, JSON or XML) with
    /// the core's metadata code, which the kernel opens. Sizes default to
    /// the dump's; refuses to overwrite valid metadata unless --force.
    ///
    ///   dmrs clone restore -i meta.xml -o meta.img --region-size 8 --target-size 131072
    #[command(after_help = crate::tool::EXIT_CODES, verbatim_doc_comment)]
    Restore {
        /// The dump.
        #[arg(short, long, value_name = "DUMP")]
        input: PathBuf,
        /// The metadata file or block device to write (it must exist).
        #[arg(short, long, value_name = "META")]
        output: PathBuf,
        /// Region size in sectors.
        #[arg(long)]
        region_size: Option<u64>,
        /// Target size in sectors.
        #[arg(long)]
        target_size: Option<u64>,
        /// Overwrite valid metadata.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        opts: crate::tool::ToolOpts,
    },
    /// Rebuild dm-clone metadata from whatever bitset blocks still verify;
    /// regions in doubt are marked unhydrated (copied again, never trusted).
    /// NEW is created with the size of BROKEN if it does not exist.
    ///
    ///   dmrs clone repair -i broken.img -o new.img
    #[command(after_help = crate::tool::EXIT_CODES, verbatim_doc_comment)]
    Repair {
        /// The damaged metadata.
        #[arg(short, long, value_name = "BROKEN")]
        input: PathBuf,
        /// The new metadata.
        #[arg(short, long, value_name = "NEW")]
        output: PathBuf,
        /// Region size in sectors (needed when the superblock is lost).
        #[arg(long, requires = "target_size")]
        region_size: Option<u64>,
        /// Target size in sectors (needed when the superblock is lost).
        #[arg(long, requires = "region_size")]
        target_size: Option<u64>,
        /// Overwrite valid metadata on NEW.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        opts: crate::tool::ToolOpts,
    },
}

/// `dmrs lab ...`: glue for lab/run.sh.
#[derive(Subcommand, Debug, Clone)]
pub enum LabCmd {
    /// Print the scenario's disk names, in attach order.
    Disks {
        /// Scenario file.
        scenario: PathBuf,
        /// Only the disks compared in deterministic scenarios.
        #[arg(long)]
        compared: bool,
    },
    /// Create the scenario's disks in DIR.
    Prepare {
        /// Scenario file.
        scenario: PathBuf,
        /// Directory.
        dir: PathBuf,
    },
    /// Print the guest shell script (dmsetup + dd) for part 1 or 2.
    Guest {
        /// Scenario file.
        scenario: PathBuf,
        /// Part (2 = after `#! handoff`).
        #[arg(long, default_value_t = 1)]
        part: u8,
        /// Use the dm_rs module loaded with this prefix= (rsnapshot,
        /// rsnap-origin, ...); status/table lines are printed with the
        /// kernel's names so they compare.
        #[arg(long, default_value = "")]
        prefix: String,
        /// The scenario's first disk is the guest's disk number N (vda = 0).
        #[arg(long, default_value_t = 0)]
        disk_offset: usize,
    },
    /// Run part 1 or 2 with dmrs over the disks in DIR (a fresh process, as
    /// after a reboot), printing what the guest would print.
    Host {
        /// Scenario file.
        scenario: PathBuf,
        /// Directory holding the disks.
        dir: PathBuf,
        /// Part (2 = after `#! handoff`).
        #[arg(long, default_value_t = 1)]
        part: u8,
    },
    /// Print the scenario's properties: `deterministic=0|1 handoff=0|1`.
    Info {
        /// Scenario file.
        scenario: PathBuf,
    },
}

/// `dmrs cow ...`.
///
/// Conventions of thin-provisioning-tools: -q prints nothing (exit status
/// only); -o FILE writes the report to FILE; a progress bar appears on
/// stderr only when it is a terminal, -q is absent and the job reads more
/// than 4 MiB.
#[derive(Subcommand, Debug, Clone)]
#[command(after_help = crate::tool::EXIT_CODES)]
pub enum CowCmd {
    /// Print the header and every exception in on-disk order.
    ///
    /// Text (the default): first line `header magic=0x70416e53 valid=<0|1>
    /// version=<n> chunk_size=<sectors>` (or `header new` for an all-zero
    /// header), then one `<old_chunk> <new_chunk>` line per exception, area
    /// by area, slot by slot, up to the terminator. Exceptions of an
    /// invalidated snapshot are listed too. JSON: one object. XML: a
    /// `<snapshot>` root carrying the header, consecutive exceptions folded
    /// into `<exception old_begin new_begin length/>` ranges.
    #[command(after_help = crate::tool::EXIT_CODES)]
    Dump {
        /// COW file or block device.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: crate::cow_format::Format,
        /// Same as --format json.
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Write the dump to this file.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        opts: crate::tool::ToolOpts,
    },
    /// Check a COW device's metadata. Exit 0 with a one-line summary when
    /// consistent; exit 1 with one line per problem otherwise.
    ///
    /// Problems: bad magic, version or chunk size; a new_chunk beyond the
    /// device, on the header or a metadata area, or used twice; an old_chunk
    /// remapped twice or beyond the origin; a truncated device.
    #[command(after_help = crate::tool::EXIT_CODES)]
    Check {
        /// COW file or block device.
        file: PathBuf,
        /// Origin size in sectors, to check old chunks against.
        #[arg(long)]
        origin_sectors: Option<u64>,
        /// Write the report to this file.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        opts: crate::tool::ToolOpts,
    },
    /// Write a dump's header and metadata areas onto a COW device, where
    /// and how the kernel writes them; data chunks are not touched.
    ///
    /// Reads any of the three dump formats. The dump is checked as
    /// `cow check` would check the device first. Refuses to overwrite a
    /// device that already holds valid COW metadata unless --force.
    ///
    ///   dmrs cow dump --format xml cow.img -o cow.xml
    ///   dmrs cow restore -i cow.xml -o cow.img --force
    #[command(after_help = crate::tool::EXIT_CODES, verbatim_doc_comment)]
    Restore {
        /// The dump (text, JSON or XML).
        #[arg(short, long, value_name = "DUMP")]
        input: PathBuf,
        /// The COW file or block device to write (it must exist).
        #[arg(short, long, value_name = "COW")]
        output: PathBuf,
        /// Overwrite valid metadata.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        opts: crate::tool::ToolOpts,
    },
    /// Salvage every exception of a damaged COW that can be trusted into a
    /// fresh COW the kernel loads, copying their data chunks.
    ///
    /// The walk stops at the first unreadable or truncated area; exceptions
    /// beyond the device, on metadata, or sharing a COW chunk are dropped,
    /// and an origin chunk remapped again keeps its first mapping. A note
    /// counts what was dropped (the snapshot shows the origin's data there).
    /// With a destroyed header, give --chunk-size. NEW is created with the
    /// size of BROKEN if it does not exist.
    ///
    ///   dmrs cow repair -i broken.img -o new.img
    #[command(after_help = crate::tool::EXIT_CODES, verbatim_doc_comment)]
    Repair {
        /// The damaged COW.
        #[arg(short, long, value_name = "BROKEN")]
        input: PathBuf,
        /// The new COW.
        #[arg(short, long, value_name = "NEW")]
        output: PathBuf,
        /// Chunk size in sectors, when the header cannot be trusted.
        #[arg(long)]
        chunk_size: Option<u32>,
        /// Origin size in sectors, to drop exceptions beyond it.
        #[arg(long)]
        origin_sectors: Option<u64>,
        /// Overwrite valid metadata on NEW.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        opts: crate::tool::ToolOpts,
    },
    /// Write the snapshot's view (what reading the snapshot device returns)
    /// as a raw image, sparse where it is zero; with --changed-only, only the
    /// chunks the snapshot holds in its COW, at their offsets.
    ///
    ///   dmrs cow export --origin origin.img cow.img -o snapshot.raw
    #[command(after_help = crate::tool::EXIT_CODES, verbatim_doc_comment)]
    Export {
        /// The origin file or block device.
        #[arg(long)]
        origin: PathBuf,
        /// COW file or block device.
        file: PathBuf,
        /// The image to write (created or truncated).
        #[arg(short, long, value_name = "IMAGE")]
        output: PathBuf,
        /// Write only the chunks that differ from the origin.
        #[arg(long)]
        changed_only: bool,
        #[command(flatten)]
        opts: crate::tool::ToolOpts,
    },
    /// Print the origin ranges where the snapshot differs from the origin
    /// (the exceptions' old chunks, sorted and merged), for incremental
    /// backups: `<first chunk> <chunks>` per line, or byte offset and
    /// length with --bytes.
    ///
    ///   dmrs cow changed cow.img --bytes
    ///   1048576 131072
    #[command(after_help = crate::tool::EXIT_CODES, verbatim_doc_comment)]
    Changed {
        /// COW file or block device.
        file: PathBuf,
        /// Output format (text or json).
        #[arg(long, value_enum, default_value_t)]
        format: crate::cow_format::Format,
        /// Ranges in bytes instead of chunks.
        #[arg(long)]
        bytes: bool,
        /// Write the list to this file.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        opts: crate::tool::ToolOpts,
    },
    /// Print the COW size that holds a copy of every chunk of an origin
    /// (header and metadata areas included), as the kernel lays it out.
    ///
    /// Sizes are sectors, or bytes with a K, M, G or T suffix.
    ///
    ///   dmrs cow size --origin-size 64M --chunk-size 16
    ///   131360 sectors (67256320 bytes): 1 header + 17 metadata areas + 8192 data chunks of 16 sectors
    #[command(after_help = crate::tool::EXIT_CODES, verbatim_doc_comment)]
    Size {
        /// Origin size.
        #[arg(long, value_parser = crate::cow_size::parse_sectors)]
        origin_size: u64,
        /// Chunk size.
        #[arg(long, value_parser = crate::cow_size::parse_sectors)]
        chunk_size: u64,
        #[command(flatten)]
        opts: crate::tool::ToolOpts,
    },
    /// Merge a snapshot back into its origin without the kernel, in the
    /// kernel's order and with its metadata updates: interrupted anywhere,
    /// it is resumed by running it again or by the kernel's snapshot-merge
    /// target (and the reverse). The result equals the kernel's merge byte
    /// for byte (origin and COW).
    ///
    ///   dmrs cow merge --origin origin.img cow.img
    #[command(after_help = crate::tool::EXIT_CODES, verbatim_doc_comment)]
    Merge {
        /// The origin file or block device.
        #[arg(long)]
        origin: PathBuf,
        /// COW file or block device.
        file: PathBuf,
        /// Stop after this many merge steps (to test interruption).
        #[arg(long, hide = true)]
        stop_after: Option<u64>,
        #[command(flatten)]
        opts: crate::tool::ToolOpts,
    },
}

/// A verb's failure: text for stderr and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// What to print (may be several lines).
    pub msg: String,
    /// Exit code.
    pub code: u8,
}

fn fail(msg: impl Into<String>) -> Failure {
    Failure { msg: msg.into(), code: 1 }
}

impl From<crate::dm::DmError> for Failure {
    fn from(e: crate::dm::DmError) -> Self {
        fail(e.msg)
    }
}

/// The 16-byte-record pattern of the kernel lab.
pub fn pattern(text: &str, len: usize) -> Vec<u8> {
    let mut rec = format!("{text:<15.15}").into_bytes();
    rec.push(b'\n');
    rec.iter().copied().cycle().take(len).collect()
}

fn table_text(t: &TableArg) -> Result<String, Failure> {
    match &t.table {
        Some(s) => Ok(s.clone()),
        None => {
            if std::io::stdin().is_terminal() {
                return Err(fail("dmrs: no --table given: type the table, then Ctrl-D"));
            }
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|e| fail(format!("dmrs: stdin: {e}")))?;
            Ok(s)
        }
    }
}

/// Executes verbs against one device mapper.
pub struct Session {
    /// The device mapper.
    pub dm: DeviceMapper,
    /// Journal lines the executed verbs produced (state changes).
    pub journal: Vec<String>,
}

impl Session {
    /// A session over an empty device mapper.
    pub fn new() -> Result<Session, Failure> {
        Ok(Session { dm: DeviceMapper::new()?, journal: Vec::new() })
    }

    fn record(&mut self, words: &[&str]) {
        self.journal.push(words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" "));
    }

    fn lines(&self, name: &Option<String>, ty: StatusType, out: &mut dyn Write) -> Result<(), Failure> {
        let names = match name {
            Some(n) => vec![n.clone()],
            None => self.dm.names(),
        };
        if name.is_none() && names.is_empty() {
            let _ = writeln!(out, "No devices found");
        }
        for n in &names {
            let line = self.dm.status(n, ty)?;
            let prefix = if name.is_some() { String::new() } else { format!("{n}: ") };
            if let Some(l) = line {
                let _ = writeln!(out, "{prefix}{l}");
            } else if name.is_none() {
                let _ = writeln!(out, "{prefix}");
            }
        }
        Ok(())
    }

    /// Runs one verb, writing its output to `out`.
    pub fn exec(&mut self, verb: &Verb, out: &mut dyn Write) -> Result<(), Failure> {
        match verb {
            Verb::Create { name, table, notable } => {
                let t = if *notable { None } else { Some(table_text(table)?) };
                self.dm.create(name, t.as_deref())?;
                match &t {
                    Some(t) => self.record(&["create", name, "--table", t.trim()]),
                    None => self.record(&["create", name, "--notable"]),
                }
            }
            Verb::Load { name, table } => {
                let t = table_text(table)?;
                self.dm.load(name, &t)?;
                self.record(&["load", name, "--table", t.trim()]);
            }
            Verb::Suspend { name } => {
                self.dm.suspend(name)?;
                self.record(&["suspend", name]);
            }
            Verb::Resume { name } => {
                // A failed resume still swapped the tables: record it either
                // way, marked so that replaying it ignores the failure.
                let r = self.dm.resume(name);
                self.record(&[if r.is_ok() { "resume" } else { "-resume" }, name]);
                r?;
            }
            Verb::Remove { name } => {
                self.dm.remove(name)?;
                self.record(&["remove", name]);
            }
            Verb::Status { name } => self.lines(name, StatusType::Info, out)?,
            Verb::Table { name } => self.lines(name, StatusType::Table, out)?,
            Verb::Info { name } => {
                let names = match name {
                    Some(n) => vec![n.clone()],
                    None => self.dm.names(),
                };
                for (i, n) in names.iter().enumerate() {
                    if i > 0 {
                        let _ = writeln!(out);
                    }
                    let _ = write!(out, "{}", self.dm.info(n)?);
                }
            }
            Verb::Ls => {
                let names = self.dm.names();
                if names.is_empty() {
                    let _ = writeln!(out, "No devices found");
                }
                for n in names {
                    let _ = writeln!(out, "{n}");
                }
            }
            Verb::Targets => {
                for (n, v) in TARGETS {
                    let _ = writeln!(out, "{:<16} v{}.{}.{}", n, v[0], v[1], v[2]);
                }
            }
            Verb::Message { name, sector, msg } => {
                self.dm.message(name, *sector, msg)?;
                let sector = sector.to_string();
                let mut words = vec!["message", name.as_str(), sector.as_str()];
                words.extend(msg.iter().map(String::as_str));
                self.record(&words);
            }
            Verb::Write { name, offset, input, pattern: pat, length, bs } => {
                let data = match (pat, input) {
                    (Some(p), _) => pattern(p, length.unwrap_or(0) as usize),
                    (None, Some(f)) => std::fs::read(f).map_err(|e| fail(format!("dmrs: {}: {e}", f.display())))?,
                    (None, None) => {
                        let mut v = Vec::new();
                        std::io::stdin().read_to_end(&mut v).map_err(|e| fail(format!("dmrs: stdin: {e}")))?;
                        v
                    }
                };
                if *bs == 0 || bs % 512 != 0 {
                    return Err(fail(format!("dmrs: --bs {bs} is not a positive multiple of 512")));
                }
                for (i, piece) in data.chunks(*bs as usize).enumerate() {
                    self.dm.write(name, offset + i as u64 * bs, piece)?;
                }
            }
            Verb::Read { name, offset, length, output, expect_pattern } => {
                let data = self.dm.read(name, *offset, *length as usize)?;
                match (output, expect_pattern) {
                    (_, Some(p)) => {
                        let want = pattern(p, data.len());
                        if let Some(i) = data.iter().zip(want.iter()).position(|(a, b)| a != b) {
                            let rec = &data[i - i % 16..(i - i % 16 + 16).min(data.len())];
                            return Err(fail(format!(
                                "dmrs: {name}: byte {} is not pattern {p:?}: found {:?}",
                                offset + i as u64,
                                String::from_utf8_lossy(rec)
                            )));
                        }
                    }
                    (Some(f), None) => {
                        std::fs::write(f, &data).map_err(|e| fail(format!("dmrs: {}: {e}", f.display())))?
                    }
                    (None, None) => out.write_all(&data).map_err(|e| fail(format!("dmrs: stdout: {e}")))?,
                }
            }
            Verb::Flush { name } => self.dm.flush(name)?,
            Verb::Discard { name, offset, length } => self.dm.discard(name, *offset, *length)?,
            Verb::Wait { name, event_nr } => {
                let tty = std::io::stderr().is_terminal();
                let mut last = u64::MAX;
                self.dm.wait(name, &mut |done, total| {
                    let pct = (done * 100).checked_div(total).unwrap_or(100);
                    if tty && pct != last {
                        eprint!("\r{name}: {pct:>3}% ({done}/{total})");
                        last = pct;
                    }
                })?;
                if tty && last != u64::MAX {
                    eprintln!();
                }
                if let Some(n) = event_nr {
                    let now = self.dm.event_nr(name)?;
                    if now <= *n {
                        return Err(fail(format!(
                            "dmrs: {name}: event number {now}: no event after {n} will come (nothing left in the background)"
                        )));
                    }
                }
            }
            Verb::Events { name } => {
                println!("{}", self.dm.event_nr(name)?);
            }
            Verb::Cd { dir } => {
                let abs = std::fs::canonicalize(dir).map_err(|e| fail(format!("dmrs: cd {}: {e}", dir.display())))?;
                std::env::set_current_dir(&abs).map_err(|e| fail(format!("dmrs: cd {}: {e}", abs.display())))?;
                self.record(&["cd", &abs.to_string_lossy()]);
            }
            Verb::Echo { words } => {
                let _ = writeln!(out, "{}", words.join(" "));
            }
            Verb::Run { script } => self.run_script(script, out)?,
            Verb::Cow(c) => cow_cmd(c, out)?,
            Verb::Lab(c) => lab_cmd(c, out)?,
            Verb::Clone(c) => clone_cmd(c, out)?,
            Verb::Demo { dir } => {
                demo::run(dir, out).map_err(|e| fail(format!("dmrs demo: {e}")))?;
            }
        }
        Ok(())
    }

    /// Executes a script's lines in this session; stops at the first failure.
    pub fn run_script(&mut self, script: &Path, out: &mut dyn Write) -> Result<(), Failure> {
        let text = if script == Path::new("-") {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|e| fail(format!("dmrs: stdin: {e}")))?;
            s
        } else {
            std::fs::read_to_string(script).map_err(|e| fail(format!("dmrs: {}: {e}", script.display())))?
        };
        for (n, line) in text.lines().enumerate() {
            let at = |e: String| fail(format!("{}:{}: {e}", script.display(), n + 1));
            let (mode, rest) = line_mode(line);
            let words = split_words(rest).map_err(at)?;
            if words.is_empty() {
                continue;
            }
            let verb = parse_line(&words).map_err(at)?;
            if matches!(verb, Verb::Run { .. } | Verb::Demo { .. } | Verb::Lab(_)) {
                return Err(at(format!("`{}` is not allowed in a script", words[0])));
            }
            match (mode, self.exec(&verb, out)) {
                (LineMode::MustSucceed, Err(f)) => {
                    return Err(Failure {
                        msg: format!("{}\n{}:{}: `{}` failed", f.msg, script.display(), n + 1, line.trim()),
                        code: f.code,
                    })
                }
                (LineMode::MustFail, Ok(())) => return Err(at(format!("`{}` succeeded but must fail", rest.trim()))),
                _ => {}
            }
        }
        Ok(())
    }
}

/// How a script line's outcome is judged: plain lines must succeed,
/// `-` lines may fail (the journal marks failed resumes so), `!` lines must fail.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LineMode {
    MustSucceed,
    MayFail,
    MustFail,
}

fn line_mode(line: &str) -> (LineMode, &str) {
    let t = line.trim_start();
    if let Some(r) = t.strip_prefix('-') {
        (LineMode::MayFail, r)
    } else if let Some(r) = t.strip_prefix('!') {
        (LineMode::MustFail, r)
    } else {
        (LineMode::MustSucceed, t)
    }
}

/// Parses a script line's words as a verb.
pub fn parse_line(words: &[String]) -> Result<Verb, String> {
    let argv = std::iter::once("dmrs".to_string()).chain(words.iter().cloned());
    Cli::try_parse_from(argv).map(|c| c.verb).map_err(|e| e.to_string().lines().next().unwrap_or("").to_string())
}

fn open_ro(p: &Path) -> Result<FileDev, Failure> {
    FileDev::open(p, OpenMode { read_only: true, direct: false }).map_err(|e| io_fail(p, e))
}

fn io_fail(what: &Path, e: impl std::fmt::Display) -> Failure {
    Failure { msg: format!("dmrs: {}: {e}", what.display()), code: crate::tool::USAGE_OR_IO }
}

/// True when `a` and `b` are one file or device (same device and inode):
/// repairing into, or merging onto, the input itself would destroy it.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => (x.dev(), x.ino(), x.rdev()) == (y.dev(), y.ino(), y.rdev()),
        _ => false,
    }
}

fn open_rw(p: &Path) -> Result<FileDev, Failure> {
    FileDev::open(p, OpenMode { read_only: false, direct: false }).map_err(|e| io_fail(p, e))
}

fn report<'a>(quiet: bool, file: &Option<PathBuf>, out: &'a mut dyn Write) -> Result<crate::tool::Output<'a>, Failure> {
    crate::tool::Output::open(quiet, file.as_deref(), out)
        .map_err(|e| io_fail(file.as_deref().unwrap_or(Path::new("-")), e))
}

fn finish(o: crate::tool::Output<'_>) -> Result<(), Failure> {
    o.finish().map_err(|e| Failure { msg: format!("dmrs: output: {e}"), code: crate::tool::USAGE_OR_IO })
}

fn cow_cmd(c: &CowCmd, out: &mut dyn Write) -> Result<(), Failure> {
    use crate::cow_format::Format;
    match c {
        CowCmd::Dump { file, format, json, output, opts } => {
            let dev = open_ro(file)?;
            let mut o = report(opts.quiet, output, out)?;
            let format = if *json { Format::Json } else { *format };
            // Text and XML stream (bounded memory at any size); JSON is built whole.
            let w = match format {
                Format::Json => {
                    let img = cow::scan(&dev);
                    writeln!(o, "{}", cow::dump_json(&img)).map(|_| img)
                }
                Format::Text | Format::Xml => {
                    let mut bw = std::io::BufWriter::with_capacity(1 << 20, &mut o);
                    let bar = crate::tool::Progress::new("dumping", cow::metadata_bound(&dev), opts.quiet);
                    let r = crate::cow_format::dump_stream(&dev, format == Format::Xml, &mut bw, &|n| bar.inc(n));
                    r.and_then(|img| bw.flush().map(|_| img))
                }
            };
            let img = w.map_err(|e| io_fail(output.as_deref().unwrap_or(Path::new("-")), e))?;
            finish(o)?;
            if !img.fatal.is_empty() {
                let msg: Vec<String> = img.fatal.iter().map(|f| format!("dmrs: {}: {f}", file.display())).collect();
                return Err(fail(if opts.quiet { String::new() } else { msg.join("\n") }));
            }
        }
        CowCmd::Check { file, origin_sectors, output, opts } => {
            let dev = open_ro(file)?;
            let bar = crate::tool::Progress::new("checking", cow::metadata_bound(&dev), opts.quiet);
            let r = cow::check_device(&dev, *origin_sectors, &|n| bar.inc(n));
            drop(bar);
            let mut o = report(opts.quiet, output, out)?;
            for p in &r.problems {
                let _ = writeln!(o, "{p}");
            }
            let _ = writeln!(o, "{}", r.summary);
            finish(o)?;
            if !r.problems.is_empty() {
                return Err(fail(""));
            }
        }
        CowCmd::Restore { input, output, force, opts } => {
            let text = std::fs::read_to_string(input).map_err(|e| io_fail(input, e))?;
            let dev = open_rw(output)?;
            match crate::cow_restore::restore(&text, &dev, *force) {
                Ok(d) => {
                    if !opts.quiet {
                        let _ = writeln!(out, "restored {} exceptions onto {}", d.exceptions.len(), output.display());
                    }
                }
                Err(e) => {
                    let msg = if opts.quiet { String::new() } else { format!("dmrs: {}: {}", input.display(), e.msg) };
                    return Err(Failure { msg, code: e.code });
                }
            }
        }
        CowCmd::Repair { input, output, chunk_size, origin_sectors, force, opts } => {
            cow_repair(input, output, *chunk_size, *origin_sectors, *force, opts.quiet, out)?
        }
        CowCmd::Export { origin, file, output, changed_only, opts } => {
            use dmrs_core::platform::BlockDevice;
            let cow_dev = open_ro(file)?;
            let origin_dev = open_ro(origin)?;
            let img = cow::scan(&cow_dev);
            let f = std::fs::File::create(output).map_err(|e| io_fail(output, e))?;
            let bar = crate::tool::Progress::new("exporting", origin_dev.size_sectors() * 512, opts.quiet);
            let r = crate::cow_export::export(&origin_dev, &cow_dev, &img, &f, *changed_only, &|n| bar.inc(n));
            drop(bar);
            match r {
                Ok(x) => {
                    if !opts.quiet {
                        let _ =
                            writeln!(out, "exported: {} chunks from the COW, {} chunks written", x.from_cow, x.written);
                    }
                }
                Err((code, m)) => {
                    let msg = if opts.quiet { String::new() } else { format!("dmrs: {}: {m}", file.display()) };
                    return Err(Failure { msg, code });
                }
            }
        }
        CowCmd::Changed { file, format, bytes, output, opts } => {
            let dev = open_ro(file)?;
            let mut olds = Vec::new();
            let bar = crate::tool::Progress::new("reading", cow::metadata_bound(&dev), opts.quiet);
            let img = cow::walk(&dev, None, &mut |e| {
                bar.inc(16);
                olds.push(e.old_chunk)
            });
            drop(bar);
            let cb = img.chunk_size().unwrap_or(0) as u64 * 512;
            let unit = if *bytes { cb } else { 1 };
            if *format == Format::Xml {
                return Err(Failure { msg: "dmrs: cow changed: --format text or json".into(), code: 2 });
            }
            let json = *format == Format::Json;
            crate::cow_changed::trusted(&img)
                .map_err(|e| fail(if opts.quiet { String::new() } else { format!("dmrs: {}: {e}", file.display()) }))?;
            let mut o = report(opts.quiet, output, out)?;
            let mut bw = std::io::BufWriter::with_capacity(1 << 20, &mut o);
            let mut first = true;
            // Streamed; the JSON keys in serde_json's (sorted) order.
            let r = if json { write!(bw, "{{\"chunk_size\":{},\"ranges\":[", cb / 512) } else { Ok(()) }
                .map_err(|e| e.to_string())
                .and_then(|_| {
                    crate::cow_changed::for_each_range(&img, olds, &mut |b, l| {
                        let r = if json {
                            let sep = if first { "" } else { "," };
                            write!(bw, "{sep}[{},{}]", b * unit, l * unit)
                        } else {
                            writeln!(bw, "{} {}", b * unit, l * unit)
                        };
                        first = false;
                        r.map_err(|e| e.to_string())
                    })
                });
            if let Err(e) = r {
                drop(bw);
                return Err(fail(if opts.quiet { String::new() } else { format!("dmrs: {}: {e}", file.display()) }));
            }
            let u = if *bytes { "bytes" } else { "chunks" };
            let tail = if json { writeln!(bw, "],\"unit\":\"{u}\"}}") } else { Ok(()) };
            tail.and_then(|_| bw.flush()).map_err(|e| io_fail(output.as_deref().unwrap_or(Path::new("-")), e))?;
            drop(bw);
            finish(o)?;
        }
        CowCmd::Size { origin_size, chunk_size, opts } => {
            let l = u32::try_from(*chunk_size).ok().and_then(|c| crate::cow_size::layout(*origin_size, c)).ok_or_else(
                || Failure {
                    msg: format!(
                        "dmrs: cow size: chunk size {chunk_size} is not a power of two, or the size overflows"
                    ),
                    code: 2,
                },
            )?;
            if !opts.quiet {
                let _ = writeln!(
                    out,
                    "{} sectors ({} bytes): 1 header + {} metadata areas + {} data chunks of {chunk_size} sectors",
                    l.sectors,
                    l.sectors as u128 * 512,
                    l.areas,
                    l.data_chunks
                );
            }
        }
        CowCmd::Merge { origin, file, stop_after, opts } => {
            if same_file(origin, file) {
                return Err(Failure {
                    msg: "dmrs: cow merge: the origin and the COW are the same file".into(),
                    code: 2,
                });
            }
            let cow_dev = open_rw(file)?;
            let img = cow::scan(&cow_dev);
            let quiet_msg = |m: String| if opts.quiet { String::new() } else { m };
            let Some(cs) = img.chunk_size().filter(|_| img.fatal.is_empty()) else {
                let why = img.fatal.first().cloned().unwrap_or_else(|| "not a persistent snapshot".into());
                return Err(fail(quiet_msg(format!("dmrs: {}: {why}", file.display()))));
            };
            let origin_dev = open_rw(origin)?;
            let bar = crate::tool::Progress::new("merging", img.exceptions.len() as u64 * cs as u64 * 512, opts.quiet);
            let r =
                crate::cow_merge::merge(&origin_dev, &cow_dev, cs, *stop_after, &mut |n| bar.inc(n * cs as u64 * 512));
            drop(bar);
            match r {
                Ok(m) => {
                    if !opts.quiet {
                        let state = if m.finished { "merge finished" } else { "merge interrupted" };
                        let _ = writeln!(out, "{state}: {} exceptions in {} steps", m.chunks, m.steps);
                    }
                }
                Err(e) => return Err(fail(quiet_msg(format!("dmrs: {}: {e}", file.display())))),
            }
        }
    }
    Ok(())
}

fn cow_repair(
    input: &Path,
    output: &Path,
    chunk_size: Option<u32>,
    origin_sectors: Option<u64>,
    force: bool,
    quiet: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let q = |m: String| if quiet { String::new() } else { m };
    if same_file(input, output) {
        return Err(Failure { msg: q("dmrs: cow repair: BROKEN and NEW are the same file".into()), code: 2 });
    }
    let src = open_ro(input)?;
    let first = cow::scan(&src);
    // A usable header (version and chunk size as the kernel accepts them)
    // wins unless --chunk-size says otherwise; otherwise walk with the one given.
    let usable = match first.header {
        cow::Header::Snap { version, chunk_size, .. } => {
            version == dmrs_core::exception_store::disk::SNAPSHOT_DISK_VERSION
                && dmrs_core::exception_store::dm_exception_store_set_chunk_size(
                    chunk_size,
                    dmrs_core::platform::BlockDevice::logical_block_size(&src),
                    512,
                )
                .is_ok()
        }
        _ => false,
    };
    let img = match chunk_size {
        Some(c) if !usable || first.chunk_size() != Some(c) => cow::scan_with(&src, Some(c)),
        _ if usable => first,
        _ if first.header == cow::Header::New => {
            return Err(fail(q(format!("dmrs: {}: a new COW has nothing to repair", input.display()))))
        }
        _ => {
            let why = first.fatal.first().cloned().unwrap_or_default();
            return Err(Failure { msg: q(format!("dmrs: {}: {why}; give --chunk-size", input.display())), code: 2 });
        }
    };
    let Some(cs) = img.chunk_size() else {
        let why = img.fatal.first().cloned().unwrap_or_default();
        return Err(fail(q(format!("dmrs: {}: {why}", input.display()))));
    };
    use dmrs_core::platform::BlockDevice;
    let (mut kept, mut note) = crate::cow_repair::salvage(&img, cs, origin_sectors);
    let fresh = !output.exists();
    if fresh {
        let f = std::fs::File::create(output).map_err(|e| io_fail(output, e))?;
        f.set_len(src.size_sectors() * 512).map_err(|e| io_fail(output, e))?;
    }
    let dst = open_rw(output)?;
    crate::cow_repair::fit(&mut kept, &mut note, cs, dst.size_sectors());
    if !force && crate::cow_restore::holds_valid_metadata(&dst) {
        return Err(Failure {
            msg: q(format!(
                "dmrs: {}: already holds valid COW metadata; use --force to overwrite it",
                output.display()
            )),
            code: 2,
        });
    }
    let bar = crate::tool::Progress::new("repairing", kept.len() as u64 * cs as u64 * 512, quiet);
    crate::cow_repair::write_repaired(&src, &dst, img.header, &kept, fresh, &|n| bar.inc(n))
        .map_err(|e| Failure { msg: q(format!("dmrs: {}: {}", output.display(), e.msg)), code: e.code })?;
    drop(bar);
    if !quiet {
        let _ = writeln!(out, "repaired: {note}");
    }
    Ok(())
}

fn clone_cmd(c: &CloneCmd, out: &mut dyn Write) -> Result<(), Failure> {
    use crate::cow_format::Format;
    match c {
        CloneCmd::Dump { file, format, json, output, opts } => {
            let img = crate::clone::inspect(&open_ro(file)?);
            let mut o = report(opts.quiet, output, out)?;
            let w = match if *json { Format::Json } else { *format } {
                Format::Json => writeln!(o, "{}", crate::clone::dump_json(&img)),
                Format::Text => write!(o, "{}", crate::clone::dump_text(&img)),
                Format::Xml => crate::clone_format::dump_xml(&img, &mut o),
            };
            w.map_err(|e| io_fail(output.as_deref().unwrap_or(Path::new("-")), e))?;
            finish(o)?;
            if img.sb.is_none() && !img.all_zero {
                let msg: Vec<String> = img.problems.iter().map(|p| format!("dmrs: {}: {p}", file.display())).collect();
                return Err(fail(if opts.quiet { String::new() } else { msg.join("\n") }));
            }
        }
        CloneCmd::Check { file, output, opts } => {
            let img = crate::clone::inspect(&open_ro(file)?);
            let mut o = report(opts.quiet, output, out)?;
            for p in &img.problems {
                let _ = writeln!(o, "{p}");
            }
            let state = if img.problems.is_empty() { "consistent" } else { "inconsistent" };
            let _ = writeln!(o, "{state}: {}", crate::clone::summary(&img));
            finish(o)?;
            if !img.problems.is_empty() {
                return Err(fail(""));
            }
        }
        CloneCmd::Restore { input, output, region_size, target_size, force, opts } => {
            let q = |m: String| if opts.quiet { String::new() } else { m };
            let text = std::fs::read_to_string(input).map_err(|e| io_fail(input, e))?;
            let d =
                crate::clone_format::parse(&text).map_err(|e| fail(q(format!("dmrs: {}: {e}", input.display()))))?;
            let pick = |arg: Option<u64>, dump: Option<u64>, what: &str| match (arg, dump) {
                (Some(a), Some(b)) if a != b => {
                    Err(Failure { msg: q(format!("dmrs: --{what} {a} differs from the dump's {b}")), code: 2 })
                }
                (Some(a), _) | (None, Some(a)) => Ok(a),
                (None, None) => Err(Failure { msg: q(format!("dmrs: give --{what}")), code: 2 }),
            };
            let rs = pick(*region_size, d.region_size, "region-size")?;
            let ts = pick(*target_size, d.target_size, "target-size")?;
            let dev = open_rw(output)?;
            if !force && crate::clone_restore::holds_valid_metadata(&dev) {
                return Err(Failure {
                    msg: q(format!(
                        "dmrs: {}: already holds valid metadata; use --force to overwrite it",
                        output.display()
                    )),
                    code: 2,
                });
            }
            crate::clone_restore::validate_runs(&d.runs, ts.div_ceil(rs.max(1)))
                .map_err(|e| fail(q(format!("dmrs: {}: {e}", input.display()))))?;
            crate::clone_restore::write_clone(&dev, ts, rs, &d.runs)
                .map_err(|e| Failure { msg: q(format!("dmrs: {}: {e}", output.display())), code: 2 })?;
            if !opts.quiet {
                let n: u64 = d.runs.iter().map(|r| r.1).sum();
                let _ = writeln!(out, "restored {n} hydrated regions onto {}", output.display());
            }
        }
        CloneCmd::Repair { input, output, region_size, target_size, force, opts } => {
            use dmrs_core::platform::BlockDevice;
            let q = |m: String| if opts.quiet { String::new() } else { m };
            if same_file(input, output) {
                return Err(Failure { msg: q("dmrs: clone repair: BROKEN and NEW are the same file".into()), code: 2 });
            }
            let src = open_ro(input)?;
            let sizes = region_size.zip(*target_size);
            let s = crate::clone_repair::salvage(&src, sizes)
                .map_err(|e| Failure { msg: q(format!("dmrs: {}: {e}", input.display())), code: 2 })?;
            if !output.exists() {
                let f = std::fs::File::create(output).map_err(|e| io_fail(output, e))?;
                f.set_len(src.size_sectors() * 512).map_err(|e| io_fail(output, e))?;
            }
            let dev = open_rw(output)?;
            if !force && crate::clone_restore::holds_valid_metadata(&dev) {
                return Err(Failure {
                    msg: q(format!(
                        "dmrs: {}: already holds valid metadata; use --force to overwrite it",
                        output.display()
                    )),
                    code: 2,
                });
            }
            crate::clone_restore::write_clone(&dev, s.target_size, s.region_size, &s.runs)
                .map_err(|e| Failure { msg: q(format!("dmrs: {}: {e}", output.display())), code: 2 })?;
            if !opts.quiet {
                for p in &s.problems {
                    let _ = writeln!(out, "{p}");
                }
                let n: u64 = s.runs.iter().map(|r| r.1).sum();
                let _ = writeln!(
                    out,
                    "repaired: {n} hydrated regions kept; {} regions in doubt marked unhydrated",
                    s.in_doubt
                );
            }
        }
    }
    Ok(())
}

fn lab_cmd(c: &LabCmd, out: &mut dyn Write) -> Result<(), Failure> {
    let load = |p: &Path| -> Result<crate::lab::Scenario, Failure> {
        let text = std::fs::read_to_string(p).map_err(|e| fail(format!("dmrs: {}: {e}", p.display())))?;
        crate::lab::parse(&text).map_err(|e| fail(format!("dmrs: {}: {e}", p.display())))
    };
    let part = |sc: &crate::lab::Scenario, n: u8| -> Result<Vec<String>, Failure> {
        match (n, &sc.part2) {
            (1, _) => Ok(sc.part1.clone()),
            (2, Some(p)) => Ok(p.clone()),
            _ => Err(fail("dmrs lab: no such part")),
        }
    };
    match c {
        LabCmd::Disks { scenario, compared } => {
            for d in load(scenario)?.disks.into_iter().filter(|d| !*compared || !d.nocompare) {
                let _ = writeln!(out, "{}", d.name);
            }
        }
        LabCmd::Prepare { scenario, dir } => {
            crate::lab::prepare(&load(scenario)?, dir).map_err(|e| fail(format!("dmrs: {}: {e}", dir.display())))?
        }
        LabCmd::Guest { scenario, part: n, prefix, disk_offset } => {
            let sc = load(scenario)?;
            let o = crate::lab::GuestOpts { prefix: prefix.clone(), disk_offset: *disk_offset };
            let s = crate::lab::guest_script(&sc, &o, &part(&sc, *n)?)
                .map_err(|e| fail(format!("dmrs: {}: {e}", scenario.display())))?;
            let _ = write!(out, "{s}");
        }
        LabCmd::Host { scenario, dir, part: n } => {
            let sc = load(scenario)?;
            let script = dir.join(format!(".part{n}.dmrs"));
            std::fs::write(&script, part(&sc, *n)?.join("\n") + "\n")
                .map_err(|e| fail(format!("dmrs: {}: {e}", script.display())))?;
            let cwd = std::env::current_dir().map_err(|e| fail(e.to_string()))?;
            std::env::set_current_dir(dir).map_err(|e| fail(format!("dmrs: {}: {e}", dir.display())))?;
            let mut s = Session::new()?;
            let r = s.run_script(Path::new(&format!(".part{n}.dmrs")), out);
            // Tear down as a guest poweroff would: destroy every table.
            for name in s.dm.names() {
                let _ = s.dm.remove(&name);
            }
            let _ = std::env::set_current_dir(cwd);
            r?;
        }
        LabCmd::Info { scenario } => {
            let sc = load(scenario)?;
            let _ = writeln!(out, "deterministic={} handoff={}", sc.deterministic as u8, sc.part2.is_some() as u8);
        }
    }
    Ok(())
}

/// True for verbs that act on the state directory's devices.
fn uses_state(v: &Verb) -> bool {
    !matches!(v, Verb::Cow(_) | Verb::Clone(_) | Verb::Lab(_) | Verb::Demo { .. } | Verb::Targets | Verb::Echo { .. })
}

/// The whole of `dmrs`: returns the exit code.
pub fn main_with(cli: Cli, out: &mut dyn Write) -> u8 {
    let mut session = match Session::new() {
        Ok(s) => s,
        Err(f) => {
            eprintln!("{}", f.msg);
            return f.code;
        }
    };
    if !uses_state(&cli.verb) {
        return match session.exec(&cli.verb, out) {
            Ok(()) => 0,
            Err(f) => {
                if !f.msg.is_empty() {
                    eprintln!("{}", f.msg);
                }
                f.code
            }
        };
    }
    let dir = cli
        .state
        .clone()
        .or_else(|| std::env::var_os("DMRS_STATE").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".dmrs"));
    let state = match State::open(&dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dmrs: state directory {}: {e}", dir.display());
            return 2;
        }
    };
    // Rebuild the devices earlier invocations made, quietly.
    let cwd = std::env::current_dir().ok();
    let lines = match state.lines() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("dmrs: {}: {e}", dir.join("journal").display());
            return 2;
        }
    };
    let mut sink = std::io::sink();
    for (n, line) in lines.iter().enumerate() {
        let (mode, rest) = line_mode(line);
        let r = split_words(rest).and_then(|w| parse_line(&w));
        let r = r.map_err(fail).and_then(|v| session.exec(&v, &mut sink));
        if let (Err(f), LineMode::MustSucceed) = (r, mode) {
            eprintln!("{}\ndmrs: replaying {} line {}: `{line}` failed", f.msg, dir.join("journal").display(), n + 1);
            return 2;
        }
    }
    match state.volatile().map_err(|e| e.to_string()).and_then(|v| session.dm.restore_volatile(&v)) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("dmrs: {}: {e}", dir.join("volatile").display());
            return 2;
        }
    }
    if let Some(c) = &cwd {
        let _ = std::env::set_current_dir(c);
    }
    session.journal.clear();
    // Relative paths in this verb resolve in the caller's directory.
    if let Some(c) = &cwd {
        session.journal.push(format!("cd {}", quote(&c.to_string_lossy())));
    }
    let before = session.journal.len();
    let r = session.exec(&cli.verb, out);
    // The periodic metadata commit a running kernel would have made.
    session.dm.sync();
    if session.journal.len() > before {
        let lines = if session.dm.names().is_empty() { None } else { Some(&session.journal) };
        let w = match lines {
            Some(l) => state.append(l),
            None => state.clear(),
        };
        if let Err(e) = w {
            eprintln!("dmrs: cannot record the change in {}: {e}", dir.display());
            return 2;
        }
    }
    if let Err(e) = state.save_volatile(&session.dm.save_volatile()) {
        eprintln!("dmrs: cannot save in-memory state in {}: {e}", dir.display());
        return 2;
    }
    match r {
        Ok(()) => 0,
        Err(f) => {
            if !f.msg.is_empty() {
                eprintln!("{}", f.msg);
            }
            f.code
        }
    }
}
