// SPDX-License-Identifier: GPL-2.0-only
//! `dm-snap-persistent.c`: the persistent exception store (`P`, `PO`).
//!
//! Layout and constants are in [`super::disk`]. Write ordering follows the
//! kernel: the area holding new exceptions is written with
//! `PREFLUSH | FUA`, so the copied data (written before the commit) is
//! durable before the metadata that points at it, and a commit is durable
//! when its callbacks run. Commits are batched: while other prepared
//! exceptions are in flight, a commit only records its slot and its
//! callback; the last one in (or the one that fills the area) writes the
//! area once and runs every callback of the batch with the store's `valid`.

use super::disk::{
    self, DiskHeader, DM_CHUNK_SIZE_DEFAULT_SECTORS, DM_PREFETCH_CHUNKS, NUM_SNAPSHOT_HDR_CHUNKS,
    SNAPSHOT_DISK_VERSION, SNAP_MAGIC,
};
use super::{dm_exception_store_set_chunk_size, ChunkSize, MergeRun, Metadata, Store, Usage};
use crate::endian::{Le32, OnDisk};
use crate::errno::{Errno, Result};
use crate::exception::{Chunk, DmException};
use crate::mem::{self, TryVec};
use crate::platform::{BlockDevice, ReqFlags, SECTOR_SHIFT};

/// `DM_MSG_PREFIX` of dm-snap-persistent.c.
pub const DM_MSG_PREFIX: &str = "persistent snapshot";

/// `struct pstore`: the persistent store's context.
pub struct PStore<C> {
    version: u32,
    valid: u32,
    exceptions_per_area: u32,
    /// The current metadata area, in memory.
    area: TryVec<u8>,
    /// Zeros, to clear the next area on disk.
    zero_area: TryVec<u8>,
    /// The header has its own buffer: it can be rewritten (invalidation)
    /// while a commit is using `area`.
    header_area: TryVec<u8>,
    current_area: u64,
    next_free: Chunk,
    current_committed: u32,
    pending_count: u32,
    callbacks: TryVec<C>,
}

enum Op {
    Read,
    Write(ReqFlags),
}

/// `chunk_io`: one chunk-sized transfer between `buf` and COW chunk `chunk`.
fn chunk_io<D: BlockDevice>(store: &Store<D>, buf: &mut [u8], chunk: Chunk, op: Op) -> Result<()> {
    let sector = chunk.checked_mul(store.chunk.size as u64).ok_or(Errno::EIO)?;
    let len = (store.chunk.size as usize) << SECTOR_SHIFT;
    let buf = buf.get_mut(..len).ok_or(Errno::EINVAL)?;
    match op {
        Op::Read => store.cow.read(sector, buf),
        Op::Write(flags) => store.cow.write(sector, buf, flags),
    }
}

/// Chunks on the COW device.
fn dev_chunks<D: BlockDevice>(store: &Store<D>) -> u64 {
    store.cow.size_sectors() >> store.chunk.shift
}

impl<C> Default for PStore<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> PStore<C> {
    /// `persistent_ctr` (options are parsed by the caller).
    pub fn new() -> Self {
        PStore {
            version: SNAPSHOT_DISK_VERSION,
            valid: 1,
            exceptions_per_area: 0,
            area: TryVec::new(),
            zero_area: TryVec::new(),
            header_area: TryVec::new(),
            current_area: 0,
            // header and first area
            next_free: NUM_SNAPSHOT_HDR_CHUNKS + 1,
            current_committed: 0,
            pending_count: 0,
            callbacks: TryVec::new(),
        }
    }

    /// Nonzero unless the snapshot was invalidated.
    pub fn valid(&self) -> bool {
        self.valid != 0
    }
    /// Exceptions per metadata area.
    pub fn exceptions_per_area(&self) -> u32 {
        self.exceptions_per_area
    }
    /// The metadata area being filled.
    pub fn current_area(&self) -> u64 {
        self.current_area
    }
    /// Next chunk to allocate.
    pub fn next_free(&self) -> Chunk {
        self.next_free
    }
    /// Used slots of the current area.
    pub fn current_committed(&self) -> u32 {
        self.current_committed
    }
    /// Prepared exceptions not yet committed.
    pub fn pending_count(&self) -> u32 {
        self.pending_count
    }

    fn area_location(&self, area: u64) -> Result<Chunk> {
        disk::area_location(self.exceptions_per_area, area).ok_or(Errno::EIO)
    }

    fn alloc_area(&mut self, chunk_size: u32) -> Result<()> {
        let len = (chunk_size as usize) << SECTOR_SHIFT;
        self.area = mem::try_zeroed(len)?;
        self.zero_area = mem::try_zeroed(len)?;
        self.header_area = mem::try_zeroed(len)?;
        Ok(())
    }

    fn free_area(&mut self) {
        self.area = TryVec::new();
        self.zero_area = TryVec::new();
        self.header_area = TryVec::new();
    }

    /// `skip_metadata`: never hand out a metadata chunk.
    fn skip_metadata(&mut self) {
        let stride = self.exceptions_per_area as u64 + 1;
        if self.next_free % stride == NUM_SNAPSHOT_HDR_CHUNKS {
            self.next_free += 1;
        }
    }

    fn area_io<D: BlockDevice>(&mut self, store: &Store<D>, op: Op) -> Result<()> {
        let chunk = self.area_location(self.current_area)?;
        chunk_io(store, &mut self.area, chunk, op)
    }

    fn zero_memory_area(&mut self) {
        self.area.fill(0);
    }

    fn zero_disk_area<D: BlockDevice>(&mut self, store: &Store<D>, area: u64) -> Result<()> {
        let chunk = self.area_location(area)?;
        chunk_io(store, &mut self.zero_area, chunk, Op::Write(ReqFlags::empty()))
    }

    /// `read_header`: returns true for a new (all-zero magic) snapshot.
    fn read_header<D: BlockDevice>(&mut self, store: &mut Store<D>) -> Result<bool> {
        let mut chunk_size_supplied = true;
        if store.chunk.size == 0 {
            let size = DM_CHUNK_SIZE_DEFAULT_SECTORS.max(store.cow.logical_block_size() >> SECTOR_SHIFT);
            store.chunk = ChunkSize { size, mask: size - 1, shift: size.trailing_zeros() };
            chunk_size_supplied = false;
        }
        // A chunk larger than the COW cannot be read (the kernel's read of
        // it fails the same way): refused before its buffers are allocated.
        if store.chunk.size as u64 > store.cow.size_sectors() {
            return Err(Errno::EIO);
        }
        self.alloc_area(store.chunk.size)?;
        if let Err(e) = chunk_io(store, &mut self.header_area, 0, Op::Read) {
            self.free_area();
            return Err(e);
        }
        let dh = DiskHeader::unpack(&self.header_area).ok_or(Errno::EIO)?;
        if dh.magic.get() == 0 {
            return Ok(true);
        }
        if dh.magic.get() != SNAP_MAGIC {
            crate::dm_warn!(DM_MSG_PREFIX, "Invalid or corrupt snapshot");
            self.free_area();
            return Err(Errno::ENXIO);
        }
        self.valid = dh.valid.get();
        self.version = dh.version.get();
        let chunk_size = dh.chunk_size.get();
        if store.chunk.size == chunk_size {
            return Ok(false);
        }
        if chunk_size_supplied {
            crate::dm_warn!(
                DM_MSG_PREFIX,
                "chunk size {} in device metadata overrides table chunk size of {}.",
                chunk_size,
                store.chunk.size
            );
        }
        // We had a bogus chunk_size. Fix stuff up.
        self.free_area();
        match dm_exception_store_set_chunk_size(chunk_size, store.cow.logical_block_size(), store.origin_lbs) {
            Ok(c) => store.chunk = c,
            Err(msg) => {
                crate::dm_err!(
                    DM_MSG_PREFIX,
                    "invalid on-disk chunk size {}: {}.",
                    chunk_size,
                    msg.to_str().unwrap_or("?")
                );
                return Err(Errno::EINVAL);
            }
        }
        // As above: its first metadata area would lie beyond the device.
        if (store.chunk.size as u64).saturating_mul(2) > store.cow.size_sectors() {
            return Err(Errno::EIO);
        }
        self.alloc_area(store.chunk.size)?;
        Ok(false)
    }

    /// `write_header`: header in chunk 0, rest of the chunk zero.
    fn write_header<D: BlockDevice>(&mut self, store: &Store<D>) -> Result<()> {
        self.header_area.fill(0);
        let dh = DiskHeader {
            magic: Le32::new(SNAP_MAGIC),
            valid: Le32::new(self.valid),
            version: Le32::new(self.version),
            chunk_size: Le32::new(store.chunk.size),
        };
        dh.pack(&mut self.header_area).ok_or(Errno::EINVAL)?;
        chunk_io(store, &mut self.header_area, 0, Op::Write(ReqFlags::empty()))
    }

    /// `insert_exceptions`: reports the area's exceptions; true when full.
    fn insert_exceptions<D: BlockDevice>(
        &mut self,
        store: &Store<D>,
        callback: &mut dyn FnMut(Chunk, Chunk) -> Result<()>,
    ) -> Result<bool> {
        let dev_chunks = dev_chunks(store);
        for i in 0..self.exceptions_per_area {
            let (old, new) = disk::read_exception(&self.area, i).ok_or(Errno::EIO)?;
            // A new_chunk of 0 would point at the header: end of the list.
            if new == 0 {
                self.current_committed = i;
                return Ok(false);
            }
            // Validate before use: a chunk outside the device or on metadata
            // would read garbage or overwrite metadata later.
            if new >= dev_chunks || disk::is_metadata_chunk(self.exceptions_per_area, new) {
                crate::dm_err!(
                    DM_MSG_PREFIX,
                    "Invalid or corrupt snapshot: area {} slot {} maps chunk {} to COW chunk {}, {}",
                    self.current_area,
                    i,
                    old,
                    new,
                    if new >= dev_chunks { "beyond the device" } else { "a metadata chunk" }
                );
                return Err(Errno::EINVAL);
            }
            if self.next_free <= new {
                self.next_free = new + 1;
            }
            callback(old, new)?;
        }
        Ok(true)
    }

    /// `read_exceptions`: walks the areas until one is not full, reading
    /// [`DM_PREFETCH_CHUNKS`] areas ahead.
    fn read_exceptions<D: BlockDevice>(
        &mut self,
        store: &Store<D>,
        callback: &mut dyn FnMut(Chunk, Chunk) -> Result<()>,
    ) -> Result<()> {
        let dev_chunks = dev_chunks(store);
        let mut prefetch_area = 0u64;
        self.current_area = 0;
        loop {
            prefetch_area = prefetch_area.max(self.current_area);
            while prefetch_area <= self.current_area + DM_PREFETCH_CHUNKS {
                let pf = self.area_location(prefetch_area)?;
                if pf >= dev_chunks {
                    break;
                }
                store.cow.prefetch(pf << store.chunk.shift, store.chunk.size as u64);
                prefetch_area += 1;
            }
            let chunk = self.area_location(self.current_area)?;
            if chunk >= dev_chunks {
                crate::dm_err!(
                    DM_MSG_PREFIX,
                    "Invalid or corrupt snapshot: metadata area {} at chunk {} is beyond the device",
                    self.current_area,
                    chunk
                );
                return Err(Errno::EIO);
            }
            chunk_io(store, &mut self.area, chunk, Op::Read)?;
            let full = self.insert_exceptions(store, callback)?;
            if !full {
                break;
            }
            self.current_area += 1;
        }
        self.skip_metadata();
        Ok(())
    }

    /// `persistent_read_metadata`.
    pub fn read_metadata<D: BlockDevice>(
        &mut self,
        store: &mut Store<D>,
        callback: &mut dyn FnMut(Chunk, Chunk) -> Result<()>,
    ) -> Result<Metadata> {
        let new_snapshot = self.read_header(store)?;
        // Now we know the correct chunk size, complete the initialisation.
        self.exceptions_per_area = disk::exceptions_per_area(store.chunk.size);
        self.callbacks = TryVec::try_with_capacity(self.exceptions_per_area as usize)?;
        if new_snapshot {
            if let Err(e) = self.write_header(store) {
                crate::dm_warn!(DM_MSG_PREFIX, "write_header failed");
                return Err(e);
            }
            self.current_area = 0;
            self.zero_memory_area();
            if let Err(e) = self.zero_disk_area(store, 0) {
                crate::dm_warn!(DM_MSG_PREFIX, "zero_disk_area(0) failed");
                return Err(e);
            }
            return Ok(Metadata::Loaded);
        }
        if self.version != SNAPSHOT_DISK_VERSION {
            crate::dm_warn!(DM_MSG_PREFIX, "unable to handle snapshot disk version {}", self.version);
            return Err(Errno::EINVAL);
        }
        if self.valid == 0 {
            return Ok(Metadata::Invalidated);
        }
        self.read_exceptions(store, callback)?;
        Ok(Metadata::Loaded)
    }

    /// `persistent_prepare_exception`: `-ENOSPC` when the COW is full.
    pub fn prepare_exception<D: BlockDevice>(&mut self, store: &Store<D>, e: &mut DmException) -> Result<()> {
        let size = store.cow.size_sectors();
        let need = (self.next_free + 1).checked_mul(store.chunk.size as u64).ok_or(Errno::ENOSPC)?;
        if size < need {
            return Err(Errno::ENOSPC);
        }
        e.new_chunk = self.next_free;
        // Move on to the next free chunk, stepping over metadata chunks.
        self.next_free += 1;
        self.skip_metadata();
        self.pending_count += 1;
        Ok(())
    }

    /// `persistent_commit_exception`.
    pub fn commit_exception<D: BlockDevice>(
        &mut self,
        store: &Store<D>,
        e: &DmException,
        valid: bool,
        context: C,
        done: &mut dyn FnMut(C, bool),
    ) {
        if !valid {
            self.valid = 0;
        }
        let slot = self.current_committed;
        if disk::write_exception(&mut self.area, slot, e.old_chunk, e.new_chunk).is_none() {
            // Only reachable if commits outnumber prepares; fail, don't corrupt.
            self.valid = 0;
            done(context, false);
            return;
        }
        self.current_committed += 1;
        // Room for one callback per slot was reserved in read_metadata.
        if let Err(context) = self.callbacks.push_within_capacity(context) {
            self.valid = 0;
            done(context, false);
        }
        self.pending_count = self.pending_count.saturating_sub(1);

        // Exceptions still in flight and room left: the batch goes on.
        if self.pending_count != 0 && self.current_committed != self.exceptions_per_area {
            return;
        }

        let full = self.current_committed == self.exceptions_per_area;
        // If we completely filled the current area, wipe the next one first.
        if full && self.zero_disk_area(store, self.current_area + 1).is_err() {
            self.valid = 0;
        }
        // Commit exceptions to disk, after the data they point at.
        if self.valid != 0
            && self.area_io(store, Op::Write(ReqFlags::PREFLUSH | ReqFlags::FUA | ReqFlags::SYNC)).is_err()
        {
            self.valid = 0;
        }
        if full {
            self.current_committed = 0;
            self.current_area += 1;
            self.zero_memory_area();
        }
        let valid = self.valid != 0;
        self.callbacks.drain_each(|c| done(c, valid));
    }

    /// `persistent_prepare_merge`.
    pub fn prepare_merge<D: BlockDevice>(&mut self, store: &Store<D>) -> Result<Option<MergeRun>> {
        // When the current area is empty, move back to the preceding one.
        if self.current_committed == 0 {
            if self.current_area == 0 {
                return Ok(None);
            }
            self.current_area -= 1;
            self.area_io(store, Op::Read)?;
            self.current_committed = self.exceptions_per_area;
        }
        let last = self.current_committed - 1;
        let (last_old, last_new) = disk::read_exception(&self.area, last).ok_or(Errno::EIO)?;
        // Count consecutive exceptions within this area, working backwards.
        let mut nr = 1u32;
        while nr < self.current_committed {
            let (old, new) = disk::read_exception(&self.area, last - nr).ok_or(Errno::EIO)?;
            if Some(old) != last_old.checked_sub(nr as u64) || Some(new) != last_new.checked_sub(nr as u64) {
                break;
            }
            nr += 1;
        }
        Ok(Some(MergeRun { nr_consecutive: nr, last_old_chunk: last_old, last_new_chunk: last_new }))
    }

    /// `persistent_commit_merge`: zeroes the last `nr_merged` slots and
    /// writes the area with `PREFLUSH | FUA` (the merged data, flushed by the
    /// caller before, stays ahead of it).
    pub fn commit_merge<D: BlockDevice>(&mut self, store: &Store<D>, nr_merged: u32) -> Result<()> {
        if nr_merged > self.current_committed {
            return Err(Errno::EINVAL);
        }
        for i in 0..nr_merged {
            disk::write_exception(&mut self.area, self.current_committed - 1 - i, 0, 0).ok_or(Errno::EIO)?;
        }
        self.area_io(store, Op::Write(ReqFlags::PREFLUSH | ReqFlags::FUA))?;
        self.current_committed -= nr_merged;
        // Only usage() reads next_free from here on: set it to what it
        // would be had every exception been committed in order.
        self.next_free = self.area_location(self.current_area)? + self.current_committed as u64 + 1;
        Ok(())
    }

    /// `persistent_drop_snapshot`: invalid from now on, on disk too.
    pub fn drop_snapshot<D: BlockDevice>(&mut self, store: &Store<D>) {
        self.valid = 0;
        if self.write_header(store).is_err() {
            crate::dm_warn!(DM_MSG_PREFIX, "write header failed");
        }
    }

    /// `persistent_usage`.
    pub fn usage<D: BlockDevice>(&self, store: &Store<D>) -> Usage {
        let chunk = store.chunk.size as u64;
        Usage {
            sectors_allocated: self.next_free.saturating_mul(chunk),
            total_sectors: store.cow.size_sectors(),
            // The header, then (current_area + 1) metadata chunks.
            metadata_sectors: (self.current_area + 1 + NUM_SNAPSHOT_HDR_CHUNKS).saturating_mul(chunk),
        }
    }
}
