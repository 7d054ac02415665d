// SPDX-License-Identifier: GPL-2.0-only
//! `FileDev`: the core's [`BlockDevice`] over a file or a block device,
//! with `pread`/`pwrite` at sector offsets. A flush is `fdatasync`; a FUA
//! write is the write followed by `fdatasync`; `PREFLUSH` syncs first.

use dmrs_core::platform::{BlockDevice, QueueLimits, ReqFlags, SECTOR_SIZE};
use dmrs_core::{Errno, Result};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// How to open a device.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenMode {
    /// Open read-only.
    pub read_only: bool,
    /// Bypass the page cache (`O_DIRECT`); I/O goes through aligned buffers.
    pub direct: bool,
}

/// A file or block device addressed in sectors.
#[derive(Debug)]
pub struct FileDev {
    file: File,
    path: PathBuf,
    sectors: u64,
    lbs: u32,
    direct: bool,
    is_blockdev: bool,
    id: u64,
}

fn errno_of(e: &io::Error) -> Errno {
    match e.raw_os_error() {
        Some(n) if n > 0 => Errno(n),
        _ => Errno::EIO,
    }
}

// BLKGETSIZE64 = _IOR(0x12, 114, size_t), BLKSSZGET = _IO(0x12, 104).
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
const BLKSSZGET: libc::c_ulong = 0x1268;

impl FileDev {
    /// Opens `path`. Size comes from `fstat`, or `BLKGETSIZE64` and
    /// `BLKSSZGET` for a block device.
    pub fn open(path: &Path, mode: OpenMode) -> io::Result<FileDev> {
        let mut o = OpenOptions::new();
        o.read(true).write(!mode.read_only);
        if mode.direct {
            o.custom_flags(libc::O_DIRECT);
        }
        let file = o.open(path)?;
        let meta = file.metadata()?;
        let fd = file.as_raw_fd();
        let is_blockdev = meta.file_type().is_block_device();
        let id = {
            use std::os::unix::fs::MetadataExt;
            if is_blockdev {
                meta.rdev()
            } else {
                meta.dev().rotate_left(32) ^ meta.ino()
            }
        };
        let (bytes, lbs) = if is_blockdev {
            let mut size: u64 = 0;
            let mut ssz: libc::c_int = 0;
            // SAFETY: fd is open for the life of `file`; BLKGETSIZE64 writes
            // one u64 to the pointer, BLKSSZGET one int.
            let r = unsafe { libc::ioctl(fd, BLKGETSIZE64 as _, &mut size as *mut u64) };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: as above.
            let r = unsafe { libc::ioctl(fd, BLKSSZGET as _, &mut ssz as *mut libc::c_int) };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
            (size, ssz.max(512) as u32)
        } else {
            (meta.len(), 512)
        };
        let sectors = bytes / SECTOR_SIZE as u64;
        Ok(FileDev { file, path: path.to_path_buf(), sectors, lbs, direct: mode.direct, is_blockdev, id })
    }

    /// The path it was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Identity of the file or device (`st_rdev`, or `st_dev`/`st_ino`):
    /// the same for every open of it.
    pub fn id(&self) -> u64 {
        self.id
    }

    fn check(&self, sector: u64, len: usize) -> Result<i64> {
        if len % SECTOR_SIZE != 0 {
            return Err(Errno::EINVAL);
        }
        let end = sector.checked_add((len / SECTOR_SIZE) as u64).ok_or(Errno::EIO)?;
        if end > self.sectors {
            return Err(Errno::EIO);
        }
        i64::try_from(sector * SECTOR_SIZE as u64).map_err(|_| Errno::EIO)
    }

    /// Runs `op(done, offset)` (a `pread` or `pwrite` of the rest) until
    /// `len` bytes moved, retrying on EINTR; a zero-byte transfer is EIO.
    fn transfer(mut off: i64, len: usize, mut op: impl FnMut(usize, i64) -> isize) -> Result<()> {
        let mut done = 0;
        while done < len {
            let n = op(done, off);
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(errno_of(&e));
            }
            if n == 0 {
                return Err(Errno::EIO);
            }
            done += n as usize;
            off += n as i64;
        }
        Ok(())
    }

    fn pread_all(&self, off: i64, buf: &mut [u8]) -> Result<()> {
        let (fd, len) = (self.file.as_raw_fd(), buf.len());
        Self::transfer(off, len, |done, off| {
            let rest = &mut buf[done..];
            // SAFETY: `rest` is a valid writable region of rest.len() bytes
            // and the fd stays open while self lives.
            unsafe { libc::pread(fd, rest.as_mut_ptr().cast(), rest.len(), off) }
        })
    }

    fn pwrite_all(&self, off: i64, buf: &[u8]) -> Result<()> {
        let fd = self.file.as_raw_fd();
        Self::transfer(off, buf.len(), |done, off| {
            let rest = &buf[done..];
            // SAFETY: `rest` is a valid readable region of rest.len() bytes.
            unsafe { libc::pwrite(fd, rest.as_ptr().cast(), rest.len(), off) }
        })
    }

    fn sync(&self) -> Result<()> {
        // SAFETY: plain syscall on an open fd.
        if unsafe { libc::fdatasync(self.file.as_raw_fd()) } != 0 {
            return Err(errno_of(&io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// A 4 KiB-aligned bounce buffer for `O_DIRECT`.
struct Aligned {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl Aligned {
    fn new(len: usize) -> Result<Aligned> {
        let layout = std::alloc::Layout::from_size_align(len.max(1), 4096).map_err(|_| Errno::EINVAL)?;
        // SAFETY: layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(Errno::ENOMEM);
        }
        Ok(Aligned { ptr, layout })
    }
    fn slice(&mut self, len: usize) -> &mut [u8] {
        // SAFETY: ptr is valid for layout.size() >= len bytes, owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, len) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

impl BlockDevice for FileDev {
    fn read(&self, sector: u64, buf: &mut [u8]) -> Result<()> {
        let off = self.check(sector, buf.len())?;
        if self.direct {
            let mut b = Aligned::new(buf.len())?;
            self.pread_all(off, b.slice(buf.len()))?;
            buf.copy_from_slice(b.slice(buf.len()));
            Ok(())
        } else {
            self.pread_all(off, buf)
        }
    }

    fn write(&self, sector: u64, buf: &[u8], flags: ReqFlags) -> Result<()> {
        let off = self.check(sector, buf.len())?;
        if flags.contains(ReqFlags::PREFLUSH) {
            self.sync()?;
        }
        if self.direct {
            let mut b = Aligned::new(buf.len())?;
            b.slice(buf.len()).copy_from_slice(buf);
            self.pwrite_all(off, b.slice(buf.len()))?;
        } else {
            self.pwrite_all(off, buf)?;
        }
        if flags.contains(ReqFlags::FUA) {
            self.sync()?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.sync()
    }

    fn size_sectors(&self) -> u64 {
        self.sectors
    }

    fn logical_block_size(&self) -> u32 {
        self.lbs
    }

    fn discard(&self, sector: u64, nr_sectors: u64) -> Result<()> {
        let off = self.check(sector, (nr_sectors as usize) * SECTOR_SIZE)?;
        if self.is_blockdev {
            return Err(Errno::EOPNOTSUPP);
        }
        let len = (nr_sectors * SECTOR_SIZE as u64) as i64;
        // SAFETY: plain syscall on an open fd; punching a hole keeps the size.
        let r = unsafe {
            libc::fallocate(self.file.as_raw_fd(), libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, off, len)
        };
        if r != 0 {
            return Err(errno_of(&io::Error::last_os_error()));
        }
        Ok(())
    }

    fn queue_limits(&self) -> QueueLimits {
        if self.is_blockdev {
            // `discard` above refuses block devices (no BLKDISCARD yet).
            QueueLimits { io_min: self.lbs, ..QueueLimits::default() }
        } else {
            QueueLimits::discard_anything(self.lbs)
        }
    }

    fn prefetch(&self, sector: u64, nr_sectors: u64) {
        let (off, len) = (sector * SECTOR_SIZE as u64, nr_sectors * SECTOR_SIZE as u64);
        // SAFETY: advisory syscall on an open fd; the result is ignored.
        unsafe {
            libc::posix_fadvise(self.file.as_raw_fd(), off as i64, len as i64, libc::POSIX_FADV_WILLNEED);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_write_bounds_and_direct_io() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.img");
        std::fs::write(&p, vec![0u8; 8192 + 100]).unwrap();
        for direct in [false, true] {
            let d = match FileDev::open(&p, OpenMode { read_only: false, direct }) {
                Ok(d) => d,
                Err(_) if direct => continue, // tmpfs has no O_DIRECT
                Err(e) => panic!("{e}"),
            };
            assert_eq!((d.size_sectors(), d.logical_block_size()), (16, 512));
            d.write(3, &[7u8; 1024], ReqFlags::FUA | ReqFlags::PREFLUSH).unwrap();
            let mut b = [0u8; 1536];
            d.read(2, &mut b).unwrap();
            assert_eq!((b[0], b[512], b[1535]), (0, 7, 7));
            assert_eq!(d.read(15, &mut [0u8; 1024]), Err(Errno::EIO));
            assert_eq!(d.write(0, &[0u8; 100], ReqFlags::empty()), Err(Errno::EINVAL));
            assert_eq!(d.read(u64::MAX, &mut [0u8; 512]), Err(Errno::EIO));
            d.flush().unwrap();
        }
        let ro = FileDev::open(&p, OpenMode { read_only: true, direct: false }).unwrap();
        assert_eq!(ro.write(0, &[0u8; 512], ReqFlags::empty()), Err(Errno(libc::EBADF)));
    }
}
