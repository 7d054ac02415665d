#!/usr/bin/env bash
# fuzz/seed.sh: seed corpora from the kernel's own images (hosted/tests/data)
# and the lab's table lines and scripts, into fuzz/corpus/<target>/.
set -eu
cd "$(dirname "$0")"
data=../hosted/tests/data
mkdir -p corpus/cow_check corpus/clone_metadata corpus/table_line corpus/script_line
for img in cow-P16 cow-P16-after-merge cowPO cowN; do
    xz -dc "$data/$img.img.xz" | head -c $((4 << 20)) > "corpus/cow_check/$img"
done
# 64 choice bytes of 0 (no checksum fixed: the image's own are valid), then the image.
{ head -c 64 /dev/zero; xz -dc "$data/clone-meta.img.xz" | head -c $((64 * 4096)); } > corpus/clone_metadata/kernel
i=0
grep -ho "table '[^']*'" ../lab/scenarios/*.dmrs | sed "s/^table '0 [0-9]* [a-z-]* //; s/'$//" | sort -u | while read -r l; do
    printf '%s' "$l" > "corpus/table_line/$i"; i=$((i+1))
done
i=0
cat ../lab/scenarios/*.dmrs | grep -v '^#' | sort -u | while read -r l; do
    printf '%s' "$l" > "corpus/script_line/$i"; i=$((i+1))
done
ls corpus/* | head -0
