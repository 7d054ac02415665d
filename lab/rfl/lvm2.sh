#!/usr/bin/env bash
# rfl/lvm2.sh [TEST...]: lvm2 2.03.16's own test suite (Debian's source
# package) on our Rust-enabled kernel, once with the C targets
# (dm-snapshot.ko) and once with dm_rs.ko alone under the kernel's names
# (dm-snapshot.ko deleted in the guest and `install dm-snapshot /bin/false`,
# so lvm2's `modprobe dm-snapshot` cannot bring it back).
#   - lvm2 source: `apt-get source lvm2` (deb-src bookworm) into the cache;
#     configured on the host and only the harness built (runner, not, the
#     lib/ scripts, laid out as the installed lvm2-testsuite): the guest runs
#     Debian's own lvm, dmsetup and dmeventd binaries (ndev-vanilla flavour:
#     no udev, lvm creates its nodes; dmeventd tests start their dmeventd).
#   - guest: a debootstrap'ed bookworm minbase with lvm2, dmeventd,
#     e2fsprogs, kmod, ... as an ext4 root image (qemu snapshot=on, never
#     written), a second disk with our kernel's modules, dm_rs.ko, the test
#     suite and guest-lvm2.sh, a third one the guest writes its results to.
# TEST: names from lvm2's test/shell without .sh (default: every snapshot
# test that needs no mirror, raid or thin target; LVM2_TESTS overrides).
# Prints a table test x {C, dm_rs}: pass/skip/fail/timeout, the tail of the
# log of each failure; exits 1 if a test that passes on C does not pass on
# dm_rs, or if a guest did not report. LAB_OUT keeps the results.
# Everything is cached under $DMRS_LAB_CACHE/lvm2 (~/.cache/dmrs-lab/lvm2).
set -uo pipefail
RFL=$(cd "$(dirname "$0")" && pwd)
LAB=$(dirname "$RFL")
ROOT=$(dirname "$LAB")
. "$RFL/env.sh"
L=$CACHE/lvm2
LVM2_VER=2.03.16
SRC=$L/lvm2-$LVM2_VER
BUILD=$L/build
TS=$L/testsuite
export DEBIAN_FRONTEND=noninteractive

ALL_TESTS="snapshot-merge snapshot-merge-stack snapshot-usage snapshot-usage-exa
 snapshot-reactivate snapshot-remove-dmsetup snapshot-maxsize snapshot-rename
 snapshot-cluster lvcreate-small-snap lvconvert-snapshot lvextend-snapshot-policy
 lvextend-snapshot-dmeventd snapshot-autoumount-dmeventd pvscan-autoactivation-polling"
if (($#)); then tests="$*"; else tests=${LVM2_TESTS:-$ALL_TESTS}; fi
tests=$(echo $tests)

t_all=$(date +%s)
step_t=$t_all
stamp() { local now; now=$(date +%s); echo "lvm2: $1 ($((now - step_t))s)" >&2; step_t=$now; }

need=()
for p in debootstrap dpkg-dev libaio-dev libblkid-dev pkg-config g++ make e2fsprogs qemu-system-x86; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
    echo "lvm2: installing ${need[*]}" >&2
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || exit 1
fi
mkdir -p "$L"

# 1. lvm2's source, as Debian 12 ships it.
if [ ! -f "$SRC/test/lib/aux.sh" ]; then
    if ! apt-get source --print-uris -qq "lvm2=$LVM2_VER-2" >/dev/null 2>&1; then
        cat > /etc/apt/sources.list.d/dmrs-lab-src.sources <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        apt-get update -qq || exit 1
    fi
    (cd "$L" && apt-get source -qq "lvm2=$LVM2_VER-2" > source.log 2>&1) || { cat "$L/source.log"; exit 1; }
    stamp "lvm2 source"
fi

# 2. The harness, configured like Debian's lvm2 (same pid and run dirs),
#    installed into $TS as the lvm2-testsuite package would be.
if [ ! -e "$TS/.done" ]; then
    rm -rf "$BUILD" "$TS"; mkdir -p "$BUILD"
    (cd "$BUILD" && "$SRC/configure" --prefix=/usr --libdir=/lib/x86_64-linux-gnu --sbindir=/sbin \
        --with-usrlibdir=/usr/lib/x86_64-linux-gnu --with-default-pid-dir=/run \
        --with-default-run-dir=/run/lvm --with-default-locking-dir=/run/lock/lvm \
        --enable-cmdlib --enable-dmeventd --enable-lvmpolld --disable-readline \
        --disable-selinux --with-thin=none --with-cache=none > configure.log 2>&1) ||
        { tail -20 "$BUILD/configure.log"; exit 1; }
    make -C "$BUILD/tools" .commands > "$BUILD/make.log" 2>&1 &&
    make -C "$BUILD/test" lib/not lib/runner lib/paths-installed lib/version-expected \
        lib/dm-version-expected lib/check lib/aux lib/inittest lib/utils lib/get \
        lib/lvm-wrapper lib/flavour-ndev-vanilla >> "$BUILD/make.log" 2>&1 ||
        { tail -20 "$BUILD/make.log"; exit 1; }
    share=$TS/usr/share/lvm2-testsuite exe=$TS/usr/libexec/lvm2-testsuite
    mkdir -p "$share/shell" "$share/lib" "$share/api" "$exe" "$TS/usr/bin"
    cp "$SRC"/test/shell/*.sh "$share/shell/"
    b=$BUILD/test/lib
    cp "$b/paths-installed" "$share/lib/paths"
    cp "$b"/{flavour-ndev-vanilla,check,aux,inittest,utils,get,lvm-wrapper,version-expected,dm-version-expected} "$share/lib/"
    cp "$SRC/test/lib/mke2fs.conf" "$share/lib/"
    for p in cache-mq cache-smq thin-performance lvmdbusd; do cp "$SRC/conf/$p.profile" "$share/lib/"; done
    for c in lvm $(cat "$BUILD/tools/.commands"); do ln -sf lvm-wrapper "$share/lib/$c"; done
    cp "$b/not" "$exe/"
    for c in invalid fail should; do ln -sf not "$exe/$c"; done
    cp "$b/runner" "$TS/usr/bin/lvm2-testsuite"
    touch "$TS/.done"
    stamp "lvm2 test harness built"
fi

# 3. The guest's root: Debian 12 minbase with what the suite runs.
if [ ! -e "$L/root.img.done" ]; then
    rm -rf "$L/rootfs" "$L/root.img"
    for try in 1 2; do
        debootstrap --variant=minbase \
            --include=lvm2,dmeventd,e2fsprogs,kmod,procps,psmisc,gawk,libstdc++6,libaio1,lsof \
            bookworm "$L/rootfs" http://deb.debian.org/debian > "$L/debootstrap.log" 2>&1 && break
        [ $try = 2 ] && { tail -20 "$L/debootstrap.log"; exit 1; }
        rm -rf "$L/rootfs"; sleep 10
    done
    chroot "$L/rootfs" apt-get clean
    rm -rf "$L/rootfs/var/lib/apt/lists/"*
    mkdir -p "$L/rootfs/lab"
    cat > "$L/rootfs/sbin/lab-init" <<'EOF'
#!/bin/sh
mount -t devtmpfs dev /dev 2>/dev/null
mount -t ext4 /dev/vdb /lab && exec /bin/bash /lab/guest.sh
echo "LVM2LAB: cannot mount /lab"
EOF
    chmod +x "$L/rootfs/sbin/lab-init"
    mkfs.ext4 -q -F -L lvm2root -d "$L/rootfs" "$L/root.img" 1G > /dev/null || exit 1
    touch "$L/root.img.done"
    stamp "guest root image (debootstrap bookworm minbase)"
fi

# 4. Our kernel and dm_rs.ko.
if [ -n "${LVM2_KOUT:-}" ]; then KOUT=$LVM2_KOUT  # another built kernel tree (debugging)
else KOUT=$("$RFL/build-kernel.sh" release | tail -1) || { echo "lvm2: kernel build failed" >&2; exit 1; }; fi
make -s -C "$ROOT/rust-for-linux" KDIR="$KOUT" >&2 || { echo "lvm2: dm_rs.ko build failed" >&2; exit 1; }
stamp "kernel and dm_rs.ko"

OUT=${LAB_OUT:-$(mktemp -d /tmp/dmrs-lvm2.XXXXXX)}
mkdir -p "$OUT"
W=$(mktemp -d /tmp/dmrs-lvm2-stage.XXXXXX)
trap 'rm -rf "$W"' EXIT
kver=$(ls "$KOUT/modroot/lib/modules")
mkdir -p "$W/lab/modules"
cp -a "$KOUT/modroot/lib/modules/$kver" "$W/lab/modules/"
rm -f "$W/lab/modules/$kver/build" "$W/lab/modules/$kver/source"
cp "$ROOT/rust-for-linux/dm_rs.ko" "$W/lab/"
cp -a "$TS" "$W/lab/testsuite"
cp "$RFL/guest-lvm2.sh" "$W/lab/guest.sh"
only="" ntests=0
for t in $tests; do
    ntests=$((ntests + 1))
    [ -f "$SRC/test/shell/$t.sh" ] || { echo "lvm2: no test $t in lvm2 $LVM2_VER" >&2; exit 1; }
    only+="${only:+,}shell/$t.sh"
done
echo "$only" > "$W/lab/tests"
mkfs.ext4 -q -F -d "$W/lab" "$W/lab.img" 256M > /dev/null || exit 1

# run MODE: the tests in one guest, results in $OUT/MODE; after a test
# that hung, a fresh guest runs the rest (lvm2.skip=: how many are done).
run() {
    local mode=$1 d=$OUT/$1 t0 done=0 part=0 n
    t0=$(date +%s)
    rm -rf "$d"; mkdir -p "$d/results"
    while [ $done -lt $ntests ]; do
        part=$((part + 1))
        rm -f "$d/out.img"; truncate -s 64M "$d/out.img"
        timeout "${LVM2_GUEST_TIMEOUT:-$((180 + 150 * ntests))}" qemu-system-x86_64 -accel tcg -m 2048 -smp 2 -cpu max \
            -nographic -no-reboot -nodefaults -serial stdio -monitor none \
            -kernel "$KOUT/arch/x86/boot/bzImage" \
            -append "console=ttyS0 root=/dev/vda rw rootfstype=ext4 init=/sbin/lab-init panic=-1 quiet loglevel=4 mitigations=off lvm2.mode=$mode lvm2.skip=$done lvm2.timeout=${LVM2_TIMEOUT:-180}${LVM2_VERBOSE:+ lvm2.verbose}" \
            -drive "file=$L/root.img,format=raw,if=virtio,snapshot=on" \
            -drive "file=$W/lab.img,format=raw,if=virtio,snapshot=on" \
            -drive "file=$d/out.img,format=raw,if=virtio,cache=writeback" \
            </dev/null >> "$d/console.raw" 2>&1
        tr -d '\r' < "$d/console.raw" > "$d/console.log"
        (cd "$d" && tar -xf out.img 2>/dev/null) && rm -f "$d/out.img"
        if ! grep -q '^=== LVM2LAB DONE' "$d/console.log" || [ ! -f "$d/results/list.$done" ]; then
            echo "lvm2: the $mode guest (part $part) did not finish; console tail:"
            tail -30 "$d/console.log" | sed 's/^/    /'
            return 1
        fi
        n=$(wc -l < "$d/results/list.$done")
        [ "$n" -gt 0 ] || { echo "lvm2: the $mode guest (part $part) ran no test"; return 1; }
        done=$((done + n))
        grep -q ' hung$' "$d/results/list.$((done - n))" && [ $done -lt $ntests ] &&
            echo "lvm2: $mode: a test hung; a fresh guest runs the remaining $((ntests - done))"
    done
    cat "$d"/results/list.* > "$d/results/list"
    rm -f "$d/console.raw"
    echo "lvm2: $mode: $(( $(date +%s) - t0 ))s ($part guest(s))"
}

# status MODE TEST: the runner's verdict, shortened; from the console when
# the guest did not finish (a test that never reported: "hung").
status() {
    local s
    if [ ! -d "$OUT/$1" ]; then echo "-"; return; fi   # that side was not run
    if [ -f "$OUT/$1/results/list" ]; then
        s=$(awk -v id="ndev-vanilla:shell/$2.sh" '$1==id{print $2}' "$OUT/$1/results/list")
    else
        s=$(sed -n "s|^###  *\([a-z]*\): \[ndev-vanilla\] shell/$2.sh\$|\1|p" "$OUT/$1/console.log" | tail -1)
        s=${s:-hung}
    fi
    case $s in passed) echo pass;; skipped) echo skip;; failed) echo FAIL;; warnings) echo warn;;
        timeout) echo TIMEOUT;; hung) echo HUNG;; "") echo none;; *) echo "$s";; esac
}

guest_ok=0
modes=${LVM2_MODES:-c rs}
if [[ " $modes " == *" c "* ]]; then
    echo "=== lvm2 $LVM2_VER test suite, C targets (dm-snapshot.ko)"
    run c || guest_ok=1
fi
if [[ " $modes " == *" rs "* ]]; then
    echo "=== lvm2 $LVM2_VER test suite, dm_rs.ko alone under the kernel's names"
    run rs || guest_ok=1
fi

# Which module served each run (from the guest, after the tests).
for m in c rs; do
    f=$OUT/$m/results/served.0.txt
    [ -f "$f" ] || continue
    mods=$(sed -n '/^-- after: lsmod/,/^-- after: dmsetup/p' "$f" | grep -Ev '^--' | tr '\n' ' ')
    snap=$(sed -n '/^-- after: dmsetup targets/,/^-- after: modprobe/p' "$f" | grep -E '^snapshot ' | tr -s ' ')
    echo "served ($m): modules: ${mods:-none}; $snap"
done

bad=0
printf '\n%-32s %-6s %-6s\n' test C dm_rs
for t in $tests; do
    c=$(status c "$t") r=$(status rs "$t")
    mark=""
    if [ "$c" = pass ] && [ "$r" != pass ] && [ "$r" != - ]; then mark="  <-- passes on C only"; bad=1; fi
    printf '%-32s %-6s %-6s%s\n' "$t" "$c" "$r" "$mark"
done
for m in c rs; do
    for t in $tests; do
        s=$(status $m "$t")
        case $s in pass|skip|-) continue;; esac
        log=$OUT/$m/results/$t/ndev-vanilla:shell_$t.sh.txt
        [ -f "$log" ] || log=$OUT/$m/console.log
        echo; echo "--- $t on $m: $s; tail of $log"
        # the end of the test itself, then the status lines the harness dumped
        grep -v -E '## (Line|LSLR|DEBUG0|LVMCONF)' "$log" | sed '/<======== Info/,$d' |
            tail -"${LVM2_TAIL:-40}" | sed 's/^/    /'
        grep -E '## DMSTATUS' "$log" | sed 's/^/    /'
        b=$OUT/$m/results/$t/blocked.txt
        if [ -f "$b" ]; then
            echo "    blocked tasks (sysrq w), from $b:"
            sed -n '/sysrq: Show Blocked State/,$p' "$b" | grep -E 'task:|Workqueue|dm_rs|dm_|dmrs' |
                sed 's/^\[[ 0-9.]*\] //' | head -40 | sed 's/^/      /'
        fi
    done
done
echo "lvm2: total $(( $(date +%s) - t_all ))s; results in $OUT"
[ $guest_ok = 0 ] && [ $bad = 0 ]
