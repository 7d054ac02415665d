// SPDX-License-Identifier: GPL-2.0-only
//! `dmrs run` script lines (and journal lines) through the word splitter
//! and the verb grammar: a verb or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else { return };
    let (_, rest) = dmrs_hosted::cli::grammar::line_mode(line);
    if let Ok(words) = dmrs_hosted::state::split_words(rest) {
        let _ = dmrs_hosted::cli::grammar::parse_line(&words);
    }
});
