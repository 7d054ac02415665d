// SPDX-License-Identifier: GPL-2.0-only
//! Property test of the clone metadata against a model: random
//! set_region_hydrated / cond_set_range / pre_commit / commit / power cut /
//! reopen. After a reopen exactly the regions of completed commits are
//! hydrated (the v5.4 bug committed regions set after the swap).
#![allow(clippy::disallowed_types, clippy::disallowed_methods, clippy::disallowed_macros)] // a std test

use dmrs_core::clone::metadata::CloneMetadata;
use dmrs_core::platform::RamDev;
use proptest::prelude::*;
use std::collections::BTreeSet;

#[derive(Clone, Debug)]
enum Op {
    Set(u64),
    Range(u64, u64),
    PreCommit,
    Commit,
    Crash,
    Reopen,
}

const TARGET: u64 = 8 * 40_000; // 40,000 regions: 625 words, 2 array blocks

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u64..40_000).prop_map(Op::Set),
        2 => (0u64..40_000, 1u64..300).prop_map(|(s, n)| Op::Range(s, n)),
        3 => Just(Op::PreCommit),
        3 => Just(Op::Commit),
        1 => Just(Op::Crash),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn reopen_shows_exactly_the_completed_commits(ops in prop::collection::vec(op(), 1..120)) {
        let dev = RamDev::new(8192, 512).unwrap();
        let mut m = CloneMetadata::open(&dev, TARGET, 8).unwrap();
        let mut durable: BTreeSet<u64> = BTreeSet::new();
        let mut current: BTreeSet<u64> = BTreeSet::new();   // set since the last swap
        let mut committing: Option<BTreeSet<u64>> = None;    // swapped, not yet committed
        // The dirty maps' `changed` flags, as the kernel keeps them.
        let (mut cur_changed, mut com_changed) = (false, false);
        for op in ops {
            let in_core = |r: u64, d: &BTreeSet<u64>, c: &BTreeSet<u64>, k: &Option<BTreeSet<u64>>| {
                d.contains(&r) || c.contains(&r) || k.as_ref().is_some_and(|k| k.contains(&r))
            };
            match op {
                Op::Set(r) => {
                    m.set_region_hydrated(r).unwrap();
                    current.insert(r);
                    cur_changed = true;
                }
                Op::Range(s, n) => {
                    let n = n.min(40_000 - s);
                    if n == 0 { continue; }
                    let new: Vec<u64> = (s..s + n).filter(|&r| !in_core(r, &durable, &current, &committing)).collect();
                    m.cond_set_range(s, n).unwrap();
                    cur_changed |= !new.is_empty();
                    current.extend(new);
                }
                Op::PreCommit => {
                    if m.pre_commit().is_ok() {
                        prop_assert!(committing.is_none());
                        committing = Some(std::mem::take(&mut current));
                        com_changed = std::mem::take(&mut cur_changed);
                    } else {
                        prop_assert!(committing.is_some());
                    }
                }
                Op::Commit => match committing.take() {
                    Some(c) => {
                        m.commit().unwrap();
                        durable.extend(c);
                        com_changed = false;
                    }
                    None => prop_assert!(m.commit().is_err()),
                },
                Op::Crash | Op::Reopen => {
                    if matches!(op, Op::Crash) { dev.crash(); }
                    drop(m);
                    m = CloneMetadata::open(&dev, TARGET, 8).unwrap();
                    let got: BTreeSet<u64> = (0..40_000).filter(|&r| m.is_region_hydrated(r)).collect();
                    prop_assert_eq!(&got, &durable);
                    current.clear();
                    committing = None;
                    cur_changed = false;
                    com_changed = false;
                }
            }
            // changed_this_transaction never lies.
            prop_assert_eq!(m.changed_this_transaction(), cur_changed || com_changed);
        }
    }
}
