// SPDX-License-Identifier: GPL-2.0-only
//! dm-clone: its metadata (`dm-clone-metadata.c`) on persistent-data.
//! [`superblock`] is the on-disk superblock.

pub mod ctr;
pub mod dm_clone;
pub mod hydration;
pub mod metadata;
pub mod superblock;
pub mod target;

#[cfg(test)]
mod tests;
