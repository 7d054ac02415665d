// SPDX-License-Identifier: GPL-2.0-only
//! Exclusive holders of backing files across state directories, as the
//! kernel opens a table's devices exclusively (`bd_prepare_to_claim` with
//! dm as the holder): every table of one state directory shares its files,
//! and a second state directory that would open one of them is refused with
//! `EBUSY` (two device mappers writing one COW lose snapshot data).
//!
//! A claim is a file named after the backing file's device and inode in
//! the holders directory (`$DMRS_HOLDERS`, else `dmrs-holders` in the
//! temporary directory), holding the claiming state directory's path. It
//! outlives the process (the devices live on in the state directory's
//! journal) and is dropped when no table of that state directory uses the
//! file any more. A claim whose state directory is gone is stale: taken over.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where claims live.
fn holders_dir() -> PathBuf {
    std::env::var_os("DMRS_HOLDERS").map(PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("dmrs-holders"))
}

/// The claim file of backing file `canon`.
fn claim_path(canon: &Path) -> std::io::Result<PathBuf> {
    let m = std::fs::metadata(canon)?;
    use std::os::unix::fs::FileTypeExt;
    // A block device by its number; a file by its device and inode.
    let key =
        if m.file_type().is_block_device() { format!("b{}", m.rdev()) } else { format!("{}-{}", m.dev(), m.ino()) };
    Ok(holders_dir().join(key))
}

/// Claims `canon` for state directory `holder`: `Err(EBUSY)` when another
/// live state directory holds it.
pub fn claim(canon: &Path, holder: &Path) -> Result<(), i32> {
    let Ok(path) = claim_path(canon) else { return Ok(()) };
    let _ = std::fs::create_dir_all(holders_dir());
    let ours = holder.to_string_lossy().into_owned();
    for _ in 0..3 {
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                let _ = f.write_all(ours.as_bytes());
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let other = std::fs::read_to_string(&path).unwrap_or_default();
                if other == ours {
                    return Ok(());
                }
                if !other.is_empty() && Path::new(&other).join("journal").exists() {
                    return Err(libc::EBUSY);
                }
                // Stale (its state directory is gone) or torn: take it over.
                let _ = std::fs::remove_file(&path);
            }
            // No holders directory to write to: claims are best effort.
            Err(_) => return Ok(()),
        }
    }
    Err(libc::EBUSY)
}

/// Drops every claim of `holder` but those on `used` (the files its
/// tables still hold), stale ones of an interrupted run included.
pub fn release_unused(holder: &Path, used: &[&Path]) {
    let keep: Vec<PathBuf> = used.iter().filter_map(|f| claim_path(f).ok()).collect();
    let Ok(entries) = std::fs::read_dir(holders_dir()) else { return };
    for e in entries.flatten() {
        let path = e.path();
        if keep.contains(&path) {
            continue;
        }
        if std::fs::read_to_string(&path).is_ok_and(|other| Path::new(&other) == holder) {
            let _ = std::fs::remove_file(path);
        }
    }
}
