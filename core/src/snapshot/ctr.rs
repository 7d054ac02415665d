// SPDX-License-Identifier: GPL-2.0-only
//! Table-line parsing of `snapshot`, `snapshot-merge` and `snapshot-origin`,
//! in the kernel's order and with its `ti->error` strings. Opening devices
//! and creating the store are the driver's next steps (`snapshot_ctr`).

use crate::args::dm_read_arg_group;
use crate::errno::TargetError;

/// Parsed `<origin> <COW> <P|PO|N> <chunksize> [<#features> <feature>...]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotArgs<'a> {
    /// Origin device path.
    pub origin_path: &'a str,
    /// COW device path.
    pub cow_path: &'a str,
    /// `<P|PO|N> <chunksize>`: what `dm_exception_store_create` reads.
    pub store_args: [&'a str; 2],
    /// `discard_zeroes_cow`.
    pub discard_zeroes_cow: bool,
    /// `discard_passdown_origin`.
    pub discard_passdown_origin: bool,
}

/// `snapshot_ctr`'s argument checks and `parse_snapshot_features`.
pub fn parse_snapshot_args<'a>(argv: &[&'a str]) -> Result<SnapshotArgs<'a>, TargetError> {
    let [origin_path, cow_path, ty, chunk, rest @ ..] = argv else {
        return Err(TargetError::inval(c"requires 4 or more arguments"));
    };
    let mut a = SnapshotArgs {
        origin_path,
        cow_path,
        store_args: [ty, chunk],
        discard_zeroes_cow: false,
        discard_passdown_origin: false,
    };
    if let Some((count, features)) = rest.split_first() {
        let n = dm_read_arg_group(Some(count), 0, 2, features.len(), c"Invalid number of feature arguments")?;
        for f in features.iter().take(n as usize) {
            if f.eq_ignore_ascii_case("discard_zeroes_cow") {
                a.discard_zeroes_cow = true;
            } else if f.eq_ignore_ascii_case("discard_passdown_origin") {
                a.discard_passdown_origin = true;
            } else {
                return Err(TargetError::inval(c"Unrecognised feature requested"));
            }
        }
        if !a.discard_zeroes_cow && a.discard_passdown_origin {
            return Err(TargetError::inval(c"discard_passdown_origin feature depends on discard_zeroes_cow"));
        }
    }
    Ok(a)
}

/// `origin_ctr`'s argument check: exactly one device.
pub fn parse_origin_args<'a>(argv: &[&'a str]) -> Result<&'a str, TargetError> {
    match argv {
        [dev] => Ok(dev),
        _ => Err(TargetError::inval(c"origin: incorrect number of arguments")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(argv: &[&str]) -> &'static str {
        parse_snapshot_args(argv).err().map(|e| e.msg()).unwrap_or("ok")
    }

    #[test]
    fn every_rejection_has_the_kernels_text() {
        assert_eq!(err(&[]), "requires 4 or more arguments");
        assert_eq!(err(&["o", "c", "P"]), "requires 4 or more arguments");
        assert_eq!(err(&["o", "c", "P", "16", "x"]), "Invalid number of feature arguments");
        assert_eq!(err(&["o", "c", "P", "16", "3", "a", "b", "c"]), "Invalid number of feature arguments");
        assert_eq!(err(&["o", "c", "P", "16", "2", "discard_zeroes_cow"]), "Invalid number of feature arguments");
        assert_eq!(err(&["o", "c", "P", "16", "1", "bogus"]), "Unrecognised feature requested");
        assert_eq!(
            err(&["o", "c", "P", "16", "1", "discard_passdown_origin"]),
            "discard_passdown_origin feature depends on discard_zeroes_cow"
        );
        assert_eq!(
            parse_origin_args(&["a", "b"]).err().map(|e| e.msg()),
            Some("origin: incorrect number of arguments")
        );
        assert_eq!(parse_origin_args(&[]).err().map(|e| e.msg()), Some("origin: incorrect number of arguments"));
    }

    #[test]
    fn accepted_forms() {
        let a = parse_snapshot_args(&["o", "c", "PO", "16"]).unwrap();
        assert_eq!((a.origin_path, a.cow_path, a.store_args), ("o", "c", ["PO", "16"]));
        assert!(!a.discard_zeroes_cow);
        let a = parse_snapshot_args(&["o", "c", "P", "16", "0"]).unwrap();
        assert!(!a.discard_zeroes_cow);
        let a =
            parse_snapshot_args(&["o", "c", "P", "16", "2", "DISCARD_ZEROES_COW", "discard_passdown_origin"]).unwrap();
        assert!(a.discard_zeroes_cow && a.discard_passdown_origin);
        // Arguments after the feature group are ignored, as the kernel does.
        assert!(parse_snapshot_args(&["o", "c", "P", "16", "1", "discard_zeroes_cow", "extra"]).is_ok());
        assert_eq!(parse_origin_args(&["/dev/x"]).unwrap(), "/dev/x");
    }
}
