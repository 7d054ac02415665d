// SPDX-License-Identifier: GPL-2.0-only
//! `drivers/md/persistent-data`: the on-disk structures dm-clone's metadata
//! is made of, one file per structure and per job (as thin-provisioning-tools'
//! pdata): [`error`], [`checksum`], [`block`] (block manager + validators),
//! [`btree`], [`space_map`] (the metadata space map), [`array`], [`bitset`],
//! [`tm`] (the transaction manager). [`btree`], [`space_map`] and [`array`]
//! each keep their format in `mod.rs`, reading in `read.rs` and writing in
//! `write.rs`.
//!
//! Every header and node is read and written through its
//! [`OnDisk`](crate::endian::OnDisk) structure. Everything read from disk is
//! validated (location, checksum, shape) before use; a corrupt block is an
//! error, never a panic.

pub mod array;
pub mod bitset;
pub mod block;
pub mod btree;
pub mod checksum;
pub mod error;
pub mod space_map;
pub mod tm;

#[cfg(test)]
mod tests;
