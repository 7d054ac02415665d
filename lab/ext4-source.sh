# Sourced by clone-ext4.sh and rfl/clone-fs.sh: ext4_source DIR makes
# DIR/src.img, a 96 MiB ext4 (mkfs.ext4 -d, no discard, no lazy init, so
# mounting writes no more than the superblock and journal) holding a tree
# of 300 files of pseudo-random bytes and a 16 MiB pseudo-random
# /testfile (dmtest's filesystem_test: a kernel tree and 1 GiB of
# /dev/urandom on 10 GiB), DIR/tree.md5 (md5sum of every file, sorted) and
# DIR/test.md5 (the test file's md5). Deterministic: seeded.
ext4_source() {
    local dir=$1
    python3 - "$dir/tree" <<'PY' || return 1
import os, random, sys
root = sys.argv[1]
r = random.Random(1302)
for i in range(300):
    d = os.path.join(root, "linux", f"dir{i % 17}", f"sub{i % 5}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"file{i}.c"), "wb") as f:
        f.write(r.randbytes(r.choice([100, 700, 4096, 5000, 20000, 70000])))
with open(os.path.join(root, "testfile"), "wb") as f:
    f.write(r.randbytes(16 << 20))
PY
    ( cd "$dir/tree" && find . -type f | LC_ALL=C sort | xargs md5sum ) > "$dir/tree.md5"
    md5sum < "$dir/tree/testfile" | cut -c1-32 > "$dir/test.md5"
    truncate -s 96M "$dir/src.img"
    mkfs.ext4 -q -F -b 4096 -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 -d "$dir/tree" "$dir/src.img"
}
