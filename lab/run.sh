#!/usr/bin/env bash
# run.sh [SCENARIO...]: runs each scenario (default: scenarios/*.dmrs) on the
# real kernel in qemu (runner a) and on dmrs over files (runner b), and
# compares what they print (status, table, echo lines, byte for byte) and,
# for deterministic scenarios, the final disk images. A scenario with
# `#! handoff` runs both ways: dmrs then kernel, and kernel then dmrs.
# Ends with "N passed, M failed"; exits 1 if any failed.
# DMRS: the dmrs binary (default target/release/dmrs); LAB_OUT: keep results there.
set -uo pipefail
LAB=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$LAB")
DMRS=${DMRS:-$ROOT/target/release/dmrs}
OUT=${LAB_OUT:-$(mktemp -d /tmp/dmrs-lab.XXXXXX)}
mkdir -p "$OUT"
(($#)) || set -- "$LAB"/scenarios/*.dmrs
pass=0 failed=0 failures=()

# guest SCENARIO PART DIR OUTFILE: run a part in the kernel on DIR's disks.
guest() {
    local sc=$1 part=$2 dir=$3 out=$4 disks=()
    "$DMRS" lab guest "$sc" --part "$part" > "$dir/.guest$part.sh" || return 1
    while read -r d; do disks+=("$dir/$d"); done < <("$DMRS" lab disks "$sc")
    "$LAB/vm.sh" "$dir/.guest$part.sh" "${disks[@]}" > "$dir/.console$part.log" 2>&1
    local rc=$?
    sed -n '/=== LAB TEST START/,/^=== LAB TEST EXIT/p' "$dir/.console$part.log" | sed '1d;$d' > "$out"
    sed -n '/^=== LAB KLOG/,$p' "$dir/.console$part.log" | sed '1d' > "$dir/.klog$part"
    if [ $rc != 0 ]; then
        echo "  kernel run failed (rc=$rc); console tail:"; tail -15 "$dir/.console$part.log" | sed 's/^/    /'
        return 1
    fi
    # Every persistent COW and clone metadata the kernel left must pass dmrs's checks.
    for d in "${disks[@]}"; do
        if [ "$(head -c 4 "$d")" = SnAp ] && ! "$DMRS" cow check "$d" > "$d.check" 2>&1; then
            echo "  dmrs cow check fails on the kernel's $(basename "$d"):"; sed 's/^/    /' "$d.check"; return 1
        fi
        if [ "$(od -An -tx8 -j32 -N8 "$d" | tr -d ' ')" = 000000008af27f64 ] && ! "$DMRS" clone check "$d" > "$d.check" 2>&1; then
            echo "  dmrs clone check fails on the kernel's $(basename "$d"):"; sed 's/^/    /' "$d.check"; return 1
        fi
    done
}

# host SCENARIO PART DIR OUTFILE: run a part with dmrs on DIR's disks.
host() {
    "$DMRS" lab host "$1" "$3" --part "$2" > "$4" 2> "$3/.dmrs$2.err"
    local rc=$?
    if [ $rc != 0 ]; then echo "  dmrs run failed (rc=$rc):"; sed 's/^/    /' "$3/.dmrs$2.err"; return 1; fi
}

same_out() { # same_out A B what
    if ! cmp -s "$1" "$2"; then
        echo "  $3 differ (kernel '<', dmrs '>' unless noted):"; diff "$1" "$2" | head -30 | sed 's/^/    /'
        return 1
    fi
}

same_disks() { # same_disks SCENARIO DIR_A DIR_B
    local ok=0
    while read -r d; do
        if ! cmp -s "$2/$d" "$3/$d"; then
            echo "  disk $d differs: $(cmp "$2/$d" "$3/$d" 2>&1 | head -1)"; ok=1
        fi
    done < <("$DMRS" lab disks --compared "$1")
    return $ok
}

for sc in "$@"; do
    name=$(basename "$sc" .dmrs)
    t0=$(date +%s)
    info=$("$DMRS" lab info "$sc") || { failed=$((failed+1)); failures+=("$name"); continue; }
    ok=0
    if [[ $info == *handoff=1* ]]; then
        A=$OUT/$name.dmrs-then-kernel B=$OUT/$name.kernel-then-dmrs
        rm -rf "$A" "$B"
        "$DMRS" lab prepare "$sc" "$A" && "$DMRS" lab prepare "$sc" "$B" || ok=1
        host "$sc" 1 "$A" "$A/out1" && guest "$sc" 2 "$A" "$A/out2" || ok=1
        guest "$sc" 1 "$B" "$B/out1" && host "$sc" 2 "$B" "$B/out2" || ok=1
        if [ $ok = 0 ]; then
            same_out "$B/out1" "$A/out1" "part 1 outputs" || ok=1
            same_out "$A/out2" "$B/out2" "part 2 outputs" || ok=1
            [[ $info == *deterministic=1* ]] && { same_disks "$sc" "$A" "$B" || ok=1; }
        fi
    else
        K=$OUT/$name.kernel D=$OUT/$name.dmrs
        rm -rf "$K" "$D"
        "$DMRS" lab prepare "$sc" "$K" && "$DMRS" lab prepare "$sc" "$D" || ok=1
        guest "$sc" 1 "$K" "$K/out" || ok=1
        host "$sc" 1 "$D" "$D/out" || ok=1
        if [ $ok = 0 ]; then
            same_out "$K/out" "$D/out" "outputs" || ok=1
            [[ $info == *deterministic=1* ]] && { same_disks "$sc" "$K" "$D" || ok=1; }
        fi
    fi
    if [ $ok = 0 ]; then
        pass=$((pass+1)); echo "PASS $name ($(( $(date +%s) - t0 ))s) equal"
    else
        failed=$((failed+1)); failures+=("$name"); echo "FAIL $name ($(( $(date +%s) - t0 ))s) differs"
    fi
done
if ((failed)); then
    echo "lab: failed: ${failures[*]}; results in $OUT"
elif [ -z "${LAB_OUT:-}" ]; then
    rm -rf "$OUT"
else
    echo "lab: results in $OUT"
fi
echo "$pass passed, $failed failed"
[ $failed = 0 ]
