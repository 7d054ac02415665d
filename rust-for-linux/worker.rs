// SPDX-License-Identifier: GPL-2.0-only
//! Deferred bios: `map` queues a bio on its target's list (a spinlock and
//! a `bi_next` chain: no allocation, no sleep) and kicks the target's work
//! item on the module's workqueue; the worker ends every bio after running
//! the core's synchronous code for it, then does one step of background
//! work (merge, hydration) and requeues itself while more remains.
//! One work item per target: a target's bios are handled in order, and
//! different targets (origin, snapshots, clones) run in parallel.

use crate::bio::{Bio, BioList};
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use kernel::prelude::*;
use kernel::sync::{new_spinlock, Arc, SpinLock};
use kernel::workqueue::{impl_has_work, new_work, Queue, Work, WorkItem};

/// The module's workqueue (`alloc_workqueue("dm_rs", WQ_MEM_RECLAIM | WQ_UNBOUND)`):
/// memory-reclaim safe, as block I/O completion must be.
static WQ: AtomicPtr<crate::bindings::workqueue_struct> = AtomicPtr::new(core::ptr::null_mut());

pub(crate) fn wq_create() -> Result {
    // SAFETY: a constant format string without conversions.
    let q = unsafe {
        crate::bindings::alloc_workqueue(
            c"dm_rs".as_ptr().cast(),
            crate::bindings::wq_flags_WQ_MEM_RECLAIM | crate::bindings::wq_flags_WQ_UNBOUND,
            0,
        )
    };
    if q.is_null() {
        return Err(ENOMEM);
    }
    WQ.store(q, Ordering::Release);
    Ok(())
}

pub(crate) fn wq_destroy() {
    let q = WQ.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if !q.is_null() {
        // SAFETY: created by `wq_create`; drains what is left before freeing.
        unsafe { crate::bindings::destroy_workqueue(q) };
    }
}

fn wq() -> &'static Queue {
    // SAFETY: set at module init before any target exists, cleared after the last one.
    unsafe { Queue::from_raw(WQ.load(Ordering::Acquire).cast()) }
}

/// Background steps one run of a work item may take.
const BACKGROUND_STEPS: usize = 32;

/// What a target does with its bios in process context.
pub(crate) trait Handler: Send + Sync + 'static {
    /// Runs the core for one bio and ends it.
    fn handle(&self, bio: Bio);
    /// One step of background work; true while more remains.
    fn background(&self) -> bool {
        false
    }
    /// The worker has nothing queued.
    fn idle(&self) {}
}

#[pin_data]
pub(crate) struct Worker<H: Handler> {
    #[pin]
    work: Work<Worker<H>>,
    #[pin]
    queue: SpinLock<BioList>,
    /// Suspended: background work stops (bios still run: dm drains them).
    stopped: AtomicBool,
    pub(crate) h: H,
}

impl_has_work! {
    impl{H: Handler} HasWork<Self> for Worker<H> { self.work }
}

impl<H: Handler> WorkItem for Worker<H> {
    type Pointer = Arc<Worker<H>>;

    fn run(this: Arc<Self>) {
        loop {
            let mut list = this.queue.lock().take();
            if list.is_empty() {
                break;
            }
            while let Some(bio) = list.pop() {
                this.h.handle(bio);
            }
        }
        this.h.idle();
        // Background steps (a merge run, a hydration batch) go on here
        // while no bio waits, a bounded number before the work item yields:
        // requeueing after every step costs a round trip through the
        // workqueue per region.
        for _ in 0..BACKGROUND_STEPS {
            if this.stopped.load(Ordering::Acquire) || !this.h.background() {
                return;
            }
            if !this.queue.lock().is_empty() {
                break;
            }
        }
        Self::kick(&this);
    }
}

impl<H: Handler> Worker<H> {
    pub(crate) fn new(h: H) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Worker {
                work <- new_work!("dm_rs::Worker::work"),
                queue <- new_spinlock!(BioList::new(), "dm_rs::Worker::queue"),
                stopped: AtomicBool::new(true),
                h,
            }),
            GFP_KERNEL,
        )
    }

    /// Queues the work item unless it is queued already.
    pub(crate) fn kick(this: &Arc<Self>) {
        let _ = wq().enqueue(this.clone());
    }

    /// From `map`: never sleeps.
    pub(crate) fn defer(this: &Arc<Self>, bio: Bio) {
        this.queue.lock().push(bio);
        Self::kick(this);
    }

    /// Background work may run (resume).
    pub(crate) fn start(this: &Arc<Self>) {
        this.stopped.store(false, Ordering::Release);
        Self::kick(this);
    }

    /// Stops background work and waits for this worker to finish its
    /// step (`flush_work`; as `stop_merge` waits for the merge step in
    /// flight). Not the whole workqueue: a removed origin must not wait
    /// for another target's run of background steps (a merge over a slow
    /// origin held `lvchange --refresh` for seconds).
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        // SAFETY: `self.work` is this pinned worker's initialised work item.
        let work = unsafe { Work::raw_get(core::ptr::addr_of!(self.work)) };
        // SAFETY: a live work item; `flush_work` only waits for it.
        unsafe { crate::bindings::flush_work(work.cast()) };
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}
