// SPDX-License-Identifier: GPL-2.0-only
//! dm_rs: the dmrs device-mapper targets as a Rust-for-Linux module.
//!
//! `insmod dm_rs.ko` registers `snapshot-origin`, `snapshot`,
//! `snapshot-merge` and `clone` with the kernel's versions, so existing
//! dmsetup tables and lvm2 work unchanged; `insmod dm_rs.ko prefix=r`
//! registers `rsnap-origin`, `rsnapshot`, `rsnapshot-merge` and `rclone`
//! instead, beside the C targets (dm's type names are at most 15 bytes, so
//! a prefixed origin is `<prefix>snap-origin`).
//! The targets run the same core (../core) as the hosted `dmrs` binary.

#[allow(
    dead_code,
    missing_docs,
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    improper_ctypes,
    unreachable_pub,
    unsafe_op_in_unsafe_fn,
    clippy::all
)]
mod bindings {
    use kernel::ffi;
    type __kernel_size_t = usize;
    type __kernel_ssize_t = isize;
    type __kernel_ptrdiff_t = isize;
    include!(concat!(env!("DMRS_OBJ"), "/dm_bindings.rs"));
}

/// `THIS_MODULE` for the C structures we fill (`target_type.module`,
/// `kernel_param.mod`): NULL when built into the kernel.
macro_rules! this_module {
    () => {{
        #[cfg(MODULE)]
        let m = core::ptr::addr_of_mut!(crate::bindings::__this_module);
        #[cfg(not(MODULE))]
        let m = core::ptr::null_mut::<crate::bindings::module>();
        m
    }};
}

mod bio;
mod kcopyd;
mod kdev;
mod kio;
mod param;
mod target;
mod worker;

use dmrs_core::clone::dm_clone::DmClone;
use dmrs_core::dm::Target;
use dmrs_core::snapshot::target::{OriginTarget, SnapshotTarget};
use dmrs_core::snapshot::SnapshotDriver;
use kernel::prelude::*;
use target::Registration;

/// Every snapshot table shares the module's one driver.
type Snapshots = &'static SnapshotDriver<kio::KIo>;
type OriginType = OriginTarget<Snapshots>;
type SnapshotType = SnapshotTarget<Snapshots, false>;
type MergeType = SnapshotTarget<Snapshots, true>;
type CloneType = DmClone<kio::KIo, kcopyd::KcopydCopier>;

module! {
    type: DmRs,
    name: "dm_rs",
    author: "dmrs",
    description: "device-mapper snapshot and clone targets in Rust (dmrs)",
    license: "GPL",
}

/// The core's DMERR/DMWARN/DMINFO through printk, with dm's prefixes.
struct KLog;

impl dmrs_core::log::Log for KLog {
    fn log(&self, level: dmrs_core::log::Level, prefix: &str, args: core::fmt::Arguments<'_>) {
        use dmrs_core::log::Level;
        match level {
            Level::Err => pr_err!("device-mapper: {}: {}\n", prefix, args),
            Level::Warn => pr_warn!("device-mapper: {}: {}\n", prefix, args),
            Level::Info => pr_info!("device-mapper: {}: {}\n", prefix, args),
        }
    }
}

static KLOG: KLog = KLog;

/// The core's events: `dm_table_event` on the table handle a target got
/// from its constructor (process context; dm takes a mutex).
fn table_event(handle: u64) {
    // SAFETY: handles are `ti->table` of live targets (the core raises
    // events only for a target it holds, and the table outlives it).
    unsafe { bindings::dm_table_event(handle as *mut bindings::dm_table) }
}

type Regs = (Registration<OriginType>, Registration<SnapshotType>, Registration<MergeType>, Registration<CloneType>);

struct DmRs {
    regs: Option<Regs>,
}

impl kernel::Module for DmRs {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        dmrs_core::log::set_logger(&KLOG);
        dmrs_core::dm::set_table_event(table_event);
        let prefix = param::prefix();
        if prefix.len() > 4 || !prefix.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-') {
            pr_err!("dm_rs: prefix must be up to 4 of [A-Za-z0-9_-]\n");
            return Err(EINVAL);
        }
        worker::wq_create()?;
        let r = (|| -> Result<Self> {
            kdev::client_create()?;
            kcopyd::client_create()?;
            kio::snapshots_init()?;
            let s = kio::snapshots();
            // dm's type names are at most 15 bytes: a prefixed origin is
            // `<prefix>snap-origin`.
            let origin = if prefix.is_empty() { OriginType::NAME } else { "snap-origin" };
            Ok(DmRs {
                regs: Some((
                    Registration::new(prefix, origin, s)?,
                    Registration::new(prefix, SnapshotType::NAME, s)?,
                    Registration::new(prefix, MergeType::NAME, s)?,
                    Registration::new(prefix, CloneType::NAME, ())?,
                )),
            })
        })();
        if r.is_err() {
            teardown();
        }
        r
    }
}

fn teardown() {
    kio::snapshots_exit();
    kcopyd::client_destroy();
    kdev::client_destroy();
    worker::wq_destroy();
}

impl Drop for DmRs {
    fn drop(&mut self) {
        // Unregister the targets first (no table can exist while the module
        // unloads), then free what they shared.
        self.regs = None;
        teardown();
    }
}
