// SPDX-License-Identifier: GPL-2.0-only
//! `struct superblock_disk` of dm-clone-metadata.c (block 0, 196 bytes,
//! packed: the space-map root sits at the unaligned offset 44; the rest of
//! the block is zero), `sb_check` ([`check`]) and `__prepare_superblock`
//! ([`Superblock::prepare`]).

use crate::endian::{on_disk, Le32, Le64, OnDisk};
use crate::errno::Errno;
use crate::pdata::block::{BlockError, Validator, BLOCK_SIZE};
use crate::pdata::checksum::{dm_bm_checksum, CLONE_SUPERBLOCK_CSUM_XOR};
use crate::pdata::space_map::{DiskSmRoot, SPACE_MAP_ROOT_SIZE};
use core::fmt;

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

/// `struct superblock_disk` ([`OnDisk`]).
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
on_disk!(SuperblockDisk, 196, {
    csum,
    flags,
    blocknr,
    uuid,
    magic,
    version,
    metadata_space_map_root,
    region_size,
    target_size,
    bitset_root,
});

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
    Io(Errno),
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
    pub fn errno(&self) -> Errno {
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
        return Err(SbProblem::Io(Errno::EIO));
    }
    let disk = SuperblockDisk::unpack(block).ok_or(SbProblem::Io(Errno::EIO))?;
    let blocknr = disk.blocknr.get();
    if blocknr != SUPERBLOCK_LOCATION {
        return Err(SbProblem::BlockNr(blocknr));
    }
    let magic = disk.magic.get();
    if magic != SUPERBLOCK_MAGIC {
        return Err(SbProblem::Magic(magic));
    }
    let csum = dm_bm_checksum(block.get(4..).unwrap_or(&[]), CLONE_SUPERBLOCK_CSUM_XOR);
    let stored = disk.csum.get();
    if csum != stored {
        return Err(SbProblem::Checksum(csum, stored));
    }
    let version = disk.version.get();
    if !(MIN_METADATA_VERSION..=MAX_METADATA_VERSION).contains(&version) {
        return Err(SbProblem::Version(version));
    }
    let sm_root = DiskSmRoot::unpack(&disk.metadata_space_map_root).ok_or(SbProblem::Io(Errno::EIO))?;
    Ok(Superblock {
        version,
        sm_root,
        region_size: disk.region_size.get(),
        target_size: disk.target_size.get(),
        bitset_root: disk.bitset_root.get(),
    })
}

impl Superblock {
    /// `__prepare_superblock`: the current version with these fields,
    /// packed into `block` (zeroed); [`SB_VALIDATOR`] stamps `csum` and
    /// `blocknr` when it is written.
    pub fn prepare(
        sm_root: &DiskSmRoot,
        region_size: u64,
        target_size: u64,
        bitset_root: u64,
        block: &mut [u8],
    ) -> Option<()> {
        let mut metadata_space_map_root = [0u8; SPACE_MAP_ROOT_SIZE];
        sm_root.pack(&mut metadata_space_map_root)?;
        SuperblockDisk {
            csum: Le32::default(),
            flags: Le32::default(),
            blocknr: Le64::new(SUPERBLOCK_LOCATION),
            uuid: [0; UUID_LEN],
            magic: Le64::new(SUPERBLOCK_MAGIC),
            version: Le32::new(MAX_METADATA_VERSION),
            metadata_space_map_root,
            region_size: Le64::new(region_size),
            target_size: Le64::new(target_size),
            bitset_root: Le64::new(bitset_root),
        }
        .pack(block)
    }
}

impl From<BlockError> for SbProblem {
    fn from(e: BlockError) -> Self {
        SbProblem::Io(e.errno())
    }
}
