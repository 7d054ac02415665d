// SPDX-License-Identifier: GPL-2.0-only
//! `dmrs demo`: in a fresh temporary directory, a snapshot of an origin
//! file on a COW file; writes through the origin (copy-on-write) and the
//! snapshot; status and table lines; the COW dump and check; then the
//! snapshot merged back into the origin with `snapshot-merge`. Every step
//! is printed as the `dmrs` command that does it.

use crate::cli::{parse_line, pattern, Session};
use crate::state::split_words;
use std::io::{self, Write};
use std::path::Path;

fn step(s: &mut Session, line: &str, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "$ dmrs {line}")?;
    let words = split_words(line).map_err(io::Error::other)?;
    let verb = parse_line(&words).map_err(io::Error::other)?;
    s.exec(&verb, out).map_err(|f| io::Error::other(f.msg))
}

fn show_read(s: &Session, dev: &str, chunk: u64, out: &mut dyn Write) -> io::Result<()> {
    let b = s.dm.read(dev, chunk * 8192, 512).map_err(|e| io::Error::other(e.msg))?;
    let text = String::from_utf8_lossy(&b[..15]).trim_end().to_string();
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
    let r = demo(out);
    std::env::set_current_dir(cwd)?;
    r
}

fn demo(out: &mut dyn Write) -> io::Result<()> {
    let mut s = Session::new().map_err(|f| io::Error::other(f.msg))?;
    writeln!(out, "\n# Take a snapshot: the origin goes behind snapshot-origin, the snapshot stacks on it.")?;
    for l in [
        "create base --table '0 16384 snapshot-origin origin.img'",
        "suspend base",
        "create snap --table '0 16384 snapshot origin.img cow.img P 16'",
        "resume base",
        "table",
        "status",
    ] {
        step(&mut s, l, out)?;
    }
    writeln!(out, "\n# Write the origin: chunks 3-5 are copied to the COW before they change.")?;
    step(&mut s, "write base --offset 24576 --pattern 'origin v2' --length 24576", out)?;
    writeln!(out, "# Write the snapshot: a whole chunk (100, no copy) and half of chunk 200.")?;
    step(&mut s, "write snap --offset 819200 --pattern snapshot --length 8192", out)?;
    step(&mut s, "write snap --offset 1638400 --pattern snapshot --length 4096", out)?;
    step(&mut s, "status snap", out)?;
    writeln!(out, "# Both views:")?;
    for c in [4, 100, 200] {
        show_read(&s, "base", c, out)?;
        show_read(&s, "snap", c, out)?;
    }
    writeln!(out, "\n# The COW on disk, in the kernel's format:")?;
    step(&mut s, "cow dump cow.img", out)?;
    step(&mut s, "cow check cow.img --origin-sectors 16384", out)?;

    writeln!(out, "\n# Merge the snapshot back: snapshot-merge takes over the COW from the snapshot (handover).")?;
    for l in [
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
        step(&mut s, l, out)?;
    }
    writeln!(out, "# The origin now holds the snapshot's contents:")?;
    for c in [4, 100, 200] {
        show_read(&s, "base", c, out)?;
    }
    step(&mut s, "remove base", out)?;
    step(&mut s, "cow dump cow.img", out)?;
    Ok(())
}
