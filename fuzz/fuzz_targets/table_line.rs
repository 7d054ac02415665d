// SPDX-License-Identifier: GPL-2.0-only
//! Table lines for `snapshot`, `snapshot-merge`, `snapshot-origin` and
//! `clone` through the targets' constructors on RAM devices: the kernel's
//! error or a target, never a panic.
#![no_main]

use dmrs_core::args::split_args;
use dmrs_core::clone::target::CloneTarget;
use dmrs_core::dm::SyncIo;
use dmrs_core::platform::{DmDevice, RamDev, SyncCopier};
use dmrs_core::snapshot::ctr::parse_origin_args;
use dmrs_core::snapshot::SnapshotDriver;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else { return };
    let Some(argv) = split_args(line) else { return };
    let (Ok(a), Ok(b), Ok(c)) = (RamDev::new(4096, 512), RamDev::new(4096, 512), RamDev::new(8192, 512)) else {
        return;
    };
    let devs = [a.named("a"), b.named("b"), c.named("c")];
    let get = |p: &str| devs.iter().find(|d| d.name() == p).ok_or(dmrs_core::Errno::ENOENT);
    let _ = parse_origin_args(&argv);
    if let Ok(drv) = SnapshotDriver::new(SyncIo::<_, SyncCopier>::default()) {
        for merge in [false, true] {
            if let Ok(id) = drv.snapshot_ctr(merge, 4096, &argv, &mut |p| get(p)) {
                let _ = drv.snapshot_resume(id);
                drv.snapshot_dtr(id);
            }
        }
    }
    let _ = <CloneTarget<_, _>>::ctr(4096, &argv, &mut |p| get(p), SyncCopier::default());
});
