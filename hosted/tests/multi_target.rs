// SPDX-License-Identifier: GPL-2.0-only
//! Tables of several targets, as dm core takes them (dm-table.c
//! `dm_table_add_target`): each line `<start> <len> <type> <args>`, the
//! first at sector 0 and each next where the previous ends; I/O split at
//! target boundaries with target-relative sectors, one status line per
//! target, messages routed by sector.

mod common;
use common::*;

/// Half of the two-target device, in sectors (512 KiB).
const H: u64 = 1024;

/// origin.img: 1 MiB, "FIRST" in its first half and "SECOND" in its second.
fn env() -> Env {
    let e = Env::new();
    let mut origin = pattern("FIRST", (H * 512) as usize);
    origin.extend(pattern("SECOND", (H * 512) as usize));
    e.file("origin.img", &origin);
    e.zero("cowA.img", 1 << 20);
    e.zero("cowB.img", 1 << 20);
    e
}

/// Two snapshots of one origin, each mapping half of the device.
fn two_snapshots(store_b: &str) -> String {
    format!("0 {H} snapshot origin.img cowA.img P 8\n{H} {H} snapshot origin.img cowB.img {store_b} 8")
}

fn read(e: &Env, dev: &str, offset: u64, len: u64, pat: &str) {
    e.ok(&["read", dev, "--offset", &offset.to_string(), "--length", &len.to_string(), "--expect-pattern", pat]);
}

#[test]
fn two_snapshots_each_map_their_half_with_target_relative_sectors() {
    let e = env();
    let origin = std::fs::read(e.p("origin.img")).unwrap();
    e.ok(&["create", "two", "--table", &two_snapshots("P")]);
    assert_eq!(
        e.ok(&["table", "two"]),
        format!("0 {H} snapshot origin.img cowA.img P 8\n{H} {H} snapshot origin.img cowB.img P 8\n")
    );
    assert_eq!(e.ok(&["status", "two"]), format!("0 {H} snapshot 16/2048 16\n{H} {H} snapshot 16/2048 16\n"));
    // Each snapshot maps its target's sectors 0..H: the origin's first half,
    // whichever half of the device it sits in (dm_target_offset).
    read(&e, "two", 0, H * 512, "FIRST");
    read(&e, "two", H * 512, H * 512, "FIRST");
    // A write to the second half goes to the second snapshot only.
    e.ok(&["write", "two", "--offset", &(H * 512 + 4096).to_string(), "--pattern", "BWRITE", "--length", "4096"]);
    read(&e, "two", H * 512 + 4096, 4096, "BWRITE");
    read(&e, "two", 4096, 4096, "FIRST");
    assert_eq!(e.ok(&["status", "two"]), format!("0 {H} snapshot 16/2048 16\n{H} {H} snapshot 24/2048 16\n"));
    // One write across the boundary is split between the targets: the last
    // chunk of the first, the first chunk of the second.
    e.ok(&[
        "write",
        "two",
        "--offset",
        &(H * 512 - 4096).to_string(),
        "--pattern",
        "CROSS",
        "--length",
        "8192",
        "--bs",
        "8192",
    ]);
    read(&e, "two", H * 512 - 4096, 8192, "CROSS");
    read(&e, "two", H * 512 + 4096, 4096, "BWRITE");
    assert_eq!(e.ok(&["status", "two"]), format!("0 {H} snapshot 24/2048 16\n{H} {H} snapshot 32/2048 16\n"));
    e.ok(&["flush", "two"]);
    let o = e.dmrs(&["read", "two", "--offset", &(2 * H * 512).to_string(), "--length", "512"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("I/O beyond the end of the device (2048 sectors)"), "{o:?}");
    assert!(e.ok(&["info", "two"]).contains("Number of targets: 2\n"));
    e.ok(&["remove", "two"]);
    assert_eq!(std::fs::read(e.p("origin.img")).unwrap(), origin, "the origin is untouched");
}

#[test]
fn gaps_overlaps_and_zero_lengths_fail_as_dm_core_fails_them() {
    let e = env();
    for (name, table, want) in [
        (
            "gap",
            format!("0 {H} snapshot origin.img cowA.img P 8\n{} {H} snapshot origin.img cowB.img P 8", H + 8),
            "device-mapper: table: gap: snapshot: Gap in table (-EINVAL)\ndevice-mapper: reload ioctl on gap failed: Invalid argument",
        ),
        (
            "overlap",
            format!("0 {H} snapshot origin.img cowA.img P 8\n{} {H} snapshot origin.img cowB.img P 8", H - 8),
            "device-mapper: table: overlap: snapshot: Gap in table (-EINVAL)\ndevice-mapper: reload ioctl on overlap failed: Invalid argument",
        ),
        (
            "first8",
            format!("8 {H} snapshot-origin origin.img"),
            "device-mapper: table: first8: snapshot-origin: Gap in table (-EINVAL)\ndevice-mapper: reload ioctl on first8 failed: Invalid argument",
        ),
        (
            "zero",
            format!("0 {H} snapshot-origin origin.img\n{H} 0 snapshot-origin origin.img"),
            "device-mapper: table: zero: zero-length target\ndevice-mapper: reload ioctl on zero failed: Invalid argument",
        ),
    ] {
        let err = e.fails(&["create", name, "--table", &table]);
        assert!(err.contains(want), "{name}: {err}");
    }
    // dmsetup removed each half-made device.
    assert_eq!(e.ok(&["ls"]), "No devices found\n");
    // A reload with a gap leaves the live table as it was.
    e.ok(&["create", "o", "--table", &format!("0 {H} snapshot-origin origin.img")]);
    let err = e.fails(&[
        "load",
        "o",
        "--table",
        &format!("0 {H} snapshot-origin origin.img\n{} 8 snapshot-origin origin.img", H + 1),
    ]);
    assert!(err.contains("device-mapper: table: o: snapshot-origin: Gap in table"), "{err}");
    assert_eq!(e.ok(&["table", "o"]), format!("0 {H} snapshot-origin origin.img\n"));
}

#[test]
fn a_message_goes_to_the_target_holding_its_sector() {
    let e = env();
    e.file("src.img", &pattern("SOURCE", 16 << 20));
    e.zero("dest.img", 16 << 20);
    e.zero("meta.img", 4 << 20);
    let table = format!("0 {H} snapshot-origin origin.img\n{H} 32768 clone meta.img dest.img src.img 8 1 no_hydration");
    e.ok(&["create", "mix", "--table", &table]);
    for sector in [0, H - 1] {
        let err = e.fails(&["message", "mix", &sector.to_string(), "hydration_threshold", "7"]);
        assert!(err.contains("Target type does not support messages"), "{sector}: {err}");
    }
    e.ok(&["message", "mix", &H.to_string(), "hydration_threshold", "7"]);
    let status = e.ok(&["status", "mix"]);
    let lines: Vec<&str> = status.lines().collect();
    assert_eq!(lines.len(), 2, "{status}");
    assert_eq!(lines[0], format!("0 {H} snapshot-origin "));
    assert!(lines[1].starts_with(&format!("{H} 32768 clone ")), "{status}");
    assert!(lines[1].contains("hydration_threshold 7"), "{status}");
    let err = e.fails(&["message", "mix", &(H + 32768).to_string(), "hydration_threshold", "7"]);
    assert!(err.contains("device-mapper: ioctl: Target message sector outside device."), "{err}");
    // The clone reads its source through the second target's sectors.
    read(&e, "mix", H * 512, 65536, "SOURCE");
    read(&e, "mix", 0, 65536, "FIRST");
    // Both targets' suspend and resume hooks run; the clone commits.
    e.ok(&["suspend", "mix"]);
    e.ok(&["resume", "mix"]);
    e.ok(&["remove", "mix"]);
    let o = e.dmrs(&["clone", "check", "meta.img"]);
    assert!(o.status.success(), "{o:?}");
}

#[test]
fn a_table_of_two_lines_survives_the_state_directory_replay() {
    let e = env();
    // The second snapshot is transient: its exceptions live in memory only
    // and come back from the state directory's saved in-memory state.
    e.ok(&["create", "two", "--table", &two_snapshots("N")]);
    e.ok(&["write", "two", "--offset", &(H * 512).to_string(), "--pattern", "BWRITE", "--length", "4096"]);
    e.ok(&["write", "two", "--offset", "0", "--pattern", "AWRITE", "--length", "4096"]);
    let o = e.dmrs(&["table", "two"]);
    assert!(o.stderr.is_empty(), "replay warned: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        stdout(&o),
        format!("0 {H} snapshot origin.img cowA.img P 8\n{H} {H} snapshot origin.img cowB.img N 8\n")
    );
    read(&e, "two", H * 512, 4096, "BWRITE");
    read(&e, "two", 0, 4096, "AWRITE");
    read(&e, "two", H * 512 + 4096, 4096, "FIRST");
    assert_eq!(e.ok(&["status", "two"]), format!("0 {H} snapshot 24/2048 16\n{H} {H} snapshot 8/2048 0\n"));
    // `dmrs table` of every device prefixes each target's line.
    assert_eq!(
        e.ok(&["table"]),
        format!("two: 0 {H} snapshot origin.img cowA.img P 8\ntwo: {H} {H} snapshot origin.img cowB.img N 8\n")
    );
    e.ok(&["remove", "two"]);
}

#[test]
fn wait_hydrates_every_clone_of_the_table_and_counts_their_events() {
    let e = Env::new();
    for (i, text) in ["SRCONE", "SRCTWO"].iter().enumerate() {
        e.file(&format!("src{i}.img"), &pattern(text, 1 << 20));
        e.zero(&format!("dest{i}.img"), 1 << 20);
        e.zero(&format!("meta{i}.img"), 1 << 20);
    }
    let table = "0 2048 clone meta0.img dest0.img src0.img 8\n2048 2048 clone meta1.img dest1.img src1.img 8";
    e.ok(&["create", "cl", "--table", table]);
    let before = e.ok(&["events", "cl"]);
    e.ok(&["wait", "cl"]);
    let status = e.ok(&["status", "cl"]);
    let lines: Vec<&str> = status.lines().collect();
    assert_eq!(lines.len(), 2, "{status}");
    assert!(lines[0].starts_with("0 2048 clone ") && lines[0].contains(" 256/256 "), "{status}");
    assert!(lines[1].starts_with("2048 2048 clone ") && lines[1].contains(" 256/256 "), "{status}");
    // Each clone raised its event once every region was hydrated.
    let after: u64 = e.ok(&["events", "cl"]).trim().parse().unwrap();
    assert_eq!(after, before.trim().parse::<u64>().unwrap() + 2, "{before} -> {after}");
    read(&e, "cl", 0, 1 << 20, "SRCONE");
    read(&e, "cl", 1 << 20, 1 << 20, "SRCTWO");
    e.ok(&["remove", "cl"]);
    assert_eq!(std::fs::read(e.p("dest1.img")).unwrap(), pattern("SRCTWO", 1 << 20));
}
