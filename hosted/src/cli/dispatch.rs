// SPDX-License-Identifier: GPL-2.0-only
//! Running one verb of a script (or of the demo): the device-mapper and
//! I/O verbs in the session, the offline tools on their files. `run`,
//! `lab` and `demo` are whole commands, run by [`crate::command`].

use super::grammar::Verb;
use super::session::Session;
use super::tools;
use crate::error::Result;
use std::io::Write;

/// Runs `verb` in `session`, writing its output to `out`.
pub fn exec(session: &mut Session, verb: &Verb, out: &mut dyn Write) -> Result<()> {
    match verb {
        Verb::Cow(tool) => tools::run_cow(tool, out),
        Verb::Clone(tool) => tools::run_clone(tool, out),
        _ => session.exec(verb, out),
    }
}
