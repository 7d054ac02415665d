// SPDX-License-Identifier: GPL-2.0-only
//! The block manager (`dm-block-manager.c`): 4 KiB metadata blocks read and
//! written through validators. Every block type starts with `__le32 csum`
//! over the rest of the block, and records its own location.

use super::checksum::dm_bm_checksum;
use crate::endian::{Le32, Le64, OnDisk};
use crate::errno::{Errno, Result};
use crate::mem::{self, TryVec};
use crate::platform::{BlockDevice, ReqFlags, SECTOR_SHIFT};

/// Metadata block size (`DM_SM_METADATA_BLOCK_SIZE` sectors × 512).
pub const BLOCK_SIZE: usize = 4096;
/// Sectors per metadata block.
pub const BLOCK_SECTORS: u64 = (BLOCK_SIZE >> SECTOR_SHIFT) as u64;

/// A block number.
pub type Block = u64;

/// `struct dm_block_validator`: where a block type keeps its location and
/// which xor salts its checksum. Every block type's header starts with
/// `__le32 csum` and has `__le64 blocknr` at `blocknr_offset` (the
/// structures' [`OnDisk`] layouts; a test pins the offsets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validator {
    /// For messages (`btree_node`, `array`, ...).
    pub name: &'static str,
    /// Checksum salt.
    pub xor: u32,
    /// Byte offset of the `__le64 blocknr` field.
    pub blocknr_offset: usize,
}

/// Why a block was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// Unreadable (errno from the device).
    Io(Errno),
    /// `blocknr` field says another location (`-ENOTBLK`).
    BlockNr {
        /// What the block says.
        found: u64,
    },
    /// Checksum mismatch (`-EILSEQ`).
    Checksum {
        /// Stored.
        found: u32,
        /// Computed.
        wanted: u32,
    },
    /// Shape checks failed (`-EILSEQ`).
    Shape(&'static str),
    /// Beyond the device.
    OutOfRange,
}

impl BlockError {
    /// The errno the kernel would return.
    pub fn errno(self) -> Errno {
        match self {
            BlockError::Io(e) => e,
            BlockError::BlockNr { .. } => Errno::ENOTBLK,
            BlockError::Checksum { .. } | BlockError::Shape(_) => Errno::EILSEQ,
            BlockError::OutOfRange => Errno::EIO,
        }
    }
}

impl Validator {
    /// `check`: location and checksum.
    pub fn check(&self, b: Block, data: &[u8]) -> core::result::Result<(), BlockError> {
        let found = Le64::unpack_at(data, self.blocknr_offset).ok_or(BlockError::Shape("short block"))?.get();
        if found != b {
            return Err(BlockError::BlockNr { found });
        }
        let stored = Le32::unpack(data).ok_or(BlockError::Shape("short block"))?.get();
        let wanted = dm_bm_checksum(data.get(4..).unwrap_or(&[]), self.xor);
        if stored != wanted {
            return Err(BlockError::Checksum { found: stored, wanted });
        }
        Ok(())
    }

    /// `prepare_for_write`: stamps location and checksum.
    pub fn prepare_for_write(&self, b: Block, data: &mut [u8]) -> Result<()> {
        Le64::new(b).pack_at(data, self.blocknr_offset).ok_or(Errno::EINVAL)?;
        let csum = dm_bm_checksum(data.get(4..).unwrap_or(&[]), self.xor);
        Le32::new(csum).pack(data).ok_or(Errno::EINVAL)
    }
}

/// Reads and writes metadata blocks of a device.
pub struct BlockManager<D: BlockDevice> {
    dev: D,
}

impl<D: BlockDevice> BlockManager<D> {
    /// Over `dev`.
    pub fn new(dev: D) -> Self {
        BlockManager { dev }
    }

    /// The device.
    pub fn dev(&self) -> &D {
        &self.dev
    }

    /// Whole blocks on the device (`dm_bm_nr_blocks`).
    pub fn nr_blocks(&self) -> u64 {
        self.dev.size_sectors() / BLOCK_SECTORS
    }

    /// Reads block `b` without validation.
    pub fn read_raw(&self, b: Block, buf: &mut [u8]) -> core::result::Result<(), BlockError> {
        if b >= self.nr_blocks() || buf.len() != BLOCK_SIZE {
            return Err(BlockError::OutOfRange);
        }
        self.dev.read(b * BLOCK_SECTORS, buf).map_err(BlockError::Io)
    }

    /// Reads block `b` and validates it.
    pub fn read(&self, b: Block, v: &Validator) -> core::result::Result<TryVec<u8>, BlockError> {
        let mut buf = mem::try_zeroed(BLOCK_SIZE).map_err(BlockError::Io)?;
        self.read_raw(b, &mut buf)?;
        v.check(b, &buf)?;
        Ok(buf)
    }

    /// Stamps and writes block `b`.
    pub fn write(&self, b: Block, data: &mut [u8], v: &Validator, flags: ReqFlags) -> Result<()> {
        if b >= self.nr_blocks() || data.len() != BLOCK_SIZE {
            return Err(Errno::EIO);
        }
        v.prepare_for_write(b, data)?;
        self.dev.write(b * BLOCK_SECTORS, data, flags)
    }

    /// Flushes the device.
    pub fn flush(&self) -> Result<()> {
        self.dev.flush()
    }
}
