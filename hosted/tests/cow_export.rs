// SPDX-License-Identifier: GPL-2.0-only
//! `dmrs cow export`: the snapshot's view of the kernel's snap-persistent
//! images is what the kernel's merge left in the origin (the snapshot's
//! view by definition), byte for byte; --changed-only writes only the
//! changed chunks and leaves holes elsewhere.

mod common;
use common::*;
use std::os::unix::fs::MetadataExt;

#[test]
fn export_gives_the_snapshots_view() {
    let d = tempfile::tempdir().unwrap();
    let origin = kernel_image(d.path(), "origin-P16.img");
    let cow = kernel_image(d.path(), "cow-P16.img");
    let view = kernel_image(d.path(), "origin-merged.img");
    let out = d.path().join("snap.raw");
    let (o, c, x) = (origin.to_str().unwrap(), cow.to_str().unwrap(), out.to_str().unwrap());
    let r = dmrs(&["cow", "export", "--origin", o, c, "-o", x]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(stdout(&r), "exported: 1034 chunks from the COW, 8192 chunks written\n");
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&view).unwrap(), "view differs from the kernel's");

    let r = dmrs(&["cow", "export", "--changed-only", "-q", "--origin", o, c, "-o", x]);
    assert!(r.status.success() && r.stdout.is_empty());
    let got = std::fs::read(&out).unwrap();
    let want = std::fs::read(&view).unwrap();
    assert_eq!(got.len(), want.len());
    let changed =
        |chunk: usize| (128..136).contains(&chunk) || (512..514).contains(&chunk) || (2048..3072).contains(&chunk);
    for (i, (g, w)) in got.chunks(8192).zip(want.chunks(8192)).enumerate() {
        if changed(i) {
            assert!(g == w, "chunk {i}");
        } else {
            assert!(g.iter().all(|&b| b == 0), "chunk {i} should be a hole");
        }
    }
    // Sparse: about 1034 chunks of 8 KiB allocated, not 64 MiB.
    assert!(std::fs::metadata(&out).unwrap().blocks() * 512 < 16 << 20);

    // An invalid snapshot has no view to export.
    let po = kernel_image(d.path(), "cowPO.img");
    let r = dmrs(&["cow", "export", "--origin", o, po.to_str().unwrap(), "-o", x]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("invalid"));
}
