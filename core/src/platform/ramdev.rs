// SPDX-License-Identifier: GPL-2.0-only
//! A RAM block device with a volatile write cache, power-cut simulation and
//! fault injection (smoltcp's `FaultInjector` idea): the test device for
//! write ordering. Writes land in the cache; only a flush, a `PREFLUSH` or
//! a `FUA` write makes them durable; [`RamDev::crash`] throws away what is
//! not durable, as a power cut would.

use super::block::{BlockDevice, DmDevice, ReqFlags, SECTOR_SHIFT, SECTOR_SIZE};
use super::QueueLimits;
use crate::errno::{Errno, Result};
use crate::mem::{self, TryVec};
use crate::sync::{LockClass, SpinLock};

/// The RAM device's state lock.
static RAMDEV_LOCK: LockClass = LockClass::new(c"dmrs_ramdev");

/// One write as the device saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteRecord {
    /// First sector.
    pub sector: u64,
    /// Length in sectors.
    pub nr_sectors: u64,
    /// Flags of the request.
    pub flags: ReqFlags,
}

/// Counters of what the device was asked to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Read requests.
    pub reads: u64,
    /// Write requests.
    pub writes: u64,
    /// Explicit flushes.
    pub flushes: u64,
}

struct Inner {
    cache: TryVec<u8>,
    durable: TryVec<u8>,
    unflushed: TryVec<(u64, u64)>,
    log: TryVec<WriteRecord>,
    record: bool,
    stats: Stats,
    fail_writes_after: Option<u64>,
    fail_reads: bool,
}

/// RAM disk with a write cache, power cuts and injected errors.
pub struct RamDev {
    inner: SpinLock<Inner>,
    sectors: u64,
    lbs: u32,
    name: &'static str,
    limits: Option<QueueLimits>,
}

fn range(sector: u64, len: usize, sectors: u64) -> Result<core::ops::Range<usize>> {
    if len % SECTOR_SIZE != 0 {
        return Err(Errno::EINVAL);
    }
    let n = (len / SECTOR_SIZE) as u64;
    let end = sector.checked_add(n).ok_or(Errno::EIO)?;
    if end > sectors {
        return Err(Errno::EIO);
    }
    let start = usize::try_from(sector << SECTOR_SHIFT).map_err(|_| Errno::EIO)?;
    Ok(start..start + len)
}

impl RamDev {
    /// A zero-filled device of `sectors` sectors and the given logical block size.
    pub fn new(sectors: u64, logical_block_size: u32) -> Result<Self> {
        let bytes = usize::try_from(sectors << SECTOR_SHIFT).map_err(|_| Errno::ENOMEM)?;
        Ok(RamDev {
            inner: SpinLock::new(
                Inner {
                    cache: mem::try_zeroed(bytes)?,
                    durable: mem::try_zeroed(bytes)?,
                    unflushed: TryVec::new(),
                    log: TryVec::new(),
                    record: false,
                    stats: Stats::default(),
                    fail_writes_after: None,
                    fail_reads: false,
                },
                &RAMDEV_LOCK,
            )?,
            sectors,
            lbs: logical_block_size,
            name: "ram",
            limits: None,
        })
    }

    /// Sets the name a table shows for it.
    pub fn named(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    /// Sets the queue limits it reports (default: discards anything).
    pub fn with_limits(mut self, limits: QueueLimits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// A device whose cache and durable contents are `bytes` (padded to a sector).
    pub fn from_bytes(bytes: &[u8], logical_block_size: u32) -> Result<Self> {
        let sectors = bytes.len().div_ceil(SECTOR_SIZE) as u64;
        let d = Self::new(sectors, logical_block_size)?;
        {
            let mut g = d.inner.lock();
            let i = &mut *g;
            i.cache.get_mut(..bytes.len()).ok_or(Errno::EINVAL)?.copy_from_slice(bytes);
            i.durable.get_mut(..bytes.len()).ok_or(Errno::EINVAL)?.copy_from_slice(bytes);
        }
        Ok(d)
    }

    /// Power cut: everything not yet durable is lost.
    pub fn crash(&self) {
        self.crash_keeping(&mut |_| false);
    }

    /// Power cut in the middle of the cache's write-back: of the sectors
    /// written since the last flush, those `keep(sector)` picks reach the
    /// medium with their latest contents, the others keep their durable
    /// ones (a multi-sector write may be torn at any sector; a sector is
    /// written whole, as disks guarantee).
    pub fn crash_keeping(&self, keep: &mut dyn FnMut(u64) -> bool) {
        let mut g = self.inner.lock();
        let i = &mut *g;
        let mut pending = TryVec::new();
        core::mem::swap(&mut pending, &mut i.unflushed);
        for &(start, len) in pending.iter() {
            for s in (start..start + len).step_by(SECTOR_SIZE) {
                let r = s as usize..s as usize + SECTOR_SIZE;
                if keep(s >> SECTOR_SHIFT) {
                    if let (Some(src), Some(dst)) = (i.cache.get(r.clone()), i.durable.get_mut(r)) {
                        dst.copy_from_slice(src);
                    }
                }
            }
        }
        i.cache.copy_from_slice(&i.durable);
    }

    /// Copies the current (cached) contents at `sector` into `buf`.
    pub fn peek(&self, sector: u64, buf: &mut [u8]) -> Result<()> {
        let g = self.inner.lock();
        let r = range(sector, buf.len(), self.sectors)?;
        buf.copy_from_slice(g.cache.get(r).ok_or(Errno::EIO)?);
        Ok(())
    }

    /// Copies the durable contents at `sector` into `buf`.
    pub fn peek_durable(&self, sector: u64, buf: &mut [u8]) -> Result<()> {
        let g = self.inner.lock();
        let r = range(sector, buf.len(), self.sectors)?;
        buf.copy_from_slice(g.durable.get(r).ok_or(Errno::EIO)?);
        Ok(())
    }

    /// Every write after the next `n` fails with `-EIO`; `None` heals.
    pub fn fail_writes_after(&self, n: Option<u64>) {
        self.inner.lock().fail_writes_after = n;
    }

    /// Makes reads fail with `-EIO`.
    pub fn fail_reads(&self, on: bool) {
        self.inner.lock().fail_reads = on;
    }

    /// Starts (or stops) recording writes; clears the record.
    pub fn record_writes(&self, on: bool) {
        let mut g = self.inner.lock();
        g.record = on;
        g.log.clear();
    }

    /// Calls `f` with every recorded write, oldest first.
    pub fn for_each_write(&self, mut f: impl FnMut(&WriteRecord)) {
        for w in self.inner.lock().log.iter() {
            f(w)
        }
    }

    /// Request counters.
    pub fn stats(&self) -> Stats {
        self.inner.lock().stats
    }
}

fn flush_locked(i: &mut Inner) {
    let mut pending = TryVec::new();
    core::mem::swap(&mut pending, &mut i.unflushed);
    for &(start, len) in pending.iter() {
        let (s, l) = (start as usize, len as usize);
        if let (Some(src), Some(dst)) = (i.cache.get(s..s + l), i.durable.get_mut(s..s + l)) {
            dst.copy_from_slice(src);
        }
    }
}

impl BlockDevice for RamDev {
    fn read(&self, sector: u64, buf: &mut [u8]) -> Result<()> {
        let mut g = self.inner.lock();
        g.stats.reads += 1;
        if g.fail_reads {
            return Err(Errno::EIO);
        }
        let r = range(sector, buf.len(), self.sectors)?;
        buf.copy_from_slice(g.cache.get(r).ok_or(Errno::EIO)?);
        Ok(())
    }

    fn write(&self, sector: u64, buf: &[u8], flags: ReqFlags) -> Result<()> {
        let mut g = self.inner.lock();
        let i = &mut *g;
        i.stats.writes += 1;
        if let Some(n) = i.fail_writes_after.as_mut() {
            if *n == 0 {
                return Err(Errno::EIO);
            }
            *n -= 1;
        }
        let r = range(sector, buf.len(), self.sectors)?;
        if i.record {
            let rec = WriteRecord { sector, nr_sectors: (buf.len() / SECTOR_SIZE) as u64, flags };
            i.log.try_push(rec)?;
        }
        if flags.contains(ReqFlags::PREFLUSH) {
            flush_locked(i);
        }
        i.cache.get_mut(r.clone()).ok_or(Errno::EIO)?.copy_from_slice(buf);
        if flags.contains(ReqFlags::FUA) {
            i.durable.get_mut(r).ok_or(Errno::EIO)?.copy_from_slice(buf);
        } else {
            i.unflushed.try_push((r.start as u64, buf.len() as u64))?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        let mut g = self.inner.lock();
        g.stats.flushes += 1;
        flush_locked(&mut g);
        Ok(())
    }

    fn size_sectors(&self) -> u64 {
        self.sectors
    }

    fn logical_block_size(&self) -> u32 {
        self.lbs
    }

    fn discard(&self, sector: u64, nr_sectors: u64) -> Result<()> {
        let len = usize::try_from(nr_sectors << SECTOR_SHIFT).map_err(|_| Errno::EIO)?;
        let mut g = self.inner.lock();
        let r = range(sector, len, self.sectors)?;
        g.cache.get_mut(r.clone()).ok_or(Errno::EIO)?.fill(0);
        g.unflushed.try_push((r.start as u64, len as u64))?;
        Ok(())
    }

    fn queue_limits(&self) -> QueueLimits {
        self.limits.unwrap_or(QueueLimits::discard_anything(self.lbs))
    }
}

/// A shared reference is a `dm_dev` handle: identity is the address.
impl DmDevice for &RamDev {
    fn bdev_id(&self) -> u64 {
        *self as *const RamDev as usize as u64
    }
    fn name(&self) -> &str {
        self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_flushed_or_fua_writes_survive_a_crash() {
        let d = RamDev::new(8, 512).unwrap();
        d.write(0, &[1u8; 512], ReqFlags::empty()).unwrap();
        d.write(1, &[2u8; 512], ReqFlags::FUA).unwrap();
        d.crash();
        let mut b = [0u8; 1024];
        d.read(0, &mut b).unwrap();
        assert_eq!((b[0], b[512]), (0, 2));
        d.write(0, &[3u8; 512], ReqFlags::empty()).unwrap();
        d.write(2, &[4u8; 512], ReqFlags::PREFLUSH).unwrap();
        d.crash();
        let mut b = [0u8; 1536];
        d.read(0, &mut b).unwrap();
        assert_eq!((b[0], b[1024]), (3, 0));
    }

    #[test]
    fn faults_and_bounds() {
        let d = RamDev::new(4, 512).unwrap();
        d.fail_writes_after(Some(1));
        assert!(d.write(0, &[0u8; 512], ReqFlags::empty()).is_ok());
        assert_eq!(d.write(0, &[0u8; 512], ReqFlags::empty()), Err(Errno::EIO));
        d.fail_writes_after(None);
        assert_eq!(d.write(4, &[0u8; 512], ReqFlags::empty()), Err(Errno::EIO));
        assert_eq!(d.write(0, &[0u8; 100], ReqFlags::empty()), Err(Errno::EINVAL));
        assert_eq!(d.read(u64::MAX, &mut [0u8; 512]), Err(Errno::EIO));
        d.fail_reads(true);
        assert_eq!(d.read(0, &mut [0u8; 512]), Err(Errno::EIO));
    }
}
