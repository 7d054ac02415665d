// SPDX-License-Identifier: GPL-2.0-only
//! `DMEMIT`: status and table text written into a caller's fixed buffer of
//! `maxlen` bytes, truncated (never overflowing) like the kernel's
//! `scnprintf` chain.

use core::fmt;

/// Status kinds (`status_type_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusType {
    /// `STATUSTYPE_INFO`: `dmsetup status`.
    Info,
    /// `STATUSTYPE_TABLE`: `dmsetup table`.
    Table,
    /// `STATUSTYPE_IMA`: measurement text.
    Ima,
}

/// Writes formatted text into `buf`, keeping one byte spare as the kernel
/// keeps room for the NUL; text that does not fit is dropped at a character
/// boundary.
pub struct Emitter<'a> {
    buf: &'a mut [u8],
    sz: usize,
}

impl<'a> Emitter<'a> {
    /// An emitter over `buf` (`result`, `maxlen`).
    pub fn new(buf: &'a mut [u8]) -> Self {
        Emitter { buf, sz: 0 }
    }

    /// Bytes written so far (`sz`).
    pub fn len(&self) -> usize {
        self.sz
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.sz == 0
    }

    /// The text written so far.
    pub fn as_str(&self) -> &str {
        // Only whole characters are ever copied in, so this cannot fail.
        core::str::from_utf8(self.buf.get(..self.sz).unwrap_or(&[])).unwrap_or("")
    }
}

impl fmt::Write for Emitter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len().saturating_sub(1).saturating_sub(self.sz);
        let mut n = s.len().min(room);
        while n > 0 && !s.is_char_boundary(n) {
            n -= 1;
        }
        if let (Some(dst), Some(src)) = (self.buf.get_mut(self.sz..self.sz + n), s.get(..n)) {
            dst.copy_from_slice(src.as_bytes());
            self.sz += n;
        }
        Ok(())
    }
}

/// `DMEMIT(emitter, fmt, ...)`.
#[macro_export]
macro_rules! dmemit {
    ($e:expr, $($arg:tt)*) => {{
        let _ = core::fmt::Write::write_fmt($e, format_args!($($arg)*));
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dmemit_truncates_like_scnprintf() {
        let mut b = [0u8; 8];
        let mut e = Emitter::new(&mut b);
        dmemit!(&mut e, "{}/{} {}", 32, 65536, 32);
        assert_eq!(e.as_str(), "32/6553");
        let mut b = [0u8; 64];
        let mut e = Emitter::new(&mut b);
        dmemit!(&mut e, " P {}", 16);
        dmemit!(&mut e, " {}", 1);
        assert_eq!(e.as_str(), " P 16 1");
        let mut b = [0u8; 3];
        let mut e = Emitter::new(&mut b);
        dmemit!(&mut e, "é!");
        assert_eq!(e.as_str(), "é");
    }
}
