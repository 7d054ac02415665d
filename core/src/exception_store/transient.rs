// SPDX-License-Identifier: GPL-2.0-only
//! `dm-snap-transient.c`: the transient store (`N`). No metadata: chunks
//! are handed out from the start of the COW and forgotten on shutdown.

use super::{Store, Usage};
use crate::errno::{Errno, Result};
use crate::exception::DmException;
use crate::platform::BlockDevice;

/// `struct transient_c`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TransientC {
    /// Next free sector (in sectors, unlike the persistent store).
    pub next_free: u64,
}

impl TransientC {
    /// `transient_prepare_exception`.
    pub fn prepare_exception<D: BlockDevice>(&mut self, store: &Store<D>, e: &mut DmException) -> Result<()> {
        let size = store.cow.size_sectors();
        let end = self.next_free.checked_add(store.chunk.size as u64).ok_or(Errno::ENOSPC)?;
        if size < end {
            return Err(Errno::ENOSPC);
        }
        e.new_chunk = self.next_free >> store.chunk.shift;
        self.next_free = end;
        Ok(())
    }

    /// `transient_usage`.
    pub fn usage<D: BlockDevice>(&self, store: &Store<D>) -> Usage {
        Usage { sectors_allocated: self.next_free, total_sectors: store.cow.size_sectors(), metadata_sectors: 0 }
    }
}
