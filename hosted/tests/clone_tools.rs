// SPDX-License-Identifier: GPL-2.0-only
//! `dmrs clone dump --format xml`, `clone restore` (restore → dump equals
//! the original dump, kernel image included) and `clone repair` (only
//! bits that verify are kept; regions in doubt become unhydrated).

mod common;
use common::*;
use std::path::Path;

fn run(args: &[&str]) -> (i32, String, String) {
    let o = dmrs(args);
    (o.status.code().unwrap_or(-1), stdout(&o), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn zeroed(p: &Path, len: u64) {
    std::fs::File::create(p).unwrap().set_len(len).unwrap();
}

#[test]
fn restore_then_dump_equals_the_original_dump() {
    let d = tempfile::tempdir().unwrap();
    let m = kernel_image(d.path(), "clone-meta.img");
    let m = m.to_str().unwrap();
    let orig = run(&["clone", "dump", m]).1;
    let (_, xml, _) = run(&["clone", "dump", "--format", "xml", m]);
    assert_eq!(
        xml,
        "<superblock version=\"1\" region_size=\"8\" target_size=\"131072\" regions=\"16384\" hydrated=\"16384\" \
         metadata_blocks_used=\"6\" metadata_blocks_total=\"1024\">\n  <range begin=\"0\" length=\"16384\"/>\n</superblock>\n"
    );
    for fmt in ["text", "json", "xml"] {
        let dump = d.path().join(format!("d.{fmt}"));
        assert_eq!(run(&["clone", "dump", "--format", fmt, m, "-o", dump.to_str().unwrap()]).0, 0);
        let new = d.path().join("new.img");
        zeroed(&new, 4 << 20);
        let (code, _, err) = run(&[
            "clone",
            "restore",
            "-i",
            dump.to_str().unwrap(),
            "-o",
            new.to_str().unwrap(),
            "--region-size",
            "8",
            "--target-size",
            "131072",
        ]);
        assert_eq!(code, 0, "{fmt}: {err}");
        assert_eq!(run(&["clone", "dump", new.to_str().unwrap()]).1, orig, "{fmt}");
        assert_eq!(run(&["clone", "check", "-q", new.to_str().unwrap()]).0, 0);
        // Valid metadata is not overwritten without --force.
        let (code, _, err) = run(&["clone", "restore", "-i", dump.to_str().unwrap(), "-o", new.to_str().unwrap()]);
        assert_eq!(code, 2);
        assert!(err.contains("--force"));
    }
    // Sizes must agree with the dump's; ranges must fit.
    let dump = d.path().join("d.text");
    let new = d.path().join("new.img");
    let (code, _, err) = run(&[
        "clone",
        "restore",
        "--force",
        "-i",
        dump.to_str().unwrap(),
        "-o",
        new.to_str().unwrap(),
        "--region-size",
        "16",
    ]);
    assert_eq!(code, 2, "{err}");
    std::fs::write(&dump, "superblock new\n5 10\n").unwrap();
    let (code, _, err) = run(&[
        "clone",
        "restore",
        "--force",
        "-i",
        dump.to_str().unwrap(),
        "-o",
        new.to_str().unwrap(),
        "--region-size",
        "8",
        "--target-size",
        "64",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("beyond 8 regions"), "{err}");
}

#[test]
fn partial_dumps_round_trip_and_repair_keeps_only_verified_words() {
    let d = tempfile::tempdir().unwrap();
    // 3 array blocks of 509 words: 97,728 regions, every third run hydrated.
    let regions = 509 * 64 * 3;
    let runs: Vec<(u64, u64)> = (0..regions / 1000).map(|i| (i * 1000 + i % 7, 300 + i % 11)).collect();
    let text = format!(
        "superblock version=1 region_size=8 target_size={}\n{}",
        regions * 8,
        runs.iter().map(|(b, l)| format!("{b} {l}\n")).collect::<String>()
    );
    let dump = d.path().join("d.txt");
    std::fs::write(&dump, &text).unwrap();
    let meta = d.path().join("m.img");
    zeroed(&meta, 4 << 20);
    assert_eq!(run(&["clone", "restore", "-q", "-i", dump.to_str().unwrap(), "-o", meta.to_str().unwrap()]).0, 0);
    let orig = run(&["clone", "dump", meta.to_str().unwrap()]).1;
    assert!(orig.lines().skip(1).eq(text.lines().skip(1)), "restore → dump keeps every range");
    let hydrated = |dump: &str| -> Vec<(u64, u64)> {
        dump.lines()
            .skip(1)
            .map(|l| {
                let mut w = l.split(' ').map(|x| x.parse::<u64>().unwrap());
                (w.next().unwrap(), w.next().unwrap())
            })
            .collect()
    };
    let set = |r: &[(u64, u64)]| r.iter().flat_map(|&(b, l)| b..b + l).collect::<std::collections::BTreeSet<u64>>();
    let all = set(&hydrated(&orig));
    let bytes = std::fs::read(&meta).unwrap();
    let mut one_block_lost = 0;
    for blk in 1..40 {
        let mut b = bytes.clone();
        b[blk * 4096 + 200] ^= 0x5a;
        let broken = d.path().join("broken.img");
        std::fs::write(&broken, &b).unwrap();
        let new = d.path().join("new.img");
        let _ = std::fs::remove_file(&new);
        let (code, out, err) = run(&["clone", "repair", "-i", broken.to_str().unwrap(), "-o", new.to_str().unwrap()]);
        assert_eq!(code, 0, "block {blk}: {err}");
        assert_eq!(run(&["clone", "check", new.to_str().unwrap()]).0, 0, "block {blk}");
        let got = set(&hydrated(&run(&["clone", "dump", new.to_str().unwrap()]).1));
        assert!(got.is_subset(&all), "block {blk}: a region became hydrated");
        let doubt: u64 =
            out.lines().last().unwrap().split("; ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        // What was lost is exactly what is in doubt, within hydrated ones.
        assert!((all.len() - got.len()) as u64 <= doubt, "block {blk}: {out}");
        if doubt == 509 * 64 {
            one_block_lost += 1;
            assert!(got.len() > all.len() / 2, "the other blocks' words are kept");
        }
    }
    assert_eq!(one_block_lost, 3, "each of the 3 array blocks, lost alone, costs only its own regions");
    // No superblock: sizes must be given; then everything is in doubt.
    let mut b = bytes.clone();
    b[..4096].fill(0xee);
    let broken = d.path().join("nosb.img");
    std::fs::write(&broken, &b).unwrap();
    let new = d.path().join("new2.img");
    assert_eq!(run(&["clone", "repair", "-i", broken.to_str().unwrap(), "-o", new.to_str().unwrap()]).0, 2);
    let (code, out, _) = run(&[
        "clone",
        "repair",
        "-i",
        broken.to_str().unwrap(),
        "-o",
        new.to_str().unwrap(),
        "--region-size",
        "8",
        "--target-size",
        &(regions * 8).to_string(),
    ]);
    assert_eq!(code, 0);
    assert!(
        out.ends_with(&format!("0 hydrated regions kept; {regions} regions in doubt marked unhydrated\n")),
        "{out}"
    );
}

/// A superblock forged to claim 2^47 regions (checksum recomputed) is
/// refused before anything is sized from it: exit 2, no crash.
#[test]
fn forged_sizes_are_bounded_before_allocating() {
    use dmrs_core::pdata::checksum::{dm_bm_checksum, CLONE_SUPERBLOCK_CSUM_XOR};
    let d = tempfile::tempdir().unwrap();
    let m = kernel_image(d.path(), "clone-meta.img");
    let mut b = std::fs::read(&m).unwrap();
    b[180..188].copy_from_slice(&(1u64 << 50).to_le_bytes());
    let csum = dm_bm_checksum(&b[4..4096], CLONE_SUPERBLOCK_CSUM_XOR);
    b[..4].copy_from_slice(&csum.to_le_bytes());
    let forged = d.path().join("forged.img");
    std::fs::write(&forged, &b).unwrap();
    let new = d.path().join("new.img");
    let (code, _, err) = run(&["clone", "repair", "-i", forged.to_str().unwrap(), "-o", new.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot fit a bitset on this device"), "{err}");
    let dump = d.path().join("d.txt");
    std::fs::write(&dump, "superblock new\n").unwrap();
    let (code, _, err) = run(&[
        "clone",
        "restore",
        "-i",
        dump.to_str().unwrap(),
        "-o",
        new.to_str().unwrap(),
        "--region-size",
        "1",
        "--target-size",
        "1125899906842624",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot fit a bitset"), "{err}");
}
