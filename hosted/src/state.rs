// SPDX-License-Identifier: GPL-2.0-only
//! The state directory: what lets separate `dmrs` invocations act on the
//! same devices. It holds a journal of the state-changing verbs (create,
//! load, suspend, resume, remove, and `cd` for relative paths), in the
//! script language of `dmrs run`. Each invocation takes the directory's
//! lock, replays the journal into a fresh device mapper — which re-reads
//! every COW's metadata and redoes in-memory protocols such as handover
//! exactly as they happened — runs its verb, and appends it if it changed
//! state. Data and metadata are on the devices, committed before a verb
//! returns, so killing `dmrs` between invocations loses nothing
//! acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// An open, locked state directory.
pub struct State {
    dir: PathBuf,
    _lock: File,
}

impl State {
    /// Opens (creating) `dir` and takes its lock; waits for another `dmrs`.
    pub fn open(dir: &Path) -> io::Result<State> {
        std::fs::create_dir_all(dir)?;
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("lock"))?;
        // SAFETY: plain syscall on an fd owned by `lock`, which lives in State.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(State { dir: dir.to_path_buf(), _lock: lock })
    }

    fn journal(&self) -> PathBuf {
        self.dir.join("journal")
    }

    /// The journal's lines.
    pub fn lines(&self) -> io::Result<Vec<String>> {
        match File::open(self.journal()) {
            Ok(f) => io::BufReader::new(f).lines().collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Appends lines durably.
    pub fn append(&self, lines: &[String]) -> io::Result<()> {
        let mut f = OpenOptions::new().create(true).append(true).open(self.journal())?;
        for l in lines {
            writeln!(f, "{l}")?;
        }
        f.sync_data()
    }

    /// The in-memory-only state saved by the last invocation.
    pub fn volatile(&self) -> io::Result<String> {
        match std::fs::read_to_string(self.dir.join("volatile")) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            r => r,
        }
    }

    /// Replaces the saved in-memory-only state (write, sync, rename).
    pub fn save_volatile(&self, text: &str) -> io::Result<()> {
        let tmp = self.dir.join("volatile.new");
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_data()?;
        std::fs::rename(tmp, self.dir.join("volatile"))
    }

    /// Starts a new, empty journal (when no device is left).
    pub fn clear(&self) -> io::Result<()> {
        let f = File::create(self.journal())?;
        f.sync_data()
    }
}

/// Quotes a word for the script language (`'...'`, `'\''` for quotes;
/// `$'...'` with `\n` for a word with line breaks, such as a table of
/// several targets, so that it stays on one journal line).
pub fn quote(w: &str) -> String {
    if !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b)) {
        return w.to_string();
    }
    if w.contains(['\n', '\r']) {
        let mut q = String::from("$'");
        for c in w.chars() {
            match c {
                '\n' => q.push_str("\\n"),
                '\r' => q.push_str("\\r"),
                '\\' | '\'' => {
                    q.push('\\');
                    q.push(c);
                }
                c => q.push(c),
            }
        }
        q.push('\'');
        return q;
    }
    format!("'{}'", w.replace('\'', r"'\''"))
}

/// Splits a script line into words: white space separates, `'…'` and
/// `"…"` quote, `$'…'` quotes with the shell's `\n`, `\t`, `\r`, `\\` and
/// `\'` escapes, `\` escapes outside single quotes, `#` starts a comment.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '#' if !in_word => break,
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '$' if chars.clone().next() == Some('\'') => {
                chars.next();
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some('\\') => match chars.next() {
                            Some('n') => cur.push('\n'),
                            Some('t') => cur.push('\t'),
                            Some('r') => cur.push('\r'),
                            Some(c) => cur.push(c),
                            None => return Err("unterminated $' quote".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated $' quote".into()),
                    }
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => cur.push(c),
                            None => return Err("trailing backslash".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err("trailing backslash".into()),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_quotes_roundtrip() {
        assert_eq!(
            split_words("create s --table '0 8 snapshot a b P 16' # x").unwrap(),
            ["create", "s", "--table", "0 8 snapshot a b P 16"]
        );
        assert_eq!(split_words(r#"a "b \"c\"" d\ e"#).unwrap(), ["a", "b \"c\"", "d e"]);
        assert!(split_words("a 'b").is_err());
        assert_eq!(split_words(r"t $'0 8 a\n8 8 b' x").unwrap(), ["t", "0 8 a\n8 8 b", "x"]);
        for w in ["plain", "with space", "it's", "", "a'b'c", "0 8 a\n8 8 b", "x\\n'y'\n\r\t"] {
            assert_eq!(split_words(&quote(w)).unwrap(), [w]);
        }
    }
}
