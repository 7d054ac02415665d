// SPDX-License-Identifier: GPL-2.0-only
//! `dm_bm_checksum`: the kernel's `crc32c(~0, data, len) ^ xor`, where the
//! kernel's `crc32c()` applies no final inversion.

/// `SUPERBLOCK_CSUM_XOR` of dm-clone-metadata.c.
pub const CLONE_SUPERBLOCK_CSUM_XOR: u32 = 257649492;
/// `BTREE_CSUM_XOR` of dm-btree-spine.c.
pub const BTREE_CSUM_XOR: u32 = 121107;
/// `CSUM_XOR` of dm-array.c.
pub const ARRAY_CSUM_XOR: u32 = 595846735;
/// `INDEX_CSUM_XOR` of dm-space-map-common.c.
pub const INDEX_CSUM_XOR: u32 = 160478;
/// `BITMAP_CSUM_XOR` of dm-space-map-common.c.
pub const BITMAP_CSUM_XOR: u32 = 240779;

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), one table.
const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
            k += 1;
        }
        // `i < 256`, the table's length (const fn: no `get_mut`).
        #[allow(clippy::indexing_slicing)]
        {
            t[i] = c;
        }
        i += 1;
    }
    t
};

/// The kernel's `crc32c(seed, data)`: no pre- or post-inversion beyond the seed.
pub fn crc32c(seed: u32, data: &[u8]) -> u32 {
    let mut c = seed;
    for &b in data {
        // Masked to the table's 256 entries.
        #[allow(clippy::indexing_slicing)]
        let t = TABLE[((c ^ b as u32) & 0xff) as usize];
        c = t ^ (c >> 8);
    }
    c
}

/// `dm_bm_checksum(data, len, init_xor)`.
pub fn dm_bm_checksum(data: &[u8], xor: u32) -> u32 {
    crc32c(!0, data) ^ xor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_vectors() {
        // Standard CRC-32C inverts at both ends; the kernel's does not at the end.
        assert_eq!(!crc32c(!0, b"123456789"), 0xe3069283);
        assert_eq!(crc32c(!0, b"123456789"), 0x1cf96d7c);
        let zeros = [0u8; 4092];
        assert_eq!(crc32c(!0, &zeros), 0x58cda791);
        assert_eq!(dm_bm_checksum(&zeros, CLONE_SUPERBLOCK_CSUM_XOR), 0x5796ccc5);
        assert_eq!(dm_bm_checksum(&zeros, BTREE_CSUM_XOR), 0x58cc7e82);
        assert_eq!(dm_bm_checksum(&zeros, ARRAY_CSUM_XOR), 0x7b4e41de);
        assert_eq!(dm_bm_checksum(&zeros, INDEX_CSUM_XOR), 0x58cfd54f);
        assert_eq!(dm_bm_checksum(&zeros, BITMAP_CSUM_XOR), 0x58ce0b1a);
    }
}
