// SPDX-License-Identifier: GPL-2.0-only
//! The persistent store's on-disk format (`dm-snap-persistent.c`).
//!
//! Chunk 0 holds [`DiskHeader`], the rest of it zero. Metadata areas follow
//! at [`area_location`]: each is one chunk of [`DiskException`] slots and is
//! followed by `exceptions_per_area` data chunks. A slot whose `new_chunk`
//! is 0 (it would point at the header) ends the list.

use crate::endian::{on_disk, Le32, Le64, OnDisk};
use crate::exception::Chunk;

/// `SNAP_MAGIC`: "SnAp".
pub const SNAP_MAGIC: u32 = 0x70416e53;
/// `SNAPSHOT_DISK_VERSION`.
pub const SNAPSHOT_DISK_VERSION: u32 = 1;
/// `NUM_SNAPSHOT_HDR_CHUNKS`.
pub const NUM_SNAPSHOT_HDR_CHUNKS: u64 = 1;
/// `DM_CHUNK_SIZE_DEFAULT_SECTORS` (16 KiB).
pub const DM_CHUNK_SIZE_DEFAULT_SECTORS: u32 = 32;
/// `DM_PREFETCH_CHUNKS`: metadata areas read ahead while loading.
pub const DM_PREFETCH_CHUNKS: u64 = 12;

/// `struct disk_header` (`__packed`, 16 bytes; [`OnDisk`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct DiskHeader {
    /// `SNAP_MAGIC`, or 0 for a new snapshot.
    pub magic: Le32,
    /// 0 once the snapshot was invalidated: "There is no way of recovering
    /// an invalid snapshot."
    pub valid: Le32,
    /// `SNAPSHOT_DISK_VERSION`.
    pub version: Le32,
    /// In sectors.
    pub chunk_size: Le32,
}

/// `struct disk_exception` (`__packed`, 16 bytes; [`OnDisk`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct DiskException {
    /// Origin chunk.
    pub old_chunk: Le64,
    /// COW chunk; 0 terminates the list.
    pub new_chunk: Le64,
}

on_disk!(DiskHeader, 16, { magic, valid, version, chunk_size });
on_disk!(DiskException, 16, { old_chunk, new_chunk });

/// Slots in one metadata area of `chunk_size` sectors.
pub const fn exceptions_per_area(chunk_size: u32) -> u32 {
    ((chunk_size as u64) << 9) as u32 / DiskException::SIZE as u32
}

/// `area_location`: the chunk holding metadata area `area`.
pub fn area_location(exceptions_per_area: u32, area: u64) -> Option<Chunk> {
    (exceptions_per_area as u64 + 1).checked_mul(area)?.checked_add(NUM_SNAPSHOT_HDR_CHUNKS)
}

/// True when `chunk` holds the header or a metadata area.
pub fn is_metadata_chunk(exceptions_per_area: u32, chunk: Chunk) -> bool {
    chunk < NUM_SNAPSHOT_HDR_CHUNKS || (chunk - NUM_SNAPSHOT_HDR_CHUNKS) % (exceptions_per_area as u64 + 1) == 0
}

/// Reads slot `index` of an area buffer.
pub fn read_exception(area: &[u8], index: u32) -> Option<(Chunk, Chunk)> {
    let off = (index as usize).checked_mul(DiskException::SIZE)?;
    let de = DiskException::unpack(area.get(off..)?)?;
    Some((de.old_chunk.get(), de.new_chunk.get()))
}

/// Writes slot `index` of an area buffer.
pub fn write_exception(area: &mut [u8], index: u32, old_chunk: Chunk, new_chunk: Chunk) -> Option<()> {
    let off = (index as usize).checked_mul(DiskException::SIZE)?;
    let de = DiskException { old_chunk: Le64::new(old_chunk), new_chunk: Le64::new(new_chunk) };
    de.pack(area.get_mut(off..)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_golden_bytes() {
        let h = DiskHeader {
            magic: Le32::new(SNAP_MAGIC),
            valid: Le32::new(1),
            version: Le32::new(SNAPSHOT_DISK_VERSION),
            chunk_size: Le32::new(16),
        };
        let mut b = [0u8; 16];
        h.pack(&mut b).unwrap();
        assert_eq!(b, [0x53, 0x6e, 0x41, 0x70, 1, 0, 0, 0, 1, 0, 0, 0, 0x10, 0, 0, 0]);
        assert_eq!(DiskHeader::unpack(&b), Some(h));
        assert_eq!(DiskHeader::unpack(&b[..15]), None);
    }

    #[test]
    fn layout_for_chunk_16() {
        let epa = exceptions_per_area(16);
        assert_eq!(epa, 512);
        let areas: [u64; 3] = [0, 1, 2];
        let locs: alloc::vec::Vec<_> = areas.iter().map(|&a| area_location(epa, a).unwrap()).collect();
        assert_eq!(locs, [1, 514, 1027]);
        assert!(is_metadata_chunk(epa, 0) && is_metadata_chunk(epa, 1) && is_metadata_chunk(epa, 514));
        assert!(!is_metadata_chunk(epa, 2) && !is_metadata_chunk(epa, 513));
        assert_eq!(area_location(epa, u64::MAX), None);
    }

    #[test]
    fn slots_roundtrip_and_bounds() {
        let mut area = [0u8; 64];
        write_exception(&mut area, 3, 7, 9).unwrap();
        assert_eq!(read_exception(&area, 3), Some((7, 9)));
        assert_eq!(read_exception(&area, 4), None);
        assert_eq!(write_exception(&mut area, 4, 1, 1), None);
    }
}
