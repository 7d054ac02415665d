// SPDX-License-Identifier: GPL-2.0-only
//! The offline tools' verbs (`dmrs cow …`, `dmrs clone …`): they open the
//! files themselves and need no device mapper. Conventions of
//! thin-provisioning-tools: `-q` (exit status only), `-o FILE`, exit codes
//! 0 clean, 1 damaged, 2 usage or I/O error.

use super::grammar::{CloneTool, CowTool};
use crate::cow;
use crate::cow_format::Format;
use crate::error::{Error, Result};
use crate::filedev::{FileDev, OpenMode};
use crate::tool::{Output, Progress};
use dmrs_core::platform::BlockDevice;
use std::io::Write;
use std::path::{Path, PathBuf};

fn open_read_only(path: &Path) -> Result<FileDev> {
    FileDev::open(path, OpenMode { read_only: true, direct: false }).map_err(|e| Error::file(path, e))
}

fn open_read_write(path: &Path) -> Result<FileDev> {
    FileDev::open(path, OpenMode { read_only: false, direct: false }).map_err(|e| Error::file(path, e))
}

/// The name of a report's destination: the `-o` file, else `-` (stdout).
fn output_name(output: &Option<PathBuf>) -> &Path {
    output.as_deref().unwrap_or(Path::new("-"))
}

fn open_report<'a>(quiet: bool, output: &Option<PathBuf>, out: &'a mut dyn Write) -> Result<Output<'a>> {
    Output::open(quiet, output.as_deref(), out).map_err(|e| Error::file(output_name(output), e))
}

fn finish_report(report: Output<'_>) -> Result<()> {
    report.finish().map_err(|e| Error::usage_or_io(format!("dmrs: output: {e}")))
}

/// Exit 1 with one `dmrs: FILE: …` line per fatal problem (none with `-q`).
fn damaged(file: &Path, problems: &[String], quiet: bool) -> Error {
    let lines: Vec<String> = problems.iter().map(|p| format!("dmrs: {}: {p}", file.display())).collect();
    Error::failed(lines.join("\n")).quiet(quiet)
}

/// Refuses when `a` and `b` are one file or device (same device and
/// inode): repairing into, or merging onto, the input itself would destroy it.
fn refuse_same_file(a: &Path, b: &Path, msg: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let same = match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => (x.dev(), x.ino(), x.rdev()) == (y.dev(), y.ino(), y.rdev()),
        _ => false,
    };
    if same {
        return Err(Error::usage_or_io(msg));
    }
    Ok(())
}

/// Refuses to overwrite `output` when it holds valid metadata (`what`) and
/// `--force` is absent.
fn refuse_overwrite(output: &Path, holds_valid: bool, force: bool, what: &str) -> Result<()> {
    if holds_valid && !force {
        return Err(Error::usage_or_io(format!(
            "dmrs: {}: already holds valid {what}; use --force to overwrite it",
            output.display()
        )));
    }
    Ok(())
}

/// Creates `output` with the size of `input` if it does not exist; true
/// when it was created (all holes).
fn create_sized_like(output: &Path, input: &dyn BlockDevice) -> Result<bool> {
    if output.exists() {
        return Ok(false);
    }
    let file = std::fs::File::create(output).map_err(|e| Error::file(output, e))?;
    file.set_len(input.size_sectors() * 512).map_err(|e| Error::file(output, e))?;
    Ok(true)
}

/// Runs `dmrs cow …`.
pub fn run_cow(tool: &CowTool, out: &mut dyn Write) -> Result<()> {
    match tool {
        CowTool::Dump { file, format, json, output, opts } => {
            let dev = open_read_only(file)?;
            let mut report = open_report(opts.quiet, output, out)?;
            let format = if *json { Format::Json } else { *format };
            // Every format streams (bounded memory at any size).
            let mut buffered = std::io::BufWriter::with_capacity(1 << 20, &mut report);
            let bar = Progress::new("dumping", cow::metadata_bound(&dev), opts.quiet);
            let dumped = match format {
                Format::Json => crate::cow_format::dump_json_stream(&dev, &mut buffered, &|n| bar.inc(n)),
                Format::Text | Format::Xml => {
                    crate::cow_format::dump_stream(&dev, format == Format::Xml, &mut buffered, &|n| bar.inc(n))
                }
            };
            let written = dumped.and_then(|img| buffered.flush().map(|_| img));
            drop(buffered);
            drop(bar);
            let img = written.map_err(|e| Error::file(output_name(output), e))?;
            finish_report(report)?;
            if !img.fatal.is_empty() {
                return Err(damaged(file, &img.fatal, opts.quiet));
            }
        }
        CowTool::Check { file, origin_sectors, output, opts } => {
            let dev = open_read_only(file)?;
            let bar = Progress::new("checking", cow::metadata_bound(&dev), opts.quiet);
            let checked = cow::check_device(&dev, *origin_sectors, &|n| bar.inc(n));
            drop(bar);
            let mut report = open_report(opts.quiet, output, out)?;
            for problem in &checked.problems {
                let _ = writeln!(report, "{problem}");
            }
            let _ = writeln!(report, "{}", checked.summary);
            finish_report(report)?;
            if !checked.problems.is_empty() {
                return Err(Error::failed(""));
            }
        }
        CowTool::Restore { input, output, force, opts } => {
            let text = std::fs::read_to_string(input).map_err(|e| Error::file(input, e))?;
            let dev = open_read_write(output)?;
            let dump = crate::cow_restore::restore(&text, &dev, *force).map_err(|e| e.at(input).quiet(opts.quiet))?;
            if !opts.quiet {
                let _ = writeln!(out, "restored {} exceptions onto {}", dump.exceptions.len(), output.display());
            }
        }
        CowTool::Repair { input, output, chunk_size, origin_sectors, force, opts } => {
            cow_repair(input, output, *chunk_size, *origin_sectors, *force, opts.quiet, out)?
        }
        CowTool::Export { origin, file, output, changed_only, opts } => {
            let cow_dev = open_read_only(file)?;
            let origin_dev = open_read_only(origin)?;
            let image = std::fs::File::create(output).map_err(|e| Error::file(output, e))?;
            let bar = Progress::new("exporting", origin_dev.size_sectors() * 512, opts.quiet);
            let exported = crate::cow_export::export(&origin_dev, &cow_dev, &image, *changed_only, &|n| bar.inc(n));
            drop(bar);
            let exported = exported.map_err(|e| e.at(file).quiet(opts.quiet))?;
            if !opts.quiet {
                let _ = writeln!(
                    out,
                    "exported: {} chunks from the COW, {} chunks written",
                    exported.from_cow, exported.written
                );
            }
        }
        CowTool::Changed { file, format, bytes, output, opts } => {
            cow_changed(file, *format, *bytes, output, opts.quiet, out)?
        }
        CowTool::Size { origin_size, chunk_size, opts } => {
            let layout = u32::try_from(*chunk_size)
                .ok()
                .and_then(|chunk| crate::cow_size::layout(*origin_size, chunk))
                .ok_or_else(|| {
                    Error::usage_or_io(format!(
                        "dmrs: cow size: chunk size {chunk_size} is not a power of two, or the size overflows"
                    ))
                })?;
            if !opts.quiet {
                let _ = writeln!(
                    out,
                    "{} sectors ({} bytes): 1 header + {} metadata areas + {} data chunks of {chunk_size} sectors",
                    layout.sectors,
                    layout.sectors as u128 * 512,
                    layout.areas,
                    layout.data_chunks
                );
            }
        }
        CowTool::Merge { origin, file, stop_after, opts } => {
            refuse_same_file(origin, file, "dmrs: cow merge: the origin and the COW are the same file")?;
            let cow_dev = open_read_write(file)?;
            let img = cow::scan(&cow_dev);
            let Some(chunk_size) = img.chunk_size().filter(|_| img.fatal.is_empty()) else {
                let why = img.fatal.first().cloned().unwrap_or_else(|| "not a persistent snapshot".into());
                return Err(damaged(file, &[why], opts.quiet));
            };
            let chunk_bytes = chunk_size as u64 * 512;
            let origin_dev = open_read_write(origin)?;
            let bar = Progress::new("merging", img.exceptions.len() as u64 * chunk_bytes, opts.quiet);
            let merged = crate::cow_merge::merge(&origin_dev, &cow_dev, chunk_size, *stop_after, &mut |n| {
                bar.inc(n * chunk_bytes)
            });
            drop(bar);
            let merged = merged.map_err(|e| e.at(file).quiet(opts.quiet))?;
            if !opts.quiet {
                let state = if merged.finished { "merge finished" } else { "merge interrupted" };
                let _ = writeln!(out, "{state}: {} exceptions in {} steps", merged.chunks, merged.steps);
            }
        }
    }
    Ok(())
}

/// `dmrs cow changed`: the exceptions' old chunks, sorted and merged into
/// ranges, streamed as text lines or one JSON object.
fn cow_changed(
    file: &Path,
    format: Format,
    bytes: bool,
    output: &Option<PathBuf>,
    quiet: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let dev = open_read_only(file)?;
    let mut old_chunks = Vec::new();
    let bar = Progress::new("reading", cow::metadata_bound(&dev), quiet);
    let img = cow::walk(&dev, None, &mut |e| {
        bar.inc(16);
        old_chunks.push(e.old_chunk)
    });
    drop(bar);
    let chunk_bytes = img.chunk_size().unwrap_or(0) as u64 * 512;
    let unit = if bytes { chunk_bytes } else { 1 };
    if format == Format::Xml {
        return Err(Error::usage_or_io("dmrs: cow changed: --format text or json"));
    }
    let json = format == Format::Json;
    crate::cow_changed::trusted(&img).map_err(|e| e.at(file).quiet(quiet))?;
    let mut report = open_report(quiet, output, out)?;
    let mut buffered = std::io::BufWriter::with_capacity(1 << 20, &mut report);
    let mut first = true;
    // Streamed; the JSON keys in serde_json's (sorted) order.
    let head = if json { write!(buffered, "{{\"chunk_size\":{},\"ranges\":[", chunk_bytes / 512) } else { Ok(()) };
    let listed = head.map_err(|e| Error::failed(e.to_string())).and_then(|_| {
        crate::cow_changed::for_each_range(&img, old_chunks, &mut |begin, length| {
            let written = if json {
                let separator = if first { "" } else { "," };
                write!(buffered, "{separator}[{},{}]", begin * unit, length * unit)
            } else {
                writeln!(buffered, "{} {}", begin * unit, length * unit)
            };
            first = false;
            written.map_err(|e| Error::failed(e.to_string()))
        })
    });
    if let Err(e) = listed {
        drop(buffered);
        return Err(e.at(file).quiet(quiet));
    }
    let unit_name = if bytes { "bytes" } else { "chunks" };
    let tail = if json { writeln!(buffered, "],\"unit\":\"{unit_name}\"}}") } else { Ok(()) };
    tail.and_then(|_| buffered.flush()).map_err(|e| Error::file(output_name(output), e))?;
    drop(buffered);
    finish_report(report)
}

/// `dmrs cow repair`.
fn cow_repair(
    input: &Path,
    output: &Path,
    chunk_size: Option<u32>,
    origin_sectors: Option<u64>,
    force: bool,
    quiet: bool,
    out: &mut dyn Write,
) -> Result<()> {
    refuse_same_file(input, output, "dmrs: cow repair: BROKEN and NEW are the same file")
        .map_err(|e| e.quiet(quiet))?;
    let src = open_read_only(input)?;
    let first = cow::scan(&src);
    // A usable header (version and chunk size as the kernel accepts them)
    // wins unless --chunk-size says otherwise; otherwise walk with the one given.
    let usable = match first.header {
        cow::Header::Snap { version, chunk_size, .. } => {
            version == dmrs_core::exception_store::disk::SNAPSHOT_DISK_VERSION
                && dmrs_core::exception_store::dm_exception_store_set_chunk_size(
                    chunk_size,
                    src.logical_block_size(),
                    512,
                )
                .is_ok()
        }
        _ => false,
    };
    let img = match chunk_size {
        Some(given) if !usable || first.chunk_size() != Some(given) => cow::scan_with(&src, Some(given)),
        _ if usable => first,
        _ if first.header == cow::Header::New => {
            return Err(damaged(input, &["a new COW has nothing to repair".into()], quiet))
        }
        _ => {
            let why = first.fatal.first().cloned().unwrap_or_default();
            return Err(Error::usage_or_io(format!("dmrs: {}: {why}; give --chunk-size", input.display())).quiet(quiet));
        }
    };
    let Some(chunk_size) = img.chunk_size() else {
        let why = img.fatal.first().cloned().unwrap_or_default();
        return Err(damaged(input, &[why], quiet));
    };
    let (mut kept, mut note) = crate::cow_repair::salvage(&img, chunk_size, origin_sectors);
    let fresh = create_sized_like(output, &src)?;
    let dst = open_read_write(output)?;
    crate::cow_repair::fit(&mut kept, &mut note, chunk_size, dst.size_sectors());
    refuse_overwrite(output, crate::cow_restore::holds_valid_metadata(&dst), force, "COW metadata")
        .map_err(|e| e.quiet(quiet))?;
    let bar = Progress::new("repairing", kept.len() as u64 * chunk_size as u64 * 512, quiet);
    crate::cow_repair::write_repaired(&src, &dst, img.header, &kept, fresh, &|n| bar.inc(n))
        .map_err(|e| e.at(output).quiet(quiet))?;
    drop(bar);
    if !quiet {
        let _ = writeln!(out, "repaired: {note}");
    }
    Ok(())
}

/// Runs `dmrs clone …`.
pub fn run_clone(tool: &CloneTool, out: &mut dyn Write) -> Result<()> {
    match tool {
        CloneTool::Dump { file, format, json, output, opts } => {
            let img = crate::clone::inspect(&open_read_only(file)?);
            let mut report = open_report(opts.quiet, output, out)?;
            let written = match if *json { Format::Json } else { *format } {
                Format::Json => writeln!(report, "{}", crate::clone::dump_json(&img)),
                Format::Text => write!(report, "{}", crate::clone::dump_text(&img)),
                Format::Xml => crate::clone_format::dump_xml(&img, &mut report),
            };
            written.map_err(|e| Error::file(output_name(output), e))?;
            finish_report(report)?;
            // As `clone check`: what the dump shows of damaged metadata is
            // not to be trusted (a bitset that does not verify reads as
            // nothing hydrated).
            if !img.problems.is_empty() {
                return Err(damaged(file, &img.problems, opts.quiet));
            }
        }
        CloneTool::Check { file, output, opts } => {
            let img = crate::clone::inspect(&open_read_only(file)?);
            let mut report = open_report(opts.quiet, output, out)?;
            for problem in &img.problems {
                let _ = writeln!(report, "{problem}");
            }
            let state = if img.problems.is_empty() { "consistent" } else { "inconsistent" };
            let _ = writeln!(report, "{state}: {}", crate::clone::summary(&img));
            finish_report(report)?;
            if !img.problems.is_empty() {
                return Err(Error::failed(""));
            }
        }
        CloneTool::Restore { input, output, region_size, target_size, force, opts } => {
            let quiet = opts.quiet;
            let text = std::fs::read_to_string(input).map_err(|e| Error::file(input, e))?;
            let dump = crate::clone_format::parse(&text).map_err(|e| e.at(input).quiet(quiet))?;
            let pick = |arg: Option<u64>, from_dump: Option<u64>, what: &str| match (arg, from_dump) {
                (Some(a), Some(b)) if a != b => {
                    Err(Error::usage_or_io(format!("dmrs: --{what} {a} differs from the dump's {b}")).quiet(quiet))
                }
                (Some(size), _) | (None, Some(size)) => Ok(size),
                (None, None) => Err(Error::usage_or_io(format!("dmrs: give --{what}")).quiet(quiet)),
            };
            let region_size = pick(*region_size, dump.region_size, "region-size")?;
            let target_size = pick(*target_size, dump.target_size, "target-size")?;
            let dev = open_read_write(output)?;
            refuse_overwrite(output, crate::clone_restore::holds_valid_metadata(&dev), *force, "metadata")
                .map_err(|e| e.quiet(quiet))?;
            crate::clone_restore::validate_runs(&dump.runs, target_size.div_ceil(region_size.max(1)))
                .map_err(|e| e.at(input).quiet(quiet))?;
            crate::clone_restore::write_clone(&dev, target_size, region_size, &dump.runs)
                .map_err(|e| e.at(output).quiet(quiet))?;
            if !quiet {
                let hydrated: u64 = dump.runs.iter().map(|run| run.1).sum();
                let _ = writeln!(out, "restored {hydrated} hydrated regions onto {}", output.display());
            }
        }
        CloneTool::Repair { input, output, region_size, target_size, force, opts } => {
            let quiet = opts.quiet;
            refuse_same_file(input, output, "dmrs: clone repair: BROKEN and NEW are the same file")
                .map_err(|e| e.quiet(quiet))?;
            let src = open_read_only(input)?;
            let salvaged = crate::clone_repair::salvage(&src, region_size.zip(*target_size))
                .map_err(|e| e.at(input).quiet(quiet))?;
            create_sized_like(output, &src)?;
            let dev = open_read_write(output)?;
            refuse_overwrite(output, crate::clone_restore::holds_valid_metadata(&dev), *force, "metadata")
                .map_err(|e| e.quiet(quiet))?;
            crate::clone_restore::write_clone(&dev, salvaged.target_size, salvaged.region_size, &salvaged.runs)
                .map_err(|e| e.at(output).quiet(quiet))?;
            if !quiet {
                for problem in &salvaged.problems {
                    let _ = writeln!(out, "{problem}");
                }
                let hydrated: u64 = salvaged.runs.iter().map(|run| run.1).sum();
                let _ = writeln!(
                    out,
                    "repaired: {hydrated} hydrated regions kept; {} regions in doubt marked unhydrated",
                    salvaged.in_doubt
                );
            }
        }
    }
    Ok(())
}
