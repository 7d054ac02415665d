// SPDX-License-Identifier: GPL-2.0-only
//! `dm-bitset.c`: "a thin wrapper round a dm_array of 64bit words"; bit `i`
//! is bit `i % 64` of little-endian word `i / 64`.
//!
//! [`test`], [`set`], [`count`] and [`words_for`] are the one set of bit
//! helpers for every in-core bitmap of words (dm-bitset's words, dm-clone's
//! region and dirty maps, the transaction manager's shadow and freed sets);
//! bits past the end read as clear and are not set.

use super::array;
use super::block::{Block, BlockError, BlockManager};
use super::error::{PdError, PdResult};
use crate::endian::{Le64, OnDisk};
use crate::mem::TryVec;
use crate::platform::BlockDevice;

/// Bits per array entry.
pub const BITS_PER_ARRAY_ENTRY: u64 = 64;

/// Loads a bitset of `nr_bits` into memory (the cursor walk of
/// `__load_bitset_in_core`); `node` sees every block it uses.
pub fn load<D: BlockDevice>(
    bm: &BlockManager<D>,
    root: Block,
    nr_bits: u64,
    node: &mut dyn FnMut(Block),
) -> PdResult<TryVec<u64>> {
    let words = words_for(nr_bits);
    let mut out =
        TryVec::try_with_capacity(words as usize).map_err(|e| PdError { block: root, kind: BlockError::Io(e) })?;
    let mut oom = false;
    let len = array::walk(bm, root, 8, node, &mut |_, v| {
        oom |= out.try_push(Le64::unpack(v).map_or(0, Le64::get)).is_err();
    })?;
    if oom {
        return Err(PdError { block: root, kind: BlockError::Io(crate::errno::Errno::ENOMEM) });
    }
    if len != words {
        return Err(PdError {
            block: root,
            kind: BlockError::Shape("bitset length does not match the number of regions"),
        });
    }
    Ok(out)
}

/// Set bits among the first `nr_bits`.
pub fn count(words: &[u64], nr_bits: u64) -> u64 {
    let full = (nr_bits / BITS_PER_ARRAY_ENTRY) as usize;
    let mut n: u64 = words.iter().take(full).map(|w| w.count_ones() as u64).sum();
    let rest = nr_bits % BITS_PER_ARRAY_ENTRY;
    if rest != 0 {
        if let Some(w) = words.get(full) {
            n += (w & ((1u64 << rest) - 1)).count_ones() as u64;
        }
    }
    n
}

/// Test bit `i`.
pub fn test(words: &[u64], i: u64) -> bool {
    words.get((i / BITS_PER_ARRAY_ENTRY) as usize).is_some_and(|w| w & (1 << (i % BITS_PER_ARRAY_ENTRY)) != 0)
}

/// Set bit `i`.
pub fn set(words: &mut [u64], i: u64) {
    if let Some(w) = words.get_mut((i / BITS_PER_ARRAY_ENTRY) as usize) {
        *w |= 1 << (i % BITS_PER_ARRAY_ENTRY);
    }
}

/// Words holding `nr_bits` bits.
pub const fn words_for(nr_bits: u64) -> u64 {
    nr_bits.div_ceil(BITS_PER_ARRAY_ENTRY)
}
