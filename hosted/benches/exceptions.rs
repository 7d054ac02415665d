// SPDX-License-Identifier: GPL-2.0-only
//! Loading 1,000,000 exceptions from a (sparse) COW file into an exception
//! table, and lookups per second in that table. Two layouts: `sequential`
//! (origin written front to back, so exceptions fold into ranges) and
//! `scattered` (every exception stands alone, the table's worst case).
//! Memory per exception is printed while setting up.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dmrs_core::exception::DM_CHUNK_CONSECUTIVE_BITS;
use dmrs_core::exception_store::disk::{area_location, exceptions_per_area, write_exception};
use dmrs_core::exception_store::ExceptionStore;
use dmrs_core::exception_table::{table_sizes, ExceptionTable};
use dmrs_core::platform::BlockDevice;
use dmrs_hosted::filedev::{FileDev, OpenMode};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const N: u64 = 1_000_000;
const CHUNK: u32 = 16;

/// Origin chunk of the i-th exception: identity, or a bijection of 0..2^22.
fn old_chunk(i: u64, scattered: bool) -> u64 {
    if scattered {
        (i.wrapping_mul(2654435761)) & ((1 << 22) - 1)
    } else {
        i
    }
}

/// Writes a COW file with N exceptions, data chunks left as holes.
fn make_cow(dir: &Path, scattered: bool) -> PathBuf {
    let p = dir.join(if scattered { "scattered.cow" } else { "sequential.cow" });
    let epa = exceptions_per_area(CHUNK) as u64;
    let chunk_bytes = CHUNK as u64 * 512;
    let areas = N.div_ceil(epa) + 1;
    let chunks = 1 + areas + N;
    let mut f = std::fs::File::create(&p).unwrap();
    f.set_len(chunks * chunk_bytes).unwrap();
    let mut hdr = vec![0u8; 16];
    for (i, v) in [0x70416e53u32, 1, 1, CHUNK].iter().enumerate() {
        hdr[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    f.write_all(&hdr).unwrap();
    let mut next_free = 2u64;
    let mut area = vec![0u8; chunk_bytes as usize];
    for a in 0..areas {
        area.fill(0);
        for slot in 0..epa {
            let i = a * epa + slot;
            if i >= N {
                break;
            }
            write_exception(&mut area, slot as u32, old_chunk(i, scattered), next_free).unwrap();
            next_free += 1;
            if next_free % (epa + 1) == 1 {
                next_free += 1;
            }
        }
        f.seek(SeekFrom::Start(area_location(epa as u32, a).unwrap() * chunk_bytes)).unwrap();
        f.write_all(&area).unwrap();
    }
    p
}

fn load(p: &Path) -> ExceptionTable {
    let dev = FileDev::open(p, OpenMode { read_only: true, direct: false }).unwrap();
    let (mut s, _) = ExceptionStore::<&FileDev, ()>::create(&["P", "16"], &dev, 512).unwrap();
    let (size, _) = table_sizes(dev.size_sectors(), CHUNK.trailing_zeros());
    let mut t = ExceptionTable::new(size, DM_CHUNK_CONSECUTIVE_BITS).unwrap();
    s.read_metadata(&mut |o, n| t.insert(o, n)).unwrap();
    assert_eq!(t.len() as u64, N);
    t
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(std::env::var_os("DMRS_BENCH_DIR").unwrap_or_else(|| ".".into())).unwrap();
    for scattered in [false, true] {
        let name = if scattered { "scattered" } else { "sequential" };
        let p = make_cow(dir.path(), scattered);
        let t = load(&p);
        eprintln!(
            "{name}: {} exceptions in {} ranges, {} buckets, {} bytes = {:.2} bytes/exception",
            t.len(),
            t.ranges(),
            t.buckets(),
            t.allocated_bytes(),
            t.allocated_bytes() as f64 / N as f64
        );
        let mut g = c.benchmark_group(format!("load_1M_{name}"));
        g.sample_size(10);
        g.throughput(Throughput::Elements(N));
        g.bench_function("read_metadata+insert", |b| b.iter(|| load(&p)));
        g.finish();

        // Lookups: half hit (exception exists), half miss (beyond them).
        let mut g = c.benchmark_group(format!("lookup_{name}"));
        const BATCH: u64 = 4096;
        g.throughput(Throughput::Elements(BATCH));
        let mut x = 1u64;
        g.bench_function("lookup", |b| {
            b.iter_batched(
                || {
                    (0..BATCH)
                        .map(|k| {
                            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                            let i = (x >> 33) % N;
                            if k % 2 == 0 {
                                old_chunk(i, scattered)
                            } else {
                                (1 << 22) + i
                            }
                        })
                        .collect::<Vec<_>>()
                },
                |keys| keys.iter().filter(|&&k| t.lookup(k).is_some()).count(),
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
