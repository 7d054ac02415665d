// SPDX-License-Identifier: GPL-2.0-only
//! Block device I/O in sectors, with the request flags the stores use.

use crate::errno::Result;
use crate::platform::QueueLimits;

/// `SECTOR_SHIFT`.
pub const SECTOR_SHIFT: u32 = 9;
/// Bytes in a sector.
pub const SECTOR_SIZE: usize = 1 << SECTOR_SHIFT;

bitflags::bitflags! {
    /// Write request flags (`blk_opf_t` bits the core uses).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct ReqFlags: u32 {
        /// `REQ_PREFLUSH`: flush the device cache before this write.
        const PREFLUSH = 1 << 0;
        /// `REQ_FUA`: this write is durable when it completes.
        const FUA = 1 << 1;
        /// `REQ_SYNC`: a synchronous write (a hint).
        const SYNC = 1 << 2;
    }
}

/// A block device. Buffers are whole sectors; offsets are sectors.
///
/// Implementations must be safe to call from several threads at once, as
/// the kernel's `map` runs on many CPUs.
pub trait BlockDevice: Send + Sync {
    /// Reads `buf.len()` bytes (a multiple of [`SECTOR_SIZE`]) at `sector`.
    fn read(&self, sector: u64, buf: &mut [u8]) -> Result<()>;

    /// Writes `buf` at `sector`. With `PREFLUSH` everything written before
    /// is made durable first; with `FUA` this write is durable on return.
    fn write(&self, sector: u64, buf: &[u8], flags: ReqFlags) -> Result<()>;

    /// Makes every completed write durable (an empty `REQ_PREFLUSH` bio).
    fn flush(&self) -> Result<()>;

    /// Device size in sectors (`bdev_nr_sectors`).
    fn size_sectors(&self) -> u64;

    /// Logical block size in bytes (`bdev_logical_block_size`).
    fn logical_block_size(&self) -> u32;

    /// A read-ahead hint (`dm_bufio_prefetch`); ignoring it is correct.
    fn prefetch(&self, _sector: u64, _nr_sectors: u64) {}

    /// Discards `nr_sectors` at `sector` (`REQ_OP_DISCARD`); reads of a
    /// discarded range may return anything. Default: not supported.
    fn discard(&self, _sector: u64, _nr_sectors: u64) -> Result<()> {
        Err(crate::errno::Errno::EOPNOTSUPP)
    }

    /// The device as `Any`, for a platform's own copier: dm-kcopyd takes
    /// the kernel's `block_device`s, which only the platform's type knows.
    fn as_any(&self) -> Option<&dyn core::any::Any> {
        None
    }

    /// The device's queue limits (`bdev_get_queue(bdev)->limits`).
    /// Default: no discard support, no I/O size preference.
    fn queue_limits(&self) -> QueueLimits {
        QueueLimits { io_min: self.logical_block_size(), ..QueueLimits::default() }
    }
}

/// A device a target holds (`struct dm_dev`): a cheap handle to a block
/// device with an identity and the name the table shows.
pub trait DmDevice: BlockDevice + Clone {
    /// Identity of the underlying device: two handles on the same device
    /// (`bdev_equal`) return the same value.
    fn bdev_id(&self) -> u64;
    /// The name `STATUSTYPE_TABLE` prints (`dm_dev->name`: major:minor in
    /// the kernel, the path as given in the hosted shim).
    fn name(&self) -> &str;
    /// The name kernel messages print for the device (`%pg`: "vdb",
    /// "sda1"); the table name where there is no other.
    fn disk_name(&self) -> &str {
        self.name()
    }
}

impl<T: BlockDevice + ?Sized> BlockDevice for &T {
    fn read(&self, sector: u64, buf: &mut [u8]) -> Result<()> {
        (**self).read(sector, buf)
    }
    fn write(&self, sector: u64, buf: &[u8], flags: ReqFlags) -> Result<()> {
        (**self).write(sector, buf, flags)
    }
    fn flush(&self) -> Result<()> {
        (**self).flush()
    }
    fn size_sectors(&self) -> u64 {
        (**self).size_sectors()
    }
    fn logical_block_size(&self) -> u32 {
        (**self).logical_block_size()
    }
    fn prefetch(&self, sector: u64, nr_sectors: u64) {
        (**self).prefetch(sector, nr_sectors)
    }
    fn discard(&self, sector: u64, nr_sectors: u64) -> Result<()> {
        (**self).discard(sector, nr_sectors)
    }
    fn queue_limits(&self) -> QueueLimits {
        (**self).queue_limits()
    }
    fn as_any(&self) -> Option<&dyn core::any::Any> {
        (**self).as_any()
    }
}

/// Splits `len` bytes at `sector` into pieces that do not cross a multiple
/// of `boundary` sectors (a power of two): what device-mapper does with a
/// target's `max_io_len`. Yields `(first sector, byte range in the buffer)`.
pub fn split_io(sector: u64, len: usize, boundary: u64) -> impl Iterator<Item = (u64, core::ops::Range<usize>)> {
    let boundary = boundary.max(1);
    let mut off = 0usize;
    core::iter::from_fn(move || {
        if off >= len {
            return None;
        }
        let s = sector + (off >> SECTOR_SHIFT) as u64;
        let room = ((boundary - (s & (boundary - 1))) << SECTOR_SHIFT) as usize;
        let n = room.min(len - off);
        let r = off..off + n;
        off += n;
        Some((s, r))
    })
}
