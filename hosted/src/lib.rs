// SPDX-License-Identifier: GPL-2.0-only
//! dmrs hosted: the core over files. [`filedev`] is the platform seam,
//! [`log`] the kernel log, [`cow`] the offline COW reader behind
//! `dmrs cow dump|check`, [`demo`] the README's main job.

pub mod cow;
pub mod demo;
pub mod filedev;
pub mod log;
