// SPDX-License-Identifier: GPL-2.0-only
//! `struct dm_exception` and chunk arithmetic from `dm-exception-store.h`.

/// A chunk number (`chunk_t`).
pub type Chunk = u64;

/// Bits of `new_chunk` that count consecutive chunks (64-bit kernels).
pub const DM_CHUNK_CONSECUTIVE_BITS: u32 = 8;
/// Bits of `new_chunk` that hold the chunk number.
pub const DM_CHUNK_NUMBER_BITS: u32 = 56;
/// Largest consecutive count an exception can carry.
pub const DM_CHUNK_CONSECUTIVE_MAX: u32 = (1 << DM_CHUNK_CONSECUTIVE_BITS) - 1;

/// `dm_chunk_number`: `new_chunk` without the consecutive count.
pub const fn dm_chunk_number(chunk: Chunk) -> Chunk {
    chunk & ((1u64 << DM_CHUNK_NUMBER_BITS) - 1)
}

/// One exception: origin chunk `old_chunk` lives at COW chunk `new_chunk`.
/// In an exception table the top [`DM_CHUNK_CONSECUTIVE_BITS`] of
/// `new_chunk` count how many further chunks follow consecutively in both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmException {
    /// Origin chunk.
    pub old_chunk: Chunk,
    /// COW chunk, with the consecutive count in the top bits.
    pub new_chunk: Chunk,
}

impl DmException {
    /// A single-chunk exception.
    pub const fn new(old_chunk: Chunk, new_chunk: Chunk) -> Self {
        DmException { old_chunk, new_chunk }
    }

    /// `dm_consecutive_chunk_count`.
    pub const fn consecutive_count(&self) -> u32 {
        (self.new_chunk >> DM_CHUNK_NUMBER_BITS) as u32
    }

    /// The first COW chunk of the range.
    pub const fn first_new_chunk(&self) -> Chunk {
        dm_chunk_number(self.new_chunk)
    }

    /// True when origin chunk `chunk` is inside this range.
    pub const fn covers(&self, chunk: Chunk) -> bool {
        chunk >= self.old_chunk && chunk - self.old_chunk <= self.consecutive_count() as u64
    }

    /// `remap_exception`'s chunk arithmetic: the COW chunk holding `chunk`.
    pub const fn remap(&self, chunk: Chunk) -> Chunk {
        self.first_new_chunk() + (chunk - self.old_chunk)
    }

    /// `dm_consecutive_chunk_count_inc`; false (unchanged) when full.
    pub fn count_inc(&mut self) -> bool {
        if self.consecutive_count() >= DM_CHUNK_CONSECUTIVE_MAX {
            return false;
        }
        self.new_chunk += 1u64 << DM_CHUNK_NUMBER_BITS;
        true
    }

    /// `dm_consecutive_chunk_count_dec`; false (unchanged) when zero.
    pub fn count_dec(&mut self) -> bool {
        if self.consecutive_count() == 0 {
            return false;
        }
        self.new_chunk -= 1u64 << DM_CHUNK_NUMBER_BITS;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_count_lives_in_the_top_bits() {
        let mut e = DmException::new(10, 100);
        assert!(e.covers(10) && !e.covers(11) && !e.covers(9));
        assert!(e.count_inc());
        assert_eq!(e.new_chunk, (1u64 << 56) | 100);
        assert_eq!((e.consecutive_count(), e.first_new_chunk()), (1, 100));
        assert!(e.covers(11) && !e.covers(12));
        assert_eq!(e.remap(11), 101);
        for _ in 1..DM_CHUNK_CONSECUTIVE_MAX {
            assert!(e.count_inc());
        }
        assert!(!e.count_inc());
        assert_eq!(e.consecutive_count(), 255);
        assert!(e.count_dec());
        let mut z = DmException::new(0, 1);
        assert!(!z.count_dec());
    }
}
