// SPDX-License-Identifier: GPL-2.0-only
//! `struct bio` as the targets see it: one owned request from dm core,
//! ended exactly once (by `end`, or handed back to dm by a remap).

use crate::bindings;
use core::ptr::NonNull;
use dmrs_core::dm::{BioInfo, BioOp};
use dmrs_core::platform::{ReqFlags, SECTOR_SHIFT};
use dmrs_core::Errno;

/// Blk status codes (`BLK_STS_*` are casts bindgen cannot evaluate).
const BLK_STS_OK: u8 = 0;
const BLK_STS_NOTSUPP: u8 = 1;
const BLK_STS_NOSPC: u8 = 3;
const BLK_STS_IOERR: u8 = 10;

const REQ_OP_MASK: u32 = (1 << 8) - 1;

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Read,
    Write,
    Discard,
    Other,
}

/// A bio owned by a target until it is ended or remapped.
pub(crate) struct Bio(NonNull<bindings::bio>);

// SAFETY: a bio may be completed from any context; ownership moves with the value.
unsafe impl Send for Bio {}

impl Bio {
    /// # Safety
    /// `p` is a live bio that dm core handed to `map` and nobody else ends.
    pub(crate) unsafe fn from_raw(p: *mut bindings::bio) -> Option<Self> {
        NonNull::new(p).map(Bio)
    }

    fn raw(&self) -> &bindings::bio {
        // SAFETY: owned and live until `end`/remap (type invariant).
        unsafe { self.0.as_ref() }
    }

    pub(crate) fn sector(&self) -> u64 {
        self.raw().bi_iter.bi_sector
    }

    pub(crate) fn set_sector(&mut self, s: u64) {
        // SAFETY: owned (type invariant).
        unsafe { self.0.as_mut().bi_iter.bi_sector = s }
    }

    pub(crate) fn size(&self) -> usize {
        self.raw().bi_iter.bi_size as usize
    }

    pub(crate) fn op(&self) -> Op {
        match self.raw().bi_opf & REQ_OP_MASK {
            bindings::req_op_REQ_OP_READ => Op::Read,
            bindings::req_op_REQ_OP_WRITE => Op::Write,
            bindings::req_op_REQ_OP_DISCARD => Op::Discard,
            _ => Op::Other,
        }
    }

    pub(crate) fn flags(&self) -> ReqFlags {
        let opf = self.raw().bi_opf;
        let mut f = ReqFlags::empty();
        for (bit, flag) in [
            (bindings::req_flag_bits___REQ_PREFLUSH, ReqFlags::PREFLUSH),
            (bindings::req_flag_bits___REQ_FUA, ReqFlags::FUA),
            (bindings::req_flag_bits___REQ_SYNC, ReqFlags::SYNC),
        ] {
            if opf & (1 << bit) != 0 {
                f |= flag;
            }
        }
        f
    }

    /// What the core's `map` reads, sectors relative to the target's
    /// start `begin` (`dm_target_offset`).
    pub(crate) fn info(&self, begin: u64) -> BioInfo {
        let op = match self.op() {
            Op::Read => BioOp::Read,
            Op::Write if self.size() == 0 => BioOp::Flush,
            Op::Write => BioOp::Write,
            Op::Discard => BioOp::Discard,
            Op::Other => BioOp::Other,
        };
        BioInfo {
            op,
            sector: self.sector().saturating_sub(begin),
            nr_sectors: (self.size() >> SECTOR_SHIFT) as u64,
            flags: self.flags(),
        }
    }

    /// An iterator over the data pages, positioned at the bio's start.
    fn iter(&self, source: bool) -> bindings::iov_iter {
        let bio = self.raw();
        let mut it = bindings::iov_iter::default();
        let done = bio.bi_iter.bi_bvec_done as usize;
        // SAFETY: `bi_io_vec[bi_idx..bi_vcnt]` are the bio's segments; the
        // count covers the part already consumed plus what is left.
        unsafe {
            bindings::iov_iter_bvec(
                &mut it,
                if source { bindings::ITER_SOURCE } else { bindings::ITER_DEST },
                bio.bi_io_vec.add(bio.bi_iter.bi_idx as usize),
                (bio.bi_vcnt as usize).saturating_sub(bio.bi_iter.bi_idx as usize) as _,
                done + self.size(),
            );
            bindings::iov_iter_advance(&mut it, done);
        }
        it
    }

    /// Copies the bio's data (a write) into `buf`.
    pub(crate) fn copy_out(&self, buf: &mut [u8]) -> bool {
        let mut it = self.iter(true);
        // SAFETY: `buf` is valid for `len` bytes; `it` reads the bio's pages.
        let n = unsafe { bindings::_copy_from_iter(buf.as_mut_ptr().cast(), buf.len(), &mut it) };
        n == buf.len()
    }

    /// Copies `buf` into the bio's pages (completing a read).
    pub(crate) fn copy_in(&self, buf: &[u8]) -> bool {
        let mut it = self.iter(false);
        // SAFETY: as in `copy_out`, the other way round.
        let n = unsafe { bindings::_copy_to_iter(buf.as_ptr().cast(), buf.len(), &mut it) };
        n == buf.len()
    }

    /// Points the bio at `bdev` (`bio_set_dev`, a static inline).
    pub(crate) fn set_dev(&mut self, bdev: *mut bindings::block_device) {
        // SAFETY: owned (type invariant).
        let bio = unsafe { self.0.as_mut() };
        bio.bi_flags &= !(1u16 << bindings::BIO_REMAPPED);
        if bio.bi_bdev != bdev {
            bio.bi_flags &= !(1u16 << bindings::BIO_BPS_THROTTLED);
        }
        bio.bi_bdev = bdev;
    }

    /// `submit_bio_noacct`: issues a bio this target kept
    /// (`DM_MAPIO_SUBMITTED`) once it is remapped; its completion reaches
    /// dm core as for any other.
    pub(crate) fn submit(self) {
        let p = self.0.as_ptr();
        core::mem::forget(self);
        // SAFETY: we own the bio; the block layer owns it from here and
        // ends it exactly once.
        unsafe { bindings::submit_bio_noacct(p) };
    }

    /// Gives the bio back to dm core, remapped (the caller returns
    /// `DM_MAPIO_REMAPPED`).
    pub(crate) fn into_remapped(self) {
        core::mem::forget(self)
    }

    /// `bio_endio` with the status for `r`.
    pub(crate) fn end(self, r: Result<(), Errno>) {
        let st = match r {
            Ok(()) => BLK_STS_OK,
            Err(Errno::EOPNOTSUPP) => BLK_STS_NOTSUPP,
            Err(Errno::ENOSPC) => BLK_STS_NOSPC,
            Err(_) => BLK_STS_IOERR,
        };
        let p = self.0.as_ptr();
        core::mem::forget(self);
        // SAFETY: we own the bio and end it exactly once.
        unsafe {
            (*p).bi_status = st;
            bindings::bio_endio(p);
        }
    }
}

impl Drop for Bio {
    fn drop(&mut self) {
        // A bio must never be lost: one dropped without `end` fails with EIO.
        let p = self.0.as_ptr();
        // SAFETY: still owned; ended exactly once here.
        unsafe {
            (*p).bi_status = BLK_STS_IOERR;
            bindings::bio_endio(p);
        }
    }
}

/// A FIFO of bios chained through `bi_next` (`struct bio_list`): queuing
/// never allocates, so `map` can queue under a spinlock.
pub(crate) struct BioList {
    head: *mut bindings::bio,
    tail: *mut bindings::bio,
}

// SAFETY: the list owns the bios it holds.
unsafe impl Send for BioList {}
// SAFETY: every method that touches a bio or a link takes `&mut self`;
// through `&BioList` only the head pointer is read (`is_empty`).
unsafe impl Sync for BioList {}

impl dmrs_core::dm::BioQueue for BioList {
    type Bio = Bio;
    fn push(&mut self, bio: Bio) {
        BioList::push(self, bio)
    }
    fn pop(&mut self) -> Option<Bio> {
        BioList::pop(self)
    }
}

impl Default for BioList {
    fn default() -> Self {
        Self::new()
    }
}

impl BioList {
    pub(crate) const fn new() -> Self {
        BioList { head: core::ptr::null_mut(), tail: core::ptr::null_mut() }
    }

    pub(crate) fn push(&mut self, bio: Bio) {
        let p = bio.0.as_ptr();
        core::mem::forget(bio);
        // SAFETY: `p` is owned by the list from now; `tail` is ours too.
        unsafe {
            (*p).bi_next = core::ptr::null_mut();
            if self.tail.is_null() {
                self.head = p;
            } else {
                (*self.tail).bi_next = p;
            }
        }
        self.tail = p;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    pub(crate) fn take(&mut self) -> BioList {
        core::mem::replace(self, BioList::new())
    }

    pub(crate) fn pop(&mut self) -> Option<Bio> {
        let p = NonNull::new(self.head)?;
        // SAFETY: `p` is the list's head, owned by the list.
        unsafe {
            self.head = (*p.as_ptr()).bi_next;
            (*p.as_ptr()).bi_next = core::ptr::null_mut();
        }
        if self.head.is_null() {
            self.tail = core::ptr::null_mut();
        }
        Some(Bio(p))
    }
}

impl Drop for BioList {
    fn drop(&mut self) {
        while let Some(bio) = self.pop() {
            bio.end(Err(Errno::EIO));
        }
    }
}
