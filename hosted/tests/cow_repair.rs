// SPDX-License-Identifier: GPL-2.0-only
//! `dmrs cow repair` on each corruption kind of cow_check.rs: the new COW
//! passes `cow check`, keeps exactly the exceptions the note says, and
//! their data chunks come along.

mod common;
use common::*;
use dmrs_core::exception_store::disk::{write_exception, SNAP_MAGIC};
use std::path::{Path, PathBuf};

fn header(magic: u32, valid: u32, version: u32, chunk: u32) -> Vec<u8> {
    [magic, valid, version, chunk].iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A COW of `chunks` chunks of 16 sectors; data chunk c holds "DATA<c>".
fn image(dir: &Path, name: &str, hdr: &[u8], slots: &[(u64, u64)], chunks: usize) -> PathBuf {
    let mut b = vec![0u8; chunks * 8192];
    for (c, chunk) in b.chunks_mut(8192).enumerate().skip(2) {
        chunk.copy_from_slice(&pattern(&format!("DATA{c}"), 8192));
    }
    b[..8192].fill(0);
    b[..hdr.len()].copy_from_slice(hdr);
    b[8192..16384].fill(0);
    for (i, &(o, n)) in slots.iter().enumerate() {
        write_exception(&mut b[8192..16384], i as u32, o, n).unwrap();
    }
    let p = dir.join(name);
    std::fs::write(&p, b).unwrap();
    p
}

/// The (old, new) pairs `cow dump` lists.
fn pairs(p: &Path) -> Vec<(u64, u64)> {
    let out = stdout(&dmrs(&["cow", "dump", p.to_str().unwrap()]));
    out.lines()
        .skip(1)
        .map(|l| {
            let mut w = l.split(' ').map(|x| x.parse().unwrap());
            (w.next().unwrap(), w.next().unwrap())
        })
        .collect()
}

#[test]
fn each_corruption_kind_repairs_to_a_checked_cow_losing_what_the_note_says() {
    let d = tempfile::tempdir().unwrap();
    let ok = header(SNAP_MAGIC, 1, 1, 16);
    type Case = (&'static str, Vec<u8>, Vec<(u64, u64)>, Vec<&'static str>, Vec<(u64, u64)>, &'static str);
    let full: Vec<(u64, u64)> = (0..512).map(|i| (i, 2 + i)).collect();
    let cases: Vec<Case> = vec![
        (
            "magic",
            header(0x12345678, 1, 1, 16),
            vec![(5, 2), (6, 3)],
            vec!["--chunk-size", "16"],
            vec![(5, 2), (6, 3)],
            "kept 2",
        ),
        ("version", header(SNAP_MAGIC, 1, 2, 16), vec![(5, 2)], vec!["--chunk-size", "16"], vec![(5, 2)], "kept 1"),
        ("chunk", header(SNAP_MAGIC, 1, 1, 24), vec![(5, 2)], vec!["--chunk-size", "16"], vec![(5, 2)], "kept 1"),
        ("beyond", ok.clone(), vec![(5, 64), (6, 3)], vec![], vec![(6, 3)], "1 beyond the device"),
        ("meta", ok.clone(), vec![(5, 1), (6, 3)], vec![], vec![(6, 3)], "1 on metadata"),
        ("twice-new", ok.clone(), vec![(5, 2), (6, 2), (7, 3)], vec![], vec![(7, 3)], "2 sharing a new_chunk"),
        ("twice-old", ok.clone(), vec![(5, 2), (5, 3)], vec![], vec![(5, 2)], "1 remapping an old_chunk again"),
        (
            "origin",
            ok.clone(),
            vec![(64, 2), (6, 3)],
            vec!["--origin-sectors", "1024"],
            vec![(6, 3)],
            "1 beyond the origin",
        ),
        ("trunc", ok.clone(), full.clone(), vec![], full[..511].to_vec(), "1 for lack of room; walk stopped"),
    ];
    for (name, hdr, slots, extra, kept, note) in cases {
        let chunks = if name == "trunc" { 514 } else { 64 };
        let broken = image(d.path(), name, &hdr, &slots, chunks);
        let new = d.path().join(format!("{name}.new"));
        let mut a = vec!["cow", "repair", "-i", broken.to_str().unwrap(), "-o", new.to_str().unwrap()];
        a.extend_from_slice(&extra);
        let r = dmrs(&a);
        assert!(r.status.success(), "{name}: {}", String::from_utf8_lossy(&r.stderr));
        assert!(stdout(&r).contains(note), "{name}: {}", stdout(&r));
        let c = dmrs(&["cow", "check", new.to_str().unwrap()]);
        assert!(c.status.success(), "{name}: {}", stdout(&c));
        // The kept exceptions, in order, at the chunks the kernel would
        // allocate, each with the data its broken slot pointed at.
        let got = pairs(&new);
        assert_eq!(got.iter().map(|p| p.0).collect::<Vec<_>>(), kept.iter().map(|p| p.0).collect::<Vec<_>>(), "{name}");
        let nb = std::fs::read(&new).unwrap();
        let bb = std::fs::read(&broken).unwrap();
        for (&(_, to), &(_, from)) in got.iter().zip(kept.iter()) {
            let (t, f) = (to as usize * 8192, from as usize * 8192);
            assert!(nb[t..t + 8192] == bb[f..f + 8192], "{name}: chunk {from} -> {to}");
        }
        // The new COW is valid: repairing onto it again needs --force.
        let again = dmrs(&a);
        assert_eq!(again.status.code(), Some(2), "{name}");
    }
    // Without --chunk-size a destroyed header is a usage error (2), not a guess.
    for (n, h) in [
        ("m2", header(0x12345678, 1, 1, 16)),
        ("c2", header(SNAP_MAGIC, 1, 1, 24)),
        ("v2", header(SNAP_MAGIC, 1, 2, 16)),
    ] {
        let broken = image(d.path(), n, &h, &[(5, 2)], 64);
        let r = dmrs(&["cow", "repair", "-i", broken.to_str().unwrap(), "-o", d.path().join("x").to_str().unwrap()]);
        assert_eq!(r.status.code(), Some(2), "{n}");
        assert!(String::from_utf8_lossy(&r.stderr).contains("give --chunk-size"), "{n}");
    }
}

#[test]
fn repair_of_a_kernel_cow_keeps_everything() {
    let d = tempfile::tempdir().unwrap();
    let p = kernel_image(d.path(), "cow-P16.img");
    let new = d.path().join("new.img");
    let r = dmrs(&["cow", "repair", "-i", p.to_str().unwrap(), "-o", new.to_str().unwrap()]);
    assert!(stdout(&r).starts_with("repaired: kept 1034 exceptions; dropped 0 beyond"), "{}", stdout(&r));
    // Same layout, same data: the kernel's own COW back, byte for byte.
    assert!(std::fs::read(&p).unwrap() == std::fs::read(&new).unwrap());
    // A sparse COW (data chunks that are holes) repairs into a sparse one;
    // onto an existing file, zero chunks are written (it may hold data).
    let sparse = d.path().join("sparse.img");
    let f = std::fs::File::create(&sparse).unwrap();
    f.set_len(64 << 20).unwrap();
    let mut meta = vec![0u8; 16384];
    meta[..16].copy_from_slice(&header(SNAP_MAGIC, 1, 1, 16));
    for i in 0..500u64 {
        write_exception(&mut meta[8192..], i as u32, i * 3, 2 + i).unwrap();
    }
    std::os::unix::fs::FileExt::write_all_at(&f, &meta, 0).unwrap();
    let out = d.path().join("sparse.new");
    assert!(dmrs(&["cow", "repair", "-i", sparse.to_str().unwrap(), "-o", out.to_str().unwrap()]).status.success());
    use std::os::unix::fs::MetadataExt;
    assert!(std::fs::metadata(&out).unwrap().blocks() * 512 < 1 << 20, "500 zero chunks stayed holes");
    std::fs::write(&out, pattern("OLD", 64 << 20)).unwrap();
    let r = dmrs(&["cow", "repair", "--force", "-i", sparse.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(r.status.success());
    let b = std::fs::read(&out).unwrap();
    assert!(b[2 * 8192..502 * 8192].iter().all(|&x| x == 0), "zero chunks written over old data");

    // Repairing a COW onto itself (even forced) or merging a file onto itself is refused.
    let before = std::fs::read(&p).unwrap();
    let r = dmrs(&["cow", "repair", "--force", "-i", p.to_str().unwrap(), "-o", p.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(2));
    let r = dmrs(&["cow", "merge", "--origin", p.to_str().unwrap(), p.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(2));
    let r = dmrs(&["clone", "repair", "--force", "-i", p.to_str().unwrap(), "-o", p.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(2));
    assert!(std::fs::read(&p).unwrap() == before);
}
