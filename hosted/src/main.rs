// SPDX-License-Identifier: GPL-2.0-only
//! The `dmrs` command.

use clap::{Parser, Subcommand};
use dmrs_hosted::filedev::{FileDev, OpenMode};
use dmrs_hosted::{cow, demo};
use std::path::PathBuf;
use std::process::ExitCode;

/// dmrs: Linux device-mapper snapshots (and, later, clones) in Rust,
/// byte-compatible with the kernel, over plain files or block devices.
#[derive(Parser)]
#[command(name = "dmrs", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Offline tools for a persistent snapshot's COW device (P/PO).
    #[command(subcommand)]
    Cow(CowCmd),
    /// Make an origin and a COW in a fresh temporary directory, take a
    /// snapshot, write to both sides and print status lines and the dump.
    Demo {
        /// Directory to create the demo's work directory in.
        #[arg(long, default_value_os_t = std::env::temp_dir())]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum CowCmd {
    /// Print the header and every exception in on-disk order.
    ///
    /// First line: `header magic=0x70416e53 valid=<0|1> version=<n>
    /// chunk_size=<sectors>` (or `header new` for an all-zero header), then
    /// one `<old_chunk> <new_chunk>` line per exception, area by area, slot
    /// by slot, up to the terminator. Exceptions of an invalidated snapshot
    /// are listed too.
    Dump {
        /// COW file or block device.
        file: PathBuf,
        /// Print one JSON object instead.
        #[arg(long)]
        json: bool,
    },
    /// Check a COW device's metadata. Exit 0 with a one-line summary when
    /// consistent; exit 1 with one line per problem otherwise.
    ///
    /// Problems: bad magic, version or chunk size; a new_chunk beyond the
    /// device, on the header or a metadata area, or used twice; an old_chunk
    /// remapped twice or beyond the origin; a truncated device.
    Check {
        /// COW file or block device.
        file: PathBuf,
        /// Origin size in sectors, to check old chunks against.
        #[arg(long)]
        origin_sectors: Option<u64>,
    },
}

fn open_ro(p: &std::path::Path) -> Result<FileDev, ExitCode> {
    FileDev::open(p, OpenMode { read_only: true, direct: false }).map_err(|e| {
        eprintln!("dmrs: {}: {e}", p.display());
        ExitCode::from(2)
    })
}

fn run(cli: Cli) -> Result<ExitCode, ExitCode> {
    match cli.cmd {
        Cmd::Cow(CowCmd::Dump { file, json }) => {
            let dev = open_ro(&file)?;
            let img = cow::scan(&dev);
            if json {
                println!("{}", cow::dump_json(&img));
            } else {
                print!("{}", cow::dump_text(&img));
            }
            for f in &img.fatal {
                eprintln!("dmrs: {}: {f}", file.display());
            }
            Ok(if img.fatal.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Cmd::Cow(CowCmd::Check { file, origin_sectors }) => {
            let dev = open_ro(&file)?;
            let r = cow::check(&cow::scan(&dev), origin_sectors);
            for p in &r.problems {
                println!("{p}");
            }
            println!("{}", r.summary);
            Ok(if r.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Cmd::Demo { dir } => {
            demo::run(&dir, &mut std::io::stdout().lock()).map_err(|e| {
                eprintln!("dmrs demo: {e}");
                ExitCode::from(1)
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    dmrs_hosted::log::init();
    run(Cli::parse()).unwrap_or_else(|c| c)
}
