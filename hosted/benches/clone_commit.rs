// SPDX-License-Identifier: GPL-2.0-only
//! dm-clone metadata commit cost (RAM metadata device, so this is the CPU
//! and block-write cost, not a disk's): 1 dirty region and 10% dirty
//! regions on 1,000,000 regions, and 1 dirty region on 16,000,000 regions —
//! the cost must follow the dirty words, not the number of regions.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use dmrs_core::clone::metadata::CloneMetadata;
use dmrs_core::platform::RamDev;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("clone_commit");
    for (name, regions, dirty) in [
        ("1M_regions_1_dirty", 1_000_000u64, 1u64),
        ("1M_regions_10pct_dirty", 1_000_000, 100_000),
        ("16M_regions_1_dirty", 16_000_000, 1),
    ] {
        let dev = RamDev::new(64 << 11, 512).unwrap(); // 64 MiB
        let m = CloneMetadata::open(&dev, regions * 8, 8).unwrap();
        let mut x = 88172645463325252u64;
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    for _ in 0..dirty {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        m.set_region_hydrated(x % regions).unwrap();
                    }
                },
                |()| {
                    m.pre_commit().unwrap();
                    m.commit().unwrap();
                },
                BatchSize::PerIteration,
            )
        });
        let w0 = dev.stats().writes;
        m.set_region_hydrated(regions / 2).unwrap();
        m.pre_commit().unwrap();
        m.commit().unwrap();
        eprintln!("{name}: a 1-region commit writes {} metadata blocks", dev.stats().writes - w0);
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
