// SPDX-License-Identifier: GPL-2.0-only
//! Kernel-style error numbers, and the `ti->error` pair a constructor fails with.

use core::ffi::CStr;
use core::fmt;

/// A positive errno value, as the kernel returns it negated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// Operation not permitted.
    pub const EPERM: Errno = Errno(1);
    /// No such file or directory.
    pub const ENOENT: Errno = Errno(2);
    /// I/O error.
    pub const EIO: Errno = Errno(5);
    /// No such device or address (bad snapshot magic).
    pub const ENXIO: Errno = Errno(6);
    /// Try again.
    pub const EAGAIN: Errno = Errno(11);
    /// Out of memory.
    pub const ENOMEM: Errno = Errno(12);
    /// Block device required (persistent-data block number mismatch).
    pub const ENOTBLK: Errno = Errno(15);
    /// Device or resource busy.
    pub const EBUSY: Errno = Errno(16);
    /// File exists.
    pub const EEXIST: Errno = Errno(17);
    /// No such device.
    pub const ENODEV: Errno = Errno(19);
    /// Invalid argument.
    pub const EINVAL: Errno = Errno(22);
    /// No space left on device.
    pub const ENOSPC: Errno = Errno(28);
    /// Result out of range.
    pub const ERANGE: Errno = Errno(34);
    /// Illegal byte sequence (persistent-data checksum mismatch).
    pub const EILSEQ: Errno = Errno(84);
    /// Operation not supported.
    pub const EOPNOTSUPP: Errno = Errno(95);

    /// The kernel's symbolic name, for messages such as `(-EINVAL)`.
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            5 => "EIO",
            6 => "ENXIO",
            11 => "EAGAIN",
            12 => "ENOMEM",
            15 => "ENOTBLK",
            16 => "EBUSY",
            17 => "EEXIST",
            19 => "ENODEV",
            22 => "EINVAL",
            28 => "ENOSPC",
            34 => "ERANGE",
            84 => "EILSEQ",
            95 => "EOPNOTSUPP",
            _ => "E?",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "-{}", self.name())
    }
}

/// Result with a kernel errno.
pub type Result<T> = core::result::Result<T, Errno>;

/// A constructor failure: the errno and the static text the kernel puts in
/// `ti->error` (device-mapper prints it as `<target>: <msg>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetError {
    /// The negated return value of the constructor.
    pub errno: Errno,
    /// `ti->error`: static and NUL-terminated, as dm core keeps the pointer.
    error: &'static CStr,
}

impl TargetError {
    /// `-EINVAL` with a message.
    pub const fn inval(msg: &'static CStr) -> Self {
        TargetError { errno: Errno::EINVAL, error: msg }
    }

    /// Any errno with a message.
    pub const fn new(errno: Errno, msg: &'static CStr) -> Self {
        TargetError { errno, error: msg }
    }

    /// The message, for `ti->error`.
    pub const fn error(&self) -> &'static CStr {
        self.error
    }

    /// The message as text (every message is ASCII).
    pub fn msg(&self) -> &'static str {
        self.error.to_str().unwrap_or("?")
    }
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.msg(), self.errno)
    }
}
