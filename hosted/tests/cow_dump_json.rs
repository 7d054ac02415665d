// SPDX-License-Identifier: GPL-2.0-only
//! `dmrs cow dump --format json` streams the exceptions but keeps the
//! format: the bytes are those of the whole-image `cow::dump_json` (keys
//! sorted, compact), every exception is there in on-disk order, and a
//! problem found at the end of the walk still comes first in `errors`.

mod common;
use common::*;
use dmrs_core::exception_store::disk::{exceptions_per_area, write_exception, SNAP_MAGIC};
use dmrs_hosted::filedev::{FileDev, OpenMode};
use std::path::Path;

fn header(magic: u32, valid: u32, version: u32, chunk: u32) -> Vec<u8> {
    [magic, valid, version, chunk].iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// What the dump was before it streamed: the image scanned whole, then printed.
fn whole(p: &Path) -> String {
    let dev = FileDev::open(p, OpenMode { read_only: true, direct: false }).unwrap();
    format!("{}\n", dmrs_hosted::cow::dump_json(&dmrs_hosted::cow::scan(&dev)))
}

fn dump(p: &Path) -> (Option<i32>, String) {
    let o = dmrs(&["cow", "dump", "--format", "json", p.to_str().unwrap()]);
    (o.status.code(), stdout(&o))
}

#[test]
fn json_dump_is_byte_for_byte_the_whole_image_dump() {
    let d = tempfile::tempdir().unwrap();
    // A small COW: the exact bytes, pinned.
    let mut b = vec![0u8; 64 * 8192];
    b[..16].copy_from_slice(&header(SNAP_MAGIC, 1, 1, 16));
    for (i, (o, n)) in [(5u64, 2u64), (6, 3), (1 << 40, 4)].into_iter().enumerate() {
        write_exception(&mut b[8192..16384], i as u32, o, n).unwrap();
    }
    let p = d.path().join("small");
    std::fs::write(&p, &b).unwrap();
    let want = "{\"errors\":[],\"exceptions\":[{\"new_chunk\":2,\"old_chunk\":5},{\"new_chunk\":3,\"old_chunk\":6},\
                {\"new_chunk\":4,\"old_chunk\":1099511627776}],\"header\":{\"chunk_size\":16,\"magic\":1883336275,\
                \"valid\":1,\"version\":1}}\n";
    assert_eq!(dump(&p), (Some(0), want.to_string()));
    assert_eq!(whole(&p), want);

    // Several full areas and a partial one: every exception, in slot order.
    let epa = exceptions_per_area(16) as u64;
    let n = 3 * epa + 7;
    let mut b = vec![0u8; (2 + 4 * (epa + 1) as usize + n as usize) * 8192];
    b[..16].copy_from_slice(&header(SNAP_MAGIC, 1, 1, 16));
    for i in 0..n {
        let (area, slot) = (i / epa, i % epa);
        let at = (1 + area * (epa + 1)) as usize * 8192;
        write_exception(&mut b[at..at + 8192], slot as u32, i * 3 + 1, 10_000 + i).unwrap();
    }
    let p = d.path().join("areas");
    std::fs::write(&p, &b).unwrap();
    let (code, got) = dump(&p);
    assert_eq!(code, Some(0));
    assert!(got == whole(&p), "streamed JSON differs from the whole-image dump");
    let v: serde_json::Value = serde_json::from_str(&got).unwrap();
    let ex = v["exceptions"].as_array().unwrap();
    assert_eq!(ex.len() as u64, n);
    for (i, e) in ex.iter().enumerate() {
        let i = i as u64;
        assert_eq!((e["old_chunk"].as_u64(), e["new_chunk"].as_u64()), (Some(i * 3 + 1), Some(10_000 + i)));
    }

    // Truncated after area 0: the problem is found at the end of the walk
    // but is printed before the exceptions, as before.
    let p = d.path().join("trunc");
    std::fs::write(&p, &b[..(2 + epa as usize) * 8192]).unwrap();
    let (code, got) = dump(&p);
    assert_eq!(code, Some(1));
    assert!(got.starts_with("{\"errors\":[\"truncated: metadata area 1 "), "{got}");
    assert!(got == whole(&p), "streamed JSON differs from the whole-image dump");

    // New, bad magic, unreadable: the header forms.
    for (name, bytes) in [("new", vec![0u8; 8192]), ("magic", header(0x1234, 1, 1, 16)), ("tiny", b"SnAp".to_vec())] {
        let p = d.path().join(name);
        std::fs::write(&p, &bytes).unwrap();
        assert!(dump(&p).1 == whole(&p), "{name}");
    }
}

#[test]
fn json_dump_of_kernel_images_is_unchanged() {
    let d = tempfile::tempdir().unwrap();
    for name in ["cow-P16.img", "cowN.img", "cowPO.img", "cow-P16-after-merge.img"] {
        let p = kernel_image(d.path(), name);
        let (_, got) = dump(&p);
        assert!(got == whole(&p), "{name}");
    }
}
