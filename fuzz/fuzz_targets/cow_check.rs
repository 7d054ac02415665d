// SPDX-License-Identifier: GPL-2.0-only
//! A COW device's bytes through the persistent store's reader (a snapshot
//! table loading it) and through `cow check` and `cow dump`: an error or a
//! report, never a panic, a hang or an allocation sized from the data.
#![no_main]

use dmrs_core::dm::SyncIo;
use dmrs_core::platform::{RamDev, SyncCopier};
use dmrs_core::snapshot::SnapshotDriver;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Whole sectors, at most 4 MiB.
    let len = (data.len().min(4 << 20) + 511) / 512 * 512;
    let mut bytes = data[..data.len().min(len)].to_vec();
    bytes.resize(len.max(512), 0);
    let Ok(cow) = RamDev::from_bytes(&bytes, 512) else { return };
    let Ok(origin) = RamDev::new(8192, 512) else { return };
    let report = dmrs_hosted::cow::check_device(&cow, Some(8192), &|_| {});
    let img = dmrs_hosted::cow::scan(&cow);
    let _ = dmrs_hosted::cow::dump_text(&img);
    let Ok(drv) = SnapshotDriver::new(SyncIo::<_, SyncCopier>::default()) else { return };
    let named = (origin.named("origin"), cow.named("cow"));
    let r = drv.snapshot_ctr(false, 8192, &["origin", "cow", "P", "0"], &mut |p| {
        Ok(if p == "origin" { &named.0 } else { &named.1 })
    });
    if let Ok(id) = r {
        let _ = drv.snapshot_resume(id);
        let mut b = [0u8; 4096];
        let _ = drv.snapshot_read(id, 0, &mut b);
        drv.snapshot_dtr(id);
    }
    let _ = report;
});
