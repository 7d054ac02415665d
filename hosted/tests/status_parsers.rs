// SPDX-License-Identifier: GPL-2.0-only
//! dmrs's status lines read by the parsers real users run on them. Each
//! parser is re-implemented here from its rules (own code, the source is
//! cited) and fed what `dmrs status` prints for devices built over temp
//! files; every test checks the values the parser extracts, so a change
//! in the line's format fails it.
//!
//! - lvm2 2.03.16, libdm/libdm-targets.c `dm_get_status_snapshot()`:
//!   `sscanf(params, "%llu/%llu %llu")`; 3 or 2 conversions are the usage
//!   form (`has_metadata_sectors` when 3), else exactly `Invalid`,
//!   `Merge failed` or `Overflow`, else a parse error. lvm2 decides a
//!   merge finished when `used_sectors == metadata_sectors`
//!   (lib/activate/dev_manager.c).
//! - Android, system/core/fs_mgr/libdm/dm_target.cpp
//!   `DmTargetSnapshot::ParseStatusText()`: the usage form needs all three
//!   numbers (`sscanf` must return 3); otherwise the text split on " " must
//!   be one word `Invalid` or `Overflow`, or two words `Merge failed`.
//!   libsnapshot waits for a merge until `sectors_allocated ==
//!   metadata_sectors` (snapshot.cpp / the libdm tests' merge loops).
//! - dm-clone's authors' test suite, device-mapper-test-suite branch
//!   feature-dm-clone, lib/dmtest/clone_status.rb `CloneStatus`: the whole
//!   line matched against `\d+\s+\d+\s+clone\s+(.*)` (unless it holds
//!   `Fail` or `Error`), then fields shifted in order: metadata block size,
//!   used/total metadata blocks, region size, hydrated/total regions,
//!   hydrating regions, a counted feature list, a counted (even) core-arg
//!   list of pairs, and the mode `ro`/`rw`/`Fail`; `wait_until_hydrated`
//!   (clone_stack.rb) stops when hydrated == total.
//! - Positional clone parsing as scripts do it on `dmsetup status NAME`
//!   split on whitespace: field 7 `hydrated/total`, field 8 the regions
//!   being hydrated (the lab's own guest `wait`, hosted/src/lab.rs, waits
//!   for `${7%/*} = ${7#*/}` and `$8 = 0`). No cloud/CSI driver doing this
//!   was found in the reference corpus; the rule is the documented field
//!   order (Documentation/admin-guide/device-mapper/dm-clone.rst).

mod common;
use common::*;

/// What libdm's `dm_get_next_target()` hands a target parser: start,
/// length, target type, and the params after them.
fn split_target(line: &str) -> (u64, u64, &str, &str) {
    let mut it = line.splitn(4, ' ');
    let start = it.next().unwrap().parse().unwrap();
    let len = it.next().unwrap().parse().unwrap();
    let ty = it.next().unwrap();
    (start, len, ty, it.next().unwrap_or(""))
}

// ---- a small sscanf for "%llu/%llu %llu" (C semantics) ----

/// `%llu`: skips white space, then decimal digits; None when none.
fn scan_u64(s: &str) -> Option<(u64, &str)> {
    let s = s.trim_start();
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    Some((s[..end].parse().ok()?, &s[end..]))
}

/// `sscanf(text, "%llu/%llu %llu", ...)`: the number of conversions and
/// their values (a space in the format matches any white space, even
/// none; '/' must match itself).
fn sscanf_usage(text: &str) -> (usize, [u64; 3]) {
    let mut v = [0; 3];
    let Some((a, rest)) = scan_u64(text) else { return (0, v) };
    v[0] = a;
    let Some(rest) = rest.strip_prefix('/') else { return (1, v) };
    let Some((b, rest)) = scan_u64(rest) else { return (1, v) };
    v[1] = b;
    let Some((c, _)) = scan_u64(rest.trim_start()) else { return (2, v) };
    v[2] = c;
    (3, v)
}

// ---- lvm2: dm_get_status_snapshot ----

#[derive(Debug, Default, PartialEq)]
struct Lvm2Snapshot {
    used_sectors: u64,
    total_sectors: u64,
    metadata_sectors: u64,
    has_metadata_sectors: bool,
    invalid: bool,
    merge_failed: bool,
    overflow: bool,
}

fn lvm2_snapshot(params: &str) -> Result<Lvm2Snapshot, String> {
    let mut s = Lvm2Snapshot::default();
    match sscanf_usage(params) {
        (r @ (2 | 3), v) => {
            (s.used_sectors, s.total_sectors, s.metadata_sectors) = (v[0], v[1], v[2]);
            s.has_metadata_sectors = r == 3;
        }
        _ if params == "Invalid" => s.invalid = true,
        _ if params == "Merge failed" => s.merge_failed = true,
        _ if params == "Overflow" => s.overflow = true,
        _ => return Err(format!("Failed to parse snapshot params: {params}.")),
    }
    Ok(s)
}

// ---- Android libdm: DmTargetSnapshot::ParseStatusText ----

#[derive(Debug, Default, PartialEq)]
struct AndroidSnapshot {
    sectors_allocated: u64,
    total_sectors: u64,
    metadata_sectors: u64,
    error: String,
}

fn android_snapshot(text: &str) -> Option<AndroidSnapshot> {
    let mut st = AndroidSnapshot::default();
    let (n, v) = sscanf_usage(text);
    (st.sectors_allocated, st.total_sectors, st.metadata_sectors) = (v[0], v[1], v[2]);
    if n == 3 {
        return Some(st);
    }
    // android::base::Split(text, " "): every single space separates.
    let sections: Vec<&str> = text.split(' ').collect();
    let ok = match sections.len() {
        1 => text == "Invalid" || text == "Overflow",
        2 => text == "Merge failed",
        _ => false,
    };
    ok.then(|| {
        st.error = text.to_string();
        st
    })
}

// ---- dmtest: CloneStatus ----

#[derive(Debug, PartialEq)]
enum CloneMode {
    ReadOnly,
    ReadWrite,
    Fail,
}

#[derive(Debug)]
struct DmtestClone {
    md_block_size: u64,
    md_used: u64,
    md_total: u64,
    region_size: u64,
    nr_hydrated_regions: u64,
    nr_regions: u64,
    nr_hydrating_regions: u64,
    features: Vec<String>,
    core_args: Vec<(String, String)>,
    mode: CloneMode,
}

/// Ruby's `"a/b".split('/')` then `to_i` on each: leading digits, else 0.
fn ruby_to_i(s: &str) -> u64 {
    s.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap_or(0)
}

/// `CloneStatus.new(dev)` on a device's whole status line. Err for what
/// raises; Ok(None) for the Fail/Error line.
fn dmtest_clone(line: &str) -> Result<Option<DmtestClone>, String> {
    if line.split_whitespace().any(|w| w == "Fail" || w == "Error") {
        return Ok(None);
    }
    // PATTERN = '\d+\s+\d+\s+clone\s+(.*)' (unanchored: first match).
    let w: Vec<&str> = line.split_whitespace().collect();
    let at = (0..w.len().saturating_sub(2))
        .find(|&i| {
            w[i].chars().all(|c| c.is_ascii_digit())
                && w[i + 1].chars().all(|c| c.is_ascii_digit())
                && w[i + 2] == "clone"
                && i + 3 < w.len()
        })
        .ok_or("couldn't parse clone status")?;
    let mut a = w[at + 3..].iter().copied();
    let mut next = |what: &str| a.next().ok_or(format!("Insufficient status fields, while trying to read {what}"));
    let int = |s: &str| s.parse::<u64>().map_err(|_| format!("invalid value for Integer(): {s:?}"));
    let ratio = |s: &str| {
        let mut p = s.split('/');
        (ruby_to_i(p.next().unwrap_or("")), ruby_to_i(p.next().unwrap_or("")))
    };
    let md_block_size = int(next("md_block_size")?)?;
    let (md_used, md_total) = ratio(next("md_used")?);
    let region_size = int(next("region_size")?)?;
    let (nr_hydrated_regions, nr_regions) = ratio(next("nr_hydrated_regions")?);
    let nr_hydrating_regions = int(next("nr_hydrating_regions")?)?;
    let nf = int(next("features")?)?;
    let mut features = Vec::new();
    for _ in 0..nf {
        features.push(next("features")?.to_string());
    }
    let nc = int(next("core_args")?)?;
    if nc % 2 == 1 {
        return Err("odd number of core arguments".into());
    }
    let mut core_args = Vec::new();
    for _ in 0..nc / 2 {
        let k = next("core_args")?.to_string();
        core_args.push((k, next("core_args")?.to_string()));
    }
    let mode = match next("mode")? {
        "ro" => CloneMode::ReadOnly,
        "rw" => CloneMode::ReadWrite,
        "Fail" => CloneMode::Fail,
        _ => return Err("unknown metadata mode".into()),
    };
    Ok(Some(DmtestClone {
        md_block_size,
        md_used,
        md_total,
        region_size,
        nr_hydrated_regions,
        nr_regions,
        nr_hydrating_regions,
        features,
        core_args,
        mode,
    }))
}

// ---- positional: fields 7 and 8 of `dmsetup status NAME` ----

/// (hydrated, total, hydrating) from fields 7 and 8 (1-based) of the
/// whitespace-split line; None when they are not numbers of that shape.
fn positional_clone(line: &str) -> Option<(u64, u64, u64)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.get(2) != Some(&"clone") {
        return None;
    }
    let (h, t) = f.get(6)?.split_once('/')?;
    Some((h.parse().ok()?, t.parse().ok()?, f.get(7)?.parse().ok()?))
}

// ---- the parsers' own rules, on literal input (so a wrong
// re-implementation fails here, not only against dmrs) ----

#[test]
fn parser_rules_on_literal_lines() {
    assert_eq!(sscanf_usage("80/2048 32"), (3, [80, 2048, 32]));
    assert_eq!(sscanf_usage("80/2048"), (2, [80, 2048, 0]));
    assert_eq!(sscanf_usage("Invalid"), (0, [0; 3]));
    assert_eq!(sscanf_usage("80 2048"), (1, [80, 0, 0]));
    assert!(lvm2_snapshot("80/2048").unwrap().used_sectors == 80);
    assert!(!lvm2_snapshot("80/2048").unwrap().has_metadata_sectors);
    assert!(lvm2_snapshot("Overflow ").is_err());
    assert!(lvm2_snapshot("garbage").is_err());
    assert!(android_snapshot("80/2048").is_none(), "Android needs all three numbers");
    assert!(android_snapshot("Merge  failed").is_none());
    assert!(android_snapshot("Invalid x").is_none());
    assert!(dmtest_clone("0 8 clone 8 6/1024 8 0/1 0 0 3 a b c rw").unwrap_err().contains("odd"));
    assert!(dmtest_clone("0 8 clone 8 6/1024 8 0/1 0 0 0 rx").unwrap_err().contains("mode"));
    assert!(dmtest_clone("0 8 clone 8 6/1024 8").unwrap_err().contains("Insufficient"));
    assert!(dmtest_clone("0 8 clone Fail").unwrap().is_none());
    assert_eq!(positional_clone("0 8 clone 8 6/1024 8 3/4 1 0 0 rw"), Some((3, 4, 1)));
    assert_eq!(positional_clone("0 8 clone 8 6/1024 8 3 4 1 0 0 rw"), None);
}

const OS: u64 = 131072;

/// An origin with a P 16 snapshot on a 1 MiB COW (2048 sectors).
fn origin_and_snapshot(e: &Env, store: &str) {
    e.file("origin.img", &pattern("ORIGINAL", 64 << 20));
    e.zero("cow.img", 1 << 20);
    e.run(&format!(
        "create origin --table '0 {OS} snapshot-origin origin.img'\nsuspend origin\n\
         create snap --table '0 {OS} snapshot origin.img cow.img {store}'\nresume origin\n"
    ));
}

#[test]
fn lvm2_and_android_read_snapshot_usage() {
    let e = Env::new();
    origin_and_snapshot(&e, "P 16");
    e.ok(&["write", "snap", "--offset", "0", "--pattern", "SNAPWRITE", "--length", "24576"]);
    let line = e.status("snap");
    let (start, len, ty, params) = split_target(&line);
    assert_eq!((start, len, ty), (0, OS, "snapshot"), "{line}");
    // Three 8 KiB chunks after the header and one metadata chunk.
    let want = Lvm2Snapshot {
        used_sectors: 80,
        total_sectors: 2048,
        metadata_sectors: 32,
        has_metadata_sectors: true,
        ..Default::default()
    };
    assert_eq!(lvm2_snapshot(params).unwrap(), want, "{line}");
    let a = android_snapshot(params).unwrap_or_else(|| panic!("Android rejects {line:?}"));
    assert_eq!(
        a,
        AndroidSnapshot { sectors_allocated: 80, total_sectors: 2048, metadata_sectors: 32, error: String::new() }
    );
    // lvm2's snapshot use percentage: used/total.
    assert_eq!(100 * want.used_sectors / want.total_sectors, 3);
}

#[test]
fn transient_snapshot_usage_has_no_metadata_sectors() {
    let e = Env::new();
    origin_and_snapshot(&e, "N 16");
    e.ok(&["write", "origin", "--offset", "1048576", "--pattern", "NEWORIGIN", "--length", "16384"]);
    let line = e.status("snap");
    let (.., params) = split_target(&line);
    let l = lvm2_snapshot(params).unwrap();
    assert_eq!(
        (l.used_sectors, l.total_sectors, l.metadata_sectors, l.has_metadata_sectors),
        (32, 2048, 0, true),
        "{line}"
    );
    let a = android_snapshot(params).unwrap();
    assert_eq!((a.sectors_allocated, a.metadata_sectors, a.error.as_str()), (32, 0, ""), "{line}");
}

#[test]
fn lvm2_and_android_read_overflow() {
    let e = Env::new();
    origin_and_snapshot(&e, "PO 16");
    let mut overflowed = false;
    for i in 0..512u64 {
        let off = (8388608 + i * 4096).to_string();
        if !e.dmrs(&["write", "snap", "--offset", &off, "--pattern", "BIGSNAP", "--length", "4096"]).status.success() {
            overflowed = true;
            break;
        }
    }
    assert!(overflowed, "2 MiB of snapshot writes must overflow a 1 MiB PO COW");
    let line = e.status("snap");
    let (.., params) = split_target(&line);
    assert_eq!(lvm2_snapshot(params).unwrap(), Lvm2Snapshot { overflow: true, ..Default::default() }, "{line}");
    assert_eq!(android_snapshot(params).unwrap().error, "Overflow", "{line}");
}

#[test]
fn lvm2_and_android_read_invalid() {
    let e = Env::new();
    origin_and_snapshot(&e, "P 16");
    e.ok(&["write", "origin", "--offset", "16777216", "--pattern", "ORIGFILL", "--length", "2097152"]);
    let line = e.status("snap");
    let (.., params) = split_target(&line);
    assert_eq!(lvm2_snapshot(params).unwrap(), Lvm2Snapshot { invalid: true, ..Default::default() }, "{line}");
    assert_eq!(android_snapshot(params).unwrap().error, "Invalid", "{line}");
}

#[test]
fn merge_progress_and_end_as_lvm2_and_libsnapshot_see_them() {
    let e = Env::new();
    origin_and_snapshot(&e, "P 16");
    e.ok(&["write", "snap", "--offset", "4194304", "--pattern", "SNAPWRITE", "--length", "65536"]);
    e.ok(&["remove", "snap"]);
    e.ok(&["remove", "origin"]);
    e.ok(&["create", "origin", "--table", &format!("0 {OS} snapshot-merge origin.img cow.img P 16")]);
    let before = e.status("origin");
    let (_, _, ty, params) = split_target(&before);
    assert_eq!(ty, "snapshot-merge");
    let l = lvm2_snapshot(params).unwrap();
    let a = android_snapshot(params).unwrap();
    assert_eq!((l.used_sectors, l.metadata_sectors), (160, 32), "{before}");
    assert!(l.used_sectors != l.metadata_sectors && a.sectors_allocated != a.metadata_sectors, "merge not done yet");
    e.ok(&["wait", "origin"]);
    let after = e.status("origin");
    let (.., params) = split_target(&after);
    let l = lvm2_snapshot(params).unwrap();
    let a = android_snapshot(params).unwrap();
    assert!(l.has_metadata_sectors && l.used_sectors == l.metadata_sectors, "lvm2: merge finished: {after}");
    assert!(a.error.is_empty() && a.sectors_allocated == a.metadata_sectors, "libsnapshot: merge finished: {after}");
    assert_eq!((a.sectors_allocated, a.total_sectors), (32, 2048));
}

/// `Merge failed` needs an I/O error in the middle of a merge, which
/// files cannot give (dmrs refuses a COW whose exceptions point past its
/// end already at load). The state directory carries a snapshot's
/// in-memory flags between invocations in its `volatile` record (as
/// `Driver::volatile`/`restore_volatile` save and put them back); this
/// test sets merge_failed there, as a failed merge leaves it, and reads
/// the line dmrs's status code emits for it.
#[test]
fn lvm2_and_android_read_merge_failed() {
    let e = Env::new();
    origin_and_snapshot(&e, "P 16");
    e.ok(&["write", "snap", "--offset", "0", "--pattern", "SNAPWRITE", "--length", "8192"]);
    e.ok(&["remove", "snap"]);
    e.ok(&["remove", "origin"]);
    e.ok(&["create", "origin", "--table", &format!("0 {OS} snapshot-merge origin.img cow.img P 16")]);
    let vol = e.p("state").join("volatile");
    let text = std::fs::read_to_string(&vol).unwrap();
    assert!(text.contains("merge_failed=0"), "volatile record format changed: {text:?}");
    std::fs::write(&vol, text.replace("merge_failed=0", "merge_failed=1")).unwrap();
    let line = e.status("origin");
    let (_, _, ty, params) = split_target(&line);
    assert_eq!(ty, "snapshot-merge");
    assert_eq!(lvm2_snapshot(params).unwrap(), Lvm2Snapshot { merge_failed: true, ..Default::default() }, "{line}");
    assert_eq!(android_snapshot(params).unwrap().error, "Merge failed", "{line}");
}

/// A 16 MiB clone (4096 regions of 4 KiB) with background hydration off.
fn clone_env() -> Env {
    let e = Env::new();
    e.file("src.img", &pattern("SOURCE", 16 << 20));
    e.zero("dest.img", 16 << 20);
    e.zero("meta.img", 4 << 20);
    e.ok(&["create", "cl", "--table", "0 32768 clone meta.img dest.img src.img 8 1 no_hydration"]);
    e
}

#[test]
fn dmtest_reads_a_partly_hydrated_clone() {
    let e = clone_env();
    e.ok(&["write", "cl", "--offset", "1048576", "--pattern", "CLONEWRITE", "--length", "65536"]);
    e.ok(&["write", "cl", "--offset", "8192", "--pattern", "PARTIAL", "--length", "2048"]);
    let line = e.status("cl");
    let s = dmtest_clone(&line).unwrap().unwrap_or_else(|| panic!("Fail/Error: {line}"));
    assert_eq!((s.md_block_size, s.md_used, s.md_total, s.region_size), (8, 6, 1024, 8), "{line}");
    assert_eq!((s.nr_hydrated_regions, s.nr_regions, s.nr_hydrating_regions), (17, 4096, 0), "{line}");
    assert_eq!(s.features, ["no_hydration"], "{line}");
    assert_eq!(
        s.core_args,
        [("hydration_threshold".to_string(), "1".to_string()), ("hydration_batch_size".into(), "1".into())],
        "{line}"
    );
    assert_eq!(s.mode, CloneMode::ReadWrite, "{line}");
    assert!(s.nr_hydrated_regions != s.nr_regions, "wait_until_hydrated keeps waiting");
}

#[test]
fn dmtest_and_positional_parsers_see_hydration_end() {
    let e = clone_env();
    e.ok(&["message", "cl", "0", "hydration_threshold", "512"]);
    e.ok(&["message", "cl", "0", "hydration_batch_size", "64"]);
    let line = e.status("cl");
    assert_eq!(positional_clone(&line), Some((0, 4096, 0)), "{line}");
    let s = dmtest_clone(&line).unwrap().unwrap();
    assert_eq!(
        s.core_args,
        [("hydration_threshold".to_string(), "512".to_string()), ("hydration_batch_size".into(), "64".into())]
    );
    e.ok(&["message", "cl", "0", "enable_hydration"]);
    e.ok(&["wait", "cl"]);
    let line = e.status("cl");
    let s = dmtest_clone(&line).unwrap().unwrap();
    assert!(s.nr_hydrated_regions == s.nr_regions && s.nr_regions == 4096, "wait_until_hydrated stops: {line}");
    assert!(s.features.is_empty(), "hydration enabled: no no_hydration feature: {line}");
    assert_eq!(s.mode, CloneMode::ReadWrite);
    let (h, t, busy) = positional_clone(&line).unwrap_or_else(|| panic!("fields 7/8: {line}"));
    assert!(h == t && busy == 0, "{line}");
    assert_eq!((h, t), (4096, 4096));
    // Re-activation from the metadata: still all hydrated, same fields.
    e.ok(&["remove", "cl"]);
    e.ok(&["create", "cl", "--table", "0 32768 clone meta.img dest.img src.img 8"]);
    let line = e.status("cl");
    assert_eq!(positional_clone(&line), Some((4096, 4096, 0)), "{line}");
    let s = dmtest_clone(&line).unwrap().unwrap();
    assert_eq!((s.region_size, s.nr_regions, s.features.len(), s.core_args.len()), (8, 4096, 0, 2), "{line}");
}

#[test]
fn positional_parser_counts_discarded_regions_as_hydrated() {
    let e = clone_env();
    e.ok(&["discard", "cl", "--offset", "4194304", "--length", "1048576"]);
    let line = e.status("cl");
    assert_eq!(positional_clone(&line), Some((256, 4096, 0)), "{line}");
    let s = dmtest_clone(&line).unwrap().unwrap();
    assert_eq!((s.nr_hydrated_regions, s.nr_regions), (256, 4096));
}
