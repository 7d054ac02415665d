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
