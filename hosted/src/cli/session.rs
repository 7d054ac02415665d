// SPDX-License-Identifier: GPL-2.0-only
//! The device-mapper session: one [`DeviceMapper`], the dmsetup verbs and
//! I/O verbs run against it, and the journal of the state changes they made.

use super::grammar::{TableArg, Verb};
use crate::dm::{DeviceMapper, TARGETS};
use crate::error::{Error, Result};
use crate::pattern::pattern;
use crate::state::quote;
use dmrs_core::emit::StatusType;
use std::io::{IsTerminal, Read, Write};

/// Standard input as text.
pub fn read_stdin_text() -> Result<String> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).map_err(|e| Error::failed(format!("dmrs: stdin: {e}")))?;
    Ok(text)
}

fn read_stdin_bytes() -> Result<Vec<u8>> {
    let mut data = Vec::new();
    std::io::stdin().read_to_end(&mut data).map_err(|e| Error::failed(format!("dmrs: stdin: {e}")))?;
    Ok(data)
}

fn table_text(table: &TableArg) -> Result<String> {
    match &table.table {
        Some(text) => Ok(text.clone()),
        None if std::io::stdin().is_terminal() => {
            Err(Error::failed("dmrs: no --table given: type the table, then Ctrl-D"))
        }
        None => read_stdin_text(),
    }
}

/// Executes device-mapper verbs against one device mapper.
pub struct Session {
    /// The device mapper.
    pub dm: DeviceMapper,
    /// Journal lines the executed verbs produced (state changes).
    pub journal: Vec<String>,
    /// Devices the journal could not rebuild (a backing file missing or
    /// damaged), with why: every verb on them says so, `remove` drops them,
    /// the other devices work.
    pub unavailable: std::collections::BTreeMap<String, String>,
}

/// The device a device-mapper verb acts on.
pub fn verb_device(verb: &Verb) -> Option<&str> {
    match verb {
        Verb::Create { name, .. }
        | Verb::Load { name, .. }
        | Verb::Suspend { name }
        | Verb::Resume { name }
        | Verb::Remove { name, .. }
        | Verb::Message { name, .. }
        | Verb::Write { name, .. }
        | Verb::Read { name, .. }
        | Verb::Flush { name }
        | Verb::Discard { name, .. }
        | Verb::Wait { name, .. }
        | Verb::Events { name } => Some(name),
        Verb::Status { name } | Verb::Table { name } | Verb::Info { name } => name.as_deref(),
        _ => None,
    }
}

impl Session {
    /// A session over an empty device mapper.
    pub fn new() -> Result<Session> {
        Ok(Session { dm: DeviceMapper::new()?, journal: Vec::new(), unavailable: Default::default() })
    }

    fn record(&mut self, words: &[&str]) {
        self.journal.push(words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" "));
    }

    /// The named device, or every device.
    fn named_or_all(&self, name: &Option<String>) -> Vec<String> {
        match name {
            Some(name) => vec![name.clone()],
            None => self.dm.names(),
        }
    }

    fn print_lines(&self, name: &Option<String>, ty: StatusType, out: &mut dyn Write) -> Result<()> {
        let names = self.named_or_all(name);
        if name.is_none() && names.is_empty() && self.unavailable.is_empty() {
            let _ = writeln!(out, "No devices found");
        }
        for device in &names {
            let lines = self.dm.status(device, ty)?;
            let prefix = if name.is_some() { String::new() } else { format!("{device}: ") };
            if let Some(lines) = lines {
                // dmsetup prints one line per target, each with the prefix.
                for line in lines {
                    let _ = writeln!(out, "{prefix}{line}");
                }
            } else if name.is_none() {
                let _ = writeln!(out, "{prefix}");
            }
        }
        if name.is_none() {
            for (device, why) in &self.unavailable {
                let _ = writeln!(out, "{device}: (unavailable: {why})");
            }
        }
        Ok(())
    }

    /// True for the verbs [`Session::exec`] runs: dmsetup's, the I/O
    /// verbs, `cd` and `echo`.
    pub fn runs(verb: &Verb) -> bool {
        !matches!(verb, Verb::Run { .. } | Verb::Cow(_) | Verb::Clone(_) | Verb::Lab(_) | Verb::Demo { .. })
    }

    /// Runs one device-mapper, I/O, `cd` or `echo` verb, writing its
    /// output to `out`.
    pub fn exec(&mut self, verb: &Verb, out: &mut dyn Write) -> Result<()> {
        if let Some(name) = verb_device(verb) {
            if let Some(why) = self.unavailable.get(name) {
                if let Verb::Remove { .. } = verb {
                    // What is left of it goes; the journal forgets it.
                    let _ = self.dm.remove(name);
                    self.unavailable.remove(name);
                    self.record(&["remove", name]);
                    return Ok(());
                }
                return Err(Error::failed(format!(
                    "dmrs: {name} is unavailable: {why}\ndmrs: (`dmrs remove {name}` drops it; the other devices work)"
                )));
            }
        }
        match verb {
            Verb::Create { name, table, notable } => {
                let text = if *notable { None } else { Some(table_text(table)?) };
                self.dm.create(name, text.as_deref())?;
                match &text {
                    Some(text) => self.record(&["create", name, "--table", text.trim()]),
                    None => self.record(&["create", name, "--notable"]),
                }
            }
            Verb::Load { name, table } => {
                let text = table_text(table)?;
                self.dm.load(name, &text)?;
                self.record(&["load", name, "--table", text.trim()]);
            }
            Verb::Suspend { name } => {
                self.dm.suspend(name)?;
                self.record(&["suspend", name]);
            }
            Verb::Resume { name } => {
                // A failed resume still swapped the tables: record it either
                // way, marked so that replaying it ignores the failure.
                let resumed = self.dm.resume(name);
                self.record(&[if resumed.is_ok() { "resume" } else { "-resume" }, name]);
                resumed?;
            }
            Verb::Remove { name, .. } => {
                self.dm.remove(name)?;
                self.record(&["remove", name]);
            }
            Verb::Status { name } => self.print_lines(name, StatusType::Info, out)?,
            Verb::Table { name } => self.print_lines(name, StatusType::Table, out)?,
            Verb::Info { name } => {
                for (i, device) in self.named_or_all(name).iter().enumerate() {
                    if i > 0 {
                        let _ = writeln!(out);
                    }
                    let _ = write!(out, "{}", self.dm.info(device)?);
                }
            }
            Verb::Ls => {
                let names = self.dm.names();
                if names.is_empty() && self.unavailable.is_empty() {
                    let _ = writeln!(out, "No devices found");
                }
                for device in names {
                    let _ = writeln!(out, "{device}");
                }
                for (device, why) in &self.unavailable {
                    let _ = writeln!(out, "{device}\t(unavailable: {why})");
                }
            }
            Verb::Targets => {
                for (target, version) in TARGETS {
                    let _ = writeln!(out, "{:<16} v{}.{}.{}", target, version[0], version[1], version[2]);
                }
            }
            Verb::Message { name, sector, msg } => {
                self.dm.message(name, *sector, msg)?;
                let sector = sector.to_string();
                let mut words = vec!["message", name.as_str(), sector.as_str()];
                words.extend(msg.iter().map(String::as_str));
                self.record(&words);
            }
            Verb::Write { name, offset, input, pattern: text, length, bs } => {
                let data = match (text, input) {
                    (Some(text), _) => pattern(text, length.unwrap_or(0) as usize),
                    (None, Some(file)) => {
                        std::fs::read(file).map_err(|e| Error::failed(format!("dmrs: {}: {e}", file.display())))?
                    }
                    (None, None) => read_stdin_bytes()?,
                };
                if *bs == 0 || bs % 512 != 0 {
                    return Err(Error::failed(format!("dmrs: --bs {bs} is not a positive multiple of 512")));
                }
                for (i, piece) in data.chunks(*bs as usize).enumerate() {
                    self.dm.write(name, offset + i as u64 * bs, piece)?;
                }
            }
            Verb::Read { name, offset, length, output, expect_pattern } => {
                let data = self.dm.read(name, *offset, *length as usize)?;
                match (output, expect_pattern) {
                    (_, Some(text)) => {
                        let want = pattern(text, data.len());
                        if let Some(i) = data.iter().zip(want.iter()).position(|(got, want)| got != want) {
                            let record = &data[i - i % 16..(i - i % 16 + 16).min(data.len())];
                            return Err(Error::failed(format!(
                                "dmrs: {name}: byte {} is not pattern {text:?}: found {:?}",
                                offset + i as u64,
                                String::from_utf8_lossy(record)
                            )));
                        }
                    }
                    (Some(file), None) => std::fs::write(file, &data)
                        .map_err(|e| Error::failed(format!("dmrs: {}: {e}", file.display())))?,
                    (None, None) => out.write_all(&data).map_err(|e| Error::failed(format!("dmrs: stdout: {e}")))?,
                }
            }
            Verb::Flush { name } => self.dm.flush(name)?,
            Verb::Discard { name, offset, length } => self.dm.discard(name, *offset, *length)?,
            Verb::Wait { name, event_nr } => {
                let tty = std::io::stderr().is_terminal();
                let mut last = u64::MAX;
                self.dm.wait(name, &mut |done, total| {
                    let percent = (done * 100).checked_div(total).unwrap_or(100);
                    if tty && percent != last {
                        eprint!("\r{name}: {percent:>3}% ({done}/{total})");
                        last = percent;
                    }
                })?;
                if tty && last != u64::MAX {
                    eprintln!();
                }
                if let Some(past) = event_nr {
                    let now = self.dm.event_nr(name)?;
                    if now <= *past {
                        return Err(Error::failed(format!(
                            "dmrs: {name}: event number {now}: no event after {past} will come (nothing left in the background)"
                        )));
                    }
                }
            }
            Verb::Events { name } => {
                println!("{}", self.dm.event_nr(name)?);
            }
            Verb::Cd { dir } => {
                let abs = std::fs::canonicalize(dir)
                    .map_err(|e| Error::failed(format!("dmrs: cd {}: {e}", dir.display())))?;
                std::env::set_current_dir(&abs)
                    .map_err(|e| Error::failed(format!("dmrs: cd {}: {e}", abs.display())))?;
                self.record(&["cd", &abs.to_string_lossy()]);
            }
            Verb::Echo { words } => {
                let _ = writeln!(out, "{}", words.join(" "));
            }
            Verb::Run { .. } | Verb::Cow(_) | Verb::Clone(_) | Verb::Lab(_) | Verb::Demo { .. } => {
                return Err(Error::failed(format!("dmrs: {verb:?} is not a device-mapper verb")));
            }
        }
        Ok(())
    }
}
