// SPDX-License-Identifier: GPL-2.0-only
//! Chunk copies between devices: dm-kcopyd's job.

use super::block::{BlockDevice, ReqFlags, SECTOR_SHIFT};
use crate::errno::{Errno, Result};
use crate::mem;

/// Copies a range of sectors from one device to another. The kernel
/// implements it with dm-kcopyd; the copy is complete (not necessarily
/// durable) when it returns.
pub trait ChunkCopier: Send + Sync {
    /// Copies `nr_sectors` from `from` at `from_sector` to `to` at `to_sector`.
    fn copy(
        &self,
        from: &dyn BlockDevice,
        from_sector: u64,
        to: &dyn BlockDevice,
        to_sector: u64,
        nr_sectors: u64,
    ) -> Result<()>;
}

/// A copier that reads into a bounce buffer and writes it out, in pieces of
/// at most `max_io` sectors (kcopyd splits jobs into sub-jobs the same way).
#[derive(Clone, Copy, Debug)]
pub struct SyncCopier {
    /// Largest piece in sectors.
    pub max_io: u64,
}

impl Default for SyncCopier {
    fn default() -> Self {
        // kcopyd's SUB_JOB_SIZE is 128 sectors; larger pieces are cheaper here.
        SyncCopier { max_io: 2048 }
    }
}

impl ChunkCopier for SyncCopier {
    fn copy(
        &self,
        from: &dyn BlockDevice,
        from_sector: u64,
        to: &dyn BlockDevice,
        to_sector: u64,
        nr_sectors: u64,
    ) -> Result<()> {
        let piece = self.max_io.clamp(1, nr_sectors.max(1));
        let len = usize::try_from(piece << SECTOR_SHIFT).map_err(|_| Errno::EINVAL)?;
        let mut buf = mem::try_zeroed(len)?;
        let mut done = 0u64;
        while done < nr_sectors {
            let n = piece.min(nr_sectors - done);
            let bytes = usize::try_from(n << SECTOR_SHIFT).map_err(|_| Errno::EINVAL)?;
            let b = buf.get_mut(..bytes).ok_or(Errno::EINVAL)?;
            from.read(from_sector + done, b)?;
            to.write(to_sector + done, b, ReqFlags::empty())?;
            done += n;
        }
        Ok(())
    }
}
