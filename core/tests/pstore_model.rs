// SPDX-License-Identifier: GPL-2.0-only
#![allow(clippy::disallowed_types, clippy::disallowed_methods, clippy::disallowed_macros)] // a std test, not core code
//! Property test of the persistent store against a simple model: random
//! prepare / commit (any order) / merge / crash (drop everything not yet
//! durable) / reload. Every exception whose commit callback reported
//! success is there after a reload; none is ever duplicated; nothing that
//! was never committed appears.

use dmrs_core::exception::DmException;
use dmrs_core::exception_store::{ExceptionStore, Metadata};
use dmrs_core::platform::RamDev;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug)]
enum Op {
    Prepare(u64),
    Commit(usize),
    Merge,
    Crash,
    Reload,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u64..500).prop_map(Op::Prepare),
        6 => (0usize..8).prop_map(Op::Commit),
        1 => Just(Op::Merge),
        1 => Just(Op::Crash),
        1 => Just(Op::Reload),
    ]
}

type Store<'a> = ExceptionStore<&'a RamDev, u64>;

fn open<'a>(dev: &'a RamDev, chunk: &str) -> (Store<'a>, Vec<(u64, u64)>) {
    let (mut s, _) = ExceptionStore::create(&["P", chunk], dev, 512).unwrap();
    let mut v = Vec::new();
    let m = s
        .read_metadata(&mut |o, n| {
            v.push((o, n));
            Ok(())
        })
        .unwrap();
    assert_eq!(m, Metadata::Loaded);
    (s, v)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn acknowledged_exceptions_survive_crash_and_reload(ops in prop::collection::vec(op(), 1..300), chunk in prop_oneof![Just("1"), Just("2")]) {
        // Chunk 1: 32 slots per area, so areas fill and roll over often.
        let dev = RamDev::new(4096, 512).unwrap();
        let (mut s, _) = open(&dev, chunk);
        // old -> new, acknowledged (callback said valid).
        let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
        // Everything ever committed (acknowledged or not yet).
        let mut committed: BTreeMap<u64, u64> = BTreeMap::new();
        let mut prepared: Vec<DmException> = Vec::new();
        let mut in_use: BTreeSet<u64> = BTreeSet::new();
        let mut merging = false;
        for op in ops {
            match op {
                Op::Prepare(old) => {
                    // The snapshot never prepares a chunk that has an exception, and
                    // a merging snapshot allocates none.
                    if merging || in_use.contains(&old) { continue; }
                    let mut e = DmException::new(old, 0);
                    if s.prepare_exception(&mut e).is_ok() {
                        in_use.insert(old);
                        prepared.push(e);
                    }
                }
                Op::Commit(i) => {
                    if prepared.is_empty() { continue; }
                    let e = prepared.remove(i % prepared.len());
                    committed.insert(e.old_chunk, e.new_chunk);
                    let mut done = Vec::new();
                    s.commit_exception(&e, true, e.old_chunk, &mut |old, valid| done.push((old, valid)));
                    for (old, valid) in done {
                        prop_assert!(valid);
                        prop_assert!(acked.insert(old, committed[&old]).is_none(), "callback twice for {}", old);
                    }
                }
                Op::Merge => {
                    // Merging starts only when nothing is in flight.
                    if !prepared.is_empty() || acked.len() != committed.len() { continue; }
                    merging = true;
                    if let Some(run) = s.prepare_merge().unwrap() {
                        let n = 1 + (run.last_old_chunk % run.nr_consecutive as u64) as u32;
                        s.commit_merge(n).unwrap();
                        for k in 0..n as u64 {
                            let old = run.last_old_chunk - k;
                            prop_assert_eq!(acked.remove(&old), Some(run.last_new_chunk - k));
                            committed.remove(&old);
                            in_use.remove(&old);
                        }
                    }
                }
                Op::Crash | Op::Reload => {
                    if matches!(op, Op::Crash) { dev.crash(); }
                    drop(s);
                    let (ns, loaded) = open(&dev, chunk);
                    s = ns;
                    let mut olds = BTreeSet::new();
                    let mut news = BTreeSet::new();
                    for &(o, n) in &loaded {
                        prop_assert!(olds.insert(o), "old chunk {} loaded twice", o);
                        prop_assert!(news.insert(n), "new chunk {} loaded twice", n);
                        prop_assert_eq!(committed.get(&o), Some(&n), "loaded an exception never committed");
                    }
                    for (o, n) in &acked {
                        prop_assert!(loaded.contains(&(*o, *n)), "acknowledged {} -> {} lost", o, n);
                    }
                    acked = loaded.iter().copied().collect();
                    committed = acked.clone();
                    in_use = acked.keys().copied().collect();
                    prepared.clear();
                    merging = false;
                }
            }
        }
    }
}
