// SPDX-License-Identifier: GPL-2.0-only
//! The core's block-device seam over a `dm_dev`: synchronous `dm_io` for
//! reads and writes (with PREFLUSH/FUA/SYNC as the core asks),
//! `blkdev_issue_flush` and `blkdev_issue_discard`.

use crate::bindings;
use dmrs_core::platform::{BlockDevice, DmDevice, QueueLimits, ReqFlags, SECTOR_SHIFT};
use dmrs_core::{Errno, Result};

/// The module's one `dm_io_client` (a bio set and page pool), created at
/// init and destroyed at exit; dm_io is synchronous when `notify.fn` is NULL.
static CLIENT: core::sync::atomic::AtomicPtr<bindings::dm_io_client> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

pub(crate) fn client_create() -> kernel::error::Result {
    // SAFETY: plain constructor; an ERR_PTR on failure.
    let c = kernel::error::from_err_ptr(unsafe { bindings::dm_io_client_create() })?;
    CLIENT.store(c, core::sync::atomic::Ordering::Release);
    Ok(())
}

pub(crate) fn client_destroy() {
    let c = CLIENT.swap(core::ptr::null_mut(), core::sync::atomic::Ordering::AcqRel);
    if !c.is_null() {
        // SAFETY: created by `client_create`; every target is gone by now.
        unsafe { bindings::dm_io_client_destroy(c) };
    }
}

/// A device a target opened with `dm_get_device`. Plain copies: the target
/// that opened it releases it in its destructor (`dm_put_device`), after
/// the core dropped every use.
#[derive(Clone)]
pub(crate) struct KDev {
    dev: *mut bindings::dm_dev,
    name: [u8; 16],
    name_len: usize,
    /// `%pg` of the block device ("vdb"), for messages.
    disk: [u8; 32],
    disk_len: usize,
}

// SAFETY: `dm_dev` is shared by dm across CPUs; we only read its fields and
// submit I/O to its `block_device`, which is thread-safe.
unsafe impl Send for KDev {}
// SAFETY: as above.
unsafe impl Sync for KDev {}

impl KDev {
    /// # Safety
    /// `dev` comes from `dm_get_device` and stays open while this value
    /// (and every clone) is used.
    pub(crate) unsafe fn new(dev: *mut bindings::dm_dev) -> Self {
        let mut name = [0u8; 16];
        let mut name_len = 0;
        // SAFETY: `dm_dev.name` is a NUL-terminated "major:minor".
        for (i, c) in unsafe { (*dev).name }.iter().enumerate() {
            if *c == 0 {
                break;
            }
            name[i] = *c as u8;
            name_len = i + 1;
        }
        let mut disk = [0u8; 32];
        // SAFETY: a bounded, NUL-terminated format into our buffer; `%pg`
        // takes the open device's `block_device`.
        let n = unsafe { bindings::snprintf(disk.as_mut_ptr().cast(), disk.len(), c"%pg".as_ptr().cast(), (*dev).bdev) };
        let disk_len = (n.max(0) as usize).min(disk.len() - 1);
        KDev { dev, name, name_len, disk, disk_len }
    }

    /// The `dm_dev` for dm core's callouts (`iterate_devices`).
    pub(crate) fn raw(&self) -> *mut bindings::dm_dev {
        self.dev
    }

    pub(crate) fn bdev(&self) -> *mut bindings::block_device {
        // SAFETY: open (type invariant).
        unsafe { (*self.dev).bdev }
    }

    fn io(&self, op: u32, sector: u64, buf: *mut u8, len: usize) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let mut req = bindings::dm_io_request::default();
        req.bi_opf = op;
        // SAFETY: `buf` is a live kernel address of `len` bytes (caller).
        let vmalloc = unsafe { bindings::is_vmalloc_addr(buf.cast()) };
        req.mem.type_ = if vmalloc { bindings::dm_io_mem_type_DM_IO_VMA } else { bindings::dm_io_mem_type_DM_IO_KMEM };
        req.mem.offset = 0;
        if vmalloc {
            req.mem.ptr.vma = buf.cast();
        } else {
            req.mem.ptr.addr = buf.cast();
        }
        req.client = CLIENT.load(core::sync::atomic::Ordering::Acquire);
        let mut region =
            bindings::dm_io_region { bdev: self.bdev(), sector, count: (len >> SECTOR_SHIFT) as u64 };
        let mut bits: kernel::ffi::c_ulong = 0;
        // SAFETY: synchronous dm_io (no notify fn) on our open device; the
        // buffer outlives the call.
        let r = unsafe { bindings::dm_io(&mut req, 1, &mut region, &mut bits, 0) };
        if r < 0 {
            Err(Errno(-r))
        } else if bits != 0 {
            Err(Errno::EIO)
        } else {
            Ok(())
        }
    }
}

/// The fields of `struct queue_limits` the core reads.
pub(crate) fn limits_from(l: &bindings::queue_limits) -> QueueLimits {
    QueueLimits {
        io_min: l.io_min,
        io_opt: l.io_opt,
        max_discard_sectors: l.max_discard_sectors,
        max_hw_discard_sectors: l.max_hw_discard_sectors,
        discard_granularity: l.discard_granularity,
        discard_alignment: l.discard_alignment,
        max_discard_segments: l.max_discard_segments,
    }
}

fn opf(op: u32, flags: ReqFlags) -> u32 {
    let mut o = op;
    if flags.contains(ReqFlags::PREFLUSH) {
        o |= 1 << bindings::req_flag_bits___REQ_PREFLUSH;
    }
    if flags.contains(ReqFlags::FUA) {
        o |= 1 << bindings::req_flag_bits___REQ_FUA;
    }
    if flags.contains(ReqFlags::SYNC) {
        o |= 1 << bindings::req_flag_bits___REQ_SYNC;
    }
    o
}

impl BlockDevice for KDev {
    fn read(&self, sector: u64, buf: &mut [u8]) -> Result<()> {
        self.io(bindings::req_op_REQ_OP_READ, sector, buf.as_mut_ptr(), buf.len())
    }

    fn write(&self, sector: u64, buf: &[u8], flags: ReqFlags) -> Result<()> {
        if buf.is_empty() && flags.contains(ReqFlags::PREFLUSH) {
            return self.flush();
        }
        // dm_io only reads the memory of a write.
        self.io(opf(bindings::req_op_REQ_OP_WRITE, flags), sector, buf.as_ptr().cast_mut(), buf.len())
    }

    fn flush(&self) -> Result<()> {
        // SAFETY: open device.
        let r = unsafe { bindings::blkdev_issue_flush(self.bdev()) };
        if r < 0 { Err(Errno(-r)) } else { Ok(()) }
    }

    fn size_sectors(&self) -> u64 {
        // SAFETY: open device; `bdev_nr_sectors` is a static inline over this field.
        unsafe { (*self.bdev()).bd_nr_sectors }
    }

    fn logical_block_size(&self) -> u32 {
        // SAFETY: an open device has a queue (`bdev_logical_block_size`).
        unsafe { (*(*self.bdev()).bd_queue).limits.logical_block_size }
    }

    fn queue_limits(&self) -> QueueLimits {
        // SAFETY: an open device has a queue; its limits are read as
        // `bdev_get_queue(bdev)->limits` is in C.
        limits_from(unsafe { &(*(*self.bdev()).bd_queue).limits })
    }

    fn as_any(&self) -> Option<&dyn core::any::Any> {
        Some(self)
    }

    fn discard(&self, sector: u64, nr_sectors: u64) -> Result<()> {
        // SAFETY: open device; GFP_KERNEL, we may sleep here.
        let r = unsafe { bindings::blkdev_issue_discard(self.bdev(), sector, nr_sectors, kernel::bindings::GFP_KERNEL) };
        if r < 0 { Err(Errno(-r)) } else { Ok(()) }
    }
}

impl DmDevice for KDev {
    fn bdev_id(&self) -> u64 {
        self.bdev() as u64
    }

    fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("?")
    }

    fn disk_name(&self) -> &str {
        core::str::from_utf8(&self.disk[..self.disk_len]).unwrap_or("?")
    }
}
