// SPDX-License-Identifier: GPL-2.0-only
//! `dmrs demo`: in a fresh temporary directory, a snapshot of an origin
//! file on a COW file; writes through the origin (copy-on-write) and the
//! snapshot; status and table lines; the COW dump and check; then the
//! snapshot merged back into the origin with `snapshot-merge`. Every step
//! is printed as the `dmrs` command that does it.

use crate::cli::grammar::parse_line;
use crate::cli::{dispatch, Session};
use crate::pattern::pattern;
use crate::state::split_words;
use std::io::{self, Write};
use std::path::Path;

/// Prints `line` as the `dmrs` command it is, then runs it.
fn step(session: &mut Session, line: &str, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "$ dmrs {line}")?;
    let words = split_words(line).map_err(io::Error::other)?;
    let verb = parse_line(&words).map_err(io::Error::other)?;
    Ok(dispatch::exec(session, &verb, out)?)
}

/// Prints what the first record of `chunk` of `dev` holds.
fn show_read(session: &Session, dev: &str, chunk: u64, out: &mut dyn Write) -> io::Result<()> {
    let sector = session.dm.read(dev, chunk * 8192, 512)?;
    let text = String::from_utf8_lossy(&sector[..15]).trim_end().to_string();
    writeln!(out, "  {dev:<5} chunk {chunk:<3} holds {text:?}")
}

/// Runs the demo in a new directory under `base`, writing to `out`.
pub fn run(base: &Path, out: &mut dyn Write) -> io::Result<()> {
    let dir = base.join(format!("dmrs-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("origin.img"), pattern("origin v1", 8 << 20))?;
    std::fs::File::create(dir.join("cow.img"))?.set_len(4 << 20)?;
    writeln!(out, "# in {}: origin.img (8 MiB of \"origin v1\"), cow.img (4 MiB of zeros)", dir.display())?;
    let cwd = std::env::current_dir()?;
    std::env::set_current_dir(&dir)?;
    let result = demo(out);
    std::env::set_current_dir(cwd)?;
    result
}

fn demo(out: &mut dyn Write) -> io::Result<()> {
    let mut session = Session::new()?;
    writeln!(out, "\n# Take a snapshot: the origin goes behind snapshot-origin, the snapshot stacks on it.")?;
    for line in [
        "create base --table '0 16384 snapshot-origin origin.img'",
        "suspend base",
        "create snap --table '0 16384 snapshot origin.img cow.img P 16'",
        "resume base",
        "table",
        "status",
    ] {
        step(&mut session, line, out)?;
    }
    writeln!(out, "\n# Write the origin: chunks 3-5 are copied to the COW before they change.")?;
    step(&mut session, "write base --offset 24576 --pattern 'origin v2' --length 24576", out)?;
    writeln!(out, "# Write the snapshot: a whole chunk (100, no copy) and half of chunk 200.")?;
    step(&mut session, "write snap --offset 819200 --pattern snapshot --length 8192", out)?;
    step(&mut session, "write snap --offset 1638400 --pattern snapshot --length 4096", out)?;
    step(&mut session, "status snap", out)?;
    writeln!(out, "# Both views:")?;
    for chunk in [4, 100, 200] {
        show_read(&session, "base", chunk, out)?;
        show_read(&session, "snap", chunk, out)?;
    }
    writeln!(out, "\n# The COW on disk, in the kernel's format:")?;
    step(&mut session, "cow dump cow.img", out)?;
    step(&mut session, "cow check cow.img --origin-sectors 16384", out)?;

    writeln!(out, "\n# Merge the snapshot back: snapshot-merge takes over the COW from the snapshot (handover).")?;
    for line in [
        "load base --table '0 16384 snapshot-merge origin.img cow.img P 16'",
        "suspend snap",
        "suspend base",
        "resume base",
        "remove snap",
        "status base",
        "wait base",
        "status base",
        "table base",
    ] {
        step(&mut session, line, out)?;
    }
    writeln!(out, "# The origin now holds the snapshot's contents:")?;
    for chunk in [4, 100, 200] {
        show_read(&session, "base", chunk, out)?;
    }
    step(&mut session, "remove base", out)?;
    step(&mut session, "cow dump cow.img", out)?;
    Ok(())
}
