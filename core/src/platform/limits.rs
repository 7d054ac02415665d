// SPDX-License-Identifier: GPL-2.0-only
//! The part of `struct queue_limits` targets read and adjust: a target's
//! `io_hints` gets the limits dm core stacked from the devices below and
//! may change them (dm-clone sets its own discard limits, for instance).

/// A subset of `struct queue_limits` (include/linux/blkdev.h), same units:
/// bytes for `io_*` and `discard_granularity`/`discard_alignment`,
/// sectors for the discard sizes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueLimits {
    /// `io_min`: the smallest I/O the device prefers, in bytes.
    pub io_min: u32,
    /// `io_opt`: the optimal I/O size, in bytes.
    pub io_opt: u32,
    /// `max_discard_sectors`: 0 = discards unsupported (`bdev_max_discard_sectors`).
    pub max_discard_sectors: u32,
    /// `max_hw_discard_sectors`.
    pub max_hw_discard_sectors: u32,
    /// `discard_granularity`, in bytes.
    pub discard_granularity: u32,
    /// `discard_alignment`, in bytes.
    pub discard_alignment: u32,
    /// `max_discard_segments`.
    pub max_discard_segments: u16,
}

impl QueueLimits {
    /// Limits of a device that discards anything, in one piece, at sector
    /// granularity (a file whose holes can be punched).
    pub const fn discard_anything(lbs: u32) -> Self {
        QueueLimits {
            io_min: lbs,
            io_opt: 0,
            max_discard_sectors: u32::MAX >> 9,
            max_hw_discard_sectors: u32::MAX >> 9,
            discard_granularity: lbs,
            discard_alignment: 0,
            max_discard_segments: 1,
        }
    }
}
