// SPDX-License-Identifier: GPL-2.0-only
//! `struct dm_clone_metadata` (dm-clone-metadata.c, v5.9 protocol).
//!
//! The in-core `region_map` says which regions are hydrated. Updates go to
//! the current of two dirty maps under `bitmap_lock` (a spinlock: no I/O,
//! no allocation — every bitmap is allocated when the metadata opens).
//! `pre_commit` swaps the dirty maps; the target then flushes the
//! destination; `commit` writes only the committing map's regions —
//! "dm-clone should only commit the metadata of regions that were properly
//! flushed to the destination device beforehand". The rest (on-disk
//! structures, committing map, fail_io) is under `lock`, a rw-semaphore
//! held across metadata I/O.

use super::superblock::{self, SbProblem, Superblock, SUPERBLOCK_LOCATION};
use crate::errno::{Errno, Result};
use crate::mem::{self, TryVec};
use crate::pdata::array::{DiskArray, U64_PER_BLOCK};
use crate::pdata::bitset::{self, set, test};
use crate::pdata::block::{BlockManager, BLOCK_SIZE};
use crate::pdata::tm::TransactionManager;
use crate::platform::{BlockDevice, ReqFlags};
use crate::sync::{LockClass, RwSem, SpinLock};

/// `cmd->bitmap_lock`.
static BITMAP_LOCK: LockClass = LockClass::new(c"dmrs_clone_bitmap_lock");
/// `cmd->lock`.
static METADATA_LOCK: LockClass = LockClass::new(c"dmrs_clone_metadata_lock");

/// `DM_MSG_PREFIX` of dm-clone-metadata.c.
pub const DM_MSG_PREFIX: &str = "clone metadata";
const BITS: u64 = bitset::BITS_PER_ARRAY_ENTRY;

/// `struct dirty_map`.
pub struct DirtyMap {
    /// One bit per region-map word touched.
    pub dirty_words: TryVec<u64>,
    /// One bit per region set since the last commit of this map.
    pub dirty_regions: TryVec<u64>,
    /// Anything set.
    pub changed: bool,
}

impl DirtyMap {
    fn new(nr_words: usize) -> Result<Self> {
        Ok(DirtyMap {
            dirty_words: TryVec::try_from_elem(0, bitset::words_for(nr_words as u64) as usize)?,
            dirty_regions: TryVec::try_from_elem(0, nr_words)?,
            changed: false,
        })
    }
}

/// Dirty map `i` of the two (`i & 1`).
fn dmap(maps: &mut [DirtyMap; 2], i: usize) -> &mut DirtyMap {
    let [a, b] = maps;
    if i & 1 == 0 {
        a
    } else {
        b
    }
}

/// Marks `region` hydrated in the in-core map and in the current dirty map.
fn mark(b: &mut Bitmaps, region: u64) {
    if !test(&b.region_map, region) {
        b.hydrated += 1;
    }
    let d = dmap(&mut b.dmap, b.current);
    set(&mut d.dirty_words, region / BITS);
    set(&mut d.dirty_regions, region);
    set(&mut b.region_map, region);
    d.changed = true;
}

/// What `bitmap_lock` protects.
pub struct Bitmaps {
    /// In-core hydrated regions.
    pub region_map: TryVec<u64>,
    /// Bits set in `region_map`, kept as they are set: hydration asks
    /// whether it is done after every region.
    pub hydrated: u64,
    /// The two dirty maps.
    pub dmap: [DirtyMap; 2],
    /// Index of `current_dmap`.
    pub current: usize,
    /// Mirrors `cmd->read_only` for the lock-free-of-I/O paths.
    pub read_only: bool,
}

/// On-disk state, under `lock`.
struct Persistent<D: BlockDevice> {
    bm: BlockManager<D>,
    tm: Option<TransactionManager>,
    array: Option<DiskArray>,
    /// The bitset words as committed (plus this commit's bits).
    words: TryVec<u64>,
    /// Index of `committing_dmap`.
    committing: Option<usize>,
    fail_io: bool,
    read_only: bool,
}

/// `struct dm_clone_metadata`.
pub struct CloneMetadata<D: BlockDevice> {
    region_size: u64,
    target_size: u64,
    nr_regions: u64,
    nr_words: u64,
    bitmap_lock: SpinLock<Bitmaps>,
    lock: RwSem<Persistent<D>>,
}

impl<D: BlockDevice> Persistent<D> {
    /// `__format_metadata`.
    fn format(&mut self, region_size: u64, target_size: u64, nr_words: u64) -> Result<()> {
        let mut tm = TransactionManager::create(&self.bm, self.bm.nr_blocks(), SUPERBLOCK_LOCATION)?;
        let words = TryVec::try_from_elem(0u64, nr_words as usize)?;
        let array = DiskArray::create(&mut tm, &self.bm, &words)?;
        self.tm = Some(tm);
        self.array = Some(array);
        self.words = words;
        self.metadata_commit(region_size, target_size)
    }

    /// `__open_metadata` + `__load_bitset_in_core`'s read.
    fn open(&mut self, region_size: u64, target_size: u64, nr_regions: u64) -> Result<()> {
        let mut b0 = mem::try_zeroed(BLOCK_SIZE)?;
        self.bm.read_raw(SUPERBLOCK_LOCATION, &mut b0).map_err(|e| e.errno())?;
        let sb = superblock::check(&b0).map_err(|p: SbProblem| {
            crate::dm_err!(DM_MSG_PREFIX, "{}", p);
            p.errno()
        })?;
        if sb.region_size != region_size || sb.target_size != target_size {
            crate::dm_err!(DM_MSG_PREFIX, "Region and/or target size don't match the ones in metadata");
            return Err(Errno::EINVAL);
        }
        let tm = TransactionManager::open(&self.bm, sb.sm_root)
            .inspect_err(|_| crate::dm_err!(DM_MSG_PREFIX, "dm_tm_open_with_sm failed"))?;
        let words = bitset::load(&self.bm, sb.bitset_root, nr_regions, &mut |_| {}).map_err(|e| e.kind.errno())?;
        let array = DiskArray::open(&self.bm, sb.bitset_root, words.len() as u64).map_err(|e| e.kind.errno())?;
        self.tm = Some(tm);
        self.array = Some(array);
        self.words = words;
        Ok(())
    }

    /// `__metadata_commit`: array blocks and btree written, space map
    /// shadowed and everything flushed (`dm_tm_pre_commit`), then the
    /// superblock with PREFLUSH|FUA (`dm_tm_commit`).
    fn metadata_commit(&mut self, region_size: u64, target_size: u64) -> Result<()> {
        let (Some(tm), Some(array)) = (self.tm.as_mut(), self.array.as_mut()) else { return Err(Errno::EIO) };
        let bitset_root = array.flush(&self.bm)?;
        let root = tm.pre_commit(&self.bm)?;
        let mut sb = mem::try_zeroed(BLOCK_SIZE)?;
        Superblock::prepare(&root, region_size, target_size, bitset_root, &mut sb).ok_or(Errno::EINVAL)?;
        self.bm.write(SUPERBLOCK_LOCATION, &mut sb, &superblock::SB_VALIDATOR, ReqFlags::PREFLUSH | ReqFlags::FUA)?;
        tm.end_transaction();
        Ok(())
    }
}

impl<D: BlockDevice> CloneMetadata<D> {
    /// `dm_clone_metadata_open`: formats an all-zero device, else opens
    /// and checks it, and loads the region bitmap.
    pub fn open(dev: D, target_size: u64, region_size: u64) -> Result<Self> {
        if region_size == 0 {
            return Err(Errno::EINVAL);
        }
        let nr_regions = target_size.div_ceil(region_size);
        let nr_words = bitset::words_for(nr_regions);
        let bm = BlockManager::new(dev);
        let mut b0 = mem::try_zeroed(BLOCK_SIZE)?;
        bm.read_raw(SUPERBLOCK_LOCATION, &mut b0).map_err(|e| {
            crate::dm_err!(DM_MSG_PREFIX, "Failed to read_lock superblock");
            e.errno()
        })?;
        let mut p = Persistent {
            bm,
            tm: None,
            array: None,
            words: TryVec::new(),
            committing: None,
            fail_io: false,
            read_only: false,
        };
        if superblock::all_zeroes(&b0) {
            p.format(region_size, target_size, nr_words)?;
        } else {
            p.open(region_size, target_size, nr_regions)?;
        }
        let mut region_map = TryVec::try_from_elem(0u64, nr_words as usize)?;
        region_map.copy_from_slice(&p.words);
        let hydrated = bitset::count(&region_map, nr_regions);
        let bitmaps = Bitmaps {
            region_map,
            hydrated,
            dmap: [DirtyMap::new(nr_words as usize)?, DirtyMap::new(nr_words as usize)?],
            current: 0,
            read_only: false,
        };
        Ok(CloneMetadata {
            region_size,
            target_size,
            nr_regions,
            nr_words,
            bitmap_lock: SpinLock::new(bitmaps, &BITMAP_LOCK)?,
            lock: RwSem::new(p, &METADATA_LOCK)?,
        })
    }

    /// Regions.
    pub fn nr_regions(&self) -> u64 {
        self.nr_regions
    }

    /// Region size in sectors.
    pub fn region_size(&self) -> u64 {
        self.region_size
    }

    /// `dm_clone_set_region_hydrated`.
    pub fn set_region_hydrated(&self, region: u64) -> Result<()> {
        if region >= self.nr_regions {
            crate::dm_err!(
                DM_MSG_PREFIX,
                "Region {} out of range (total number of regions {})",
                region,
                self.nr_regions
            );
            return Err(Errno::ERANGE);
        }
        let mut g = self.bitmap_lock.lock();
        let b = &mut *g;
        if b.read_only {
            return Err(Errno::EPERM);
        }
        mark(b, region);
        Ok(())
    }

    /// `dm_clone_cond_set_range`: marks the not yet hydrated regions of a range.
    pub fn cond_set_range(&self, start: u64, nr: u64) -> Result<()> {
        let end = start.checked_add(nr);
        if start >= self.nr_regions || end.is_none_or(|e| e > self.nr_regions) {
            crate::dm_err!(
                DM_MSG_PREFIX,
                "Invalid region range: start {}, nr_regions {} (total number of regions {})",
                start,
                nr,
                self.nr_regions
            );
            return Err(Errno::ERANGE);
        }
        let mut g = self.bitmap_lock.lock();
        let b = &mut *g;
        if b.read_only {
            return Err(Errno::EPERM);
        }
        for r in start..start + nr {
            if !test(&b.region_map, r) {
                mark(b, r);
            }
        }
        Ok(())
    }

    /// `dm_clone_is_region_hydrated`.
    pub fn is_region_hydrated(&self, region: u64) -> bool {
        test(&self.bitmap_lock.lock().region_map, region)
    }

    /// `dm_clone_is_range_hydrated`.
    pub fn is_range_hydrated(&self, start: u64, nr: u64) -> bool {
        let g = self.bitmap_lock.lock();
        (start..start.saturating_add(nr).min(self.nr_regions)).all(|r| test(&g.region_map, r))
    }

    /// `dm_clone_nr_of_hydrated_regions`.
    pub fn nr_of_hydrated_regions(&self) -> u64 {
        self.bitmap_lock.lock().hydrated
    }

    /// `dm_clone_find_next_unhydrated_region`: `nr_regions` when none.
    pub fn find_next_unhydrated_region(&self, start: u64) -> u64 {
        let g = self.bitmap_lock.lock();
        (start..self.nr_regions).find(|&r| !test(&g.region_map, r)).unwrap_or(self.nr_regions)
    }

    /// `dm_clone_is_hydration_done`.
    pub fn is_hydration_done(&self) -> bool {
        self.nr_of_hydrated_regions() == self.nr_regions
    }

    /// `dm_clone_changed_this_transaction`.
    pub fn changed_this_transaction(&self) -> bool {
        let g = self.bitmap_lock.lock();
        g.dmap[0].changed || g.dmap[1].changed
    }

    /// `dm_clone_metadata_pre_commit`: swaps the dirty maps.
    pub fn pre_commit(&self) -> Result<()> {
        let mut p = self.lock.down_write();
        if p.fail_io || p.read_only {
            return Err(Errno::EPERM);
        }
        let mut g = self.bitmap_lock.lock();
        let cur = g.current & 1;
        let next = cur ^ 1;
        // The last commit failed: no clean dirty map to switch to.
        if dmap(&mut g.dmap, next).changed || p.committing.is_some() {
            return Err(Errno::EINVAL);
        }
        g.current = next;
        drop(g);
        p.committing = Some(cur);
        Ok(())
    }

    /// `dm_clone_metadata_commit`: writes the committing map's regions, then
    /// the superblock. Costs the dirty words, not the regions.
    pub fn commit(&self) -> Result<()> {
        let mut pg = self.lock.down_write();
        let p = &mut *pg;
        if p.fail_io || p.read_only {
            return Err(Errno::EPERM);
        }
        let Some(c) = p.committing else { return Err(Errno::EINVAL) };
        // __flush_dmap: move the dirty regions into the on-disk image. The
        // committing map is no longer touched by set_region_hydrated, so it
        // is read without the spinlock held across the I/O below.
        // Room for every array block, reserved before taking the spinlock.
        let mut touched: TryVec<u64> = TryVec::try_with_capacity(self.nr_words.div_ceil(U64_PER_BLOCK) as usize)?;
        {
            let mut g = self.bitmap_lock.lock();
            let d = dmap(&mut g.dmap, c);
            for (wi, ww) in d.dirty_words.iter_mut().enumerate() {
                while *ww != 0 {
                    let bitpos = ww.trailing_zeros() as u64;
                    *ww &= *ww - 1;
                    let word = wi as u64 * BITS + bitpos;
                    let regs = d.dirty_regions.get_mut(word as usize).map(core::mem::take).unwrap_or(0);
                    if let Some(w) = p.words.get_mut(word as usize) {
                        *w |= regs;
                    }
                    let blk = word / U64_PER_BLOCK;
                    if touched.last() != Some(&blk) && touched.push_within_capacity(blk).is_err() {
                        return Err(Errno::EINVAL);
                    }
                }
            }
        }
        for &blk in touched.iter() {
            let (Some(tm), Some(array)) = (p.tm.as_mut(), p.array.as_mut()) else { return Err(Errno::EIO) };
            let start = (blk * U64_PER_BLOCK) as usize;
            let end = (start + U64_PER_BLOCK as usize).min(p.words.len());
            array.update_block(tm, &p.bm, blk, p.words.get(start..end).unwrap_or(&[]))?;
        }
        p.metadata_commit(self.region_size, self.target_size)?;
        dmap(&mut self.bitmap_lock.lock().dmap, c).changed = false;
        p.committing = None;
        Ok(())
    }

    /// `dm_clone_metadata_abort`: forgets the failed transaction by reopening.
    pub fn abort(&self) -> Result<()> {
        let mut p = self.lock.down_write();
        if p.fail_io || p.read_only {
            return Err(Errno::EPERM);
        }
        p.tm = None;
        p.array = None;
        let r = p.open(self.region_size, self.target_size, self.nr_regions);
        if r.is_err() {
            // We can neither write nor read the metadata.
            p.fail_io = true;
        }
        r
    }

    /// `dm_clone_metadata_set_read_only`.
    pub fn set_read_only(&self) {
        let mut p = self.lock.down_write();
        self.bitmap_lock.lock().read_only = true;
        p.read_only = true;
    }

    /// `dm_clone_metadata_set_read_write`.
    pub fn set_read_write(&self) {
        let mut p = self.lock.down_write();
        self.bitmap_lock.lock().read_only = false;
        if !p.fail_io {
            p.read_only = false;
        }
    }

    /// `dm_clone_reload_in_core_bitset`: the region map from disk.
    pub fn reload_in_core_bitset(&self) -> Result<()> {
        let p = self.lock.down_write();
        if p.fail_io {
            return Err(Errno::EINVAL);
        }
        let mut g = self.bitmap_lock.lock();
        g.region_map.copy_from_slice(&p.words);
        g.hydrated = bitset::count(&g.region_map, self.nr_regions);
        Ok(())
    }

    /// `dm_clone_get_free_metadata_block_count`.
    pub fn nr_free_metadata_blocks(&self) -> Result<u64> {
        let p = self.lock.down_read();
        p.tm.as_ref().map(|t| t.sm().nr_free()).ok_or(Errno::EIO)
    }

    /// `dm_clone_get_metadata_dev_size` in blocks.
    pub fn metadata_dev_blocks(&self) -> Result<u64> {
        let p = self.lock.down_read();
        p.tm.as_ref().map(|t| t.sm().nr_blocks()).ok_or(Errno::EIO)
    }

    /// Words of the region map (for tests and dumps).
    pub fn nr_words(&self) -> u64 {
        self.nr_words
    }
}
