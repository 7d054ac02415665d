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
pub use handle::{dev, snapshot, Dev};

#[cfg(loom)]
mod handle {
    use dmrs_core::platform::RamDev;
    use dmrs_core::Result;
    use loom::sync::Arc;

    /// A shared handle on a RAM device (a `dm_dev`): identity and name.
    pub type Dev = dmrs_core::platform::TableDev<Arc<RamDev>>;

    /// A handle on `dev` with identity `id` and table name `name`.
    pub fn dev(dev: RamDev, id: u64, name: &'static str) -> Dev {
        Dev::new(Arc::new(dev), id, name)
    }

    /// `snapshot <origin> <cow> P <chunk>` of `len` sectors on `drv`, resumed.
    pub fn snapshot<P: dmrs_core::dm::IoPlatform<Dev = Dev>>(
        drv: &dmrs_core::snapshot::SnapshotDriver<P>,
        origin: &Dev,
        cow: &Dev,
        len: u64,
        chunk: &str,
    ) -> dmrs_core::snapshot::SnapId {
        let id = drv
            .snapshot_ctr(false, len, &["origin", "cow", "P", chunk], &mut |p| {
                Ok(if p == "origin" { origin.clone() } else { cow.clone() })
            })
            .unwrap();
        drv.snapshot_resume(id).unwrap();
        id
    }
}

#[cfg(loom)]
pub use asyncio::{run as asyncio_run, AsyncIo, Job, TestBio};

/// A platform with bios and asynchronous copies, as the kernel module's:
/// copies wait in `jobs` until a model thread ("kcopyd") runs one and
/// reports it with the driver's `copy_callback`; `submit` and `endio` are
/// logged with what the COW's metadata area held at that moment.
#[cfg(loom)]
mod asyncio {
    use super::Dev;
    use dmrs_core::dm::IoPlatform;
    use dmrs_core::platform::{BlockDevice, ChunkCopier, SyncCopier};
    use dmrs_core::Result;
    use loom::sync::Mutex;

    /// A bio: a number, where it points, its length.
    #[derive(Debug)]
    pub struct TestBio {
        /// Its number.
        pub id: u32,
        /// First sector on `dev`.
        pub sector: u64,
        /// Length in sectors.
        pub nr: u64,
        /// The device it points at.
        pub dev: &'static str,
        /// A write's data (every byte); 0: nothing is written on submit.
        pub fill: u8,
    }

    /// A copy in flight: from, sector, to, sector, sectors, context.
    pub type Job = (Dev, u64, Dev, u64, u64, u64);

    /// The platform; `area` is the COW sector of the first metadata area.
    pub struct AsyncIo {
        /// Copies waiting for a kcopyd thread.
        pub jobs: Mutex<Vec<Job>>,
        /// `submit ID DEV@SECTOR area=OLD,OLD,...` and `end ID ...` lines.
        pub log: Mutex<Vec<String>>,
        cow: Dev,
        area: u64,
        /// Devices a submitted write lands on, by name.
        devs: Vec<Dev>,
    }

    impl AsyncIo {
        /// A platform whose log shows `cow`'s area at sector `area`;
        /// submitted writes land on `devs` (found by name).
        pub fn new(cow: Dev, area: u64, devs: Vec<Dev>) -> Self {
            AsyncIo { jobs: Mutex::new(Vec::new()), log: Mutex::new(Vec::new()), cow, area, devs }
        }

        /// Origin chunks in the metadata area, in slot order (up to the
        /// first empty slot).
        pub fn area_entries(&self) -> Vec<u64> {
            let mut a = [0u8; 512];
            self.cow.read(self.area, &mut a).unwrap();
            a.chunks(16)
                .take_while(|e| e[8..16] != [0; 8])
                .map(|e| u64::from_le_bytes(e[..8].try_into().unwrap()))
                .collect()
        }

        /// Issues a bio the driver handed back remapped (as dm core would).
        pub fn submit_now(&self, b: TestBio) {
            IoPlatform::submit(self, b)
        }

        /// Takes the copy whose source starts at `sector`, if started.
        pub fn take_job(&self, sector: u64) -> Option<Job> {
            let mut jobs = self.jobs.lock().unwrap();
            let i = jobs.iter().position(|j| j.1 == sector)?;
            Some(jobs.remove(i))
        }
    }

    /// Runs a copy; true when it succeeded.
    pub fn run(job: &Job) -> bool {
        SyncCopier::default().copy(&job.0, job.1, &job.2, job.3, job.4).is_ok()
    }

    impl IoPlatform for AsyncIo {
        type Dev = Dev;
        type Bio = TestBio;
        type BioList = Vec<TestBio>;
        fn bio_list_add(l: &mut Vec<TestBio>, b: TestBio) {
            l.push(b)
        }
        fn bio_list_pop(l: &mut Vec<TestBio>) -> Option<TestBio> {
            (!l.is_empty()).then(|| l.remove(0))
        }
        fn bio_sectors(b: &TestBio) -> (u64, u64) {
            (b.sector, b.nr)
        }
        fn remap(b: &mut TestBio, dev: &Dev, sector: u64) {
            b.dev = dev.name;
            b.sector = sector;
        }
        fn submit(&self, b: TestBio) {
            if b.fill != 0 {
                let d = self.devs.iter().find(|d| d.name == b.dev).unwrap();
                d.write(b.sector, &vec![b.fill; b.nr as usize * 512], dmrs_core::platform::ReqFlags::empty()).unwrap();
            }
            let area = self.area_entries();
            self.log.lock().unwrap().push(format!("submit {} {}@{} area={area:?}", b.id, b.dev, b.sector));
        }
        fn endio(&self, b: TestBio, r: Result<()>) {
            self.log.lock().unwrap().push(format!("end {} {r:?}", b.id));
        }
        fn start_copy(&self, from: &Dev, fs: u64, to: &Dev, ts: u64, n: u64, ctx: u64) -> Option<bool> {
            self.jobs.lock().unwrap().push((from.clone(), fs, to.clone(), ts, n, ctx));
            None
        }
        fn copy(&self, from: &Dev, fs: u64, to: &Dev, ts: u64, n: u64) -> Result<()> {
            SyncCopier::default().copy(from, fs, to, ts, n)
        }
    }
}
