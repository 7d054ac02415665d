// SPDX-License-Identifier: GPL-2.0-only
//! The state directory degrades, never bricks: a torn or foreign journal
//! line is skipped with a warning; a device whose backing file is missing,
//! or whose COW was wiped, comes back unavailable (its verbs say why,
//! `remove` drops it) while every other device works.

mod common;
use common::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_torn_journal_line_is_skipped_with_a_warning() {
    let e = Env::new();
    e.zero("a.img", 1 << 20);
    e.ok(&["create", "o", "--table", "0 2048 snapshot-origin a.img"]);
    let journal = e.p("state").join("journal");
    let mut text = std::fs::read_to_string(&journal).unwrap();
    text.push_str("create x --table '0 8 snapsh");
    std::fs::write(&journal, text).unwrap();
    let o = e.dmrs(&["status", "o"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "0 2048 snapshot-origin \n");
    assert!(stderr(&o).contains("ignored: unterminated single quote"), "{}", stderr(&o));
}

#[test]
fn a_device_whose_file_is_gone_is_unavailable_and_the_others_work() {
    let e = Env::new();
    e.zero("a.img", 1 << 20);
    e.zero("b.img", 1 << 20);
    e.ok(&["create", "o1", "--table", "0 2048 snapshot-origin a.img"]);
    e.ok(&["create", "o2", "--table", "0 2048 snapshot-origin b.img"]);
    std::fs::remove_file(e.p("b.img")).unwrap();
    assert_eq!(e.ok(&["status", "o1"]), "0 2048 snapshot-origin \n");
    let err = e.fails(&["status", "o2"]);
    assert!(err.contains("dmrs: o2 is unavailable: "), "{err}");
    assert!(err.contains("Cannot get target device"), "{err}");
    let ls = e.ok(&["ls"]);
    assert!(
        ls.starts_with("o1\no2\t(unavailable: device-mapper: table: o2: snapshot-origin: Cannot get target device"),
        "{ls}"
    );
    e.ok(&["write", "o1", "--offset", "0", "--pattern", "STILL", "--length", "4096"]);
    e.ok(&["remove", "--force", "o2"]);
    assert_eq!(e.ok(&["ls"]), "o1\n");
    e.ok(&["remove", "o1"]);
    assert_eq!(e.ok(&["ls"]), "No devices found\n");
}

#[test]
fn a_wiped_cow_is_not_formatted_again_on_replay() {
    let e = Env::new();
    e.file("origin.img", &pattern("ORIGINAL", 1 << 20));
    e.zero("cow.img", 1 << 20);
    e.ok(&["create", "o", "--table", "0 2048 snapshot-origin origin.img"]);
    e.ok(&["create", "s", "--table", "0 2048 snapshot origin.img cow.img P 16"]);
    e.ok(&["write", "o", "--offset", "0", "--pattern", "NEW", "--length", "8192"]);
    e.ok(&["read", "s", "--offset", "0", "--length", "8192", "--expect-pattern", "ORIGINAL"]);
    e.zero("cow.img", 1 << 20);
    let err = e.fails(&["read", "s", "--offset", "0", "--length", "8192", "--expect-pattern", "ORIGINAL"]);
    assert!(err.contains("the COW cow.img held a snapshot and is blank now"), "{err}");
    // The origin goes on working; the snapshot can be removed.
    e.ok(&["read", "o", "--offset", "0", "--length", "8192", "--expect-pattern", "NEW"]);
    e.ok(&["remove", "s"]);
    assert_eq!(e.ok(&["ls"]), "o\n");
}

/// Two state directories on one backing file would both write it: the
/// second is refused as the kernel refuses a device another holder opened
/// exclusively, until the first lets go of it.
#[test]
fn a_file_one_state_directory_holds_is_busy_for_another() {
    let e = Env::new();
    e.file("origin.img", &pattern("ORIGINAL", 1 << 20));
    let holders = e.p("holders");
    let run = |state: &str, args: &[&str]| {
        let mut a = vec!["--state", state];
        a.extend_from_slice(args);
        std::process::Command::new(env!("CARGO_BIN_EXE_dmrs"))
            .current_dir(e.dir.path())
            .env("DMRS_HOLDERS", &holders)
            .args(&a)
            .output()
            .unwrap()
    };
    let table = ["--table", "0 2048 snapshot-origin origin.img"];
    let a = run("A", &[&["create", "o"][..], &table[..]].concat());
    assert!(a.status.success(), "{}", stderr(&a));
    let b = run("B", &[&["create", "o"][..], &table[..]].concat());
    assert_eq!(b.status.code(), Some(1));
    let err = stderr(&b);
    assert!(err.contains("snapshot-origin: Cannot get target device"), "{err}");
    assert!(err.contains("Device or resource busy"), "{err}");
    // A keeps it across invocations; tables of one state directory share it.
    assert!(run("A", &["create", "p", "--table", "0 2048 snapshot-origin origin.img"]).status.success());
    assert!(!run("B", &[&["create", "o"][..], &table[..]].concat()).status.success());
    assert!(run("A", &["remove", "o"]).status.success());
    assert!(!run("B", &[&["create", "o"][..], &table[..]].concat()).status.success(), "p still holds it");
    assert!(run("A", &["remove", "p"]).status.success());
    let b = run("B", &[&["create", "o"][..], &table[..]].concat());
    assert!(b.status.success(), "{}", stderr(&b));
}
