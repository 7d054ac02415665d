// SPDX-License-Identifier: GPL-2.0-only
//! Allocations sized from table or disk data are bounded by the device
//! first: a chunk size larger than the COW is refused before its buffers
//! (three chunks) are allocated. A counting allocator records the largest
//! single allocation made while the table is constructed.
#![allow(clippy::disallowed_types, clippy::disallowed_methods, clippy::disallowed_macros)] // a std test

use dmrs_core::dm::SyncIo;
use dmrs_core::platform::{BlockDevice, RamDev, ReqFlags, SyncCopier};
use dmrs_core::snapshot::SnapshotDriver;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LARGEST.fetch_max(n, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn a_chunk_larger_than_the_cow_allocates_nothing_chunk_sized() {
    let origin = RamDev::new(16384, 512).unwrap().named("origin");
    let cow = RamDev::new(16384, 512).unwrap().named("cow"); // 8 MiB
    let drv = SnapshotDriver::new(SyncIo::<_, SyncCopier>::default()).unwrap();
    let mut get = |p: &str| Ok(if p == "origin" { &origin } else { &cow });
    LARGEST.store(0, Ordering::Relaxed);
    // 2^21 sectors: a 1 GiB chunk.
    let r = drv.snapshot_ctr(false, 16384, &["origin", "cow", "P", "2097152"], &mut get);
    assert_eq!(r.err().map(|e| e.msg()), Some("Failed to read snapshot metadata"));
    // A header on the COW that says the same.
    let mut header: Vec<u8> = [0x70416e53u32, 1, 1, 1 << 21].iter().flat_map(|v| v.to_le_bytes()).collect();
    header.resize(512, 0);
    cow.write(0, &header, ReqFlags::empty()).unwrap();
    let r = drv.snapshot_ctr(false, 16384, &["origin", "cow", "P", "16"], &mut get);
    assert_eq!(r.err().map(|e| e.msg()), Some("Failed to read snapshot metadata"));
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(largest < 16 << 20, "largest allocation {largest} bytes for an 8 MiB COW");
}
