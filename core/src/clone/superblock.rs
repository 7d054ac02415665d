// SPDX-License-Identifier: GPL-2.0-only
//! `struct superblock_disk` of dm-clone-metadata.c (block 0, 196 bytes,
//! packed: the space-map root sits at the unaligned offset 44; the rest of
//! the block is zero) and `sb_check`.

use crate::endian::{read_le32, read_le64, Le32, Le64};
use crate::pdata::block::{BlockError, Validator, BLOCK_SIZE};
use crate::pdata::checksum::{dm_bm_checksum, CLONE_SUPERBLOCK_CSUM_XOR};
use crate::pdata::space_map::{DiskSmRoot, SPACE_MAP_ROOT_SIZE};
use core::fmt;
use static_assertions::assert_eq_size;

/// `SUPERBLOCK_LOCATION`.
pub const SUPERBLOCK_LOCATION: u64 = 0;
/// `SUPERBLOCK_MAGIC`.
pub const SUPERBLOCK_MAGIC: u64 = 0x8af27f64;
/// `DM_CLONE_MIN_METADATA_VERSION`.
pub const MIN_METADATA_VERSION: u32 = 1;
/// `DM_CLONE_MAX_METADATA_VERSION`.
pub const MAX_METADATA_VERSION: u32 = 1;
/// `UUID_LEN`.
pub const UUID_LEN: usize = 16;
/// `sb_validator` (its checks are [`check`]).
pub const SB_VALIDATOR: Validator = Validator { name: "superblock", xor: CLONE_SUPERBLOCK_CSUM_XOR, blocknr_offset: 8 };

/// `struct superblock_disk`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct SuperblockDisk {
    /// Checksum of the rest of the block.
    pub csum: Le32,
    /// Unused (0).
    pub flags: Le32,
    /// 0.
    pub blocknr: Le64,
    /// Unused (zeros).
    pub uuid: [u8; UUID_LEN],
    /// `SUPERBLOCK_MAGIC`.
    pub magic: Le64,
    /// Metadata version.
    pub version: Le32,
    /// The metadata space map's root.
    pub metadata_space_map_root: [u8; SPACE_MAP_ROOT_SIZE],
    /// Region size in sectors.
    pub region_size: Le64,
    /// Target size in sectors.
    pub target_size: Le64,
    /// Root of the region bitset.
    pub bitset_root: Le64,
}
assert_eq_size!(SuperblockDisk, [u8; 196]);

/// Byte offsets of the fields.
pub mod off {
    /// `version`.
    pub const VERSION: usize = 40;
    /// `metadata_space_map_root`.
    pub const SM_ROOT: usize = 44;
    /// `region_size`.
    pub const REGION_SIZE: usize = 172;
    /// `target_size`.
    pub const TARGET_SIZE: usize = 180;
    /// `bitset_root`.
    pub const BITSET_ROOT: usize = 188;
    /// `magic`.
    pub const MAGIC: usize = 32;
}

/// What a valid superblock says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// Metadata version.
    pub version: u32,
    /// Space map root.
    pub sm_root: DiskSmRoot,
    /// Region size in sectors.
    pub region_size: u64,
    /// Target size in sectors.
    pub target_size: u64,
    /// Bitset root.
    pub bitset_root: u64,
}

/// Why `sb_check` rejected a superblock, printed with the kernel's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SbProblem {
    /// Unreadable.
    Io(crate::errno::Errno),
    /// `-ENOTBLK`.
    BlockNr(u64),
    /// `-EILSEQ`.
    Magic(u64),
    /// `-EILSEQ`: computed, stored.
    Checksum(u32, u32),
    /// `-EINVAL`.
    Version(u32),
}

impl fmt::Display for SbProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SbProblem::Io(e) => write!(f, "Failed to read_lock superblock ({e})"),
            SbProblem::BlockNr(b) => write!(f, "Superblock check failed: blocknr {b}, expected {SUPERBLOCK_LOCATION}"),
            SbProblem::Magic(m) => write!(f, "Superblock check failed: magic {m}, expected {SUPERBLOCK_MAGIC}"),
            SbProblem::Checksum(c, s) => write!(f, "Superblock check failed: checksum {c}, expected {s}"),
            SbProblem::Version(v) => write!(
                f,
                "Clone metadata version {v} found, but only versions between {MIN_METADATA_VERSION} and {MAX_METADATA_VERSION} supported."
            ),
        }
    }
}

impl SbProblem {
    /// The errno `sb_check` returns.
    pub fn errno(&self) -> crate::errno::Errno {
        use crate::errno::Errno;
        match self {
            SbProblem::Io(e) => *e,
            SbProblem::BlockNr(_) => Errno::ENOTBLK,
            SbProblem::Magic(_) | SbProblem::Checksum(..) => Errno::EILSEQ,
            SbProblem::Version(_) => Errno::EINVAL,
        }
    }
}

/// `__superblock_all_zeroes`: a fresh device to be formatted.
pub fn all_zeroes(block: &[u8]) -> bool {
    block.iter().all(|&b| b == 0)
}

/// `sb_check`, in the kernel's order: blocknr, magic, checksum, version.
pub fn check(block: &[u8]) -> Result<Superblock, SbProblem> {
    if block.len() != BLOCK_SIZE {
        return Err(SbProblem::Io(crate::errno::Errno::EIO));
    }
    let blocknr = read_le64(block, 8).unwrap_or(u64::MAX);
    if blocknr != SUPERBLOCK_LOCATION {
        return Err(SbProblem::BlockNr(blocknr));
    }
    let magic = read_le64(block, off::MAGIC).unwrap_or(0);
    if magic != SUPERBLOCK_MAGIC {
        return Err(SbProblem::Magic(magic));
    }
    let csum = dm_bm_checksum(block.get(4..).unwrap_or(&[]), CLONE_SUPERBLOCK_CSUM_XOR);
    let stored = read_le32(block, 0).unwrap_or(0);
    if csum != stored {
        return Err(SbProblem::Checksum(csum, stored));
    }
    let version = read_le32(block, off::VERSION).unwrap_or(0);
    if !(MIN_METADATA_VERSION..=MAX_METADATA_VERSION).contains(&version) {
        return Err(SbProblem::Version(version));
    }
    let sm_root = <DiskSmRoot as crate::endian::OnDisk>::unpack(block.get(off::SM_ROOT..).unwrap_or(&[]))
        .ok_or(SbProblem::Io(crate::errno::Errno::EIO))?;
    Ok(Superblock {
        version,
        sm_root,
        region_size: read_le64(block, off::REGION_SIZE).unwrap_or(0),
        target_size: read_le64(block, off::TARGET_SIZE).unwrap_or(0),
        bitset_root: read_le64(block, off::BITSET_ROOT).unwrap_or(0),
    })
}

impl From<BlockError> for SbProblem {
    fn from(e: BlockError) -> Self {
        SbProblem::Io(e.errno())
    }
}
