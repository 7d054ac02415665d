// SPDX-License-Identifier: GPL-2.0-only
//! The one error type of dmrs hosted: the text for stderr, the exit code,
//! and the errno when a device-mapper operation failed.
//!
//! Exit codes follow dmsetup and thin-provisioning-tools: 0 clean (never
//! an [`Error`]), 1 the operation failed or the metadata is damaged
//! ([`FAILED`]), 2 bad usage or an I/O error ([`USAGE_OR_IO`]).

use dmrs_core::Errno;
use std::fmt;
use std::path::Path;

/// Exit code: the operation failed, or the metadata is damaged.
pub const FAILED: u8 = 1;
/// Exit code: bad usage, or a device could not be opened, read or written.
pub const USAGE_OR_IO: u8 = 2;

/// A failed operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Lines for stderr (none when empty, as with `-q`).
    pub msg: String,
    /// The exit code.
    pub code: u8,
    /// The errno of a failed device-mapper operation.
    pub errno: Option<Errno>,
}

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with exit code `code`.
    pub fn new(code: u8, msg: impl Into<String>) -> Self {
        Error { msg: msg.into(), code, errno: None }
    }

    /// Exit code 1: the operation failed, or the metadata is damaged.
    pub fn failed(msg: impl Into<String>) -> Self {
        Self::new(FAILED, msg)
    }

    /// Exit code 2: bad usage, or an I/O error.
    pub fn usage_or_io(msg: impl Into<String>) -> Self {
        Self::new(USAGE_OR_IO, msg)
    }

    /// A device-mapper operation failed with `errno` (exit code 1, as dmsetup).
    pub fn errno(errno: Errno, msg: impl Into<String>) -> Self {
        Error { msg: msg.into(), code: FAILED, errno: Some(errno) }
    }

    /// `path` could not be opened, read or written (exit code 2).
    pub fn file(path: &Path, e: impl fmt::Display) -> Self {
        Self::usage_or_io(format!("dmrs: {}: {e}", path.display()))
    }

    /// The same error, its text prefixed with `dmrs: PATH: `.
    pub fn at(self, path: &Path) -> Self {
        Error { msg: format!("dmrs: {}: {}", path.display(), self.msg), ..self }
    }

    /// The same error without text when `quiet` (`-q`: exit status only).
    pub fn quiet(self, quiet: bool) -> Self {
        if quiet {
            Error { msg: String::new(), ..self }
        } else {
            self
        }
    }

    /// Prints the text (if any) to stderr and returns the exit code.
    pub fn report(&self) -> u8 {
        if !self.msg.is_empty() {
            eprintln!("{}", self.msg);
        }
        self.code
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        std::io::Error::other(e.msg)
    }
}
