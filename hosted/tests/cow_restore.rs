// SPDX-License-Identifier: GPL-2.0-only
//! `dmrs cow dump --format …` and `dmrs cow restore`: a dump of a COW
//! restored onto a zeroed copy gives its metadata chunks byte for byte
//! (kernel images, and stores the core writes as the kernel does at
//! several chunk sizes); restore refuses valid metadata without --force.

mod common;
use common::*;
use dmrs_core::exception::DmException;
use dmrs_core::exception_store::disk;
use dmrs_core::exception_store::ExceptionStore;
use dmrs_core::platform::RamDev;
use std::path::{Path, PathBuf};

/// The image with every data chunk zeroed: what restore onto zeros must give.
fn metadata_only(img: &[u8], chunk: u32) -> Vec<u8> {
    let cb = chunk as usize * 512;
    let epa = disk::exceptions_per_area(chunk);
    let mut out = img.to_vec();
    for (i, c) in out.chunks_mut(cb).enumerate() {
        if !disk::is_metadata_chunk(epa, i as u64) {
            c.fill(0);
        }
    }
    out
}

fn round_trip(dir: &Path, cow: &Path, chunk: u32) {
    let orig = std::fs::read(cow).unwrap();
    for fmt in ["text", "json", "xml"] {
        let dump = dir.join(format!("dump.{fmt}"));
        let o = dmrs(&["cow", "dump", "--format", fmt, cow.to_str().unwrap(), "-o", dump.to_str().unwrap()]);
        assert!(o.status.success(), "{fmt}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(o.stdout.is_empty(), "-o sends the dump to the file");
        let target = dir.join("zeroed.img");
        std::fs::write(&target, vec![0u8; orig.len()]).unwrap();
        let r = dmrs(&["cow", "restore", "-i", dump.to_str().unwrap(), "-o", target.to_str().unwrap()]);
        assert!(r.status.success(), "{fmt}: {}", String::from_utf8_lossy(&r.stderr));
        let got = std::fs::read(&target).unwrap();
        assert!(got == metadata_only(&orig, chunk), "{fmt}: {} chunk {chunk}: metadata differs", cow.display());
    }
}

#[test]
fn kernel_images_round_trip_byte_for_byte() {
    let d = tempfile::tempdir().unwrap();
    for name in ["cow-P16.img", "cow-P16-after-merge.img", "cowPO.img"] {
        let p = kernel_image(d.path(), name);
        round_trip(d.path(), &p, 16);
    }
}

/// A COW written by the core's persistent store (which writes the kernel's
/// bytes: kernel_images.rs) with `n` scattered exceptions.
fn core_store(dir: &Path, chunk: u32, n: u64, sectors: u64) -> PathBuf {
    let cow = RamDev::new(sectors, 512).unwrap();
    let cs = chunk.to_string();
    let (mut s, _) = ExceptionStore::<&RamDev, ()>::create(&["P", &cs], &cow, 512).unwrap();
    s.read_metadata(&mut |_, _| Ok(())).unwrap();
    for i in 0..n {
        let mut e = DmException::new((i * 7919) % 100_003, 0);
        s.prepare_exception(&mut e).unwrap();
        s.commit_exception(&e, true, (), &mut |(), v| assert!(v));
    }
    let mut b = vec![0u8; sectors as usize * 512];
    cow.peek(0, &mut b).unwrap();
    let p = dir.join(format!("core-{chunk}-{n}.img"));
    std::fs::write(&p, b).unwrap();
    p
}

#[test]
fn stores_of_several_chunk_sizes_round_trip() {
    let d = tempfile::tempdir().unwrap();
    // Chunk 8 has 256 slots per area: 512 fills two areas exactly (the
    // kernel zeroes the third), 700 leaves the third partly full.
    for (chunk, n) in [(8, 512), (8, 700), (32, 900), (128, 100), (2, 64), (2, 100)] {
        let p = core_store(d.path(), chunk, n, 32768);
        round_trip(d.path(), &p, chunk);
    }
}

#[test]
fn restore_onto_garbage_zeroes_the_area_after_a_full_one() {
    let d = tempfile::tempdir().unwrap();
    let p = core_store(d.path(), 8, 512, 8192);
    let dump = d.path().join("d.xml");
    assert!(dmrs(&["cow", "dump", "--format", "xml", p.to_str().unwrap(), "-o", dump.to_str().unwrap()])
        .status
        .success());
    let xml = std::fs::read_to_string(&dump).unwrap();
    assert!(xml
        .starts_with("<snapshot magic=\"0x70416e53\" valid=\"1\" version=\"1\" chunk_size=\"8\" exceptions=\"512\">"));
    let target = d.path().join("garbage.img");
    std::fs::write(&target, pattern("GARBAGE", 8192 * 512)).unwrap();
    let r = dmrs(&["cow", "restore", "-i", dump.to_str().unwrap(), "-o", target.to_str().unwrap()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let c = dmrs(&["cow", "check", target.to_str().unwrap()]);
    assert!(stdout(&c).starts_with("consistent: chunk_size=8 valid=1 exceptions=512 areas=3"), "{}", stdout(&c));
}

#[test]
fn restore_refuses_valid_metadata_and_bad_dumps() {
    let d = tempfile::tempdir().unwrap();
    let p = kernel_image(d.path(), "cow-P16.img");
    let dump = d.path().join("d.txt");
    std::fs::write(&dump, stdout(&dmrs(&["cow", "dump", p.to_str().unwrap()]))).unwrap();
    let r = dmrs(&["cow", "restore", "-i", dump.to_str().unwrap(), "-o", p.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("use --force"));
    let r = dmrs(&["cow", "restore", "--force", "-q", "-i", dump.to_str().unwrap(), "-o", p.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(0));
    assert!(r.stdout.is_empty() && r.stderr.is_empty());

    // A dump that would put an exception on a metadata area, or beyond the
    // device, is refused before anything is written.
    let target = d.path().join("t.img");
    std::fs::write(&target, vec![0u8; 1 << 20]).unwrap();
    for (bad, want) in [
        ("header magic=0x70416e53 valid=1 version=1 chunk_size=16\n5 1\n", "is on a metadata area"),
        ("header magic=0x70416e53 valid=1 version=1 chunk_size=16\n5 9999\n", "beyond the end of the device"),
        ("header magic=0x70416e53 valid=1 version=1 chunk_size=24\n", "not a power of 2"),
        ("header magic=0x70416e53 valid=1 version=2 chunk_size=16\n", "version 2"),
        ("<snapshot magic=\"0x70416e53\" valid=\"1\" version=\"1\" chunk_size=\"16\"><exception old_begin=\"0\" new_begin=\"2\" length=\"4000000000\"/></snapshot>", "more exceptions than the device"),
    ] {
        std::fs::write(&dump, bad).unwrap();
        let r = dmrs(&["cow", "restore", "-i", dump.to_str().unwrap(), "-o", target.to_str().unwrap()]);
        assert_eq!(r.status.code(), Some(1), "{bad}");
        assert!(String::from_utf8_lossy(&r.stderr).contains(want), "{bad}: {}", String::from_utf8_lossy(&r.stderr));
        assert!(std::fs::read(&target).unwrap().iter().all(|&b| b == 0), "nothing written");
    }
}

#[test]
fn conventions_quiet_output_and_exit_codes() {
    let d = tempfile::tempdir().unwrap();
    let p = kernel_image(d.path(), "cow-P16.img");
    let c = dmrs(&["cow", "check", "-q", p.to_str().unwrap()]);
    assert_eq!((c.status.code(), c.stdout.len(), c.stderr.len()), (Some(0), 0, 0));
    let n = kernel_image(d.path(), "cowN.img");
    let c = dmrs(&["cow", "check", "--quiet", n.to_str().unwrap()]);
    assert_eq!((c.status.code(), c.stdout.len(), c.stderr.len()), (Some(1), 0, 0));
    let c = dmrs(&["cow", "dump", "-q", n.to_str().unwrap()]);
    assert_eq!((c.status.code(), c.stdout.len(), c.stderr.len()), (Some(1), 0, 0));
    let report = d.path().join("report");
    let c = dmrs(&["cow", "check", p.to_str().unwrap(), "-o", report.to_str().unwrap()]);
    assert!(c.status.success() && c.stdout.is_empty());
    assert!(std::fs::read_to_string(&report).unwrap().starts_with("consistent: chunk_size=16"));
    // Usage errors and unreadable devices: 2.
    assert_eq!(dmrs(&["cow", "check"]).status.code(), Some(2));
    assert_eq!(dmrs(&["cow", "dump", "--format", "yaml", p.to_str().unwrap()]).status.code(), Some(2));
    assert_eq!(dmrs(&["cow", "check", "-q", "/nonexistent"]).status.code(), Some(2));
    let help = stdout(&dmrs(&["cow", "check", "--help"]));
    assert!(help.contains("Exit status: 0 clean, 1 damaged"), "{help}");
    // No progress bar when stderr is not a terminal.
    let c = dmrs(&["cow", "dump", p.to_str().unwrap()]);
    assert!(c.stderr.is_empty());
}

/// The progress bar draws on a terminal (util-linux `script` gives the
/// command one), never with -q, and never into a pipe.
#[test]
fn progress_bar_only_on_a_terminal_without_quiet() {
    let d = tempfile::tempdir().unwrap();
    // 2 GiB sparse, chunk 8: up to 8 MiB of metadata areas, so a bar is due.
    let p = d.path().join("big.img");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(2 << 30).unwrap();
    let hdr: Vec<u8> =
        [dmrs_core::exception_store::disk::SNAP_MAGIC, 1, 1, 8].iter().flat_map(|v| v.to_le_bytes()).collect();
    std::os::unix::fs::FileExt::write_all_at(&f, &hdr, 0).unwrap();
    let piped = dmrs(&["cow", "check", p.to_str().unwrap()]);
    assert!(piped.status.success() && piped.stderr.is_empty());
    let tty = |extra: &str| {
        let cmd = format!("{} cow check {extra} {}", env!("CARGO_BIN_EXE_dmrs"), p.display());
        std::process::Command::new("script").args(["-qec", &cmd, "/dev/null"]).output()
    };
    let Ok(shown) = tty("") else {
        eprintln!("no `script` command: terminal case not run");
        return;
    };
    assert!(String::from_utf8_lossy(&shown.stdout).contains("checking ["), "{shown:?}");
    let quiet = tty("-q").unwrap();
    assert!(quiet.stdout.is_empty(), "{quiet:?}");
}
