#!/usr/bin/env bash
# build-kernel.sh [release|debug]: builds our Rust-enabled 6.12.117 guest
# kernel from Debian's linux-source-6.12 into the cache, keyed by the hash of
# the config fragments and this script, so a second run only checks.
# Prints the build directory (KOUT) on its last line.
#   tinyconfig + rfl.config (+ debug.config for "debug") + olddefconfig
#   rustc-web 1.96 (/usr/bin/rustc), rust-web-src, bindgen-cli 0.73.2
set -euo pipefail
RFL=$(cd "$(dirname "$0")" && pwd)
. "$RFL/env.sh"
variant=${1:-release}
export DEBIAN_FRONTEND=noninteractive

need=()
for p in linux-source-6.12 rustc-web rust-web-src libclang-dev clang flex bison bc \
         libelf-dev libssl-dev cpio kmod make gcc; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
    echo "rfl: installing ${need[*]}" >&2
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian 12's bindgen is 0.60 (too old for 6.12); the lab recipe pins 0.73.2.
if [ ! -x "$BINDGEN_BIN" ]; then
    echo "rfl: cargo install bindgen-cli 0.73.2" >&2
    cargo install --locked bindgen-cli --version 0.73.2 --root "$(dirname "$(dirname "$BINDGEN_BIN")")" >&2
fi

frags=("$RFL/rfl.config")
[ "$variant" = debug ] && frags+=("$RFL/debug.config")
key=$(cat "${frags[@]}" "$RFL/build-kernel.sh" "$RFL/env.sh" | md5sum | cut -c1-12)
KOUT=$RFL_CACHE/build-$variant-$key
if [ -e "$KOUT/.done" ]; then echo "$KOUT"; exit 0; fi

if [ ! -f "$KSRC/Makefile" ]; then
    mkdir -p "$(dirname "$KSRC")"
    tar -C "$(dirname "$KSRC")" -xf /usr/src/linux-source-6.12.tar.xz
fi
rm -rf "$KOUT"; mkdir -p "$KOUT"
start=$(date +%s)
{
    kmake rustavailable
    kmake ARCH=x86_64 tinyconfig
    (cd "$KSRC" && scripts/kconfig/merge_config.sh -m -O "$KOUT" "$KOUT/.config" "${frags[@]}")
    kmake olddefconfig
} >&2
for o in RUST MODULES BLK_DEV_DM DM_SNAPSHOT DM_CLONE VIRTIO_BLK SMP; do
    grep -Eq "^CONFIG_$o=[ym]" "$KOUT/.config" || { echo "rfl: CONFIG_$o not enabled" >&2; exit 1; }
done
if [ "$variant" = debug ]; then
    grep -q '^CONFIG_PROVE_LOCKING=y' "$KOUT/.config" || { echo "rfl: no lockdep" >&2; exit 1; }
fi
kmake -j"$(nproc)" >&2
kmake INSTALL_MOD_PATH="$KOUT/modroot" modules_install >&2
echo "rfl: $variant kernel built in $(( $(date +%s) - start ))s" >&2
touch "$KOUT/.done"
echo "$KOUT"
