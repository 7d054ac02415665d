// SPDX-License-Identifier: GPL-2.0-only
//! The kernel's COW images through `dmrs cow dump|check` and the core's
//! persistent store, and a replay that writes the kernel's image byte for byte.

mod common;
use common::*;
use dmrs_core::exception::DmException;
use dmrs_core::exception_store::{ExceptionStore, Metadata, Usage};
use dmrs_core::platform::{BlockDevice, ChunkCopier, RamDev, ReqFlags, SyncCopier};
use dmrs_hosted::filedev::{FileDev, OpenMode};

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn dump_lists_exactly_what_the_kernel_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let p = kernel_image(dir.path(), "cow-P16.img");
    let o = dmrs(&["cow", "dump", p.to_str().unwrap()]);
    assert!(o.status.success());
    let out = stdout(&o);
    let l = lines(&out);
    assert_eq!(l[0], "header magic=0x70416e53 valid=1 version=1 chunk_size=16");
    assert_eq!(l.len(), 1 + 1034);
    // Origin chunks 128-135, then 512-513 (snapshot writes), then 2048-3071,
    // at COW chunks 2.. skipping the metadata areas at 514 and 1027.
    let olds: Vec<u64> = (128..136).chain(512..514).chain(2048..3072).collect();
    let mut news: Vec<u64> = (2..1040).filter(|c| *c != 514 && *c != 1027).collect();
    news.truncate(1034);
    for (i, line) in l[1..].iter().enumerate() {
        assert_eq!(*line, format!("{} {}", olds[i], news[i]), "exception {i}");
    }
    // JSON: the same, as one object.
    let j: serde_json::Value =
        serde_json::from_slice(&dmrs(&["cow", "dump", "--json", p.to_str().unwrap()]).stdout).unwrap();
    assert_eq!(j["header"]["chunk_size"], 16);
    assert_eq!(j["header"]["magic"], 0x70416e53u32);
    assert_eq!(j["exceptions"].as_array().unwrap().len(), 1034);
    assert_eq!(j["exceptions"][1033]["old_chunk"], 3071);
    assert_eq!(j["exceptions"][1033]["new_chunk"], 1037);

    let c = dmrs(&["cow", "check", p.to_str().unwrap(), "--origin-sectors", "131072"]);
    assert!(c.status.success(), "{}", stdout(&c));
    assert_eq!(stdout(&c), "consistent: chunk_size=16 valid=1 exceptions=1034 areas=3 usage=16608/65536 64\n");
}

#[test]
fn merged_invalidated_and_transient_images() {
    let dir = tempfile::tempdir().unwrap();
    let merged = kernel_image(dir.path(), "cow-P16-after-merge.img");
    let o = dmrs(&["cow", "dump", merged.to_str().unwrap()]);
    assert_eq!(stdout(&o), "header magic=0x70416e53 valid=1 version=1 chunk_size=16\n");
    assert!(dmrs(&["cow", "check", merged.to_str().unwrap()]).status.success());

    let po = kernel_image(dir.path(), "cowPO.img");
    let out = stdout(&dmrs(&["cow", "dump", po.to_str().unwrap()]));
    assert!(out.starts_with("header magic=0x70416e53 valid=0 version=1 chunk_size=16\n1024 2\n"), "{out}");
    assert_eq!(lines(&out).len(), 127, "invalidated snapshots still list their exceptions");
    let c = dmrs(&["cow", "check", po.to_str().unwrap()]);
    assert!(c.status.success());
    assert!(stdout(&c).contains("valid=0"));

    // N has no header: its first chunk is origin data.
    let n = kernel_image(dir.path(), "cowN.img");
    let c = dmrs(&["cow", "check", n.to_str().unwrap()]);
    assert_eq!(c.status.code(), Some(1));
    assert!(stdout(&c).starts_with("bad magic 0x"), "{}", stdout(&c));
    assert_eq!(dmrs(&["cow", "dump", n.to_str().unwrap()]).status.code(), Some(1));
}

fn open(p: &std::path::Path) -> FileDev {
    FileDev::open(p, OpenMode::default()).unwrap()
}

#[test]
fn the_core_store_loads_kernel_images() {
    let dir = tempfile::tempdir().unwrap();
    let dev = open(&kernel_image(dir.path(), "cow-P16.img"));
    let (mut s, _) = ExceptionStore::<&FileDev, ()>::create(&["P", "16"], &dev, 512).unwrap();
    let mut n = 0;
    assert_eq!(
        s.read_metadata(&mut |_, _| {
            n += 1;
            Ok(())
        }),
        Ok(Metadata::Loaded)
    );
    assert_eq!(n, 1034);
    assert_eq!(s.usage(), Usage { total_sectors: 65536, sectors_allocated: 16608, metadata_sectors: 64 });

    let po = open(&kernel_image(dir.path(), "cowPO.img"));
    let (mut s, _) = ExceptionStore::<&FileDev, ()>::create(&["PO", "16"], &po, 512).unwrap();
    assert_eq!(s.read_metadata(&mut |_, _| Ok(())), Ok(Metadata::Invalidated));

    let merged = open(&kernel_image(dir.path(), "cow-P16-after-merge.img"));
    let (mut s, _) = ExceptionStore::<&FileDev, ()>::create(&["P", "0"], &merged, 512).unwrap();
    assert_eq!(s.read_metadata(&mut |_, _| Ok(())), Ok(Metadata::Loaded));
    assert_eq!(s.usage(), Usage { total_sectors: 65536, sectors_allocated: 32, metadata_sectors: 32 });
}

/// snap-persistent.sh at the store level: the same exceptions in the same
/// order with the same data give the kernel's COW image byte for byte.
#[test]
fn replaying_snap_persistent_writes_the_kernels_cow_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = std::fs::read(kernel_image(dir.path(), "cow-P16.img")).unwrap();
    let origin = RamDev::from_bytes(&pattern("ORIGINAL", 64 << 20), 512).unwrap();
    let cow = RamDev::new(65536, 512).unwrap();
    let (mut s, _) = ExceptionStore::<&RamDev, ()>::create(&["P", "16"], &cow, 512).unwrap();
    s.read_metadata(&mut |_, _| Ok(())).unwrap();
    let cow_write = |s: &mut ExceptionStore<&RamDev, ()>, old: u64, data: Option<&[u8]>| {
        let mut e = DmException::new(old, 0);
        s.prepare_exception(&mut e).unwrap();
        match data {
            // Origin write: copy the old chunk first.
            None => SyncCopier::default().copy(&origin, old * 16, &cow, e.new_chunk * 16, 16).unwrap(),
            // Whole-chunk snapshot write: no copy.
            Some(d) => cow.write(e.new_chunk * 16, d, ReqFlags::empty()).unwrap(),
        }
        let mut ok = false;
        s.commit_exception(&e, true, (), &mut |(), v| ok = v);
        assert!(ok);
    };
    for c in 128..136 {
        cow_write(&mut s, c, None);
    }
    let snapwrite = pattern("SNAPWRITE", 8192);
    for c in 512..514 {
        cow_write(&mut s, c, Some(&snapwrite));
    }
    for c in 2048..3072 {
        cow_write(&mut s, c, None);
    }
    assert_eq!(s.usage(), Usage { total_sectors: 65536, sectors_allocated: 16608, metadata_sectors: 64 });
    let mut ours = vec![0u8; 32 << 20];
    cow.peek(0, &mut ours).unwrap();
    let first_diff = ours.iter().zip(kernel.iter()).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "first differing byte");
}
