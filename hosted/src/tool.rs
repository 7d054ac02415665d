// SPDX-License-Identifier: GPL-2.0-only
//! Conventions the offline tools (`dmrs cow …`, `dmrs clone …`) share with
//! thin-provisioning-tools, so scripts written for `thin_check` and friends
//! work the same way: `-q` (exit status only), exit codes 0/1/2, `-o FILE`,
//! and a progress bar on stderr only when a person is watching.

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// The exit codes, as `--help` of every offline tool prints them.
pub const EXIT_CODES: &str = "Exit status: 0 clean, 1 damaged (or the tool found a problem in the \
                              metadata), 2 usage or I/O error.";

/// Only a job reading more than this shows a progress bar: shorter ones
/// finish before a bar would be worth drawing.
pub const PROGRESS_MIN_BYTES: u64 = 4 << 20;

/// Options every offline tool takes.
#[derive(Args, Debug, Clone, Default)]
pub struct ToolOpts {
    /// Print nothing; report only through the exit status.
    #[arg(short, long)]
    pub quiet: bool,
}

/// A progress bar that draws only on an interactive stderr without `-q`
/// and for jobs of at least [`PROGRESS_MIN_BYTES`]; otherwise every call
/// is a no-op, so pipes and logs never see control characters.
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// A bar for `total_bytes` of work, labelled `what`.
    pub fn new(what: &str, total_bytes: u64, quiet: bool) -> Self {
        Self::with_terminal(what, total_bytes, quiet, std::io::stderr().is_terminal())
    }

    /// As [`Progress::new`], with the terminal test given (for tests).
    pub fn with_terminal(what: &str, total_bytes: u64, quiet: bool, terminal: bool) -> Self {
        if quiet || !terminal || total_bytes < PROGRESS_MIN_BYTES {
            return Progress(None);
        }
        let pb = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})") {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(what.to_string());
        Progress(Some(pb))
    }

    /// True when the bar is drawn.
    pub fn visible(&self) -> bool {
        self.0.is_some()
    }

    /// `bytes` more done.
    pub fn inc(&self, bytes: u64) {
        if let Some(pb) = &self.0 {
            pb.inc(bytes);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

/// Where a report goes: `-o FILE` or the caller's stdout; nowhere with `-q`.
pub enum Output<'a> {
    /// Standard output (or the test's buffer).
    Stdout(&'a mut dyn Write),
    /// A file made by `-o`.
    File(std::io::BufWriter<std::fs::File>, PathBuf),
    /// `-q`.
    Quiet,
}

impl<'a> Output<'a> {
    /// Opens the report's destination.
    pub fn open(quiet: bool, file: Option<&Path>, stdout: &'a mut dyn Write) -> std::io::Result<Self> {
        Ok(match (quiet, file) {
            (true, _) => Output::Quiet,
            (false, Some(p)) => Output::File(std::io::BufWriter::new(std::fs::File::create(p)?), p.to_path_buf()),
            (false, None) => Output::Stdout(stdout),
        })
    }

    /// Flushes a file output (its errors are I/O errors, exit 2).
    pub fn finish(self) -> std::io::Result<()> {
        match self {
            Output::File(mut w, _) => w.flush(),
            Output::Stdout(w) => w.flush(),
            Output::Quiet => Ok(()),
        }
    }
}

impl Write for Output<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Output::Stdout(w) => w.write(buf),
            Output::File(w, _) => w.write(buf),
            Output::Quiet => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::Stdout(w) => w.flush(),
            Output::File(w, _) => w.flush(),
            Output::Quiet => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_only_on_a_terminal_without_quiet_for_big_jobs() {
        assert!(Progress::with_terminal("x", 64 << 20, false, true).visible());
        assert!(!Progress::with_terminal("x", 64 << 20, true, true).visible());
        assert!(!Progress::with_terminal("x", 64 << 20, false, false).visible());
        assert!(!Progress::with_terminal("x", 1 << 20, false, true).visible());
    }

    #[test]
    fn quiet_output_swallows_everything() {
        let mut buf = Vec::new();
        let mut o = Output::open(true, None, &mut buf).unwrap();
        writeln!(o, "hello").unwrap();
        o.finish().unwrap();
        assert!(buf.is_empty());
        let mut o = Output::open(false, None, &mut buf).unwrap();
        writeln!(o, "hello").unwrap();
        o.finish().unwrap();
        assert_eq!(buf, b"hello\n");
    }
}
