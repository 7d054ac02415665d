# Guest script (run by rfl/clone-users.sh): what the scenario language
# cannot say, for the C dm-clone (T=clone) and dm_rs (T=rclone), each on
# its own three disks (source 8 MiB, destination 8 MiB, metadata 4 MiB).
# Prints, per side, lines that must be equal for C and Rust:
# 1. systemd-clonesetup's sequence (systemd src/clonesetup/clonesetup.c
#    clone_device() and clonesetup-ioctl.c dm_clone_create_device(): table
#    "<meta> <dest> <source> <region> 1 no_hydration" over the source's
#    size, then the enable_hydration message; verb_remove(): a plain
#    remove, DM_DEFERRED_REMOVE when that is EBUSY). Hydration to the end
#    with the default threshold and batch, waited for by the event; the
#    remove while the device is held open (fd 3) fails, the deferred one
#    succeeds, the device keeps working until closed and disappears then.
# 2. dmtest's commit_on_flush (device-mapper-test-suite feature-dm-clone,
#    lib/dmtest/tests/clone/commit_tests.rb do_commit_checks, flush=true,
#    by a write and by a discard): hydrating a region then flushing the
#    clone writes the metadata device and rewrites its superblock; writing
#    the hydrated region and flushing writes nothing to it; nor does
#    anything once every region is hydrated. Observed with the metadata
#    disk's /sys/block/<disk>/stat write count and its superblock's bytes.
export DM_DISABLE_UDEV=1
pat() { yes "$(printf "%-15.15s" "$1")" | head -c "$2"; }
fail() { echo "FAILED: $*"; exit 1; }
st() { dmsetup status "$1" | cut -d' ' -f4-; }          # without "0 LEN <target>"
mwrites() { set -- $(cat /sys/block/$M/stat); echo "$5"; }  # write I/Os done by the metadata disk
sb() { dd if=/dev/$M bs=4096 count=1 iflag=direct 2>/dev/null | md5sum | cut -c1-32; }
flush() { dd if=/dev/null of=/dev/mapper/$1 conv=notrunc,fsync 2>/dev/null; }  # fsync: REQ_PREFLUSH
# commit? DEV WHAT CMD...: runs CMD then flushes DEV; prints whether the
# metadata disk was written and whether its superblock changed.
commit() {
    d=$1 what=$2; shift 2
    w0=$(mwrites) s0=$(sb)
    "$@" || fail "$what: $*"
    flush "$d"
    w1=$(mwrites) s1=$(sb)
    echo "$what: metadata written $([ "$w1" -gt "$w0" ] && echo yes || echo no), superblock $([ "$s1" != "$s0" ] && echo rewritten || echo unchanged)"
}
wr() { pat "$2" "$4" | dd of=/dev/mapper/$1 bs=4096 seek=$(($3/4096)) oflag=direct 2>/dev/null; }
wipe_meta() { dd if=/dev/zero of=/dev/$M bs=4096 count=1 oflag=direct 2>/dev/null; }

run() { # run TARGET SRC DEST META (disk names)
    T=$1 S=$2 D=$3 M=$4
    # --- 1. systemd-clonesetup add, then remove while open
    size=$(cat /sys/block/$S/size)
    dmsetup create cl --table "0 $size $T /dev/$M /dev/$D /dev/$S 8 1 no_hydration" || fail create
    echo "created: $(st cl)"
    dmsetup message cl 0 enable_hydration || fail enable_hydration
    ev=$(dmsetup info -c --noheadings -o events cl)
    echo "events before hydration: $ev"
    dmsetup wait cl "$ev" > /dev/null || fail "wait cl $ev"
    echo "after the event: $(st cl)"
    [ "$(dd if=/dev/mapper/cl bs=1M 2>/dev/null | md5sum | cut -c1-32)" = "$(pat SOURCE $((size*512)) | md5sum | cut -c1-32)" ] \
        && echo "clone reads the source" || echo "clone does NOT read the source"
    [ "$(dd if=/dev/$D bs=1M 2>/dev/null | md5sum | cut -c1-32)" = "$(pat SOURCE $((size*512)) | md5sum | cut -c1-32)" ] \
        && echo "destination holds the source" || echo "destination does NOT hold the source"
    exec 3< /dev/mapper/cl
    dmsetup remove cl > /dev/null 2>&1 && echo "remove while open: succeeded" || echo "remove while open: refused"
    dmsetup remove --deferred cl || fail "remove --deferred"
    echo "deferred: $(dmsetup info cl | sed -n 's/^State: *//p')"
    echo "open count: $(dmsetup info -c --noheadings -o open cl)"
    [ "$(dd bs=4096 count=2 <&3 2>/dev/null | md5sum | cut -c1-32)" = "$(pat SOURCE 8192 | md5sum | cut -c1-32)" ] \
        && echo "held-open fd reads the clone" || echo "held-open fd does NOT read the clone"
    exec 3<&-
    i=0; while dmsetup info cl > /dev/null 2>&1; do i=$((i+1)); [ $i -gt 100 ] && fail "cl still there after close"; sleep 0.1; done
    echo "after close: $(dmsetup ls | grep -c '^cl\b') devices named cl"
    rm -f /dev/mapper/cl
    # --- 2. commit_on_flush, by a write then by a discard, on fresh metadata
    for how in write discard; do
        wipe_meta
        dmsetup create cl --table "0 $size $T /dev/$M /dev/$D /dev/$S 8 1 no_hydration" || fail "create ($how)"
        flush cl
        if [ $how = write ]; then
            commit cl "hydrate region 0 by a write + flush" wr cl FIRST 0 4096
        else
            commit cl "hydrate region 0 by a discard + flush" blkdiscard -o 0 -l 4096 /dev/mapper/cl
        fi
        commit cl "write hydrated region 0 + flush" wr cl AGAIN 0 4096
        commit cl "flush alone" true
        echo "$how: $(st cl)"
        dmsetup remove cl || fail "remove ($how)"
    done
    # --- none once every region is hydrated (the metadata of the last
    # loop: region 0 discarded; hydrate the rest)
    dmsetup create cl --table "0 $size $T /dev/$M /dev/$D /dev/$S 8 0 2 hydration_threshold 256" || fail "create (all)"
    i=0; while :; do set -- $(dmsetup status cl); [ "${7%/*}" = "${7#*/}" ] && [ "$8" = 0 ] && break
        i=$((i+1)); [ $i -gt 3000 ] && fail "hydration: $*"; sleep 0.1; done
    flush cl; sleep 1.2; flush cl   # past the periodic commit too
    commit cl "all hydrated: write region 100 + flush" wr cl LATE 409600 4096
    commit cl "all hydrated: discard region 200 + flush" blkdiscard -o 819200 -l 4096 /dev/mapper/cl
    commit cl "all hydrated: flush alone" true
    echo "all hydrated: $(st cl)"
    dmsetup remove cl || fail "remove (all)"
}
pat SOURCE 8388608 > /dev/vda; pat SOURCE 8388608 > /dev/vdd
echo "== C"; run clone vda vdb vdc
echo "== dm_rs"; run rclone vdd vde vdf
