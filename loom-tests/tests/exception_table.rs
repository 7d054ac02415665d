// SPDX-License-Identifier: GPL-2.0-only
//! The exception table under its lock: concurrent lookups and inserts of
//! consecutive chunks (which fold into one range).
//!
//! Invariant: a chunk gets at most one exception, every inserted chunk is
//! found afterwards with its COW chunk, and a lookup never sees a range in
//! a half-updated state.
//!
//! Guards against "dm snapshot: avoid having two exceptions for the same
//! chunk": the lookup and the insert must happen under one exclusive hold
//! of the lock; looking up under a shared hold and inserting after it was
//! dropped lets two writers both insert.
#![cfg(loom)]

use dmrs_core::exception::DM_CHUNK_CONSECUTIVE_BITS;
use dmrs_core::exception_table::ExceptionTable;
use dmrs_core::sync::{LockClass, RwSem};

static TABLE_LOCK: LockClass = LockClass::new(c"exception_table");
use loom::sync::Arc;
use loom::thread;

/// Adds `old -> new` unless the chunk has an exception; returns whether it did.
fn add(t: &RwSem<ExceptionTable>, old: u64, new: u64, toctou: bool) -> bool {
    if toctou {
        let exists = t.down_read().lookup(old).is_some();
        if exists {
            return false;
        }
        t.down_write().insert(old, new).unwrap();
        true
    } else {
        let mut g = t.down_write();
        if g.lookup(old).is_some() {
            return false;
        }
        g.insert(old, new).unwrap();
        true
    }
}

fn model(toctou: bool) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(move || {
        let t = Arc::new(RwSem::new(ExceptionTable::new(64, DM_CHUNK_CONSECUTIVE_BITS).unwrap(), &TABLE_LOCK).unwrap());
        t.down_write().insert(10, 100).unwrap();
        // Two writers race for chunk 11 (each would extend the range 10..);
        // a reader looks at the range meanwhile.
        let t1 = {
            let t = t.clone();
            thread::spawn(move || add(&t, 11, 101, toctou) as u32)
        };
        let t2 = {
            let t = t.clone();
            thread::spawn(move || add(&t, 11, 101, toctou) as u32)
        };
        let r = {
            let t = t.clone();
            thread::spawn(move || {
                let g = t.down_read();
                if let Some(e) = g.lookup(11) {
                    assert_eq!(e.remap(11), 101, "half-updated range");
                }
                assert_eq!(g.lookup(10).map(|e| e.remap(10)), Some(100));
            })
        };
        let added = t1.join().unwrap() + t2.join().unwrap();
        r.join().unwrap();
        assert_eq!(added, 1, "chunk 11 got two exceptions");
        let g = t.down_read();
        assert_eq!(g.len(), 2);
        assert_eq!(g.lookup(11).map(|e| e.remap(11)), Some(101));
    });
}

#[test]
fn lookup_and_insert_under_one_exclusive_hold() {
    model(false);
}

#[test]
#[should_panic(expected = "chunk 11 got two exceptions")]
fn lookup_then_insert_after_dropping_the_lock_is_caught() {
    model(true);
}
