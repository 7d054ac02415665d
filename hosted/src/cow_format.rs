// SPDX-License-Identifier: GPL-2.0-only
//! The three dump formats of `dmrs cow dump` and their reader for
//! `dmrs cow restore`. Text and JSON list every exception as before; XML
//! is in the spirit of thin_dump: a root element carrying the header and
//! consecutive exceptions folded into ranges. A range folds slots that
//! follow each other on disk and whose old and new chunks both grow by one,
//! so the dump keeps the on-disk order restore needs to put every slot back
//! where the kernel wrote it.

use crate::cow::{CowImage, Header, Slot};
use dmrs_core::exception_store::disk::SNAP_MAGIC;
use std::fmt::Write as _;
use std::io::Write;

/// `--format`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// `header …` then `<old_chunk> <new_chunk>` per exception.
    #[default]
    Text,
    /// One JSON object.
    Json,
    /// `<snapshot …>` with `<exception old_begin new_begin length/>` ranges.
    Xml,
}

/// A run of slots, consecutive on disk, in old and in new chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// First origin chunk.
    pub old_begin: u64,
    /// First COW chunk.
    pub new_begin: u64,
    /// Slots.
    pub length: u64,
}

/// Folds `(old, new)` pairs, in on-disk order, into runs.
pub fn runs(pairs: impl IntoIterator<Item = (u64, u64)>) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for (old, new) in pairs {
        if let Some(r) = out.last_mut() {
            if r.old_begin.checked_add(r.length) == Some(old) && r.new_begin.checked_add(r.length) == Some(new) {
                r.length += 1;
                continue;
            }
        }
        out.push(Run { old_begin: old, new_begin: new, length: 1 });
    }
    out
}

/// Writes the XML dump.
pub fn dump_xml(img: &CowImage, out: &mut dyn Write) -> std::io::Result<()> {
    match img.header {
        Header::New => return writeln!(out, "<snapshot header=\"new\"/>"),
        Header::BadMagic(m) => return writeln!(out, "<snapshot magic=\"0x{m:08x}\"/>"),
        Header::Snap { valid, version, chunk_size } => writeln!(
            out,
            "<snapshot magic=\"0x{SNAP_MAGIC:08x}\" valid=\"{valid}\" version=\"{version}\" chunk_size=\"{chunk_size}\" \
             exceptions=\"{}\">",
            img.exceptions.len()
        )?,
    }
    for r in runs(img.exceptions.iter().map(|s| (s.old_chunk, s.new_chunk))) {
        writeln!(
            out,
            "  <exception old_begin=\"{}\" new_begin=\"{}\" length=\"{}\"/>",
            r.old_begin, r.new_begin, r.length
        )?;
    }
    writeln!(out, "</snapshot>")
}

/// Streams the text or XML dump of `dev` to `out` without holding the
/// exceptions (the XML root's count takes one extra walk); returns the
/// walk's image (header, areas, problems) with no exceptions kept.
/// `progress` gets the bytes of slots read.
pub fn dump_stream(
    dev: &dyn dmrs_core::platform::BlockDevice,
    xml: bool,
    out: &mut dyn Write,
    progress: &dyn Fn(u64),
) -> std::io::Result<CowImage> {
    let header = crate::cow::read_header(dev);
    let mut err: Option<std::io::Error> = None;
    let mut keep = |r: std::io::Result<()>| {
        if let (Err(e), None) = (r, &err) {
            err = Some(e);
        }
    };
    let img = if !xml {
        keep(writeln!(out, "{}", text_header(&header)));
        crate::cow::walk(dev, None, &mut |e| {
            progress(16);
            keep(writeln!(out, "{} {}", e.old_chunk, e.new_chunk))
        })
    } else if let Header::Snap { valid, version, chunk_size } = header {
        let mut n = 0u64;
        crate::cow::walk(dev, None, &mut |_| n += 1);
        keep(writeln!(
            out,
            "<snapshot magic=\"0x{SNAP_MAGIC:08x}\" valid=\"{valid}\" version=\"{version}\" chunk_size=\"{chunk_size}\" \
             exceptions=\"{n}\">"
        ));
        let mut run: Option<Run> = None;
        let emit = |r: Run, out: &mut dyn Write| {
            writeln!(
                out,
                "  <exception old_begin=\"{}\" new_begin=\"{}\" length=\"{}\"/>",
                r.old_begin, r.new_begin, r.length
            )
        };
        let img = crate::cow::walk(dev, None, &mut |e| {
            progress(16);
            match &mut run {
                Some(r)
                    if r.old_begin.checked_add(r.length) == Some(e.old_chunk)
                        && r.new_begin.checked_add(r.length) == Some(e.new_chunk) =>
                {
                    r.length += 1
                }
                _ => {
                    if let Some(r) = run.replace(Run { old_begin: e.old_chunk, new_begin: e.new_chunk, length: 1 }) {
                        keep(emit(r, out));
                    }
                }
            }
        });
        if let Some(r) = run {
            keep(emit(r, out));
        }
        keep(writeln!(out, "</snapshot>"));
        img
    } else {
        let img = crate::cow::walk(dev, None, &mut |_| {});
        keep(dump_xml(&img, out));
        img
    };
    match err {
        Some(e) => Err(e),
        None => Ok(img),
    }
}

/// Streams the JSON dump of `dev` to `out` without holding the exceptions:
/// the same bytes as `dump_json(&scan(dev))` and a newline. serde_json
/// writes an object's keys sorted, so `errors` comes before `exceptions`:
/// a first walk finds the problems (keeping nothing), a second writes each
/// exception as it finds it. Returns the walk's image with no exceptions
/// kept; `progress` gets the bytes of slots read by the second walk.
pub fn dump_json_stream(
    dev: &dyn dmrs_core::platform::BlockDevice,
    out: &mut dyn Write,
    progress: &dyn Fn(u64),
) -> std::io::Result<CowImage> {
    let first = crate::cow::walk(dev, None, &mut |_| {});
    let mut err: Option<std::io::Error> = None;
    let mut keep = |r: std::io::Result<()>| {
        if let (Err(e), None) = (r, &err) {
            err = Some(e);
        }
    };
    keep(write!(out, "{{\"errors\":{},\"exceptions\":[", serde_json::Value::from(first.fatal.clone())));
    let mut comma = "";
    let img = crate::cow::walk(dev, None, &mut |e| {
        progress(16);
        keep(write!(out, "{comma}{{\"new_chunk\":{},\"old_chunk\":{}}}", e.new_chunk, e.old_chunk));
        comma = ",";
    });
    keep(writeln!(out, "],\"header\":{}}}", crate::cow::json_header(&img.header)));
    if let Some(e) = err {
        return Err(e);
    }
    if img.fatal != first.fatal || img.header != first.header {
        return Err(std::io::Error::other("the device changed while it was dumped"));
    }
    Ok(img)
}

/// What a dump says: the header and the exceptions in on-disk order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dump {
    /// The header.
    pub header: Header,
    /// `(old_chunk, new_chunk)` in slot order.
    pub exceptions: Vec<(u64, u64)>,
}

/// Parses any of the three formats (told apart by the first character).
/// `max_exceptions` bounds what XML ranges may expand to (text and JSON
/// are bounded by their own length): restore passes the number of chunks
/// of the target device, which no valid dump can exceed, so a hostile
/// `length` cannot make it allocate more than the device could hold.
pub fn parse(text: &str, max_exceptions: u64) -> Result<Dump, String> {
    match text.trim_start().chars().next() {
        Some('<') => parse_xml(text, max_exceptions),
        Some('{') => parse_json(text),
        Some(_) => parse_text(text),
        None => Err("empty dump".into()),
    }
}

fn num(s: &str, what: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("{what}: `{s}` is not a number"))
}

fn num32(s: &str, what: &str) -> Result<u32, String> {
    u32::try_from(num(s, what)?).map_err(|_| format!("{what}: `{s}` does not fit 32 bits"))
}

fn snap_header(magic: u32, valid: u32, version: u32, chunk_size: u32) -> Result<Header, String> {
    match magic {
        SNAP_MAGIC => Ok(Header::Snap { valid, version, chunk_size }),
        0 => Ok(Header::New),
        m => Err(format!("magic 0x{m:08x} is not a snapshot's (0x{SNAP_MAGIC:08x})")),
    }
}

fn parse_text(text: &str) -> Result<Dump, String> {
    let mut lines = text.lines().enumerate();
    let (_, first) = lines.next().ok_or("empty dump")?;
    let header = if first.trim() == "header new" {
        Header::New
    } else {
        let rest = first.strip_prefix("header ").ok_or("line 1: expected `header …`")?;
        let mut fields = [None::<u32>; 4];
        for word in rest.split_whitespace() {
            let (key, value) = word.split_once('=').ok_or(format!("line 1: `{word}` is not key=value"))?;
            let index = ["magic", "valid", "version", "chunk_size"]
                .iter()
                .position(|name| *name == key)
                .ok_or(format!("line 1: unknown field `{key}`"))?;
            fields[index] = Some(num32(value, key)?);
        }
        let [Some(magic), Some(valid), Some(version), Some(chunk_size)] = fields else {
            return Err("line 1: the header needs magic, valid, version and chunk_size".into());
        };
        snap_header(magic, valid, version, chunk_size)?
    };
    let mut exceptions = Vec::new();
    for (n, line) in lines {
        let mut words = line.split_whitespace();
        let (Some(old), Some(new), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!("line {}: expected `<old_chunk> <new_chunk>`", n + 1));
        };
        exceptions.push((num(old, "old_chunk")?, num(new, "new_chunk")?));
    }
    Ok(Dump { header, exceptions })
}

fn parse_json(text: &str) -> Result<Dump, String> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("JSON: {e}"))?;
    let field = |object: &serde_json::Value, key: &str| -> Result<u32, String> {
        object
            .get(key)
            .and_then(|n| n.as_u64())
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(format!("JSON: header.{key} is missing or not a 32-bit number"))
    };
    let header_json = json.get("header").ok_or("JSON: no header")?;
    let header = if header_json == "new" {
        Header::New
    } else {
        snap_header(
            field(header_json, "magic")?,
            field(header_json, "valid")?,
            field(header_json, "version")?,
            field(header_json, "chunk_size")?,
        )?
    };
    let list = json.get("exceptions").and_then(|a| a.as_array()).ok_or("JSON: no exceptions array")?;
    let mut exceptions = Vec::with_capacity(list.len());
    for (i, exception) in list.iter().enumerate() {
        let number =
            |key: &str| exception.get(key).and_then(|n| n.as_u64()).ok_or(format!("JSON: exception {i}: no {key}"));
        exceptions.push((number("old_chunk")?, number("new_chunk")?));
    }
    Ok(Dump { header, exceptions })
}

/// One `<name k="v" …>` tag of the XML dump.
struct Tag<'a> {
    name: &'a str,
    attrs: Vec<(&'a str, &'a str)>,
    closing: bool,
}

impl Tag<'_> {
    fn get(&self, k: &str) -> Option<&str> {
        self.attrs.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)
    }
}

/// The dump's XML is flat and has no text, entities or comments, so tags
/// are all there is to read; anything else is refused rather than guessed.
/// Tags are read one at a time (a dump may hold millions).
struct Tags<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Tags<'a> {
    type Item = Result<Tag<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.rest = self.rest.trim_start();
            if self.rest.is_empty() {
                return None;
            }
            let r = self.one();
            if let Err(e) = &r {
                self.rest = "";
                return Some(Err(e.clone()));
            }
            if let Ok(Some(t)) = r {
                return Some(Ok(t));
            }
        }
    }
}

impl<'a> Tags<'a> {
    /// The next tag; `None` for a skipped one (`<?xml …?>`).
    fn one(&mut self) -> Result<Option<Tag<'a>>, String> {
        let rest = self.rest;
        let body_start = rest.strip_prefix('<').ok_or_else(|| format!("XML: expected `<` at `{:.20}`", rest))?;
        let end = body_start.find('>').ok_or("XML: unterminated tag")?;
        let mut body = body_start[..end].trim();
        self.rest = &body_start[end + 1..];
        if body.starts_with('?') {
            return Ok(None);
        }
        let closing = body.starts_with('/');
        body = body.trim_start_matches('/').trim_end_matches('/').trim();
        let (name, mut attrs_s) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
        let mut attrs = Vec::new();
        loop {
            attrs_s = attrs_s.trim_start();
            if attrs_s.is_empty() {
                break;
            }
            let (k, r) = attrs_s.split_once("=\"").ok_or_else(|| format!("XML: bad attribute in <{name}>"))?;
            let (v, r) = r.split_once('"').ok_or_else(|| format!("XML: unterminated attribute in <{name}>"))?;
            attrs.push((k.trim(), v));
            attrs_s = r;
        }
        Ok(Some(Tag { name, attrs, closing }))
    }
}

fn parse_xml(text: &str, max_exceptions: u64) -> Result<Dump, String> {
    let mut tags = Tags { rest: text };
    let root = tags.next().transpose()?;
    let root = root.filter(|t| t.name == "snapshot" && !t.closing).ok_or("XML: no <snapshot> root")?;
    let header = if root.get("header") == Some("new") {
        Header::New
    } else {
        let attribute = |key: &str| num32(root.get(key).ok_or(format!("XML: <snapshot> has no {key}"))?, key);
        snap_header(attribute("magic")?, attribute("valid")?, attribute("version")?, attribute("chunk_size")?)?
    };
    let declared = match root.get("exceptions") {
        Some(n) => Some(num(n, "exceptions")?),
        None => None,
    };
    if declared.is_some_and(|d| d > max_exceptions) {
        return Err("XML: too many exceptions declared".into());
    }
    let mut exceptions = Vec::new();
    let mut total = 0u64;
    for tag in tags {
        let tag = tag?;
        match (tag.name, tag.closing) {
            ("snapshot", true) => break,
            ("exception", false) => {
                let attribute = |key: &str| num(tag.get(key).ok_or(format!("XML: <exception> has no {key}"))?, key);
                let (old_begin, new_begin, length) =
                    (attribute("old_begin")?, attribute("new_begin")?, attribute("length")?);
                total = total
                    .checked_add(length)
                    .filter(|&sum| sum <= max_exceptions)
                    .ok_or("XML: more exceptions than the device has chunks")?;
                if length == 0
                    || old_begin.checked_add(length - 1).is_none()
                    || new_begin.checked_add(length - 1).is_none()
                {
                    return Err(format!(
                        "XML: range old_begin={old_begin} new_begin={new_begin} length={length} is empty or overflows"
                    ));
                }
                if declared.is_some_and(|d| total > d) {
                    return Err("XML: more exceptions than the root declares".into());
                }
                exceptions.extend((0..length).map(|i| (old_begin + i, new_begin + i)));
            }
            (other, _) => return Err(format!("XML: unexpected <{other}>")),
        }
    }
    if declared.is_some_and(|d| d != exceptions.len() as u64) {
        return Err(format!("XML: {} exceptions, the root declares {}", exceptions.len(), declared.unwrap_or(0)));
    }
    Ok(Dump { header, exceptions })
}

/// The dump as a [`CowImage`] on a device of `dev_sectors`, slots laid out
/// as the kernel fills them (area by area, slot by slot), so
/// [`crate::cow::check`] can judge it before anything is written.
pub fn as_image(d: &Dump, dev_sectors: u64) -> CowImage {
    let epa = match d.header {
        Header::Snap { chunk_size, .. } => dmrs_core::exception_store::disk::exceptions_per_area(chunk_size).max(1),
        _ => 1,
    } as u64;
    let exceptions: Vec<Slot> = d
        .exceptions
        .iter()
        .enumerate()
        .map(|(i, &(o, n))| Slot { area: i as u64 / epa, slot: (i as u64 % epa) as u32, old_chunk: o, new_chunk: n })
        .collect();
    CowImage {
        header: d.header,
        dev_sectors,
        areas: d.exceptions.len() as u64 / epa + 1,
        exceptions,
        fatal: Vec::new(),
    }
}

/// The text dump, as `dmrs cow dump` has always printed it.
pub fn text_header(h: &Header) -> String {
    let mut s = String::new();
    match *h {
        Header::New => s.push_str("header new"),
        Header::Snap { valid, version, chunk_size } => {
            let _ =
                write!(s, "header magic=0x{SNAP_MAGIC:08x} valid={valid} version={version} chunk_size={chunk_size}");
        }
        Header::BadMagic(m) => {
            let _ = write!(s, "header magic=0x{m:08x}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_fold_only_what_grows_together() {
        let r = runs([(5, 2), (6, 3), (7, 5), (8, 6), (1, 7)]);
        assert_eq!(
            r,
            [
                Run { old_begin: 5, new_begin: 2, length: 2 },
                Run { old_begin: 7, new_begin: 5, length: 2 },
                Run { old_begin: 1, new_begin: 7, length: 1 }
            ]
        );
        assert_eq!(runs([(u64::MAX, 2), (0, 3)]).len(), 2);
    }

    #[test]
    fn the_three_formats_parse_to_the_same_dump() {
        let want = Dump {
            header: Header::Snap { valid: 1, version: 1, chunk_size: 16 },
            exceptions: vec![(5, 2), (6, 3), (9, 4)],
        };
        let text = "header magic=0x70416e53 valid=1 version=1 chunk_size=16\n5 2\n6 3\n9 4\n";
        let xml = "<snapshot magic=\"0x70416e53\" valid=\"1\" version=\"1\" chunk_size=\"16\" exceptions=\"3\">\n\
                   <exception old_begin=\"5\" new_begin=\"2\" length=\"2\"/>\n\
                   <exception old_begin=\"9\" new_begin=\"4\" length=\"1\"/>\n</snapshot>\n";
        let json = r#"{"header":{"magic":1883336275,"valid":1,"version":1,"chunk_size":16},
            "exceptions":[{"old_chunk":5,"new_chunk":2},{"old_chunk":6,"new_chunk":3},{"old_chunk":9,"new_chunk":4}]}"#;
        assert_eq!(parse(text, 1000), Ok(want.clone()));
        assert_eq!(parse(xml, 1000), Ok(want.clone()));
        assert_eq!(parse(json, 1000), Ok(want));
    }

    #[test]
    fn bad_dumps_are_errors() {
        for bad in [
            "",
            "header magic=0x12345678 valid=1 version=1 chunk_size=16\n",
            "header magic=0x70416e53 valid=1 version=1\n",
            "header magic=0x70416e53 valid=1 version=1 chunk_size=16\n5\n",
            "header magic=0x70416e53 valid=1 version=1 chunk_size=99999999999\n",
            "<snapshot magic=\"0x70416e53\" valid=\"1\" version=\"1\" chunk_size=\"16\">\
             <exception old_begin=\"5\" new_begin=\"2\" length=\"0\"/></snapshot>",
            "<snapshot magic=\"0x70416e53\" valid=\"1\" version=\"1\" chunk_size=\"16\">\
             <exception old_begin=\"5\" new_begin=\"2\" length=\"99999999999999\"/></snapshot>",
            "<snapshot magic=\"0x70416e53\" valid=\"1\" version=\"1\" chunk_size=\"16\" exceptions=\"2\">\
             <exception old_begin=\"5\" new_begin=\"2\" length=\"1\"/></snapshot>",
            "<snapshot magic=\"0x70416e53\" valid=\"1\" version=\"1\" chunk_size=\"16\"><foo/></snapshot>",
            "<snapshot magic=\"0x70416e53\" valid=\"1",
            "{\"header\":{\"magic\":1883336275},\"exceptions\":[]}",
        ] {
            assert!(parse(bad, 1 << 30).is_err(), "{bad:?}");
        }
    }
}
