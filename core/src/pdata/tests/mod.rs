// SPDX-License-Identifier: GPL-2.0-only
//! persistent-data unit tests: block validation, node layout, bitmap bit order.

use super::block::{BlockError, BlockManager, BLOCK_SIZE};
use super::btree::{self, calc_max_entries, Node, NODE_VALIDATOR};
use super::space_map::{bitmap_entry, set_bitmap_entry, ENTRIES_PER_BLOCK, METADATA_MAX_BLOCKS};
use crate::platform::{BlockDevice, RamDev, ReqFlags};
use alloc::vec;

#[test]
fn constants_match_the_kernel() {
    assert_eq!(calc_max_entries(8), 252);
    assert_eq!(calc_max_entries(4), 336);
    assert_eq!(super::array::calc_max_entries(8), 509);
    assert_eq!(ENTRIES_PER_BLOCK, 16320);
    assert_eq!(METADATA_MAX_BLOCKS, 4_161_600);
}

#[test]
fn two_bit_counts_have_the_high_bit_first() {
    let mut d = [0u8; 8];
    set_bitmap_entry(&mut d, 0, 1);
    assert_eq!(d[0], 0b10, "count 1 sets the second bit of the pair");
    set_bitmap_entry(&mut d, 1, 2);
    assert_eq!(d[0], 0b0110);
    set_bitmap_entry(&mut d, 31, 3);
    assert_eq!(d[7], 0b1100_0000);
    assert_eq!((bitmap_entry(&d, 0), bitmap_entry(&d, 1), bitmap_entry(&d, 31), bitmap_entry(&d, 2)), (1, 2, 3, 0));
    set_bitmap_entry(&mut d, 1, 0);
    assert_eq!(bitmap_entry(&d, 1), 0);
}

fn leaf(entries: &[(u64, u64)]) -> vec::Vec<u8> {
    let mut b = vec![0u8; BLOCK_SIZE];
    let max = calc_max_entries(8);
    b[4..8].copy_from_slice(&2u32.to_le_bytes());
    b[16..20].copy_from_slice(&(entries.len() as u32).to_le_bytes());
    b[20..24].copy_from_slice(&max.to_le_bytes());
    b[24..28].copy_from_slice(&8u32.to_le_bytes());
    for (i, (k, v)) in entries.iter().enumerate() {
        b[32 + 8 * i..40 + 8 * i].copy_from_slice(&k.to_le_bytes());
        let off = 32 + 8 * max as usize + 8 * i;
        b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
    b
}

#[test]
fn nodes_validate_location_checksum_and_shape() {
    let dev = RamDev::new(64, 512).unwrap();
    let bm = BlockManager::new(&dev);
    let mut b = leaf(&[(1, 10), (5, 50)]);
    bm.write(3, &mut b, &NODE_VALIDATOR, ReqFlags::empty()).unwrap();
    assert_eq!(btree::lookup(&bm, 3, 5, 8).unwrap().map(|v| v[0]), Some(50));
    assert_eq!(btree::lookup(&bm, 3, 4, 8).unwrap(), None);
    let mut seen = vec::Vec::new();
    btree::walk(&bm, 3, 8, &mut |_| {}, &mut |k, v| {
        seen.push((k, v[0]));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, [(1, 10), (5, 50)]);
    // Read from the wrong location: ENOTBLK.
    let mut raw = vec![0u8; BLOCK_SIZE];
    dev.read(3 * 8, &mut raw).unwrap();
    dev.write(4 * 8, &raw, ReqFlags::empty()).unwrap();
    assert!(matches!(bm.read(4, &NODE_VALIDATOR), Err(BlockError::BlockNr { found: 3 })));
    // A flipped bit: EILSEQ.
    raw[100] ^= 1;
    dev.write(3 * 8, &raw, ReqFlags::empty()).unwrap();
    assert!(matches!(bm.read(3, &NODE_VALIDATOR), Err(BlockError::Checksum { .. })));
    // Bad shapes.
    let mut b = leaf(&[]);
    b[20..24].copy_from_slice(&1000u32.to_le_bytes());
    assert_eq!(Node::parse(&b).err(), Some(BlockError::Shape("max_entries too large")));
    // Found by fuzzing (fuzz/ clone_metadata): value_size and max_entries
    // whose product overflows 64 bits are refused, not a panic.
    let mut b = leaf(&[]);
    b[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
    b[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(Node::parse(&b).err(), Some(BlockError::Shape("max_entries too large")));
    let mut b = leaf(&[]);
    b[16..20].copy_from_slice(&300u32.to_le_bytes());
    assert_eq!(Node::parse(&b).err(), Some(BlockError::Shape("too many entries")));
    let mut b = leaf(&[]);
    b[4..8].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(Node::parse(&b).err(), Some(BlockError::Shape("node is neither INTERNAL or LEAF")));
    // Beyond the device.
    assert_eq!(bm.read(100, &NODE_VALIDATOR).err(), Some(BlockError::OutOfRange));
}

#[test]
fn a_cycle_is_an_error_not_a_hang() {
    let dev = RamDev::new(64, 512).unwrap();
    let bm = BlockManager::new(&dev);
    let mut b = leaf(&[(0, 2)]);
    b[4..8].copy_from_slice(&1u32.to_le_bytes()); // internal node pointing at itself
    bm.write(2, &mut b, &NODE_VALIDATOR, ReqFlags::empty()).unwrap();
    assert!(btree::walk(&bm, 2, 8, &mut |_| {}, &mut |_, _| Ok(())).is_err());
    assert!(btree::lookup(&bm, 2, 0, 8).is_err());
}

#[test]
fn a_btree_with_thousands_of_entries_round_trips() {
    use super::btree::MemTree;
    use super::tm::TransactionManager;
    let dev = RamDev::new(4096 * 8, 512).unwrap();
    let bm = BlockManager::new(&dev);
    let mut tm = TransactionManager::create(&bm, 4096, 0).unwrap();
    let entries: vec::Vec<(u64, u64)> = (0..5000u64).map(|k| (k * 3, k * 7 + 1)).collect();
    let mut t = MemTree::build(&mut tm, &entries).unwrap();
    t.write_dirty(&bm).unwrap();
    let root = t.root_block();
    // Two levels: 20 leaves of 252 under one internal node.
    let mut nodes = 0;
    let mut seen = vec::Vec::new();
    btree::walk(&bm, root, 8, &mut |_| nodes += 1, &mut |k, v| {
        seen.push((k, u64::from_le_bytes(v.try_into().unwrap())));
        Ok(())
    })
    .unwrap();
    assert_eq!((nodes, seen.len()), (21, 5000));
    assert_eq!(seen, entries);
    assert_eq!(btree::lookup(&bm, root, 2997, 8).unwrap().map(|v| v[0]), Some((999 * 7 + 1) as u8));
    assert_eq!(btree::lookup(&bm, root, 2998, 8).unwrap(), None);
    // Load it back and change values with shadowing after a commit.
    tm.pre_commit(&bm).unwrap();
    tm.end_transaction();
    let mut t = MemTree::load(&bm, root).unwrap();
    let old_root = t.root_block();
    t.set(&mut tm, 3 * 4321, 42).unwrap();
    t.set(&mut tm, 0, 43).unwrap();
    assert_eq!(t.set(&mut tm, 1, 0), Err(crate::errno::Errno::ENOENT));
    t.write_dirty(&bm).unwrap();
    let new_root = t.root_block();
    assert_ne!(new_root, old_root, "the root was shadowed, the committed tree is intact");
    assert_eq!(btree::lookup(&bm, old_root, 3 * 4321, 8).unwrap().map(|v| v[0]), Some((4321 * 7 + 1) as u8));
    assert_eq!(btree::lookup(&bm, new_root, 3 * 4321, 8).unwrap().map(|v| v[0]), Some(42));
    assert_eq!(btree::lookup(&bm, new_root, 0, 8).unwrap().map(|v| v[0]), Some(43));
    // Only the paths changed: root + two leaves are new blocks.
    let mut shadows = 0;
    t.for_each_node(&mut |b| shadows += tm.is_shadow(b) as u32);
    assert_eq!(shadows, 3);
}

#[test]
fn headers_pack_where_the_kernel_reads_them() {
    use super::array::{ArrayBlockHeader, ARRAY_VALIDATOR};
    use super::btree::{NodeHeader, LEAF_NODE};
    use super::space_map::{
        DiskBitmapHeader, DiskIndexEntry, DiskMetadataIndexHeader, DiskSmRoot, BITMAP_VALIDATOR, INDEX_VALIDATOR,
    };
    use crate::endian::{read_le32, read_le64, Le32, Le64, OnDisk};
    // The node header the writers pack is the one the raw-offset builder lays out.
    let raw = leaf(&[(1, 10), (5, 50)]);
    assert_eq!(NodeHeader::unpack(&raw), Some(NodeHeader::new(LEAF_NODE, 2, calc_max_entries(8), 8)));
    let mut b = [0u8; 32];
    NodeHeader { blocknr: Le64::new(0x0102_0304_0506_0708), ..NodeHeader::new(LEAF_NODE, 2, 252, 8) }
        .pack(&mut b)
        .unwrap();
    assert_eq!(read_le64(&b, NODE_VALIDATOR.blocknr_offset), Some(0x0102_0304_0506_0708));
    assert_eq!(
        (read_le32(&b, 4), read_le32(&b, 16), read_le32(&b, 20), read_le32(&b, 24)),
        (Some(2), Some(2), Some(252), Some(8))
    );
    // Array block: csum, max_entries, nr_entries, value_size, blocknr.
    let mut b = [0u8; 24];
    ArrayBlockHeader { blocknr: Le64::new(77), ..ArrayBlockHeader::new(509, 3, 8) }.pack(&mut b).unwrap();
    assert_eq!((read_le32(&b, 4), read_le32(&b, 8), read_le32(&b, 12)), (Some(509), Some(3), Some(8)));
    assert_eq!(read_le64(&b, ARRAY_VALIDATOR.blocknr_offset), Some(77));
    assert_eq!(ArrayBlockHeader::unpack(&b).unwrap().check(8), Ok(3));
    assert_eq!(ArrayBlockHeader::unpack(&b).unwrap().check(4), Err(BlockError::Shape("value_size invalid")));
    assert_eq!(ArrayBlockHeader::unpack(&b[..23]), None);
    // Space map: index and bitmap headers carry their location where the validators look.
    let mut b = [0u8; 16];
    DiskBitmapHeader { blocknr: Le64::new(9), ..Default::default() }.pack(&mut b).unwrap();
    assert_eq!(read_le64(&b, BITMAP_VALIDATOR.blocknr_offset), Some(9));
    DiskMetadataIndexHeader { blocknr: Le64::new(11), ..Default::default() }.pack(&mut b).unwrap();
    assert_eq!(read_le64(&b, INDEX_VALIDATOR.blocknr_offset), Some(11));
    let ie = DiskIndexEntry { blocknr: Le64::new(5), nr_free: Le32::new(6), none_free_before: Le32::new(7) };
    ie.pack(&mut b).unwrap();
    assert_eq!(b, [5, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 7, 0, 0, 0]);
    assert_eq!(DiskIndexEntry::unpack(&b), Some(ie));
    let root = DiskSmRoot {
        nr_blocks: Le64::new(1),
        nr_allocated: Le64::new(2),
        bitmap_root: Le64::new(3),
        ref_count_root: Le64::new(4),
    };
    let mut b = [0u8; 32];
    root.pack(&mut b).unwrap();
    assert_eq!(
        (read_le64(&b, 0), read_le64(&b, 8), read_le64(&b, 16), read_le64(&b, 24)),
        (Some(1), Some(2), Some(3), Some(4))
    );
    assert_eq!(DiskSmRoot::unpack(&b), Some(root));
    assert_eq!(root.pack(&mut b[..31]), None);
}

#[test]
fn corrupt_array_block_headers_are_errors() {
    use super::array::{ArrayBlockHeader, ARRAY_VALIDATOR};
    use super::tm::TransactionManager;
    use crate::endian::{Le32, OnDisk};
    let dev = RamDev::new(4096 * 8, 512).unwrap();
    let bm = BlockManager::new(&dev);
    let mut tm = TransactionManager::create(&bm, 4096, 0).unwrap();
    let a = super::array::DiskArray::create(&mut tm, &bm, &[1, 2, 3]).unwrap();
    let mut a = a;
    let root = a.flush(&bm).unwrap();
    let mut blocks = vec::Vec::new();
    a.for_each_block(&mut |b| blocks.push(b));
    let words = super::bitset::load(&bm, root, 3 * 64, &mut |_| {}).unwrap();
    assert_eq!(&words[..], &[1, 2, 3]);
    // The array block is the last block listed (after the btree's node).
    let ab = *blocks.last().unwrap();
    let mut raw = vec![0u8; BLOCK_SIZE];
    bm.read_raw(ab, &mut raw).unwrap();
    for (field, bad) in [(4usize, 508u32), (8, 600), (12, 4)] {
        let mut b = raw.clone();
        Le32::new(bad).pack_at(&mut b, field).unwrap();
        bm.write(ab, &mut b, &ARRAY_VALIDATOR, ReqFlags::empty()).unwrap();
        assert!(ArrayBlockHeader::unpack(&b).unwrap().check(8).is_err());
        let e = super::bitset::load(&bm, root, 3 * 64, &mut |_| {}).unwrap_err();
        assert_eq!((e.block, e.kind.errno()), (ab, crate::errno::Errno::EILSEQ));
    }
}
