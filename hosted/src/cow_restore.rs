// SPDX-License-Identifier: GPL-2.0-only
//! `dmrs cow restore`: writes a dump's header and metadata areas exactly
//! where and how the kernel writes them (`write_header`,
//! `persistent_commit_exception`, `zero_disk_area`); data chunks are not
//! touched. Also the writer behind `cow repair`.

use crate::cow::{self, Header};
use crate::cow_format::{self, Dump};
use crate::error::Error;
use dmrs_core::endian::{Le32, OnDisk};
use dmrs_core::exception_store::disk::{self, DiskHeader, SNAPSHOT_DISK_VERSION, SNAP_MAGIC};
use dmrs_core::exception_store::dm_exception_store_set_chunk_size;
use dmrs_core::platform::{BlockDevice, ReqFlags, SECTOR_SIZE};

/// True when `dev` already holds metadata the kernel would load.
pub fn holds_valid_metadata(dev: &dyn BlockDevice) -> bool {
    let img = cow::walk(dev, None, &mut |_| {});
    matches!(img.header, Header::Snap { .. }) && img.fatal.is_empty()
}

/// Checks that `dump` describes metadata the kernel would load from a device
/// of `dev` (logical block size, size): header fields, every exception,
/// and room for every area.
pub fn validate(dump: &Dump, dev: &dyn BlockDevice) -> Result<(), Error> {
    let Header::Snap { version, chunk_size, .. } = dump.header else { return Ok(()) };
    if version != SNAPSHOT_DISK_VERSION {
        return Err(Error::failed(format!("unable to handle snapshot disk version {version}")));
    }
    dm_exception_store_set_chunk_size(chunk_size, dev.logical_block_size(), 512)
        .map_err(|m| Error::failed(format!("invalid chunk size {chunk_size}: {}", m.to_string_lossy())))?;
    // The check streams the dump's slots (area and slot from the position)
    // rather than copying them into an image: a dump of millions of
    // exceptions is checked in the memory of its own list.
    let mut img = cow_format::as_image(&Dump { header: dump.header, exceptions: Vec::new() }, dev.size_sectors());
    let epa = disk::exceptions_per_area(chunk_size).max(1) as u64;
    img.areas = dump.exceptions.len() as u64 / epa + 1;
    let count = dump.exceptions.len() as u64;
    let checked = cow::check_stream(&img, count, None, &mut |feed| {
        for (i, &(old_chunk, new_chunk)) in dump.exceptions.iter().enumerate() {
            let i = i as u64;
            feed(cow::Slot { area: i / epa, slot: (i % epa) as u32, old_chunk, new_chunk });
        }
        Ok(())
    })
    .map_err(Error::failed)?;
    if !checked.problems.is_empty() {
        return Err(Error::failed(checked.problems.join("\n")));
    }
    let last = disk::area_location(epa as u32, img.areas.saturating_sub(1)).unwrap_or(u64::MAX);
    let dev_chunks = dev.size_sectors() / chunk_size as u64;
    if last >= dev_chunks {
        return Err(Error::failed(format!(
            "metadata area {} would be at chunk {last}, beyond the device ({dev_chunks} chunks)",
            img.areas - 1
        )));
    }
    Ok(())
}

/// Writes the header and every metadata area of `dump` (already validated)
/// as the kernel leaves them: the header chunk zeroed but for the 16-byte
/// header; each area's slots in order and zeros after; and when the last
/// area is exactly full, the next one zeroed (the kernel zeroes it when
/// the previous one fills). Then flushes.
pub fn write_store(dev: &dyn BlockDevice, dump: &Dump) -> Result<(), Error> {
    let write = |sector: u64, buf: &[u8]| {
        dev.write(sector, buf, ReqFlags::empty())
            .map_err(|e| Error::usage_or_io(format!("write at sector {sector}: {e}")))
    };
    let Header::Snap { valid, version, chunk_size } = dump.header else {
        // A new COW: the kernel reads magic 0 and formats on activation.
        return write(0, &[0u8; SECTOR_SIZE])
            .and_then(|_| dev.flush().map_err(|e| Error::usage_or_io(format!("flush: {e}"))));
    };
    let cs = chunk_size as u64;
    let mut buf = vec![0u8; chunk_size as usize * SECTOR_SIZE];
    let header = DiskHeader {
        magic: Le32::new(SNAP_MAGIC),
        valid: Le32::new(valid),
        version: Le32::new(version),
        chunk_size: Le32::new(chunk_size),
    };
    header.pack(&mut buf).ok_or_else(|| Error::failed("chunk smaller than the header"))?;
    write(0, &buf)?;
    let epa = disk::exceptions_per_area(chunk_size).max(1);
    let areas = dump.exceptions.len() as u64 / epa as u64 + 1;
    for area in 0..areas {
        buf.fill(0);
        let first = (area * epa as u64) as usize;
        let slots = dump.exceptions.get(first..).unwrap_or(&[]);
        for (i, &(old_chunk, new_chunk)) in slots.iter().take(epa as usize).enumerate() {
            disk::write_exception(&mut buf, i as u32, old_chunk, new_chunk)
                .ok_or_else(|| Error::failed("slot outside the area"))?;
        }
        let location = disk::area_location(epa, area).ok_or_else(|| Error::failed("area location overflows"))?;
        write(location * cs, &buf)?;
    }
    dev.flush().map_err(|e| Error::usage_or_io(format!("flush: {e}")))
}

/// `cow restore`: parse, validate, refuse to overwrite valid metadata
/// unless `force`, write.
pub fn restore(text: &str, dev: &dyn BlockDevice, force: bool) -> Result<Dump, Error> {
    // No valid dump has more exceptions than the device has sectors.
    let dump = cow_format::parse(text, dev.size_sectors()).map_err(Error::failed)?;
    validate(&dump, dev)?;
    if !force && holds_valid_metadata(dev) {
        return Err(Error::usage_or_io("the output already holds valid COW metadata; use --force to overwrite it"));
    }
    write_store(dev, &dump)?;
    Ok(dump)
}
