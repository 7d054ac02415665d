// SPDX-License-Identifier: GPL-2.0-only
//! Writes the scale target of issue 15: a sparse COW (chunk 8) holding N
//! scattered exceptions (default 10,000,000), laid out as the kernel lays
//! them out, with metadata areas only (data chunks are holes).
//!
//! `cargo run --release -p dmrs --example scale_cow -- /path/cow.img [N [BITS]]`
//!
//! The old chunks are scattered over 2^BITS origin chunks (default 36, a
//! 256 TiB origin); a smaller BITS (N must not exceed 2^BITS) gives an
//! origin a file can stand in for, as `cow export` needs.

use dmrs_core::exception_store::disk::{self, SNAP_MAGIC};
use std::os::unix::fs::FileExt;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: scale_cow PATH [N]");
    let n: u64 = args.next().map(|s| s.parse().expect("N")).unwrap_or(10_000_000);
    let bits: u32 = args.next().map(|s| s.parse().expect("BITS")).unwrap_or(36);
    assert!(bits <= 63 && n <= 1 << bits, "N must not exceed 2^BITS");
    let chunk = 8u32;
    let epa = disk::exceptions_per_area(chunk) as u64;
    let areas = n / epa + 1;
    let chunks = 1 + areas + n;
    let f = std::fs::File::create(&path)?;
    f.set_len(chunks * 4096)?;
    let mut hdr = [0u8; 4096];
    for (i, v) in [SNAP_MAGIC, 1, 1, chunk].iter().enumerate() {
        hdr[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    f.write_all_at(&hdr, 0)?;
    // Old chunks scattered over 2^BITS chunks: an odd multiplier is a
    // bijection modulo a power of two, so they never repeat.
    let old = |i: u64| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) & ((1 << bits) - 1);
    let mut next_new = disk::area_location(epa as u32, 0).unwrap() + 1;
    let mut buf = vec![0u8; 4096];
    for a in 0..areas {
        buf.fill(0);
        for s in 0..epa {
            let i = a * epa + s;
            if i >= n {
                break;
            }
            disk::write_exception(&mut buf, s as u32, old(i), next_new).unwrap();
            next_new += 1;
            if disk::is_metadata_chunk(epa as u32, next_new) {
                next_new += 1;
            }
        }
        f.write_all_at(&buf, disk::area_location(epa as u32, a).unwrap() * 4096)?;
    }
    f.sync_all()?;
    println!("{path}: {n} exceptions, {areas} areas, {chunks} chunks of {chunk} sectors");
    Ok(())
}
