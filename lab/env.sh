# Sourced by the lab scripts: where things are.
KVER=${KVER:-6.12.117+deb12-amd64}
CACHE=${DMRS_LAB_CACHE:-${HOME:-/root}/.cache/dmrs-lab}
KERNEL=$CACHE/kernel/boot/vmlinuz-$KVER
