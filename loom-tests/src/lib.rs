// SPDX-License-Identifier: GPL-2.0-only
//! loom models of dmrs-core's concurrent protocols. The models run the real
//! core code; `--cfg loom` swaps core's `sync` module (spinlock, rwsem,
//! atomics) for loom's, so loom explores every interleaving of those
//! primitives. Each model states its invariant; each has a deliberately
//! broken variant kept as a `#[should_panic]` test, so the model is shown
//! to catch the bug it guards against.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p dmrs-loom-tests --release`
//! (CI uses its own target directory so the normal build is not redone).
//! Without `--cfg loom` the test files compile to nothing.
