// SPDX-License-Identifier: GPL-2.0-only
//! `dmrs clone dump|check` on the kernel's dm-clone metadata, and on
//! corrupted copies of it.

mod common;
use common::*;
use std::path::Path;

fn run(args: &[&str]) -> (i32, String, String) {
    let o = dmrs(args);
    (o.status.code().unwrap_or(-1), stdout(&o), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn corrupt(src: &Path, dst: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = std::fs::read(src).unwrap();
    f(&mut b);
    std::fs::write(dst, b).unwrap();
}

#[test]
fn the_kernels_clone_metadata_reads_and_checks() {
    let d = tempfile::tempdir().unwrap();
    let m = kernel_image(d.path(), "clone-meta.img");
    let m = m.to_str().unwrap();
    let (code, out, _) = run(&["clone", "dump", m]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "superblock version=1 region_size=8 target_size=131072 regions=16384 hydrated=16384 metadata_blocks=6/1024\n0 16384\n"
    );
    let (code, out, _) = run(&["clone", "check", m]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("consistent: superblock version=1"));
    let j: serde_json::Value = serde_json::from_slice(&dmrs(&["clone", "dump", "--json", m]).stdout).unwrap();
    assert_eq!(j["superblock"]["metadata_blocks_used"], 6);
    assert_eq!(j["hydrated"][0][1], 16384);
}

#[test]
fn corruption_is_reported_never_a_panic() {
    let d = tempfile::tempdir().unwrap();
    let m = kernel_image(d.path(), "clone-meta.img");
    let c = d.path().join("c.img");
    let check = |f: &dyn Fn(&mut Vec<u8>)| {
        corrupt(&m, &c, f);
        run(&["clone", "check", c.to_str().unwrap()])
    };
    // Superblock: magic, checksum, version, location.
    let (code, out, _) = check(&|b| b[32] ^= 1);
    assert_eq!(code, 1);
    assert!(out.starts_with("Superblock check failed: magic 2331148133, expected 2331148132"), "{out}");
    let (_, out, _) = check(&|b| b[300] = 1);
    assert!(out.starts_with("Superblock check failed: checksum "), "{out}");
    let (_, out, _) = check(&|b| b[8] = 5);
    assert!(out.starts_with("Superblock check failed: blocknr 5, expected 0"), "{out}");
    // The bitset root (block 24) and the index (block 25): checksums.
    let (code, out, _) = check(&|b| b[24 * 4096 + 100] ^= 0xff);
    assert_eq!(code, 1);
    assert!(out.contains("region bitset: block 24: csum"), "{out}");
    let (_, out, _) = check(&|b| b[25 * 4096 + 40] ^= 0xff);
    assert!(out.contains("space map index: block 25: csum"), "{out}");
    // `dump` of metadata `check` finds damaged fails as well: a bitset that
    // does not verify must not read as "nothing hydrated".
    let (code, out, err) = run(&["clone", "dump", c.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("space map index: block 25: csum"), "{err}");
    corrupt(&m, &c, |b| b[24 * 4096 + 100] ^= 0xff);
    let (code, _, err) = run(&["clone", "dump", c.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("region bitset: block 24: csum"), "{err}");
    // A huge target size with a valid checksum: refused at once, not walked.
    corrupt(&m, &c, |b| {
        b[180..188].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        let csum = dmrs_core::pdata::checksum::dm_bm_checksum(
            &b[4..4096],
            dmrs_core::pdata::checksum::CLONE_SUPERBLOCK_CSUM_XOR,
        );
        b[..4].copy_from_slice(&csum.to_le_bytes());
    });
    let (code, _, err) = run(&["clone", "dump", c.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("more than the metadata device's 1024 blocks can hold"), "{err}");
    // Every block of the image, byte 50 flipped: an error or fine, never a crash.
    for blk in 0..30 {
        corrupt(&m, &c, |b| b[blk * 4096 + 50] ^= 0x5a);
        let (code, _, _) = run(&["clone", "check", c.to_str().unwrap()]);
        assert!(code == 0 || code == 1, "block {blk}: exit {code}");
        let (code, _, _) = run(&["clone", "dump", c.to_str().unwrap()]);
        assert!(code == 0 || code == 1, "block {blk}: exit {code}");
    }
    // All zeros: the kernel would format.
    std::fs::write(&c, vec![0u8; 1 << 20]).unwrap();
    assert_eq!(run(&["clone", "dump", c.to_str().unwrap()]).1, "superblock new\n");
    // Truncated.
    corrupt(&m, &c, |b| b.truncate(8192));
    let (code, out, _) = run(&["clone", "check", c.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.contains("space map covers 1024 blocks, the device has 2"), "{out}");
}
