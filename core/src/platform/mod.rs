// SPDX-License-Identifier: GPL-2.0-only
//! The platform seam: what a platform provides to the core besides locks
//! ([`crate::sync`]), allocation ([`crate::mem`]) and the log
//! ([`crate::log`]). The kernel module implements it with bios/dm-io and
//! dm-kcopyd; the hosted shim with `pread`/`pwrite` on files.

pub mod block;
pub mod copy;
pub mod limits;
/// The test device: never in the kernel build.
#[cfg(not(kernel))]
pub mod ramdev;
pub mod table_dev;

pub use block::{split_io, BlockDevice, DmDevice, ReqFlags, SECTOR_SHIFT, SECTOR_SIZE};
pub use copy::{ChunkCopier, SyncCopier};
pub use limits::QueueLimits;
#[cfg(not(kernel))]
pub use ramdev::RamDev;
pub use table_dev::TableDev;
