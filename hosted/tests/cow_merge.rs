// SPDX-License-Identifier: GPL-2.0-only
//! `dmrs cow merge` gives the kernel's merge of the lab's snap-persistent
//! images byte for byte, also when interrupted after any step and resumed
//! by itself or by the snapshot-merge target; `cow changed` lists the
//! kernel image's changed ranges; `cow size` is enough and not more.

mod common;
use common::*;
use dmrs_core::exception::DmException;
use dmrs_core::exception_store::{ExceptionStore, Metadata};
use dmrs_core::platform::RamDev;
use std::path::Path;

fn same(a: &Path, b: &Path) -> bool {
    std::fs::read(a).unwrap() == std::fs::read(b).unwrap()
}

#[test]
fn offline_merge_equals_the_kernels_merge() {
    let d = tempfile::tempdir().unwrap();
    let k = d.path().join("k");
    std::fs::create_dir(&k).unwrap();
    let (want_origin, want_cow) = (kernel_image(&k, "origin-merged.img"), kernel_image(&k, "cow-P16-after-merge.img"));
    // The kernel's 1034 exceptions merge in 5 runs: 1024 in two areas, the
    // 8 + 2 of area 0 in three (2048..3071 cross an area boundary).
    for stop in [None, Some(0), Some(1), Some(2), Some(3), Some(4)] {
        let origin = kernel_image(d.path(), "origin-P16.img");
        let cow = kernel_image(d.path(), "cow-P16.img");
        let (o, c) = (origin.to_str().unwrap(), cow.to_str().unwrap());
        if let Some(n) = stop {
            let r = dmrs(&["cow", "merge", "--origin", o, c, "--stop-after", &n.to_string()]);
            assert!(stdout(&r).starts_with("merge interrupted"), "{}", stdout(&r));
            // Interrupted: consistent, fewer exceptions, and changed lists what is left.
            let chk = dmrs(&["cow", "check", c]);
            assert!(chk.status.success(), "{}", stdout(&chk));
        }
        let r = dmrs(&["cow", "merge", "--origin", o, c]);
        assert!(r.status.success(), "{:?}: {}", stop, String::from_utf8_lossy(&r.stderr));
        assert!(stdout(&r).starts_with("merge finished"));
        assert!(same(&origin, &want_origin), "{stop:?}: origin differs from the kernel's merge");
        assert!(same(&cow, &want_cow), "{stop:?}: COW differs from the kernel's merge");
        // Merging a merged COW is a no-op.
        assert_eq!(stdout(&dmrs(&["cow", "merge", "--origin", o, c])), "merge finished: 0 exceptions in 0 steps\n");
        assert!(same(&origin, &want_origin));
    }
}

#[test]
fn an_offline_merge_is_resumed_by_the_snapshot_merge_target() {
    let d = tempfile::tempdir().unwrap();
    let k = d.path().join("k");
    std::fs::create_dir(&k).unwrap();
    let origin = kernel_image(d.path(), "origin-P16.img");
    let cow = kernel_image(d.path(), "cow-P16.img");
    let r = dmrs(&["cow", "merge", "--origin", "origin-P16.img", "cow-P16.img", "--stop-after", "2"]);
    assert_eq!(r.status.code(), Some(2), "relative paths resolve in the cwd; this one has none");
    let (o, c) = (origin.to_str().unwrap(), cow.to_str().unwrap());
    assert!(dmrs(&["cow", "merge", "--origin", o, c, "--stop-after", "2"]).status.success());
    let state = d.path().join("state");
    let st = state.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut a = vec!["--state", st];
        a.extend_from_slice(args);
        let out = dmrs(&a);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        stdout(&out)
    };
    run(&["create", "m", "--table", &format!("0 131072 snapshot-merge {o} {c} P 16")]);
    run(&["wait", "m"]);
    run(&["remove", "m"]);
    assert!(same(&origin, &kernel_image(&k, "origin-merged.img")));
    assert!(same(&cow, &kernel_image(&k, "cow-P16-after-merge.img")));
}

#[test]
fn merge_refuses_invalid_and_foreign_cows() {
    let d = tempfile::tempdir().unwrap();
    let origin = d.path().join("o");
    std::fs::write(&origin, vec![0u8; 1 << 20]).unwrap();
    for (name, want) in [("cowPO.img", "invalid"), ("cowN.img", "bad magic")] {
        let c = kernel_image(d.path(), name);
        let r = dmrs(&["cow", "merge", "--origin", origin.to_str().unwrap(), c.to_str().unwrap()]);
        assert_eq!(r.status.code(), Some(1), "{name}");
        assert!(String::from_utf8_lossy(&r.stderr).contains(want), "{name}: {}", String::from_utf8_lossy(&r.stderr));
        assert!(std::fs::read(&origin).unwrap().iter().all(|&b| b == 0));
    }
}

#[test]
fn changed_lists_the_kernel_images_ranges() {
    let d = tempfile::tempdir().unwrap();
    let c = kernel_image(d.path(), "cow-P16.img");
    let c = c.to_str().unwrap();
    assert_eq!(stdout(&dmrs(&["cow", "changed", c])), "128 8\n512 2\n2048 1024\n");
    assert_eq!(stdout(&dmrs(&["cow", "changed", c, "--bytes"])), "1048576 65536\n4194304 16384\n16777216 8388608\n");
    let j: serde_json::Value =
        serde_json::from_slice(&dmrs(&["cow", "changed", c, "--format", "json"]).stdout).unwrap();
    assert_eq!(
        j,
        serde_json::json!({"chunk_size": 16, "unit": "chunks", "ranges": [[128, 8], [512, 2], [2048, 1024]]})
    );
    let merged = kernel_image(d.path(), "cow-P16-after-merge.img");
    assert_eq!(stdout(&dmrs(&["cow", "changed", merged.to_str().unwrap()])), "");
    // An invalidated snapshot's changes cannot be trusted: exit 1, no list.
    let po = kernel_image(d.path(), "cowPO.img");
    for fmt in ["text", "json"] {
        let r = dmrs(&["cow", "changed", "--format", fmt, po.to_str().unwrap()]);
        assert_eq!((r.status.code(), r.stdout.len()), (Some(1), 0), "{fmt}");
    }
}

/// Fills a COW of `sectors` with a copy of every chunk of an origin of
/// `origin_chunks`, as origin writes would; true when the store stays
/// valid and reloads with every exception.
fn holds_every_chunk(sectors: u64, chunk: u32, origin_chunks: u64) -> bool {
    let cow = RamDev::new(sectors, 512).unwrap();
    let cs = chunk.to_string();
    let (mut s, _) = ExceptionStore::<&RamDev, ()>::create(&["P", &cs], &cow, 512).unwrap();
    s.read_metadata(&mut |_, _| Ok(())).unwrap();
    for c in 0..origin_chunks {
        let mut e = DmException::new(c, 0);
        if s.prepare_exception(&mut e).is_err() {
            return false;
        }
        let mut ok = false;
        s.commit_exception(&e, true, (), &mut |(), v| ok = v);
        if !ok {
            return false;
        }
    }
    let (mut s, _) = ExceptionStore::<&RamDev, ()>::create(&["P", &cs], &cow, 512).unwrap();
    let mut n = 0;
    s.read_metadata(&mut |_, _| {
        n += 1;
        Ok(())
    }) == Ok(Metadata::Loaded)
        && n == origin_chunks
}

#[test]
fn size_is_enough_and_one_chunk_less_is_not() {
    // Chunk 8: 256 slots per area. 512 chunks fill two areas exactly (the
    // kernel then zeroes a third); 600 do not.
    for (origin_sectors, chunk) in [(512 * 8u64, 8u32), (600 * 8 - 3, 8), (100 * 32, 32)] {
        let out = stdout(&dmrs(&[
            "cow",
            "size",
            "--origin-size",
            &origin_sectors.to_string(),
            "--chunk-size",
            &chunk.to_string(),
        ]));
        let sectors: u64 = out.split_whitespace().next().unwrap().parse().unwrap();
        let chunks = origin_sectors.div_ceil(chunk as u64);
        assert!(holds_every_chunk(sectors, chunk, chunks), "{out}");
        assert!(!holds_every_chunk(sectors - chunk as u64, chunk, chunks), "{out}");
    }
    assert_eq!(
        stdout(&dmrs(&["cow", "size", "--origin-size", "64M", "--chunk-size", "16"])),
        "131360 sectors (67256320 bytes): 1 header + 17 metadata areas + 8192 data chunks of 16 sectors\n"
    );
    assert_eq!(dmrs(&["cow", "size", "--origin-size", "64M", "--chunk-size", "24"]).status.code(), Some(2));
}
