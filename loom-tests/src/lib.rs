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

#[cfg(loom)]
pub use handle::Dev;

#[cfg(loom)]
mod handle {
    use dmrs_core::platform::{BlockDevice, DmDevice, RamDev, ReqFlags};
    use dmrs_core::Result;
    use loom::sync::Arc;

    /// A shared handle on a RAM device (a `dm_dev`): identity and name.
    #[derive(Clone)]
    pub struct Dev(pub Arc<RamDev>, pub u64, pub &'static str);

    impl Dev {
        /// A handle on `dev` with identity `id` and table name `name`.
        pub fn new(dev: RamDev, id: u64, name: &'static str) -> Dev {
            Dev(Arc::new(dev), id, name)
        }
    }

    impl BlockDevice for Dev {
        fn read(&self, s: u64, b: &mut [u8]) -> Result<()> {
            self.0.read(s, b)
        }
        fn write(&self, s: u64, b: &[u8], f: ReqFlags) -> Result<()> {
            self.0.write(s, b, f)
        }
        fn flush(&self) -> Result<()> {
            self.0.flush()
        }
        fn size_sectors(&self) -> u64 {
            self.0.size_sectors()
        }
        fn logical_block_size(&self) -> u32 {
            512
        }
    }

    impl DmDevice for Dev {
        fn bdev_id(&self) -> u64 {
            self.1
        }
        fn name(&self) -> &str {
            self.2
        }
    }
}
