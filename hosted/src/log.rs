// SPDX-License-Identifier: GPL-2.0-only
//! The kernel log of the hosted shim: stderr, in the kernel's words.

use dmrs_core::log::{Level, Log};
use std::fmt;
use std::io::Write;

/// Writes `device-mapper: <prefix>: <message>` lines to stderr.
pub struct StderrLog;

impl Log for StderrLog {
    fn log(&self, _level: Level, prefix: &str, args: fmt::Arguments<'_>) {
        let _ = writeln!(std::io::stderr().lock(), "device-mapper: {}: {}", prefix, args);
    }
}

static STDERR_LOG: StderrLog = StderrLog;

/// Installs the stderr log as the core's log sink.
pub fn init() {
    dmrs_core::log::set_logger(&STDERR_LOG);
}
