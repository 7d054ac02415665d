// SPDX-License-Identifier: GPL-2.0-only
//! Region hydrations in flight (`struct dm_clone_region_hydration`, the
//! hydration hash table and `hydrations_in_flight` of dm-clone-target.c).
//!
//! Every copy of regions from the source to the destination — a
//! background batch, or the hydration a write to an unhydrated region needs
//! — holds one slot while it runs. A region in a slot is never copied a
//! second time: a write that needs it waits on the slot (its bio queued
//! there, or its thread polling when it has no bio) and a background batch
//! skips it. Slots are a fixed table, so queuing never allocates.

use crate::dm::BioQueue;

/// Hydrations in flight at once (the kernel's mempool has no hard limit;
/// a copy that finds no slot waits for one).
#[cfg(not(loom))]
pub const MAX_HYDRATIONS: usize = 64;
/// Under loom: small, every state is explored.
#[cfg(loom)]
pub const MAX_HYDRATIONS: usize = 2;

/// One hydration: regions `first..first + nr` being copied, and the bios
/// waiting for them (`deferred_bios`, already pointed at the destination).
pub struct Hydration<L> {
    /// First region.
    pub first: u64,
    /// Regions in the batch.
    pub nr: u64,
    /// Bios to issue once the regions are hydrated.
    pub bios: L,
}

/// The table of hydrations in flight.
pub struct Hydrations<L> {
    slots: [Option<Hydration<L>>; MAX_HYDRATIONS],
}

impl<L: BioQueue> Hydrations<L> {
    /// Nothing in flight.
    pub fn new() -> Self {
        Hydrations { slots: core::array::from_fn(|_| None) }
    }

    /// The slot copying `region`, if any.
    pub fn find(&self, region: u64) -> Option<u32> {
        self.slots
            .iter()
            .position(|s| matches!(s, Some(h) if region >= h.first && region - h.first < h.nr))
            .map(|i| i as u32)
    }

    /// Regions being copied (`hydrations_in_flight`).
    pub fn regions_in_flight(&self) -> u64 {
        self.slots.iter().flatten().map(|h| h.nr).sum()
    }

    /// True while any copy runs.
    pub fn busy(&self) -> bool {
        self.slots.iter().any(Option::is_some)
    }

    /// Takes a free slot for `first..first + nr`; `None` when all are used.
    pub fn claim(&mut self, first: u64, nr: u64) -> Option<u32> {
        let i = self.slots.iter().position(Option::is_none)?;
        *self.slots.get_mut(i)? = Some(Hydration { first, nr, bios: L::default() });
        Some(i as u32)
    }

    /// Queues `bio` on the hydration in `slot`.
    pub fn queue(&mut self, slot: u32, bio: L::Bio) -> Result<(), L::Bio> {
        match self.slots.get_mut(slot as usize).and_then(Option::as_mut) {
            Some(h) => {
                h.bios.push(bio);
                Ok(())
            }
            None => Err(bio),
        }
    }

    /// The regions of the hydration in `slot`.
    pub fn range(&self, slot: u32) -> Option<(u64, u64)> {
        self.slots.get(slot as usize)?.as_ref().map(|h| (h.first, h.nr))
    }

    /// Ends the hydration in `slot`, giving back its regions and bios.
    pub fn release(&mut self, slot: u32) -> Option<Hydration<L>> {
        self.slots.get_mut(slot as usize)?.take()
    }
}

impl<L: BioQueue> Default for Hydrations<L> {
    fn default() -> Self {
        Self::new()
    }
}
