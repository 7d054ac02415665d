#!/usr/bin/env bash
# Installs what the lab needs from Debian's packages and builds what Debian
# does not ship, into the cache (outside the repo):
#   $DMRS_LAB_CACHE (default ~/.cache/dmrs-lab)/kernel   stock 6.12.117 image + modules, extracted
#   .../kernel/lib/modules/$KVER/extra/dm-clone.ko        built from linux-source-6.12
#   .../base.cpio.gz                                      busybox, dmsetup, DM modules, /init
# Idempotent: a second run only checks.
set -euo pipefail
LAB=$(cd "$(dirname "$0")" && pwd)
. "$LAB/env.sh"
export DEBIAN_FRONTEND=noninteractive

need=()
for p in qemu-system-x86 busybox-static cpio kmod xz-utils zstd gcc-12 make bc \
         "linux-headers-$KVER" linux-source-6.12 dmsetup e2fsprogs python3; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
    echo "lab setup: installing ${need[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

mkdir -p "$CACHE"
# The stock kernel, extracted (not installed).
if [ ! -e "$KERNEL" ]; then
    d=$(mktemp -d)
    (cd "$d" && apt-get download -qq "linux-image-$KVER-unsigned")
    dpkg-deb -x "$d"/linux-image-*.deb "$CACHE/kernel"
    rm -rf "$d"
fi

# dm-clone.ko: Debian's config has CONFIG_DM_CLONE unset.
KO=$CACHE/kernel/lib/modules/$KVER/extra/dm-clone.ko
if [ ! -e "$KO" ]; then
    src=$(mktemp -d)
    tar -C "$src" -xJf /usr/src/linux-source-6.12.tar.xz --strip-components=3 \
        --wildcards 'linux-source-6.12/drivers/md/*.h' 'linux-source-6.12/drivers/md/dm-clone-*'
    printf 'obj-m += dm-clone.o\ndm-clone-y := dm-clone-target.o dm-clone-metadata.o\n' > "$src/Kbuild"
    make -s -C "/usr/src/linux-headers-$KVER" M="$src" CC=x86_64-linux-gnu-gcc-12 modules
    install -D -m644 "$src/dm-clone.ko" "$KO"
    rm -rf "$src"
fi
depmod -b "$CACHE/kernel" "$KVER"

# The initramfs, rebuilt when its recipe changes.
stamp=$(cat "$LAB/initramfs.sh" "$LAB/rootfs.sh" "$LAB/env.sh" | md5sum | cut -c1-16)
if [ ! -e "$CACHE/base.cpio.gz" ] || [ "$(cat "$CACHE/base.stamp" 2>/dev/null)" != "$stamp" ]; then
    "$LAB/initramfs.sh"
    echo "$stamp" > "$CACHE/base.stamp"
fi
echo "lab setup: kernel $KVER, cache $CACHE"
