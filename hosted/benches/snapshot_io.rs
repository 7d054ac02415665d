// SPDX-License-Identifier: GPL-2.0-only
//! Write throughput through the snapshot targets over files (page cache,
//! so this measures the CPU and syscall cost of dmrs, not a disk):
//! - first writes through `snapshot-origin` (each chunk copied to the COW and
//!   committed before the write), 4 KiB and 64 KiB writes, chunk size 16;
//! - the same writes once the chunks are already copied;
//! - plain writes to the origin file, as the baseline;
//! - 4 threads of random 4 KiB reads (half the chunks copied) and of
//!   overwrites of copied chunks through the snapshot (remapped by `map` to
//!   the origin or the COW file), against the same I/O on the plain file.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dmrs_hosted::cli::pattern;
use dmrs_hosted::dm::DeviceMapper;
use std::path::Path;

const ORIGIN: u64 = 64 << 20;

fn setup(dir: &Path) -> DeviceMapper {
    std::fs::write(dir.join("origin.img"), vec![0x11u8; ORIGIN as usize]).unwrap();
    let f = std::fs::File::create(dir.join("cow.img")).unwrap();
    f.set_len(ORIGIN + (4 << 20)).unwrap();
    let o = dir.join("origin.img");
    let c = dir.join("cow.img");
    let mut dm = DeviceMapper::new().unwrap();
    let sectors = ORIGIN / 512;
    dm.create("base", Some(&format!("0 {sectors} snapshot-origin {}", o.display()))).unwrap();
    dm.suspend("base").unwrap();
    dm.create("snap", Some(&format!("0 {sectors} snapshot {} {} P 16", o.display(), c.display()))).unwrap();
    dm.resume("base").unwrap();
    dm
}

fn bench(c: &mut Criterion) {
    let base = std::env::var_os("DMRS_BENCH_DIR").unwrap_or_else(|| ".".into());
    let mut g = c.benchmark_group("origin_write_16MiB");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(16 << 20));
    for io in [4096usize, 65536] {
        let data = pattern("NEW", io);
        g.bench_function(format!("first_write_cow_{}k", io / 1024), |b| {
            b.iter_batched(
                || {
                    let d = tempfile::tempdir_in(&base).unwrap();
                    let dm = setup(d.path());
                    (d, dm)
                },
                |(_d, dm)| {
                    for off in (0..16u64 << 20).step_by(io) {
                        dm.write("base", off, &data).unwrap();
                    }
                },
                BatchSize::PerIteration,
            )
        });
        let d = tempfile::tempdir_in(&base).unwrap();
        let dm = setup(d.path());
        for off in (0..16u64 << 20).step_by(io) {
            dm.write("base", off, &data).unwrap();
        }
        g.bench_function(format!("already_copied_{}k", io / 1024), |b| {
            b.iter(|| {
                for off in (0..16u64 << 20).step_by(io) {
                    dm.write("base", off, &data).unwrap();
                }
            })
        });
        let f = std::fs::OpenOptions::new().write(true).open(d.path().join("origin.img")).unwrap();
        g.bench_function(format!("plain_file_{}k", io / 1024), |b| {
            use std::os::unix::fs::FileExt;
            b.iter(|| {
                for off in (0..16u64 << 20).step_by(io) {
                    f.write_all_at(&data, off).unwrap();
                }
            })
        });
    }
    g.finish();
}

/// xorshift64: offsets that do not follow the page cache's read-ahead.
fn offsets(seed: u64, n: usize, span: u64) -> Vec<u64> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % (span / 4096)) * 4096
        })
        .collect()
}

const THREADS: u64 = 4;
const OPS: usize = 1024;

fn parallel(op: &(dyn Fn(u64) + Sync), span: u64) {
    std::thread::scope(|sc| {
        for t in 0..THREADS {
            let offs = offsets(t + 1, OPS, span);
            sc.spawn(move || offs.iter().for_each(|&o| op(o)));
        }
    });
}

fn bench_parallel(c: &mut Criterion) {
    let base = std::env::var_os("DMRS_BENCH_DIR").unwrap_or_else(|| ".".into());
    let mut g = c.benchmark_group("random_4k_4_threads_16MiB");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(THREADS * OPS as u64 * 4096));
    let d = tempfile::tempdir_in(&base).unwrap();
    let dm = setup(d.path());
    let data = pattern("NEW", 4096);
    // The first half of the origin is copied to the COW.
    for off in (0..ORIGIN / 2).step_by(65536) {
        dm.write("base", off, &pattern("COPIED", 65536)).unwrap();
    }
    g.bench_function("snapshot_read", |b| b.iter(|| parallel(&|o| drop(dm.read("snap", o, 4096).unwrap()), ORIGIN)));
    g.bench_function("snapshot_overwrite_copied", |b| {
        b.iter(|| parallel(&|o| dm.write("snap", o, &data).unwrap(), ORIGIN / 2))
    });
    let f = std::fs::OpenOptions::new().read(true).write(true).open(d.path().join("origin.img")).unwrap();
    use std::os::unix::fs::FileExt;
    g.bench_function("plain_file_read", |b| {
        b.iter(|| {
            parallel(
                &|o| {
                    let mut buf = vec![0u8; 4096];
                    f.read_exact_at(&mut buf, o).unwrap()
                },
                ORIGIN,
            )
        })
    });
    g.bench_function("plain_file_overwrite", |b| {
        b.iter(|| parallel(&|o| f.write_all_at(&data, o).unwrap(), ORIGIN / 2))
    });
    g.finish();
}

criterion_group!(benches, bench, bench_parallel);
criterion_main!(benches);
