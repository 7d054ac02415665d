// SPDX-License-Identifier: GPL-2.0-only
//! `DMERR`/`DMWARN`/`DMINFO`: the core's kernel log.
//!
//! Messages keep the kernel's text and its `DM_MSG_PREFIX`, so a line reads
//! `device-mapper: persistent snapshot: Invalid or corrupt snapshot` on the
//! console, in `dmesg` and on `dmrs`'s stderr alike. The platform installs
//! one sink with [`set_logger`]; before that, messages are dropped.

use core::fmt;

/// Kernel log level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// `DMERR` (KERN_ERR).
    Err,
    /// `DMWARN` (KERN_WARNING).
    Warn,
    /// `DMINFO` (KERN_INFO).
    Info,
}

/// A log sink, implemented by the platform.
pub trait Log: Sync {
    /// Emits one message; `prefix` is the C file's `DM_MSG_PREFIX`.
    fn log(&self, level: Level, prefix: &str, args: fmt::Arguments<'_>);
}

static LOGGER: crate::sync::Once<&'static dyn Log> = crate::sync::Once::new();

/// Installs the sink; the first call wins, as the kernel has one log.
pub fn set_logger(l: &'static dyn Log) {
    LOGGER.call_once(|| l);
}

/// Emits through the installed sink.
pub fn log(level: Level, prefix: &str, args: fmt::Arguments<'_>) {
    if let Some(l) = LOGGER.get() {
        l.log(level, prefix, args);
    }
}

/// `DMERR(prefix, fmt, ...)`.
#[macro_export]
macro_rules! dm_err {
    ($prefix:expr, $($arg:tt)*) => {
        $crate::log::log($crate::log::Level::Err, $prefix, format_args!($($arg)*))
    };
}

/// `DMWARN(prefix, fmt, ...)`.
#[macro_export]
macro_rules! dm_warn {
    ($prefix:expr, $($arg:tt)*) => {
        $crate::log::log($crate::log::Level::Warn, $prefix, format_args!($($arg)*))
    };
}

/// `DMINFO(prefix, fmt, ...)`.
#[macro_export]
macro_rules! dm_info {
    ($prefix:expr, $($arg:tt)*) => {
        $crate::log::log($crate::log::Level::Info, $prefix, format_args!($($arg)*))
    };
}
