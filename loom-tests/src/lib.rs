//! loom models of the core's concurrent protocols (issue: loom-tests).
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p dmrs-loom-tests --release`.
