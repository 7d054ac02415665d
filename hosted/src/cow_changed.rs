// SPDX-License-Identifier: GPL-2.0-only
//! `dmrs cow changed`: the origin ranges where the snapshot differs from
//! the origin, i.e. the exceptions' old chunks, sorted and merged into
//! ranges, so an incremental backup copies only those.

use crate::cow::{CowImage, Header};
use crate::error::Error;

/// Sorted, merged `(first chunk, chunks)` ranges of the old chunks; an
/// error when the image cannot be trusted to list every change (a backup
/// missing a range would silently be wrong; exit code 1).
pub fn changed(img: &CowImage) -> Result<Vec<(u64, u64)>, Error> {
    let mut out = Vec::new();
    for_each_range(img, img.exceptions.iter().map(|e| e.old_chunk).collect(), &mut |b, l| {
        out.push((b, l));
        Ok(())
    })?;
    Ok(out)
}

/// Whether `img` can be trusted to list every change (checked before any
/// output, so a refused list prints nothing; exit code 1).
pub fn trusted(img: &CowImage) -> Result<(), Error> {
    if let Some(f) = img.fatal.first() {
        return Err(Error::failed(f.clone()));
    }
    match img.header {
        Header::Snap { valid: 0, .. } => Err(Error::failed("the snapshot is invalid: its view is lost")),
        Header::Snap { .. } | Header::New => Ok(()),
        Header::BadMagic(m) => Err(Error::failed(format!("bad magic 0x{m:08x}"))),
    }
}

/// [`changed`] over the old chunks a [`crate::cow::walk`] collected (8
/// bytes per exception, not the whole exception), handing each range to
/// `f` as it is found rather than collecting them: ten million scattered
/// exceptions are ten million ranges.
pub fn for_each_range(
    img: &CowImage,
    mut olds: Vec<u64>,
    f: &mut dyn FnMut(u64, u64) -> Result<(), Error>,
) -> Result<(), Error> {
    trusted(img)?;
    olds.sort_unstable();
    let mut cur: Option<(u64, u64)> = None;
    for o in olds {
        match &mut cur {
            // A duplicate (corrupt, reported by check) is still one change.
            Some((b, l)) if o < *b + *l => {}
            Some((b, l)) if *b + *l == o => *l += 1,
            _ => {
                if let Some((b, l)) = cur.replace((o, 1)) {
                    f(b, l)?;
                }
            }
        }
    }
    if let Some((b, l)) = cur {
        f(b, l)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cow::Slot;

    fn img(olds: &[u64]) -> CowImage {
        CowImage {
            header: Header::Snap { valid: 1, version: 1, chunk_size: 8 },
            dev_sectors: 1 << 20,
            exceptions: olds
                .iter()
                .enumerate()
                .map(|(i, &o)| Slot { area: 0, slot: i as u32, old_chunk: o, new_chunk: 2 + i as u64 })
                .collect(),
            areas: 1,
            fatal: vec![],
        }
    }

    #[test]
    fn sorted_merged_and_refused_when_untrustworthy() {
        assert_eq!(changed(&img(&[9, 3, 4, 10, 5, 4, 20])), Ok(vec![(3, 3), (9, 2), (20, 1)]));
        let mut i = img(&[1]);
        i.header = Header::Snap { valid: 0, version: 1, chunk_size: 8 };
        assert!(changed(&i).is_err());
        let mut i = img(&[1]);
        i.fatal.push("truncated".into());
        assert!(changed(&i).is_err());
    }
}
