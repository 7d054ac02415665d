#!/usr/bin/env bash
# rfl/bench.sh: the snapshot and clone data paths, C targets against
# dm_rs in one 2-CPU guest on our kernel (guest-bench.sh): first-write COW
# at QD1 and with 4 writers, snapshot reads of copied and uncopied chunks,
# snapshot writes and origin overwrites of copied chunks, origin reads,
# clone hydration of 64 MiB and clone reads and writes of hydrated regions.
# Prints per case the median MB/s of each side over the rounds, the spread
# (min-max), and Rust/C; every round's data checksums must be equal.
# ROUNDS (default 5), MB (MiB per case, default 16); RFL_VARIANT=debug with
# TIMING= runs the paths once under lockdep + kmemleak without timing.
# Exits 1 when the sides differ or the kernel complains.
set -uo pipefail
RFL=$(cd "$(dirname "$0")" && pwd)
LAB=$(dirname "$RFL")
variant=${RFL_VARIANT:-release}
W=$(mktemp -d /tmp/dmrs-bench.XXXXXX)
. "$RFL/env.sh"
KOUT=$(rfl_prepare "$variant" "$W/base.cpio.gz") || exit 1
disks=()
for d in oc cc or cr mc dc mr dr src; do
    case $d in oc|cc|or|cr) size=128M;; *) size=64M;; esac
    truncate -s $size "$W/$d.img"; disks+=("$W/$d.img")
done
{
    [ -n "${TIMING-1}" ] || echo "TIMING="
    echo "ROUNDS=${ROUNDS:-5} MB=${MB:-16}"
    cat "$RFL/guest-bench.sh"
} > "$W/test.sh"
LAB_KERNEL=$KOUT/arch/x86/boot/bzImage LAB_BASE=$W/base.cpio.gz LAB_APPEND=lab.prefix=r LAB_SMP=2 \
    LAB_TIMEOUT=${LAB_TIMEOUT:-2400} "$LAB/vm.sh" "$W/test.sh" "${disks[@]}" > "$W/console.log" 2>&1
rc=$?
sed -n '/=== LAB TEST START/,/^=== LAB TEST EXIT/p' "$W/console.log" | sed '1d;$d' > "$W/out"
ok=0
[ $rc = 0 ] || { echo "guest failed (rc=$rc)"; tail -20 "$W/console.log"; ok=1; }
if grep -E "$RFL_COMPLAINTS" "$W/console.log"; then
    echo "the guest kernel complained"; ok=1
fi
# Per round, each device's checksum (and the snapshot's status) must be
# the same on both sides.
if ! diff <(awk '$1=="round"{r=$2} $1=="sum" && $2=="c"{$2=""; print r, $0}' "$W/out") \
          <(awk '$1=="round"{r=$2} $1=="sum" && $2=="r"{$2=""; print r, $0}' "$W/out"); then
    echo "C and dm_rs hold different data"; ok=1
fi
[ "$(grep -c '^sum' "$W/out")" -ge 6 ] || { echo "the guest did not finish a round"; ok=1; }
awk '
    $1=="bench" { v[$2 " " $3] = v[$2 " " $3] " " $4; if (!($2 in seen)) { seen[$2]=1; order[++n]=$2 } }
    function stats(s, out,   a, k, i, j, t) {
        k = split(s, a, " ")
        for (i = 2; i <= k; i++) for (j = i; j > 1 && a[j-1]+0 > a[j]+0; j--) { t=a[j]; a[j]=a[j-1]; a[j-1]=t }
        out["med"] = a[int((k+1)/2)]; out["min"] = a[1]; out["max"] = a[k]; out["n"] = k
    }
    END {
        if (!n) exit
        printf "%-24s %24s %24s %7s\n", "case (MB/s, median)", "C (min-max)", "dm_rs (min-max)", "Rust/C"
        for (i = 1; i <= n; i++) {
            c = order[i]; stats(v[c " c"], C); stats(v[c " r"], R)
            printf "%-24s %8.2f (%6.2f-%6.2f) %8.2f (%6.2f-%6.2f) %7.2f\n", c, C["med"], C["min"], C["max"], R["med"], R["min"], R["max"], (C["med"] > 0 ? R["med"] / C["med"] : 0)
        }
        printf "rounds: %d\n", C["n"]
    }' "$W/out"
[ $ok = 0 ] && rm -rf "$W" || echo "kept $W"
exit $ok
