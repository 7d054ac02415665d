// SPDX-License-Identifier: GPL-2.0-only
//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Decompresses `tests/data/<name>.xz` into `dir`, returning the path.
pub fn kernel_image(dir: &Path, name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(format!("{name}.xz"));
    let mut input = std::io::BufReader::new(std::fs::File::open(&src).unwrap());
    let mut out = Vec::new();
    lzma_rs::xz_decompress(&mut input, &mut out).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, out).unwrap();
    p
}

/// Runs the dmrs binary.
pub fn dmrs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dmrs")).args(args).output().unwrap()
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `pat TEXT BYTES` of the kernel lab: 16-byte records, TEXT padded to 15 then '\n'.
pub fn pattern(text: &str, len: usize) -> Vec<u8> {
    let mut rec = format!("{text:<15.15}").into_bytes();
    rec.push(b'\n');
    rec.iter().copied().cycle().take(len).collect()
}

/// A temp dir with its own dmrs state directory.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env { dir: tempfile::tempdir().unwrap() }
    }
    pub fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.p(name);
        std::fs::write(&p, data).unwrap();
        p
    }
    pub fn zero(&self, name: &str, len: u64) -> PathBuf {
        let p = self.p(name);
        std::fs::File::create(&p).unwrap().set_len(len).unwrap();
        p
    }
    /// Runs dmrs in the temp dir with its own state directory.
    pub fn dmrs(&self, args: &[&str]) -> Output {
        let mut a = vec!["--state".to_string(), self.dir.path().join("state").to_str().unwrap().to_owned()];
        a.extend(args.iter().map(|s| s.to_string()));
        std::process::Command::new(env!("CARGO_BIN_EXE_dmrs")).current_dir(self.dir.path()).args(&a).output().unwrap()
    }
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.dmrs(args);
        assert!(o.status.success(), "dmrs {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        stdout(&o)
    }
    /// Runs dmrs, which must fail; its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.dmrs(args);
        assert!(!o.status.success(), "dmrs {args:?} succeeded");
        String::from_utf8_lossy(&o.stderr).into_owned()
    }
    pub fn run(&self, script: &str) -> String {
        let p = self.file("script.dmrs", script.as_bytes());
        self.ok(&["run", p.to_str().unwrap()])
    }
}

impl Env {
    /// `dmrs status NAME`: one target's line, without the newline.
    pub fn status(&self, name: &str) -> String {
        let s = self.ok(&["status", name]);
        assert_eq!(s.matches('\n').count(), 1, "one target, one line: {s:?}");
        s.trim_end_matches('\n').to_string()
    }
}
