// SPDX-License-Identifier: GPL-2.0-only
//! `dmrs cow check` finds each kind of problem; `dump` handles new and
//! corrupt headers; bad input is an error, never a panic.

mod common;
use common::*;
use dmrs_core::exception_store::disk::{write_exception, SNAP_MAGIC};
use std::path::{Path, PathBuf};

fn header(magic: u32, valid: u32, version: u32, chunk: u32) -> Vec<u8> {
    [magic, valid, version, chunk].iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A COW of `chunks` chunks of 16 sectors with the given header and area-0 slots.
fn image(dir: &Path, name: &str, hdr: &[u8], slots: &[(u64, u64)], chunks: usize) -> PathBuf {
    let mut b = vec![0u8; chunks * 8192];
    b[..hdr.len()].copy_from_slice(hdr);
    for (i, &(o, n)) in slots.iter().enumerate() {
        write_exception(&mut b[8192..16384], i as u32, o, n).unwrap();
    }
    let p = dir.join(name);
    std::fs::write(&p, b).unwrap();
    p
}

fn check(p: &Path, extra: &[&str]) -> (i32, String) {
    let mut a = vec!["cow", "check", p.to_str().unwrap()];
    a.extend_from_slice(extra);
    let o = dmrs(&a);
    (o.status.code().unwrap(), stdout(&o))
}

#[test]
fn each_problem_is_reported_on_its_own_line() {
    let d = tempfile::tempdir().unwrap();
    let ok = header(SNAP_MAGIC, 1, 1, 16);
    let p = image(d.path(), "a", &ok, &[(5, 2), (6, 3)], 64);
    assert_eq!(check(&p, &["--origin-sectors", "1024"]).0, 0);

    type Case = (&'static str, Vec<u8>, Vec<(u64, u64)>, &'static str);
    let cases: &[Case] = &[
        (
            "magic",
            header(0x12345678, 1, 1, 16),
            vec![],
            "bad magic 0x12345678 (expected 0x70416e53): Invalid or corrupt snapshot",
        ),
        ("version", header(SNAP_MAGIC, 1, 2, 16), vec![], "unable to handle snapshot disk version 2"),
        (
            "chunk",
            header(SNAP_MAGIC, 1, 1, 24),
            vec![],
            "invalid on-disk chunk size 24: Chunk size is not a power of 2",
        ),
        (
            "beyond",
            ok.clone(),
            vec![(5, 64)],
            "area 0 slot 0: new_chunk 64 is beyond the end of the device (64 chunks)",
        ),
        ("meta", ok.clone(), vec![(5, 1)], "area 0 slot 0: new_chunk 1 is on a metadata area"),
        (
            // The usage line's arithmetic on it must not overflow.
            "huge-new",
            ok.clone(),
            vec![(5, u64::MAX)],
            "area 0 slot 0: new_chunk 18446744073709551615 is beyond the end of the device (64 chunks)",
        ),
        (
            "twice-new",
            ok.clone(),
            vec![(5, 2), (6, 2)],
            "area 0 slot 1: new_chunk 2 is used twice (also area 0 slot 0)",
        ),
        (
            "twice-old",
            ok.clone(),
            vec![(5, 2), (5, 3)],
            "area 0 slot 1: old_chunk 5 is remapped twice (also area 0 slot 0)",
        ),
        ("origin", ok.clone(), vec![(64, 2)], "area 0 slot 0: old_chunk 64 is beyond the origin (64 chunks)"),
        (
            // Slot 1 is the terminator; slot 2 would turn live at the next
            // commit (the kernel writes its in-memory area back whole).
            "after-terminator",
            ok.clone(),
            vec![(5, 2), (0, 0), (7, 4)],
            "area 0 slot 2: a non-zero exception after the terminator (slot 1); 1 such slot(s) become live exceptions at the next commit",
        ),
    ];
    for (name, hdr, slots, want) in cases {
        let p = image(d.path(), name, hdr, slots, 64);
        let (code, out) = check(&p, &["--origin-sectors", "1024"]);
        assert_eq!(code, 1, "{name}: {out}");
        assert_eq!(out.lines().next(), Some(*want), "{name}");
        assert!(out.lines().last().unwrap().starts_with("inconsistent") || *name == "magic", "{name}: {out}");
    }
    // Truncated: a full first area whose successor lies past the end.
    let full: Vec<(u64, u64)> = (0..512).map(|i| (i, 2 + i)).collect();
    let p = image(d.path(), "trunc", &ok, &full, 514);
    let (code, out) = check(&p, &[]);
    assert_eq!(code, 1);
    assert!(
        out.starts_with("truncated: metadata area 1 at chunk 514 is beyond the end of the device (514 chunks)"),
        "{out}"
    );
    // A file smaller than a sector.
    let tiny = d.path().join("tiny");
    std::fs::write(&tiny, b"SnAp").unwrap();
    let (code, out) = check(&tiny, &[]);
    assert_eq!(code, 1);
    assert!(out.starts_with("truncated: cannot read the header sector"), "{out}");
}

#[test]
fn dump_of_new_and_missing_files() {
    let d = tempfile::tempdir().unwrap();
    let p = image(d.path(), "zero", &[0u8; 16], &[(5, 2)], 4);
    let o = dmrs(&["cow", "dump", p.to_str().unwrap()]);
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(0), "header new\n"));
    let j = dmrs(&["cow", "dump", "--json", p.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    assert_eq!(v["header"], "new");
    let (code, out) = check(&p, &[]);
    assert_eq!((code, out.as_str()), (0, "new COW (all-zero header): no exceptions\n"));
    let o = dmrs(&["cow", "dump", "/nonexistent/cow.img"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("No such file or directory"));
}

#[test]
fn fuzzed_headers_and_areas_never_panic() {
    let d = tempfile::tempdir().unwrap();
    let mut x = 0x9e3779b97f4a7c15u64;
    for i in 0..40 {
        let mut b = vec![0u8; 16 * 8192];
        for w in b.chunks_mut(8).take(4096) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&(x % 4096).to_le_bytes());
        }
        if i % 2 == 0 {
            b[..16].copy_from_slice(&header(SNAP_MAGIC, 1, 1, [1, 2, 16, 1 << 20][i % 4]));
        }
        let p = d.path().join(format!("f{i}"));
        std::fs::write(&p, &b).unwrap();
        for args in [vec!["cow", "check", p.to_str().unwrap()], vec!["cow", "dump", p.to_str().unwrap()]] {
            let code = dmrs(&args).status.code();
            assert!(matches!(code, Some(0) | Some(1)), "{args:?} -> {code:?}");
        }
    }
}
