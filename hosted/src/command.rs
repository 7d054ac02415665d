// SPDX-License-Identifier: GPL-2.0-only
//! The whole `dmrs` command: the state directory (the devices earlier
//! invocations made are rebuilt from its journal, and this one's changes
//! recorded there), and the verbs that are whole commands (`run`, `lab`,
//! `demo`) on top of [`crate::cli`].

use crate::cli::grammar::{line_mode, parse_line, Cli, LineMode, Verb};
use crate::cli::{dispatch, script, Session};
use crate::error::{Error, Result};
use crate::state::{quote, split_words, State};
use crate::{demo, lab};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Runs any verb in `session`, writing its output to `out`.
pub fn exec(session: &mut Session, verb: &Verb, out: &mut dyn Write) -> Result<()> {
    match verb {
        Verb::Run { script } => script::run_script(session, script, out),
        Verb::Lab(lab_verb) => lab::run(lab_verb, out),
        Verb::Demo { dir } => demo::run(dir, out).map_err(|e| Error::failed(format!("dmrs demo: {e}"))),
        _ => dispatch::exec(session, verb, out),
    }
}

/// True for verbs that act on the state directory's devices.
fn uses_state(verb: &Verb) -> bool {
    !matches!(
        verb,
        Verb::Cow(_) | Verb::Clone(_) | Verb::Lab(_) | Verb::Demo { .. } | Verb::Targets | Verb::Echo { .. }
    )
}

/// Rebuilds the devices earlier invocations made, quietly: the journal's
/// lines run again (a `-` line may fail). Nothing here bricks the state
/// directory: a torn or foreign line is skipped with a warning, and a device
/// a line cannot rebuild (its file missing or damaged) is left unavailable,
/// with why, while the others are rebuilt.
fn replay_journal(session: &mut Session, state: &State, dir: &Path) -> Result<()> {
    let journal = dir.join("journal");
    let lines = state.lines().map_err(|e| Error::file(&journal, e))?;
    let mut sink = std::io::sink();
    session.dm.replaying = true;
    for (n, line) in lines.iter().enumerate() {
        let (mode, rest) = line_mode(line);
        let verb = match split_words(rest).and_then(|words| parse_line(&words)) {
            Ok(verb) => verb,
            Err(e) => {
                eprintln!("dmrs: warning: {} line {}: `{line}` ignored: {e}", journal.display(), n + 1);
                continue;
            }
        };
        let device = crate::cli::session::verb_device(&verb).map(str::to_string);
        if let Some(d) = &device {
            if session.unavailable.contains_key(d) && !matches!(verb, Verb::Remove { .. }) {
                continue;
            }
        }
        if let (Err(e), LineMode::MustSucceed) = (exec(session, &verb, &mut sink), mode) {
            let why = e.msg.lines().collect::<Vec<_>>().join("; ");
            match device {
                Some(d) => {
                    eprintln!("dmrs: warning: {d} is unavailable: {why}");
                    let _ = session.dm.remove(&d);
                    session.unavailable.insert(d, why);
                }
                None => eprintln!("dmrs: warning: {} line {}: `{line}` failed: {why}", journal.display(), n + 1),
            }
        }
    }
    session.dm.replaying = false;
    let volatile = state.volatile().map_err(|e| e.to_string()).and_then(|text| session.dm.restore_volatile(&text));
    if let Err(e) = volatile {
        eprintln!("dmrs: warning: {}: in-memory state not restored: {e}", dir.join("volatile").display());
    }
    Ok(())
}

/// The verb of `cli` in the state directory: replay, run, record.
fn run_with_state(cli: &Cli, session: &mut Session, out: &mut dyn Write) -> Result<()> {
    let dir = cli
        .state
        .clone()
        .or_else(|| std::env::var_os("DMRS_STATE").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".dmrs"));
    let state =
        State::open(&dir).map_err(|e| Error::usage_or_io(format!("dmrs: state directory {}: {e}", dir.display())))?;
    let cwd = std::env::current_dir().ok();
    session.dm.holder = std::fs::canonicalize(&dir).ok();
    replay_journal(session, &state, &dir)?;
    if let Some(cwd) = &cwd {
        let _ = std::env::set_current_dir(cwd);
    }
    session.journal.clear();
    // Relative paths in this verb resolve in the caller's directory.
    if let Some(cwd) = &cwd {
        session.journal.push(format!("cd {}", quote(&cwd.to_string_lossy())));
    }
    let before = session.journal.len();
    let result = exec(session, &cli.verb, out);
    // The periodic metadata commit a running kernel would have made.
    session.dm.sync();
    session.dm.release_unused_claims();
    if session.journal.len() > before {
        let empty = session.dm.names().is_empty() && session.unavailable.is_empty();
        let recorded = if empty { state.clear() } else { state.append(&session.journal) };
        recorded
            .map_err(|e| Error::usage_or_io(format!("dmrs: cannot record the change in {}: {e}", dir.display())))?;
    }
    state
        .save_volatile(&session.dm.save_volatile())
        .map_err(|e| Error::usage_or_io(format!("dmrs: cannot save in-memory state in {}: {e}", dir.display())))?;
    result
}

/// The whole of `dmrs`: returns the exit code.
pub fn main_with(cli: Cli, out: &mut dyn Write) -> u8 {
    let result = Session::new().and_then(|mut session| {
        if uses_state(&cli.verb) {
            run_with_state(&cli, &mut session, out)
        } else {
            exec(&mut session, &cli.verb, out)
        }
    });
    match result {
        Ok(()) => 0,
        Err(e) => e.report(),
    }
}
