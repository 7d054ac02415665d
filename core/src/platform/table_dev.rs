// SPDX-License-Identifier: GPL-2.0-only
//! A device a table holds (`struct dm_dev`): a shared handle on the device
//! below, its identity (`bdev_equal`) and the name the table gave it (what
//! `dmsetup table` prints). Platforms and tests wrap their devices in it
//! instead of each writing the same forwarding code.

use super::{BlockDevice, DmDevice, QueueLimits, ReqFlags};
use crate::errno::Result;
use core::ops::Deref;

/// A shared handle `P` (an `Arc`, a reference) on a block device, with an
/// identity and a table name `N`.
#[derive(Clone, Debug)]
pub struct TableDev<P, N = &'static str> {
    /// The device below.
    pub dev: P,
    /// Its identity: equal for two handles on the same device.
    pub id: u64,
    /// The name as the table wrote it.
    pub name: N,
}

impl<P, N> TableDev<P, N> {
    /// A handle on `dev`, identity `id`, table name `name`.
    pub fn new(dev: P, id: u64, name: N) -> Self {
        TableDev { dev, id, name }
    }
}

impl<P, N> BlockDevice for TableDev<P, N>
where
    P: Deref + Send + Sync,
    P::Target: BlockDevice,
    N: AsRef<str> + Send + Sync,
{
    fn read(&self, s: u64, b: &mut [u8]) -> Result<()> {
        self.dev.read(s, b)
    }
    fn write(&self, s: u64, b: &[u8], f: ReqFlags) -> Result<()> {
        self.dev.write(s, b, f)
    }
    fn flush(&self) -> Result<()> {
        self.dev.flush()
    }
    fn size_sectors(&self) -> u64 {
        self.dev.size_sectors()
    }
    fn logical_block_size(&self) -> u32 {
        self.dev.logical_block_size()
    }
    fn prefetch(&self, s: u64, n: u64) {
        self.dev.prefetch(s, n)
    }
    fn discard(&self, s: u64, n: u64) -> Result<()> {
        self.dev.discard(s, n)
    }
    fn queue_limits(&self) -> QueueLimits {
        self.dev.queue_limits()
    }
}

impl<P, N> DmDevice for TableDev<P, N>
where
    P: Deref + Clone + Send + Sync,
    P::Target: BlockDevice,
    N: AsRef<str> + Clone + Send + Sync,
{
    fn bdev_id(&self) -> u64 {
        self.id
    }
    fn name(&self) -> &str {
        self.name.as_ref()
    }
}
