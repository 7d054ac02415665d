// SPDX-License-Identifier: GPL-2.0-only
//! The kernel lab's data pattern: 16-byte records, a text padded to 15
//! bytes then a newline (`pat TEXT BYTES` of the guest scripts).

/// `len` bytes of the pattern of `text`.
pub fn pattern(text: &str, len: usize) -> Vec<u8> {
    let mut record = format!("{text:<15.15}").into_bytes();
    record.push(b'\n');
    record.iter().copied().cycle().take(len).collect()
}
