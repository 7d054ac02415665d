// SPDX-License-Identifier: GPL-2.0-only
//! Table-line arguments: `dm_split_args`, the kernel's `kstrto*` number
//! parsing, `dm_read_arg` and `dm_read_arg_group`, so `dmrs` accepts and
//! rejects exactly what the kernel does.

use crate::errno::TargetError;
use core::ffi::CStr;

/// Most arguments a table line may have (`dm_split_args` grows without
/// bound; real tables have at most a dozen).
pub const MAX_ARGS: usize = 32;

/// The argument vector of a table line.
pub type Args<'a> = heapless::Vec<&'a str, MAX_ARGS>;

/// Splits a table's parameters on white space. `None` when there are more
/// than [`MAX_ARGS`].
pub fn split_args(line: &str) -> Option<Args<'_>> {
    let mut v = Args::new();
    for a in line.split_ascii_whitespace() {
        v.push(a).ok()?;
    }
    Some(v)
}

/// `kstrtoull(s, 10, &v)`: decimal digits with an optional leading `+` and
/// one optional trailing newline; anything else, or overflow, is `None`.
pub fn kstrtoull(s: &str) -> Option<u64> {
    let s = s.strip_suffix('\n').unwrap_or(s);
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for c in s.bytes() {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(v)
}

/// `kstrtouint(s, 10, &v)`.
pub fn kstrtouint(s: &str) -> Option<u32> {
    kstrtoull(s).and_then(|v| u32::try_from(v).ok())
}

/// `sscanf(s, "%u%c", &v, &dummy) == 1`: leading spaces, then decimal
/// digits and nothing after them (no sign). As the kernel's `vsscanf`, a
/// value too large wraps and is truncated to 32 bits.
pub fn sscanf_u(s: &str) -> Option<u32> {
    let digits = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let v = digits.bytes().fold(0u64, |v, c| v.wrapping_mul(10).wrapping_add((c - b'0') as u64));
    Some(v as u32)
}

/// `dm_read_arg`: the next argument as a number in `[min, max]`, or the
/// target's `error`.
pub fn dm_read_arg(arg: Option<&str>, min: u32, max: u32, error: &'static CStr) -> Result<u32, TargetError> {
    arg.and_then(sscanf_u).filter(|v| (min..=max).contains(v)).ok_or(TargetError::inval(error))
}

/// `dm_read_arg_group`: a group's count, in `[min, max]` and no more than
/// the `left` arguments after it.
pub fn dm_read_arg_group(
    arg: Option<&str>,
    min: u32,
    max: u32,
    left: usize,
    error: &'static CStr,
) -> Result<u32, TargetError> {
    let n = dm_read_arg(arg, min, max, error)?;
    if left < n as usize {
        return Err(TargetError::inval(error));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_args_bounds() {
        let a = split_args("  /dev/a /dev/b P  16 ").unwrap();
        assert_eq!(&a[..], &["/dev/a", "/dev/b", "P", "16"]);
        let many = "x ".repeat(MAX_ARGS + 1);
        assert!(split_args(&many).is_none());
    }

    #[test]
    fn kstrto_accepts_what_the_kernel_accepts() {
        assert_eq!(kstrtouint("16"), Some(16));
        assert_eq!(kstrtouint("+16\n"), Some(16));
        assert_eq!(kstrtouint("4294967295"), Some(u32::MAX));
        for bad in ["", "-1", "16k", " 16", "4294967296", "0x10", "+", "\n"] {
            assert_eq!(kstrtouint(bad), None, "{bad:?}");
        }
        assert_eq!(kstrtoull("18446744073709551616"), None);
    }

    #[test]
    fn dm_read_arg_takes_what_sscanf_u_takes() {
        assert_eq!(sscanf_u("16"), Some(16));
        assert_eq!(sscanf_u(" 16"), Some(16), "%u skips leading spaces");
        // vsscanf wraps and truncates to unsigned int.
        assert_eq!(sscanf_u("4294967296"), Some(0));
        assert_eq!(sscanf_u("4294967297"), Some(1));
        for bad in ["", "+16", "-1", "16k", "16 ", "0x10", " "] {
            assert_eq!(sscanf_u(bad), None, "{bad:?}");
        }
        let e = c"Invalid number of feature arguments";
        assert_eq!(dm_read_arg_group(Some("2"), 0, 2, 2, e), Ok(2));
        assert_eq!(dm_read_arg_group(Some("2"), 0, 2, 1, e).err().map(|e| e.msg()), Some(e.to_str().unwrap()));
        assert!(dm_read_arg_group(Some("3"), 0, 2, 5, e).is_err(), "above max");
        assert!(dm_read_arg_group(None, 0, 2, 5, e).is_err(), "missing");
        assert!(dm_read_arg(Some("4"), 8, 16, e).is_err(), "below min");
    }
}
