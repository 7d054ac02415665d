// SPDX-License-Identifier: GPL-2.0-only
//! Table-line arguments: `dm_split_args` and the kernel's `kstrto*`
//! number parsing, so `dmrs` accepts and rejects exactly what the kernel does.

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
}
