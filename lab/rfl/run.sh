#!/usr/bin/env bash
# rfl/run.sh [SCENARIO...]: lab runner (c). Each scenario (default:
# ../scenarios/*.dmrs) runs on our Rust-enabled kernel, in one guest, twice:
# with the C targets (dm-snapshot.ko, dm-clone.ko) on one set of disks and
# with dm_rs.ko loaded as prefix=r (rsnapshot, rsnap-origin, ...) on a second
# set; then with dmrs over files. Compared: the C and Rust outputs (status,
# table, echo lines, byte for byte, after mapping rsnapshot back to
# snapshot), the Rust output with dmrs's, and for deterministic scenarios
# every disk image, C against Rust. The guest must log no warning, no
# lockdep report, no kmemleak object, and `rmmod dm_rs` must succeed.
# RFL_VARIANT=release|debug (lockdep + kmemleak)|intree (dm_rs built in the
# kernel's tree by intree.sh); LAB_OUT keeps results;
# RFL_SKIP="name ..." reports those scenarios as SKIP (known gaps, see
# rust-for-linux/README.md "Not yet") instead of running them.
# Ends with "N passed, M failed"; exits 1 if any failed.
set -uo pipefail
RFL=$(cd "$(dirname "$0")" && pwd)
LAB=$(dirname "$RFL")
ROOT=$(dirname "$LAB")
DMRS=${DMRS:-$ROOT/target/release/dmrs}
OUT=${LAB_OUT:-$(mktemp -d /tmp/dmrs-rfl.XXXXXX)}
mkdir -p "$OUT"
(($#)) || set -- "$LAB"/scenarios/*.dmrs
variant=${RFL_VARIANT:-release}

. "$RFL/env.sh"
KOUT=$(rfl_prepare "$variant" "$OUT/base.cpio.gz") || exit 1
export LAB_KERNEL=$KOUT/arch/x86/boot/bzImage LAB_BASE=$OUT/base.cpio.gz
export LAB_APPEND="lab.prefix=r" LAB_SMP=${LAB_SMP:-2} LAB_TIMEOUT=${LAB_TIMEOUT:-600}
pass=0 failed=0 failures=()

# guest SCENARIO PART CDIR RDIR: one boot running the part with the C
# targets on CDIR's disks, then with dm_rs on RDIR's.
guest() {
    local sc=$1 part=$2 cdir=$3 rdir=$4 disks=() n=0
    while read -r d; do disks+=("$cdir/$d"); n=$((n+1)); done < <("$DMRS" lab disks "$sc")
    while read -r d; do disks+=("$rdir/$d"); done < <("$DMRS" lab disks "$sc")
    {
        echo "cat > /tmp/c.sh <<'DMRS_EOF'"
        "$DMRS" lab guest "$sc" --part "$part"
        echo "DMRS_EOF"
        echo "cat > /tmp/r.sh <<'DMRS_EOF'"
        "$DMRS" lab guest "$sc" --part "$part" --prefix r --disk-offset "$n"
        echo "DMRS_EOF"
        echo 'sh /tmp/c.sh; rc=$?; dmsetup remove_all; echo "=== LAB RUST PART (C rc=$rc)"; sh /tmp/r.sh'
    } > "$rdir/.guest$part.sh" || return 1
    "$LAB/vm.sh" "$rdir/.guest$part.sh" "${disks[@]}" > "$rdir/.console$part.log" 2>&1
    local rc=$?
    sed -n '/=== LAB TEST START/,/^=== LAB TEST EXIT/p' "$rdir/.console$part.log" | sed '1d;$d' > "$rdir/.both$part"
    sed '/^=== LAB RUST PART/,$d' "$rdir/.both$part" > "$cdir/out$part"
    sed -n '/^=== LAB RUST PART/,$p' "$rdir/.both$part" | sed '1d' > "$rdir/out$part"
    sed -n '/^=== LAB KLOG/,$p' "$rdir/.console$part.log" | sed '1d' > "$rdir/.klog$part"
    if grep -q '^=== LAB RUST PART (C rc=[1-9]' "$rdir/.both$part"; then
        echo "  C targets failed:"; tail -5 "$cdir/out$part" | sed 's/^/    /'; return 1
    fi
    if [ $rc != 0 ]; then
        echo "  dm_rs run failed (rc=$rc); console tail:"; tail -15 "$rdir/.console$part.log" | sed 's/^/    /'
        return 1
    fi
    if grep -E "$RFL_COMPLAINTS" \
        "$rdir/.console$part.log" > "$rdir/.bad$part"; then
        echo "  the guest kernel complained:"; head -20 "$rdir/.bad$part" | sed 's/^/    /'; return 1
    fi
    for d in "${disks[@]:n}"; do
        if [ "$(head -c 4 "$d")" = SnAp ] && ! "$DMRS" cow check "$d" > "$d.check" 2>&1; then
            echo "  dmrs cow check fails on dm_rs's $(basename "$d"):"; sed 's/^/    /' "$d.check"; return 1
        fi
    done
}

same_out() { # same_out A B what
    if ! cmp -s "$1" "$2"; then
        echo "  $3 differ:"; diff "$1" "$2" | head -30 | sed 's/^/    /'; return 1
    fi
}

skipped=0
for sc in "$@"; do
    name=$(basename "$sc" .dmrs)
    if [[ " ${RFL_SKIP:-} " == *" $name "* ]]; then
        echo "SKIP $name (RFL_SKIP)"; skipped=$((skipped+1)); continue
    fi
    t0=$(date +%s)
    info=$("$DMRS" lab info "$sc") || { failed=$((failed+1)); failures+=("$name"); continue; }
    C=$OUT/$name.c R=$OUT/$name.rust H=$OUT/$name.dmrs ok=0
    rm -rf "$C" "$R" "$H"
    "$DMRS" lab prepare "$sc" "$C" && "$DMRS" lab prepare "$sc" "$R" && "$DMRS" lab prepare "$sc" "$H" || ok=1
    parts=1; [[ $info == *handoff=1* ]] && parts="1 2"
    for p in $parts; do
        [ $ok = 0 ] || break
        guest "$sc" "$p" "$C" "$R" || ok=1
        "$DMRS" lab host "$sc" "$H" --part "$p" > "$H/out$p" 2> "$H/.dmrs$p.err" || { echo "  dmrs failed:"; sed 's/^/    /' "$H/.dmrs$p.err"; ok=1; }
        if [ $ok = 0 ]; then
            same_out "$C/out$p" "$R/out$p" "part $p: C ('<') and dm_rs ('>') outputs" || ok=1
            same_out "$R/out$p" "$H/out$p" "part $p: dm_rs ('<') and dmrs ('>') outputs" || ok=1
        fi
    done
    if [ $ok = 0 ] && [[ $info == *deterministic=1* ]]; then
        while read -r d; do
            cmp -s "$C/$d" "$R/$d" || { echo "  disk $d differs (C vs dm_rs): $(cmp "$C/$d" "$R/$d" 2>&1 | head -1)"; ok=1; }
        done < <("$DMRS" lab disks --compared "$sc")
    fi
    if [ $ok = 0 ]; then
        pass=$((pass+1)); echo "PASS $name ($(( $(date +%s) - t0 ))s) C = dm_rs = dmrs"
    else
        failed=$((failed+1)); failures+=("$name"); echo "FAIL $name ($(( $(date +%s) - t0 ))s)"
    fi
done
if ((failed)); then echo "rfl: failed: ${failures[*]}; results in $OUT"
elif [ -z "${LAB_OUT:-}" ]; then rm -rf "$OUT"
else echo "rfl: results in $OUT"; fi
echo "$pass passed, $failed failed, $skipped skipped"
[ $failed = 0 ]
