// SPDX-License-Identifier: GPL-2.0-only
//! `dmrs`'s command line, by job: [`grammar`] (the clap types; script and
//! journal lines parse with them too), [`session`] (the device mapper and
//! the dmsetup and I/O verbs), [`tools`] (the offline tools), [`dispatch`]
//! (one verb to its layer), [`script`] (`dmrs run`). The whole command,
//! with the state directory, `lab` and `demo`, is [`crate::command`].
//!
//! Dependencies point one way: grammar ← session, tools ← dispatch ←
//! script; `demo` and `lab` use these, never the reverse.

pub mod dispatch;
pub mod grammar;
pub mod script;
pub mod session;
pub mod tools;

pub use crate::pattern::pattern;
pub use grammar::{parse_line, Cli, Verb};
pub use session::Session;
