// SPDX-License-Identifier: GPL-2.0-only
//! `dmrs cow size`: the COW size that holds a copy of every chunk of the
//! origin, laid out as the persistent store lays it out: the header chunk,
//! then areas of one metadata chunk followed by `exceptions_per_area` data
//! chunks. Every area that fills makes the kernel zero the next one
//! (`persistent_commit_exception`), so there is always one area more than
//! the full ones, even if it stays empty.

use dmrs_core::exception_store::disk::{self, NUM_SNAPSHOT_HDR_CHUNKS};

/// The layout for an origin of `origin_sectors` in chunks of `chunk_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Data chunks: the origin's chunks (the last one may be partial).
    pub data_chunks: u64,
    /// Metadata areas.
    pub areas: u64,
    /// Total sectors.
    pub sectors: u64,
}

/// Computes the layout; `None` on overflow or a chunk size below 1 sector
/// or not a power of two (the kernel's rule).
pub fn layout(origin_sectors: u64, chunk_size: u32) -> Option<Layout> {
    if chunk_size == 0 || !chunk_size.is_power_of_two() {
        return None;
    }
    let cs = chunk_size as u64;
    let data_chunks = origin_sectors.div_ceil(cs);
    let epa = disk::exceptions_per_area(chunk_size).max(1) as u64;
    let areas = data_chunks / epa + 1;
    let chunks = NUM_SNAPSHOT_HDR_CHUNKS.checked_add(areas)?.checked_add(data_chunks)?;
    Some(Layout { data_chunks, areas, sectors: chunks.checked_mul(cs)? })
}

/// Parses a size: plain numbers are sectors (as in table lines); a
/// `K`/`M`/`G`/`T` suffix (binary) means bytes, which must be whole sectors.
pub fn parse_sectors(s: &str) -> Result<u64, String> {
    let (digits, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("`{s}`: unknown unit {c} (K, M, G, T, or none for sectors)")),
            };
            (&s[..i], Some(m))
        }
        _ => (s, None),
    };
    let n: u64 = digits.parse().map_err(|_| format!("`{s}` is not a size"))?;
    match mult {
        None => Ok(n),
        Some(m) => {
            let bytes = n.checked_mul(m).ok_or(format!("`{s}` is too large"))?;
            Ok(bytes / 512)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_counts_the_header_and_the_spare_area() {
        // 512 slots per area at chunk 16: 1024 chunks fill two areas, the
        // third is the one the kernel zeroes.
        assert_eq!(layout(1024 * 16, 16), Some(Layout { data_chunks: 1024, areas: 3, sectors: (1 + 3 + 1024) * 16 }));
        assert_eq!(layout(1023 * 16 + 1, 16), Some(Layout { data_chunks: 1024, areas: 3, sectors: 1028 * 16 }));
        assert_eq!(layout(0, 16), Some(Layout { data_chunks: 0, areas: 1, sectors: 32 }));
        assert_eq!(layout(100, 24), None);
        assert_eq!(layout(u64::MAX, 1), None);
        assert_eq!(parse_sectors("64M"), Ok(131072));
        assert_eq!(parse_sectors("131072"), Ok(131072));
        assert!(parse_sectors("3Q").is_err() && parse_sectors("x").is_err() && parse_sectors("99999999999T").is_err());
    }
}
