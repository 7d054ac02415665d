// SPDX-License-Identifier: GPL-2.0-only
//! dmrs hosted: the core over files. [`filedev`] is the platform seam,
//! [`dm`] the device mapper, [`cli`] the dmsetup-style verbs, the offline
//! tools and scripts, [`command`] the whole `dmrs` command over the
//! [`state`] directory, [`error`] the one error type, [`log`] the kernel
//! log, [`cow`] the offline COW reader behind `dmrs cow dump|check`,
//! [`demo`] the README's main job, [`lab`] the kernel lab's glue.

pub mod cli;
pub mod clone;
pub mod clone_format;
pub mod clone_repair;
pub mod clone_restore;
pub mod command;
pub mod cow;
pub mod cow_changed;
pub mod cow_export;
pub mod cow_format;
pub mod cow_merge;
pub mod cow_repair;
pub mod cow_restore;
pub mod cow_size;
pub mod demo;
pub mod dm;
pub mod error;
pub mod filedev;
pub mod holders;
pub mod lab;
pub mod log;
pub mod pattern;
pub mod state;
pub mod tool;
