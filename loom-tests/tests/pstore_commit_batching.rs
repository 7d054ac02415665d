// SPDX-License-Identifier: GPL-2.0-only
//! Persistent store commit batching: copies completing on several threads,
//! each calling `commit_exception`, while another exception is prepared.
//!
//! Invariant: the metadata area is written exactly once per batch — by the
//! commit that brings `pending_count` to 0 or fills the area — with
//! PREFLUSH|FUA; every commit callback runs exactly once, and only once the
//! area holding its exception and the chunk it points at are durable;
//! `valid` is the same for the whole batch: true, or false for every
//! exception after a copy error or a failed metadata write;
//! `pending_count` is always the number of prepared, uncommitted exceptions
//! (it never underflows and ends at 0); after a power cut the store reloads
//! every exception it reported valid, with its data. As in the snapshot
//! driver, the store is only touched under a `RwSem` held exclusively
//! (`s->lock`); the copies run outside it, as kcopyd's do.
//!
//! Guards against "dm snapshot: fix hung bios when copy error occurs"
//! (385277bfb57f): the completion of a failed copy skipped
//! `commit_exception`, so `pending_count` never returned to 0 and the other
//! exceptions of the batch (and their bios) were held forever. And against
//! completing an exception when `commit_exception` returns rather than in
//! its callback: a commit inside a batch returns before the area is
//! written. dmrs's synchronous `make_exception` may treat the return as
//! completion only because it holds the snapshot lock from prepare to
//! commit, so its commits are batches of one.
#![cfg(loom)]

use dmrs_core::endian::{Le32, OnDisk};
use dmrs_core::exception::DmException;
use dmrs_core::exception_store::disk::{self, DiskHeader, SNAPSHOT_DISK_VERSION, SNAP_MAGIC};
use dmrs_core::exception_store::{ExceptionStore, Metadata};
use dmrs_core::platform::{ChunkCopier, RamDev, ReqFlags, SyncCopier};
use dmrs_core::sync::{LockClass, RwSem};
use dmrs_loom_tests::Dev;
use loom::sync::Arc;
use loom::thread;

static SNAPSHOT_LOCK: LockClass = LockClass::new(c"snapshot_lock");

/// Chunk size in sectors: one sector, so an area has 32 slots.
const CHUNK: u64 = 1;
const EPA: u32 = disk::exceptions_per_area(CHUNK as u32);
/// Header, area 0, its 32 data chunks, area 1, a few data chunks.
const COW_SECTORS: u64 = 40;
/// Origin chunks 0..3 get exceptions; each holds its own byte.
const NEW: usize = 3;

fn origin_byte(chunk: u64) -> u8 {
    0xA0 + chunk as u8
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Broken {
    No,
    /// Before 385277bfb57f: a failed copy completes without a commit.
    SkipCommitOnCopyError,
    /// The exception is completed when `commit_exception` returns.
    CompleteOnReturn,
}

#[derive(Clone, Copy, Debug)]
struct Case {
    /// Slots of area 0 already used: the model starts from an existing COW.
    prefilled: u32,
    /// The main thread prepares, copies and commits a third exception while
    /// the first two copies are in flight.
    racing_prepare: bool,
    /// The COW fails every write after this many (copies and metadata).
    fail_writes_after: Option<u64>,
    broken: Broken,
}

/// The snapshot's store and what the model saw, under the snapshot lock.
struct State {
    store: ExceptionStore<Dev, DmException>,
    prepared: u32,
    committed: u32,
    /// Per origin chunk: callbacks run and the last `valid`.
    calls: [(u32, bool); NEW],
    /// Commits that ran callbacks.
    batches: u32,
    /// Chunks completed before their exception was durable (asserted after
    /// the joins: a panic before the threads ran would abort loom).
    early: Vec<u64>,
}

impl State {
    fn check_pending(&self) {
        let pending = self.store.pstore().unwrap().pending_count();
        assert_eq!(pending, self.prepared - self.committed, "pending_count is not prepared - committed");
    }
}

/// A COW holding `prefilled` exceptions (origin chunk 100 + i → COW chunk 2 + i).
fn cow_image(prefilled: u32) -> Vec<u8> {
    let mut img = vec![0u8; COW_SECTORS as usize * 512];
    let h = DiskHeader {
        magic: Le32::new(SNAP_MAGIC),
        valid: Le32::new(1),
        version: Le32::new(SNAPSHOT_DISK_VERSION),
        chunk_size: Le32::new(CHUNK as u32),
    };
    h.pack(&mut img).unwrap();
    let area0 = disk::area_location(EPA, 0).unwrap() as usize * 512;
    for i in 0..prefilled {
        disk::write_exception(&mut img[area0..area0 + 512], i, 100 + i as u64, 2 + i as u64).unwrap();
    }
    img
}

/// True when the durable COW has `e` in a metadata area and its copied chunk.
fn durable(cow: &Dev, e: &DmException) -> bool {
    let mut buf = [0u8; 512];
    let recorded = (0..2).any(|a| {
        cow.dev.peek_durable(disk::area_location(EPA, a).unwrap() * CHUNK, &mut buf).unwrap();
        (0..EPA).any(|i| disk::read_exception(&buf, i) == Some((e.old_chunk, e.new_chunk)))
    });
    cow.dev.peek_durable(e.new_chunk * CHUNK, &mut buf).unwrap();
    recorded && buf.iter().all(|&b| b == origin_byte(e.old_chunk))
}

/// `pending_complete` for a successful exception: its bios may go on now.
fn completed(cow: &Dev, e: &DmException, early: &mut Vec<u64>) {
    if !durable(cow, e) {
        early.push(e.old_chunk);
    }
}

/// `__insert_pending_exception` → `prepare_exception`, under the lock.
fn prepare(st: &RwSem<State>, chunk: u64) -> DmException {
    let mut g = st.down_write();
    let mut e = DmException::new(chunk, 0);
    g.store.prepare_exception(&mut e).unwrap();
    g.prepared += 1;
    g.check_pending();
    e
}

/// The copy (kcopyd, no lock), then `copy_callback` → `complete_exception`
/// → `commit_exception` under the lock, `pending_complete` as its callback.
fn copy_and_commit(st: &RwSem<State>, origin: &Dev, cow: &Dev, e: DmException, broken: Broken) {
    let copied = SyncCopier::default().copy(origin, e.old_chunk * CHUNK, cow, e.new_chunk * CHUNK, CHUNK).is_ok();
    if !copied && broken == Broken::SkipCommitOnCopyError {
        // Before 385277bfb57f: pending_complete(pe, 0) without a commit.
        let mut g = st.down_write();
        let call = &mut g.calls[e.old_chunk as usize];
        *call = (call.0 + 1, false);
        return;
    }
    let mut g = st.down_write();
    let State { store, committed, calls, batches, early, .. } = &mut *g;
    *committed += 1;
    let mut ran = false;
    store.commit_exception(&e, copied, e, &mut |c, valid| {
        ran = true;
        if valid {
            completed(cow, &c, early);
        }
        let call = &mut calls[c.old_chunk as usize];
        *call = (call.0 + 1, valid);
    });
    *batches += ran as u32;
    g.check_pending();
    if broken == Broken::CompleteOnReturn {
        completed(cow, &e, &mut g.early);
    }
}

fn model(case: Case) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(move || {
        let bytes: Vec<u8> = (0..NEW as u64).flat_map(|c| [origin_byte(c); 512]).collect();
        let origin = dmrs_loom_tests::dev(RamDev::from_bytes(&bytes, 512).unwrap(), 1, "origin");
        let cow = dmrs_loom_tests::dev(RamDev::from_bytes(&cow_image(case.prefilled), 512).unwrap(), 2, "cow");
        let (mut store, _) = ExceptionStore::create(&["P", "1"], cow.clone(), 512).unwrap();
        assert_eq!(store.read_metadata(&mut |_, _| Ok(())), Ok(Metadata::Loaded));
        let st = Arc::new(
            RwSem::new(
                State { store, prepared: 0, committed: 0, calls: [(0, false); NEW], batches: 0, early: Vec::new() },
                &SNAPSHOT_LOCK,
            )
            .unwrap(),
        );

        // Two origin writes queued the copies of chunks 0 and 1; the copies
        // complete on two threads.
        let pending = [prepare(&st, 0), prepare(&st, 1)];
        cow.dev.record_writes(true);
        cow.dev.fail_writes_after(case.fail_writes_after);
        let copies: Vec<_> = pending
            .into_iter()
            .map(|e| {
                let (st, origin, cow) = (st.clone(), origin.clone(), cow.clone());
                thread::spawn(move || copy_and_commit(&st, &origin, &cow, e, case.broken))
            })
            .collect();
        // Meanwhile a write to chunk 2 makes a third exception.
        if case.racing_prepare {
            let e = prepare(&st, 2);
            copy_and_commit(&st, &origin, &cow, e, case.broken);
        }
        for t in copies {
            t.join().unwrap();
        }

        let g = st.down_read();
        let made = if case.racing_prepare { NEW } else { 2 };
        let valid = case.fail_writes_after.is_none();
        if let Some(chunk) = g.early.first() {
            panic!("exception of chunk {chunk} completed before its metadata was durable");
        }
        for (chunk, &(n, v)) in g.calls.iter().enumerate().take(made) {
            assert!(n > 0, "the callback of chunk {chunk} never ran: its bios would hang");
            assert_eq!(n, 1, "the callback of chunk {chunk} ran {n} times");
            assert_eq!(v, valid, "chunk {chunk}: wrong valid in its callback");
        }
        let ps = g.store.pstore().unwrap();
        assert_eq!((ps.pending_count(), g.committed), (0, g.prepared));
        assert_eq!(ps.valid(), valid);
        // One PREFLUSH|FUA write of an area per batch, and no other.
        let mut area_writes = 0;
        cow.dev.for_each_write(|w| {
            if w.flags.contains(ReqFlags::FUA) {
                assert!(w.flags.contains(ReqFlags::PREFLUSH), "metadata written before the data it points at");
                assert!(disk::is_metadata_chunk(EPA, w.sector / CHUNK));
                area_writes += 1;
            }
        });
        if valid {
            assert_eq!(area_writes, g.batches, "the area was not written exactly once per batch");
        } else {
            assert_eq!(area_writes, 0, "an invalid batch was recorded");
        }
        if case.prefilled + made as u32 > EPA {
            assert_eq!(g.batches, 2, "a full area must be written at once");
        }
        drop(g);

        // Power cut, reload: every exception reported valid is there.
        if valid {
            cow.dev.crash();
            let (mut again, _) = ExceptionStore::<Dev, ()>::create(&["P", "1"], cow.clone(), 512).unwrap();
            let mut found = Vec::new();
            again
                .read_metadata(&mut |old, new| {
                    found.push(DmException::new(old, new));
                    Ok(())
                })
                .unwrap();
            let new = &found[case.prefilled as usize..];
            let mut chunks: Vec<u64> = new.iter().map(|e| e.old_chunk).collect();
            chunks.sort();
            assert_eq!(chunks, (0..made as u64).collect::<Vec<_>>(), "an exception lost in the power cut");
            for e in new {
                assert!(durable(&cow, e), "chunk {} lost in the power cut", e.old_chunk);
            }
        }
    });
}

#[test]
fn one_area_write_per_batch_and_one_callback_per_exception() {
    model(Case { prefilled: 0, racing_prepare: true, fail_writes_after: None, broken: Broken::No });
}

#[test]
fn a_full_area_is_written_at_once() {
    // Slots 30 and 31 fill area 0; the third exception starts area 1.
    model(Case { prefilled: EPA - 2, racing_prepare: true, fail_writes_after: None, broken: Broken::No });
}

#[test]
fn a_copy_error_fails_the_whole_batch() {
    // The first copy lands, the second fails (whichever thread is second).
    model(Case { prefilled: 0, racing_prepare: false, fail_writes_after: Some(1), broken: Broken::No });
}

#[test]
fn a_metadata_write_error_fails_the_whole_batch() {
    // Both copies land; the area write fails.
    model(Case { prefilled: 0, racing_prepare: false, fail_writes_after: Some(2), broken: Broken::No });
}

#[test]
#[should_panic(expected = "never ran: its bios would hang")]
fn skipping_the_commit_after_a_copy_error_is_caught() {
    model(Case {
        prefilled: 0,
        racing_prepare: false,
        fail_writes_after: Some(1),
        broken: Broken::SkipCommitOnCopyError,
    });
}

#[test]
#[should_panic(expected = "completed before its metadata was durable")]
fn completing_when_commit_returns_is_caught() {
    model(Case { prefilled: 0, racing_prepare: true, fail_writes_after: None, broken: Broken::CompleteOnReturn });
}
