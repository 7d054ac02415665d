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
/// byte buffers (thin-provisioning-tools' `Pack`/`Unpack`). `unpack`
/// returns `None` when the buffer is too short; it never panics, whatever
/// the bytes. Checking what the fields say is the reader's job.
///
/// The integers themselves ([`Le32`], [`Le64`]) and byte arrays are
/// `OnDisk` too; structures are made of them with [`on_disk!`](crate::endian::on_disk).
pub trait OnDisk: Sized {
    /// Size on disk in bytes (checked against `size_of` at compile time).
    const SIZE: usize;
    /// Decodes from the start of `b`.
    fn unpack(b: &[u8]) -> Option<Self>;
    /// Encodes into the start of `b`; `None` when `b` is too short.
    fn pack(&self, b: &mut [u8]) -> Option<()>;

    /// Decodes from byte `off` of `b`; `None` past the end.
    fn unpack_at(b: &[u8], off: usize) -> Option<Self> {
        Self::unpack(b.get(off..)?)
    }
    /// Encodes at byte `off` of `b`; `None` past the end.
    fn pack_at(&self, b: &mut [u8], off: usize) -> Option<()> {
        self.pack(b.get_mut(off..)?)
    }
}

impl OnDisk for Le32 {
    const SIZE: usize = 4;
    fn unpack(b: &[u8]) -> Option<Self> {
        Some(Le32(<[u8; 4]>::unpack(b)?))
    }
    fn pack(&self, b: &mut [u8]) -> Option<()> {
        self.0.pack(b)
    }
}

impl OnDisk for Le64 {
    const SIZE: usize = 8;
    fn unpack(b: &[u8]) -> Option<Self> {
        Some(Le64(<[u8; 8]>::unpack(b)?))
    }
    fn pack(&self, b: &mut [u8]) -> Option<()> {
        self.0.pack(b)
    }
}

impl<const N: usize> OnDisk for [u8; N] {
    const SIZE: usize = N;
    fn unpack(b: &[u8]) -> Option<Self> {
        let mut a = [0u8; N];
        a.copy_from_slice(b.get(..N)?);
        Some(a)
    }
    fn pack(&self, b: &mut [u8]) -> Option<()> {
        b.get_mut(..N)?.copy_from_slice(self);
        Some(())
    }
}

/// Reads a structure's fields one after the other (what `unpack` is made of).
pub struct Unpacker<'a> {
    rest: &'a [u8],
}

impl<'a> Unpacker<'a> {
    /// From the start of `b`.
    pub fn new(b: &'a [u8]) -> Self {
        Unpacker { rest: b }
    }
    /// The next field; `None` past the end.
    pub fn field<T: OnDisk>(&mut self) -> Option<T> {
        let v = T::unpack(self.rest)?;
        self.rest = self.rest.get(T::SIZE..)?;
        Some(v)
    }
}

/// Writes a structure's fields one after the other (what `pack` is made of).
pub struct Packer<'a> {
    rest: &'a mut [u8],
}

impl<'a> Packer<'a> {
    /// From the start of `b`.
    pub fn new(b: &'a mut [u8]) -> Self {
        Packer { rest: b }
    }
    /// Writes the next field; `None` past the end.
    pub fn field<T: OnDisk>(&mut self, v: &T) -> Option<()> {
        v.pack(self.rest)?;
        let rest = core::mem::take(&mut self.rest);
        self.rest = rest.get_mut(T::SIZE..)?;
        Some(())
    }
}

/// Implements [`OnDisk`] for a `#[repr(C)]` structure of on-disk fields,
/// listed in declaration order, and pins its size at compile time (so a
/// field left out of the list fails to build):
/// `on_disk!(DiskException, 16, { old_chunk, new_chunk });`
macro_rules! on_disk {
    ($t:ident, $size:expr, { $($f:ident),+ $(,)? }) => {
        static_assertions::assert_eq_size!($t, [u8; $size]);
        static_assertions::const_assert_eq!(0 $(+ $crate::endian::field_size(|s: &$t| &s.$f))+, $size);
        impl $crate::endian::OnDisk for $t {
            const SIZE: usize = $size;
            fn unpack(b: &[u8]) -> Option<Self> {
                let mut u = $crate::endian::Unpacker::new(b);
                Some($t { $($f: u.field()?),+ })
            }
            fn pack(&self, b: &mut [u8]) -> Option<()> {
                let mut p = $crate::endian::Packer::new(b);
                $(p.field(&self.$f)?;)+
                Some(())
            }
        }
    };
}
pub(crate) use on_disk;

/// `T::SIZE` of the field `f` selects (for [`on_disk!`]'s size check).
#[doc(hidden)]
pub const fn field_size<S, T: OnDisk>(_f: fn(&S) -> &T) -> usize {
    T::SIZE
}

/// Reads a lone little-endian u32 at `off`, `None` past the end. On-disk
/// structures are read through [`OnDisk`]; these four remain for the
/// hosted repair tool, which reads blocks that failed validation.
pub fn read_le32(b: &[u8], off: usize) -> Option<u32> {
    Le32::unpack_at(b, off).map(Le32::get)
}

/// Reads a lone little-endian u64 at `off`, `None` past the end.
pub fn read_le64(b: &[u8], off: usize) -> Option<u64> {
    Le64::unpack_at(b, off).map(Le64::get)
}

/// Writes a lone little-endian u32 at `off`, `None` past the end.
pub fn write_le32(b: &mut [u8], off: usize, v: u32) -> Option<()> {
    Le32::new(v).pack_at(b, off)
}

/// Writes a lone little-endian u64 at `off`, `None` past the end.
pub fn write_le64(b: &mut [u8], off: usize, v: u64) -> Option<()> {
    Le64::new(v).pack_at(b, off)
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

    #[test]
    fn fields_pack_in_order_and_stop_at_the_end() {
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[repr(C)]
        struct S {
            a: Le32,
            b: Le64,
            c: [u8; 2],
        }
        on_disk!(S, 14, { a, b, c });
        let s = S { a: Le32::new(1), b: Le64::new(2), c: [3, 4] };
        let mut b = [0xffu8; 15];
        s.pack(&mut b).unwrap();
        assert_eq!(b, [1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 4, 0xff]);
        assert_eq!(S::unpack(&b), Some(s));
        assert_eq!(S::unpack(&b[..13]), None);
        assert_eq!(s.pack(&mut b[..13]), None);
        assert_eq!(
            S::unpack_at(&b, 1),
            Some(S { a: Le32::new(0x0200_0000), b: Le64::new(0x0300_0000_0000_0000), c: [4, 0xff] })
        );
        assert_eq!(S::unpack_at(&b, 2), None);
        assert_eq!(S::unpack_at(&b, usize::MAX), None);
    }
}
