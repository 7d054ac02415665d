// SPDX-License-Identifier: GPL-2.0-only
//! The grammar of `dmrs`: the clap types of every verb, and how a script
//! line (or a journal line) is read with the same parser, so a script line
//! is exactly a command line without the leading `dmrs`.

use crate::cow_format::Format;
use crate::cow_size::parse_sectors;
use crate::tool::{ToolOpts, EXIT_CODES};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

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
    /// The table: one `<start> <length> <target> <args...>` line per
    /// target, the first at 0 and each next where the previous ends. Read
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
        /// dmsetup's `--force`: remove even a device whose tables could not
        /// be rebuilt (here every remove already does; accepted for scripts
        /// written for dmsetup).
        #[arg(long)]
        force: bool,
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
    Cow(CowTool),
    /// Offline tools for dm-clone metadata.
    #[command(subcommand)]
    Clone(CloneTool),
    /// The kernel lab's scenarios (see lab/README.md).
    #[command(subcommand)]
    Lab(LabVerb),
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
#[command(after_help = EXIT_CODES)]
pub enum CloneTool {
    /// Print the superblock summary and the hydrated regions.
    ///
    /// Text (the default): first line `superblock version=<n>
    /// region_size=<sectors> target_size=<sectors> regions=<n> hydrated=<n>
    /// metadata_blocks=<used>/<total>` (`superblock new` when block 0 is all
    /// zeros), then hydrated regions as `<first region> <count>` runs. JSON:
    /// one object. XML: a `<superblock>` root with `<range begin length/>`.
    #[command(after_help = EXIT_CODES)]
    Dump {
        /// Metadata file or block device.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Same as --format json.
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Write the dump to this file.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        opts: ToolOpts,
    },
    /// Check dm-clone metadata: superblock (location, magic, checksum,
    /// version), every btree node, array block and space-map block
    /// (location, checksum, shape), the bitset's length, and every block's
    /// reference count against what the structures use. Exit 0 with a
    /// summary when consistent; exit 1 with one line per problem.
    #[command(after_help = EXIT_CODES)]
    Check {
        /// Metadata file or block device.
        file: PathBuf,
        /// Write the report to this file.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        opts: ToolOpts,
    },
    /// Build fresh dm-clone metadata from a dump (text, JSON or XML) with
    /// the core's metadata code, which the kernel opens. Sizes default to
    /// the dump's; refuses to overwrite valid metadata unless --force.
    ///
    ///   dmrs clone restore -i meta.xml -o meta.img --region-size 8 --target-size 131072
    #[command(after_help = EXIT_CODES, verbatim_doc_comment)]
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
        opts: ToolOpts,
    },
    /// Rebuild dm-clone metadata from whatever bitset blocks still verify;
    /// regions in doubt are marked unhydrated (copied again, never trusted).
    /// NEW is created with the size of BROKEN if it does not exist.
    ///
    ///   dmrs clone repair -i broken.img -o new.img
    #[command(after_help = EXIT_CODES, verbatim_doc_comment)]
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
        opts: ToolOpts,
    },
}

/// `dmrs lab ...`: glue for lab/run.sh.
#[derive(Subcommand, Debug, Clone)]
pub enum LabVerb {
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
#[command(after_help = EXIT_CODES)]
pub enum CowTool {
    /// Print the header and every exception in on-disk order.
    ///
    /// Text (the default): first line `header magic=0x70416e53 valid=<0|1>
    /// version=<n> chunk_size=<sectors>` (or `header new` for an all-zero
    /// header), then one `<old_chunk> <new_chunk>` line per exception, area
    /// by area, slot by slot, up to the terminator. Exceptions of an
    /// invalidated snapshot are listed too. JSON: one object. XML: a
    /// `<snapshot>` root carrying the header, consecutive exceptions folded
    /// into `<exception old_begin new_begin length/>` ranges.
    #[command(after_help = EXIT_CODES)]
    Dump {
        /// COW file or block device.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Same as --format json.
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Write the dump to this file.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        opts: ToolOpts,
    },
    /// Check a COW device's metadata. Exit 0 with a one-line summary when
    /// consistent; exit 1 with one line per problem otherwise.
    ///
    /// Problems: bad magic, version or chunk size; a new_chunk beyond the
    /// device, on the header or a metadata area, or used twice; an old_chunk
    /// remapped twice or beyond the origin; a truncated device.
    #[command(after_help = EXIT_CODES)]
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
        opts: ToolOpts,
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
    #[command(after_help = EXIT_CODES, verbatim_doc_comment)]
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
        opts: ToolOpts,
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
    #[command(after_help = EXIT_CODES, verbatim_doc_comment)]
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
        opts: ToolOpts,
    },
    /// Write the snapshot's view (what reading the snapshot device returns)
    /// as a raw image, sparse where it is zero; with --changed-only, only the
    /// chunks the snapshot holds in its COW, at their offsets.
    ///
    ///   dmrs cow export --origin origin.img cow.img -o snapshot.raw
    #[command(after_help = EXIT_CODES, verbatim_doc_comment)]
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
        opts: ToolOpts,
    },
    /// Print the origin ranges where the snapshot differs from the origin
    /// (the exceptions' old chunks, sorted and merged), for incremental
    /// backups: `<first chunk> <chunks>` per line, or byte offset and
    /// length with --bytes.
    ///
    ///   dmrs cow changed cow.img --bytes
    ///   1048576 131072
    #[command(after_help = EXIT_CODES, verbatim_doc_comment)]
    Changed {
        /// COW file or block device.
        file: PathBuf,
        /// Output format (text or json).
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Ranges in bytes instead of chunks.
        #[arg(long)]
        bytes: bool,
        /// Write the list to this file.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        opts: ToolOpts,
    },
    /// Print the COW size that holds a copy of every chunk of an origin
    /// (header and metadata areas included), as the kernel lays it out.
    ///
    /// Sizes are sectors, or bytes with a K, M, G or T suffix.
    ///
    ///   dmrs cow size --origin-size 64M --chunk-size 16
    ///   131360 sectors (67256320 bytes): 1 header + 17 metadata areas + 8192 data chunks of 16 sectors
    #[command(after_help = EXIT_CODES, verbatim_doc_comment)]
    Size {
        /// Origin size.
        #[arg(long, value_parser = parse_sectors)]
        origin_size: u64,
        /// Chunk size.
        #[arg(long, value_parser = parse_sectors)]
        chunk_size: u64,
        #[command(flatten)]
        opts: ToolOpts,
    },
    /// Merge a snapshot back into its origin without the kernel, in the
    /// kernel's order and with its metadata updates: interrupted anywhere,
    /// it is resumed by running it again or by the kernel's snapshot-merge
    /// target (and the reverse). The result equals the kernel's merge byte
    /// for byte (origin and COW).
    ///
    ///   dmrs cow merge --origin origin.img cow.img
    #[command(after_help = EXIT_CODES, verbatim_doc_comment)]
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
        opts: ToolOpts,
    },
}

/// Parses a script line's words as a verb.
pub fn parse_line(words: &[String]) -> Result<Verb, String> {
    let argv = std::iter::once("dmrs".to_string()).chain(words.iter().cloned());
    Cli::try_parse_from(argv).map(|c| c.verb).map_err(|e| e.to_string().lines().next().unwrap_or("").to_string())
}

/// How a script line's outcome is judged: plain lines must succeed,
/// `-` lines may fail (the journal marks failed resumes so), `!` lines must fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineMode {
    /// A plain line.
    MustSucceed,
    /// A line starting with `-`.
    MayFail,
    /// A line starting with `!`.
    MustFail,
}

/// A script line's mode and the rest of the line.
pub fn line_mode(line: &str) -> (LineMode, &str) {
    let trimmed = line.trim_start();
    if let Some(rest) = trimmed.strip_prefix('-') {
        (LineMode::MayFail, rest)
    } else if let Some(rest) = trimmed.strip_prefix('!') {
        (LineMode::MustFail, rest)
    } else {
        (LineMode::MustSucceed, trimmed)
    }
}
