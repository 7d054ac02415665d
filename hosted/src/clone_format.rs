// SPDX-License-Identifier: GPL-2.0-only
//! `dmrs clone dump --format xml` and the reader of all three dump formats
//! for `clone restore`. XML: a `<superblock>` root carrying the
//! superblock's fields, hydrated regions folded into
//! `<range begin length/>`.

use crate::clone::{runs, CloneImage};
use crate::error::Error;
use dmrs_core::pdata::bitset;
use std::io::Write;

/// Writes the XML dump.
pub fn dump_xml(img: &CloneImage, out: &mut dyn Write) -> std::io::Result<()> {
    let Some(sb) = &img.sb else {
        let what = if img.all_zero { "new" } else { "invalid" };
        return writeln!(out, "<superblock state=\"{what}\"/>");
    };
    writeln!(
        out,
        "<superblock version=\"{}\" region_size=\"{}\" target_size=\"{}\" regions=\"{}\" hydrated=\"{}\" \
         metadata_blocks_used=\"{}\" metadata_blocks_total=\"{}\">",
        sb.version,
        sb.region_size,
        sb.target_size,
        img.nr_regions,
        bitset::count(&img.words, img.nr_regions),
        img.blocks_used,
        img.blocks_total
    )?;
    for (b, l) in runs(img) {
        writeln!(out, "  <range begin=\"{b}\" length=\"{l}\"/>")?;
    }
    writeln!(out, "</superblock>")
}

/// What a clone dump says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CloneDump {
    /// Region size in sectors, if the dump has a superblock.
    pub region_size: Option<u64>,
    /// Target size in sectors, if the dump has a superblock.
    pub target_size: Option<u64>,
    /// Hydrated `(first, count)` runs.
    pub runs: Vec<(u64, u64)>,
}

fn num(s: &str, what: &str) -> Result<u64, String> {
    s.parse().map_err(|_| format!("{what}: `{s}` is not a number"))
}

/// Parses any of the three formats (told apart by the first character);
/// a bad dump is damage (exit code 1).
pub fn parse(text: &str) -> Result<CloneDump, Error> {
    let parsed = match text.trim_start().chars().next() {
        Some('<') => parse_xml(text),
        Some('{') => parse_json(text),
        Some(_) => parse_text(text),
        None => Err("empty dump".into()),
    };
    parsed.map_err(Error::failed)
}

fn kv<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    s.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

fn parse_text(text: &str) -> Result<CloneDump, String> {
    let mut lines = text.lines().enumerate();
    let (_, first) = lines.next().ok_or("empty dump")?;
    let first = first.strip_prefix("superblock").ok_or("line 1: expected `superblock …`")?;
    let mut dump = CloneDump::default();
    if let (Some(region), Some(target)) = (kv(first, "region_size"), kv(first, "target_size")) {
        dump.region_size = Some(num(region, "region_size")?);
        dump.target_size = Some(num(target, "target_size")?);
    }
    for (n, line) in lines {
        let mut words = line.split_whitespace();
        let (Some(first), Some(count), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!("line {}: expected `<first region> <count>`", n + 1));
        };
        dump.runs.push((num(first, "first region")?, num(count, "count")?));
    }
    Ok(dump)
}

fn parse_json(text: &str) -> Result<CloneDump, String> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("JSON: {e}"))?;
    let mut dump = CloneDump::default();
    if let Some(sb) = json.get("superblock").filter(|sb| sb.is_object()) {
        dump.region_size = Some(sb.get("region_size").and_then(|n| n.as_u64()).ok_or("JSON: no region_size")?);
        dump.target_size = Some(sb.get("target_size").and_then(|n| n.as_u64()).ok_or("JSON: no target_size")?);
    }
    let list = json.get("hydrated").and_then(|a| a.as_array()).ok_or("JSON: no hydrated array")?;
    for (i, run) in list.iter().enumerate() {
        let number =
            |k: usize| run.get(k).and_then(|n| n.as_u64()).ok_or(format!("JSON: hydrated[{i}] is not [first, count]"));
        dump.runs.push((number(0)?, number(1)?));
    }
    Ok(dump)
}

fn attr<'a>(tag: &'a str, key: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {key}=\""))? + key.len() + 3;
    let rest = tag.get(start..)?;
    rest.get(..rest.find('"')?)
}

/// The dump's XML is flat, tags only: each `<…>` is read on its own and
/// anything else is refused.
fn parse_xml(text: &str) -> Result<CloneDump, String> {
    let mut dump = CloneDump::default();
    let mut seen_root = false;
    let mut rest = text.trim();
    while !rest.is_empty() {
        let body = rest.strip_prefix('<').ok_or("XML: text outside tags")?;
        let end = body.find('>').ok_or("XML: unterminated tag")?;
        let tag = &body[..end];
        rest = body[end + 1..].trim_start();
        let name = tag.split_whitespace().next().unwrap_or("").trim_end_matches('/');
        match name {
            "?xml" | "/superblock" => {}
            "superblock" if !seen_root => {
                seen_root = true;
                if let (Some(region), Some(target)) = (attr(tag, "region_size"), attr(tag, "target_size")) {
                    dump.region_size = Some(num(region, "region_size")?);
                    dump.target_size = Some(num(target, "target_size")?);
                }
            }
            "range" if seen_root => {
                let attribute = |key: &str| num(attr(tag, key).ok_or(format!("XML: <range> has no {key}"))?, key);
                dump.runs.push((attribute("begin")?, attribute("length")?));
            }
            other => return Err(format!("XML: unexpected <{other}>")),
        }
    }
    if !seen_root {
        return Err("XML: no <superblock> root".into());
    }
    Ok(dump)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_formats_and_bad_input() {
        let want = CloneDump { region_size: Some(8), target_size: Some(1024), runs: vec![(0, 3), (10, 2)] };
        let t = "superblock version=1 region_size=8 target_size=1024 regions=128 hydrated=5 metadata_blocks=6/1024\n0 3\n10 2\n";
        let x =
            "<superblock version=\"1\" region_size=\"8\" target_size=\"1024\">\n<range begin=\"0\" length=\"3\"/>\n\
                 <range begin=\"10\" length=\"2\"/>\n</superblock>\n";
        let j = r#"{"superblock":{"region_size":8,"target_size":1024},"hydrated":[[0,3],[10,2]]}"#;
        assert_eq!(parse(t), Ok(want.clone()));
        assert_eq!(parse(x), Ok(want.clone()));
        assert_eq!(parse(j), Ok(want));
        for bad in [
            "",
            "foo",
            "superblock new\n1\n",
            "<range begin=\"1\" length=\"1\"/>",
            "<superblock><range begin=\"x\" length=\"1\"/>",
            "{\"hydrated\":[[1]]}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
