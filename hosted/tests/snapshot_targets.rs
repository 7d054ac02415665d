// SPDX-License-Identifier: GPL-2.0-only
//! The snapshot targets through the `dmrs` binary on real files, against
//! what the kernel printed and wrote (../shared/lab, tests/data).

mod common;
use common::*;
use std::path::Path;

fn same(a: &Path, b: &Path) -> bool {
    std::fs::read(a).unwrap() == std::fs::read(b).unwrap()
}

const OS: u64 = 131072;

/// snap-persistent.sh, then snap-merge.sh: status lines as the kernel
/// printed, origin and COW byte-identical to the kernel's images.
#[test]
fn snap_persistent_and_merge_match_the_kernel_byte_for_byte() {
    let e = Env::new();
    e.file("origin.img", &pattern("ORIGINAL", 64 << 20));
    e.zero("cow.img", 32 << 20);
    let out = e.run(&format!(
        "create origin --table '0 {OS} snapshot-origin origin.img'
suspend origin
create snap --table '0 {OS} snapshot origin.img cow.img P 16'
resume origin
table
status
write origin --offset 1048576 --pattern NEWORIGIN --length 65536
write snap --offset 4194304 --pattern SNAPWRITE --length 16384
write origin --offset 1048576 --pattern LATEORIG --length 4096
write origin --offset 16777216 --pattern BULK --length 8388608
read origin --offset 1048576 --length 4096 --expect-pattern LATEORIG
read snap --offset 1048576 --length 65536 --expect-pattern ORIGINAL
read snap --offset 4194304 --length 16384 --expect-pattern SNAPWRITE
read origin --offset 4194304 --length 16384 --expect-pattern ORIGINAL
read snap --offset 16777216 --length 8388608 --expect-pattern ORIGINAL
status snap
"
    ));
    assert_eq!(
        out,
        format!(
            "origin: 0 {OS} snapshot-origin origin.img\nsnap: 0 {OS} snapshot origin.img cow.img P 16\n\
             origin: 0 {OS} snapshot-origin \nsnap: 0 {OS} snapshot 32/65536 32\n0 {OS} snapshot 16608/65536 64\n"
        )
    );
    // Tear down and re-activate from the on-disk COW in a new process.
    e.ok(&["remove", "snap"]);
    e.ok(&["remove", "origin"]);
    e.ok(&["create", "origin", "--table", &format!("0 {OS} snapshot-origin origin.img")]);
    e.ok(&["suspend", "origin"]);
    e.ok(&["create", "snap", "--table", &format!("0 {OS} snapshot origin.img cow.img P 16")]);
    e.ok(&["resume", "origin"]);
    assert_eq!(e.ok(&["status", "snap"]), format!("0 {OS} snapshot 16608/65536 64\n"));
    e.ok(&["read", "snap", "--offset", "4194304", "--length", "16384", "--expect-pattern", "SNAPWRITE"]);
    e.ok(&["remove", "snap"]);
    e.ok(&["remove", "origin"]);
    let kernel = e.dir.path();
    assert!(same(&e.p("cow.img"), &kernel_image(kernel, "cow-P16.img")), "COW differs from the kernel's");
    assert!(same(&e.p("origin.img"), &kernel_image(kernel, "origin-P16.img")), "origin differs from the kernel's");
    let c = dmrs(&["cow", "check", e.p("cow.img").to_str().unwrap(), "--origin-sectors", "131072"]);
    assert!(c.status.success());

    // snap-merge.sh: snapshot-merge loaded directly on the origin.
    e.ok(&["create", "origin", "--table", &format!("0 {OS} snapshot-merge origin.img cow.img P 16")]);
    assert_eq!(e.ok(&["table", "origin"]), format!("0 {OS} snapshot-merge origin.img cow.img P 16\n"));
    assert_eq!(e.ok(&["status", "origin"]), format!("0 {OS} snapshot-merge 16608/65536 64\n"));
    e.ok(&["wait", "origin"]);
    assert_eq!(e.ok(&["status", "origin"]), format!("0 {OS} snapshot-merge 32/65536 32\n"));
    e.ok(&["read", "origin", "--offset", "1048576", "--length", "65536", "--expect-pattern", "ORIGINAL"]);
    e.ok(&["read", "origin", "--offset", "4194304", "--length", "16384", "--expect-pattern", "SNAPWRITE"]);
    e.ok(&["remove", "origin"]);
    assert!(same(&e.p("origin.img"), &kernel_image(kernel, "origin-merged.img")), "merged origin differs");
    assert!(same(&e.p("cow.img"), &kernel_image(kernel, "cow-P16-after-merge.img")), "merged COW differs");
}

/// snap-stores.sh: N, PO overflow then invalidation, P filled until invalid.
#[test]
fn stores_overflow_and_invalidation_like_the_kernel() {
    let e = Env::new();
    e.file("origin.img", &pattern("ORIGINAL", 64 << 20));
    e.zero("cowN.img", 32 << 20);
    e.zero("cowPO.img", 1 << 20);
    e.zero("cowP.img", 1 << 20);
    let mk = |name: &str, cow: &str, store: &str| {
        format!("suspend origin\ncreate {name} --table '0 {OS} snapshot origin.img {cow} {store}'\nresume origin\n")
    };
    let out = e.run(&format!(
        "create origin --table '0 {OS} snapshot-origin origin.img'
{}status snapN
write origin --offset 1048576 --pattern NEWORIGIN --length 65536
write snapN --offset 4194304 --pattern SNAPWRITE --length 16384
read snapN --offset 1048576 --length 65536 --expect-pattern ORIGINAL
read snapN --offset 4194304 --length 16384 --expect-pattern SNAPWRITE
table snapN
status snapN
remove snapN
{}table snapPO
status snapPO
",
        mk("snapN", "cowN.img", "N 16"),
        mk("snapPO", "cowPO.img", "PO 16"),
    ));
    assert_eq!(
        out,
        format!(
            "0 {OS} snapshot 0/65536 0\n0 {OS} snapshot origin.img cowN.img N 16\n0 {OS} snapshot 160/65536 0\n\
             0 {OS} snapshot origin.img cowPO.img PO 16\n0 {OS} snapshot 32/2048 32\n"
        )
    );
    assert!(same(&e.p("cowN.img"), &kernel_image(e.dir.path(), "cowN.img")), "N COW differs from the kernel's");
    // A 2 MiB snapshot write in 4 KiB pieces (dd bs=4096) overflows the 1 MiB PO COW.
    let mut failed = false;
    for i in 0..512u64 {
        let o = e.dmrs(&[
            "write",
            "snapPO",
            "--offset",
            &(8388608 + i * 4096).to_string(),
            "--pattern",
            "BIGSNAP",
            "--length",
            "4096",
        ]);
        if !o.status.success() {
            assert!(String::from_utf8_lossy(&o.stderr).contains("Input/output error"));
            failed = true;
            break;
        }
    }
    assert!(failed, "the snapshot write must overflow");
    assert_eq!(e.ok(&["status", "snapPO"]), format!("0 {OS} snapshot Overflow\n"));
    e.ok(&["read", "snapPO", "--offset", "8388608", "--length", "8192", "--expect-pattern", "BIGSNAP"]);
    e.ok(&["read", "origin", "--offset", "8388608", "--length", "8192", "--expect-pattern", "ORIGINAL"]);
    // An origin write needing a new exception in the overflowed snapshot:
    // the origin write succeeds, the snapshot becomes invalid.
    e.ok(&["write", "origin", "--offset", "33554432", "--pattern", "ORIGAFTER", "--length", "8192"]);
    assert_eq!(e.ok(&["status", "snapPO"]), format!("0 {OS} snapshot Invalid\n"));
    e.ok(&["remove", "snapPO"]);
    assert!(same(&e.p("cowPO.img"), &kernel_image(e.dir.path(), "cowPO.img")), "PO COW differs from the kernel's");

    // P on 1 MiB filled by origin writes.
    e.run(&mk("snapP", "cowP.img", "P 16"));
    e.ok(&["write", "origin", "--offset", "16777216", "--pattern", "ORIGFILL", "--length", "2097152"]);
    assert_eq!(e.ok(&["status", "snapP"]), format!("0 {OS} snapshot Invalid\n"));
    let o = e.dmrs(&["read", "snapP", "--offset", "0", "--length", "4096"]);
    assert_eq!(o.status.code(), Some(1));
    let hdr = std::fs::read(e.p("cowP.img")).unwrap();
    assert_eq!(&hdr[..16], &[0x53, 0x6e, 0x41, 0x70, 0, 0, 0, 0, 1, 0, 0, 0, 0x10, 0, 0, 0]);
}

/// Seed 001: load new, suspend old, resume new, remove old — as separate
/// invocations, so the state journal carries the in-memory handover.
#[test]
fn handover_sequence_end_to_end() {
    let e = Env::new();
    e.file("origin.img", &pattern("ORIGINAL", 8 << 20));
    e.zero("cow.img", 4 << 20);
    let t = |store: &str| format!("0 16384 snapshot origin.img cow.img {store}");
    e.ok(&["create", "origin", "--table", "0 16384 snapshot-origin origin.img"]);
    e.ok(&["suspend", "origin"]);
    e.ok(&["create", "old", "--table", &t("P 16")]);
    e.ok(&["resume", "origin"]);
    e.ok(&["write", "origin", "--offset", "0", "--pattern", "BEFORE", "--length", "8192"]);
    e.ok(&["write", "old", "--offset", "65536", "--pattern", "SNAPOLD", "--length", "8192"]);
    // load new_snapshot (on a new device) referencing the in-use COW.
    e.ok(&["create", "new", "--notable"]);
    e.ok(&["load", "new", "--table", &t("P 16")]);
    let third = e.dmrs(&["create", "third", "--table", &t("P 16")]);
    assert_eq!(third.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&third.stderr).contains(
        "device-mapper: table: third: snapshot: Snapshot cow pairing for exception table handover failed (-EINVAL)"
    ));
    let early = e.dmrs(&["resume", "new"]);
    assert_eq!(early.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&early.stderr)
        .contains("device-mapper: snapshots: Unable to perform snapshot handover until source is suspended."));
    e.ok(&["suspend", "old"]);
    e.ok(&["resume", "new"]);
    assert_eq!(e.ok(&["status", "new"]), "0 16384 snapshot 64/8192 32\n");
    let old = e.dmrs(&["read", "old", "--offset", "0", "--length", "512"]);
    assert_eq!(old.status.code(), Some(1), "the old device is suspended");
    e.ok(&["resume", "old"]);
    let old = e.dmrs(&["read", "old", "--offset", "0", "--length", "512"]);
    assert!(String::from_utf8_lossy(&old.stderr).contains("Input/output error"), "old returns EIO after handover");
    e.ok(&["remove", "old"]);
    e.ok(&["write", "origin", "--offset", "1048576", "--pattern", "AFTER", "--length", "8192"]);
    e.ok(&["read", "new", "--offset", "0", "--length", "8192", "--expect-pattern", "ORIGINAL"]);
    e.ok(&["read", "new", "--offset", "65536", "--length", "8192", "--expect-pattern", "SNAPOLD"]);
    e.ok(&["read", "new", "--offset", "1048576", "--length", "8192", "--expect-pattern", "ORIGINAL"]);
    assert_eq!(e.ok(&["status", "new"]), "0 16384 snapshot 80/8192 32\n");
    // Reload everything from disk.
    e.ok(&["remove", "new"]);
    e.ok(&["remove", "origin"]);
    e.ok(&["create", "snap", "--table", &t("P 16")]);
    e.ok(&["read", "snap", "--offset", "65536", "--length", "8192", "--expect-pattern", "SNAPOLD"]);
    e.ok(&["read", "snap", "--offset", "1048576", "--length", "8192", "--expect-pattern", "ORIGINAL"]);
    assert_eq!(e.ok(&["status", "snap"]), "0 16384 snapshot 80/8192 32\n");
}

#[test]
fn cancelled_handover_invalidates_the_destination() {
    let e = Env::new();
    e.file("origin.img", &pattern("ORIGINAL", 8 << 20));
    e.zero("cow.img", 4 << 20);
    let out = e.run(
        "create old --table '0 16384 snapshot origin.img cow.img P 16'
create new --notable
load new --table '0 16384 snapshot origin.img cow.img P 16'
remove old
resume new
status new
",
    );
    assert_eq!(out, "0 16384 snapshot Invalid\n");
}

#[test]
fn three_snapshots_of_one_origin() {
    let e = Env::new();
    e.file("origin.img", &pattern("ORIGINAL", 8 << 20));
    for c in ["c8", "c16", "c32"] {
        e.zero(c, 4 << 20);
    }
    let out = e.run(
        "create origin --table '0 16384 snapshot-origin origin.img'
suspend origin
create s8 --table '0 16384 snapshot origin.img c8 P 8'
create s16 --table '0 16384 snapshot origin.img c16 P 16'
create s32 --table '0 16384 snapshot origin.img c32 P 32'
resume origin
write origin --offset 20480 --pattern NEW --length 4096
write s16 --offset 65536 --pattern S16 --length 512
read s8 --offset 0 --length 65536 --expect-pattern ORIGINAL
read s32 --offset 0 --length 65536 --expect-pattern ORIGINAL
read s16 --offset 65536 --length 512 --expect-pattern S16
read origin --offset 20480 --length 4096 --expect-pattern NEW
status
",
    );
    assert_eq!(
        out,
        "origin: 0 16384 snapshot-origin \ns16: 0 16384 snapshot 64/8192 32\ns32: 0 16384 snapshot 96/8192 64\n\
         s8: 0 16384 snapshot 24/8192 16\n"
    );
}

#[test]
fn table_errors_are_reported_as_dmsetup_and_the_kernel_do() {
    let e = Env::new();
    e.file("origin.img", &pattern("ORIGINAL", 1 << 20));
    e.zero("cow.img", 1 << 20);
    let bad = e.file("bad.img", &[0xEE; 1 << 20]);
    let before = std::fs::read(&bad).unwrap();
    let cases: &[(&str, &str)] = &[
        ("snapshot origin.img cow.img P", "snapshot: requires 4 or more arguments (-EINVAL)"),
        ("snapshot origin.img origin.img P 16", "snapshot: COW device cannot be the same as origin device (-EINVAL)"),
        ("snapshot origin.img cow.img X 16", "snapshot: Couldn't create exception store (-EINVAL)"),
        ("snapshot origin.img nosuch.img P 16", "snapshot: Cannot get COW device (-ENOENT)"),
        ("snapshot origin.img cow.img P 16 1 nope", "snapshot: Unrecognised feature requested (-EINVAL)"),
        ("snapshot origin.img bad.img P 16", "snapshot: Failed to read snapshot metadata (-ENXIO)"),
        (
            "snapshot-merge origin.img cow.img N 16",
            "snapshot-merge: Snapshot exception store does not support snapshot-merge. (-EINVAL)",
        ),
        ("snapshot-origin origin.img cow.img", "snapshot-origin: origin: incorrect number of arguments (-EINVAL)"),
        ("snapshot-origin nosuch.img", "snapshot-origin: Cannot get target device (-ENOENT)"),
        ("striped 1 2", "striped: unknown target type"),
    ];
    for (t, want) in cases {
        let o = e.dmrs(&["create", "x", "--table", &format!("0 2048 {t}")]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(err.contains(&format!("device-mapper: table: x: {want}")), "{t}: {err}");
        assert!(err.contains("device-mapper: reload ioctl on x failed:"), "{t}: {err}");
        assert_eq!(e.ok(&["ls"]), "No devices found\n", "a failed create leaves no device");
    }
    let o = e.dmrs(&["create", "x", "--table", "0 2048 snapshot origin.img cow.img X 16"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("device-mapper: snapshots: Exception store type is not P or N"));
    let o = e.dmrs(&["create", "x", "--table", "0 2048 snapshot origin.img bad.img P 16"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("device-mapper: persistent snapshot: Invalid or corrupt snapshot")
    );
    assert_eq!(std::fs::read(&bad).unwrap(), before, "a corrupt COW is left unchanged");
    let o = e.dmrs(&["create", "x", "--table", "0 4096 snapshot-origin origin.img"]);
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("origin.img too small for target: start=0, len=4096, dev_size=2048"));
    assert_eq!(
        e.ok(&["targets"]),
        "clone            v1.0.0\nsnapshot-merge   v1.5.0\nsnapshot-origin  v1.9.0\nsnapshot         v1.16.0\n"
    );
    e.ok(&["create", "o", "--table", "0 2048 snapshot-origin origin.img"]);
    let o = e.dmrs(&["create", "o", "--table", "0 2048 snapshot-origin origin.img"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("device-mapper: create ioctl on o failed: Device or resource busy")
    );
    let o = e.dmrs(&["message", "o", "0", "hello"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("Target type does not support messages"));
    // A device that does not exist, in dmsetup's words (lab guest, stock kernel).
    for (args, want) in [
        (&["status", "nosuch"][..], "Device does not exist."),
        (&["info", "nosuch"][..], "Device does not exist."),
        (&["table", "nosuch"][..], "device-mapper: table ioctl on nosuch  failed: No such device or address"),
        (&["remove", "nosuch"][..], "device-mapper: remove ioctl on nosuch  failed: No such device or address"),
        (&["suspend", "nosuch"][..], "device-mapper: suspend ioctl on nosuch  failed: No such device or address"),
        (&["resume", "nosuch"][..], "device-mapper: resume ioctl on nosuch  failed: No such device or address"),
        (
            &["message", "nosuch", "0", "hi"][..],
            "device-mapper: message ioctl on nosuch  failed: No such device or address",
        ),
        (
            &["load", "nosuch", "--table", "0 8 snapshot-origin origin.img"][..],
            "device-mapper: reload ioctl on nosuch  failed: No such device or address",
        ),
        (&["wait", "nosuch"][..], "device-mapper: waitevent ioctl on nosuch  failed: No such device or address"),
    ] {
        let o = e.dmrs(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains(want), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    // The sector picks the target: past the device there is none.
    let o = e.dmrs(&["message", "o", "2048", "hello"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("device-mapper: ioctl: Target message sector outside device."), "{err}");
    assert!(err.contains("device-mapper: message ioctl on o failed: Invalid argument"), "{err}");
    // origin_ctr asks dm core for no discard bios: dm core fails them.
    let o = e.dmrs(&["discard", "o", "--offset", "0", "--length", "4096"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Operation not supported"), "{o:?}");
    assert_eq!(
        e.ok(&["info", "o"]),
        "Name:              o\nState:             ACTIVE\nTables present:    LIVE\nEvent number:      0\nNumber of targets: 1\n"
    );
}

/// What the kernel keeps only in memory survives between invocations:
/// a transient store's exceptions and a PO overflow.
#[test]
fn transient_exceptions_and_overflow_survive_between_invocations() {
    let e = Env::new();
    e.file("origin.img", &pattern("ORIGINAL", 8 << 20));
    e.zero("cow.img", 4 << 20);
    e.ok(&["create", "o", "--table", "0 16384 snapshot-origin origin.img"]);
    e.ok(&["suspend", "o"]);
    e.ok(&["create", "n", "--table", "0 16384 snapshot origin.img cow.img N 16"]);
    e.ok(&["resume", "o"]);
    e.ok(&["write", "o", "--offset", "0", "--pattern", "NEW", "--length", "16384"]);
    e.ok(&["write", "n", "--offset", "65536", "--pattern", "SNAP", "--length", "4096"]);
    assert_eq!(e.ok(&["status", "n"]), "0 16384 snapshot 48/8192 0\n");
    e.ok(&["read", "n", "--offset", "0", "--length", "16384", "--expect-pattern", "ORIGINAL"]);
    e.ok(&["read", "n", "--offset", "65536", "--length", "4096", "--expect-pattern", "SNAP"]);
    e.ok(&["write", "o", "--offset", "0", "--pattern", "NEWER", "--length", "512"]);
    assert_eq!(e.ok(&["status", "n"]), "0 16384 snapshot 48/8192 0\n", "no second copy of chunk 0");
}

#[test]
fn script_lines_may_or_must_fail() {
    let e = Env::new();
    e.file("origin.img", &pattern("ORIGINAL", 1 << 20));
    let out = e.run("!create x --table '0 2048 snapshot origin.img origin.img P 16'\n-remove nosuch\necho done\n");
    assert_eq!(out, "done\n");
    let p = e.file("bad.dmrs", b"!echo fine\n");
    let o = e.dmrs(&["run", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.dmrs:1: `echo fine` succeeded but must fail"));
}

#[test]
fn event_numbers_count_across_invocations_and_wait_on_them() {
    let e = Env::new();
    e.file("origin.img", &pattern("ORIGINAL", 8 << 20));
    // Header, one area and one data chunk of 16 sectors.
    e.zero("cow.img", 3 * 8192);
    e.ok(&["create", "o", "--table", "0 16384 snapshot-origin origin.img"]);
    e.ok(&["suspend", "o"]);
    e.ok(&["create", "s", "--table", "0 16384 snapshot origin.img cow.img P 16"]);
    e.ok(&["resume", "o"]);
    assert_eq!(e.ok(&["events", "s"]), "0\n");
    e.ok(&["write", "o", "--offset", "0", "--pattern", "NEW", "--length", "16384"]);
    assert_eq!(e.ok(&["status", "s"]), "0 16384 snapshot Invalid\n");
    // The invalidation's event, kept in the state directory.
    assert_eq!(e.ok(&["events", "s"]), "1\n");
    assert!(e.ok(&["info", "s"]).contains("Event number:      1\n"));
    e.ok(&["wait", "s", "0"]);
    let err = e.fails(&["wait", "s", "1"]);
    assert!(err.contains("no event after 1 will come"), "{err}");
}
