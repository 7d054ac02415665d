// SPDX-License-Identifier: GPL-2.0-only
//! `dmrs run`: a script of verbs, one per line, in one session. A plain
//! line must succeed, a `-` line may fail, a `!` line must fail.

use super::dispatch;
use super::grammar::{line_mode, parse_line, LineMode, Verb};
use super::session::{read_stdin_text, Session};
use crate::error::{Error, Result};
use crate::state::split_words;
use std::io::Write;
use std::path::Path;

/// Executes a script's lines (`-`: standard input) in `session`; stops at
/// the first failure.
pub fn run_script(session: &mut Session, script: &Path, out: &mut dyn Write) -> Result<()> {
    let text = if script == Path::new("-") {
        read_stdin_text()?
    } else {
        std::fs::read_to_string(script).map_err(|e| Error::failed(format!("dmrs: {}: {e}", script.display())))?
    };
    for (n, line) in text.lines().enumerate() {
        let at_line = |e: String| Error::failed(format!("{}:{}: {e}", script.display(), n + 1));
        let (mode, rest) = line_mode(line);
        let words = split_words(rest).map_err(at_line)?;
        if words.is_empty() {
            continue;
        }
        let verb = parse_line(&words).map_err(at_line)?;
        if matches!(verb, Verb::Run { .. } | Verb::Demo { .. } | Verb::Lab(_)) {
            return Err(at_line(format!("`{}` is not allowed in a script", words[0])));
        }
        match (mode, dispatch::exec(session, &verb, out)) {
            (LineMode::MustSucceed, Err(e)) => {
                return Err(Error {
                    msg: format!("{}\n{}:{}: `{}` failed", e.msg, script.display(), n + 1, line.trim()),
                    ..e
                })
            }
            (LineMode::MustFail, Ok(())) => return Err(at_line(format!("`{}` succeeded but must fail", rest.trim()))),
            _ => {}
        }
    }
    Ok(())
}
