// SPDX-License-Identifier: GPL-2.0-only
//! Little-endian on-disk integers (`__le32`, `__le64`) and the pack/unpack
//! contract every on-disk structure follows.
//!
//! The types are byte arrays, so a `#[repr(C)]` struct of them has the
//! kernel's `__packed` layout with alignment 1, which `static_assertions`
//! then pins at compile time.

/// `__le32`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(transparent)]
pub struct Le32([u8; 4]);

/// `__le64`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(transparent)]
pub struct Le64([u8; 8]);

impl Le32 {
    /// `cpu_to_le32`.
    pub const fn new(v: u32) -> Self {
        Le32(v.to_le_bytes())
    }
    /// `le32_to_cpu`.
    pub const fn get(self) -> u32 {
        u32::from_le_bytes(self.0)
    }
}

impl Le64 {
    /// `cpu_to_le64`.
    pub const fn new(v: u64) -> Self {
        Le64(v.to_le_bytes())
    }
    /// `le64_to_cpu`.
    pub const fn get(self) -> u64 {
        u64::from_le_bytes(self.0)
    }
}

/// An on-disk structure with a fixed size that is read from and written to
/// byte buffers. `unpack` returns `None` when the buffer is too short; it
/// never panics, whatever the bytes.
pub trait OnDisk: Sized {
    /// Size on disk in bytes (checked against `size_of` at compile time).
    const SIZE: usize;
    /// Decodes from the start of `b`.
    fn unpack(b: &[u8]) -> Option<Self>;
    /// Encodes into the start of `b`; `None` when `b` is too short.
    fn pack(&self, b: &mut [u8]) -> Option<()>;
}

/// Reads a little-endian u32 at `off`, `None` past the end.
pub fn read_le32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(s);
    Some(u32::from_le_bytes(a))
}

/// Reads a little-endian u64 at `off`, `None` past the end.
pub fn read_le64(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// Writes a little-endian u32 at `off`, `None` past the end.
pub fn write_le32(b: &mut [u8], off: usize, v: u32) -> Option<()> {
    b.get_mut(off..off.checked_add(4)?)?.copy_from_slice(&v.to_le_bytes());
    Some(())
}

/// Writes a little-endian u64 at `off`, `None` past the end.
pub fn write_le64(b: &mut [u8], off: usize, v: u64) -> Option<()> {
    b.get_mut(off..off.checked_add(8)?)?.copy_from_slice(&v.to_le_bytes());
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn le_roundtrip_and_bounds() {
        let mut b = [0u8; 12];
        assert_eq!(write_le32(&mut b, 0, 0x70416e53), Some(()));
        assert_eq!(&b[..4], b"SnAp");
        assert_eq!(write_le64(&mut b, 4, 0x0102030405060708), Some(()));
        assert_eq!(read_le64(&b, 4), Some(0x0102030405060708));
        assert_eq!(read_le32(&b, 9), None);
        assert_eq!(write_le64(&mut b, 5, 1), None);
        assert_eq!(read_le32(&b, usize::MAX - 1), None);
        assert_eq!(Le32::new(7).get(), 7);
        assert_eq!(Le64::new(u64::MAX).get(), u64::MAX);
    }
}
