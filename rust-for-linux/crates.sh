#!/usr/bin/env bash
# crates.sh: prints `DMRS_SRC_<crate>=<dir>` for the core and every crate it
# depends on (normal dependencies but loom's, Cargo.lock's versions), for the Kbuild
# rules that compile them with the kernel's rustc flags. Fetches them first.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cargo fetch --locked --manifest-path "$ROOT/Cargo.toml" >&2
cargo metadata --locked --format-version 1 --manifest-path "$ROOT/Cargo.toml" | python3 -c '
import json, os, sys
m = json.load(sys.stdin)
pk = {p["id"]: p for p in m["packages"]}
nodes = {n["id"]: n for n in m["resolve"]["nodes"]}
core = next(p for p in m["packages"] if p["name"] == "dmrs-core")
seen, todo = [], [core["id"]]
while todo:
    i = todo.pop()
    if i in seen: continue
    seen.append(i)
    for d in nodes[i]["deps"]:
        if any(k["kind"] is None and "loom" not in (k.get("target") or "") for k in d["dep_kinds"]):
            todo.append(d["pkg"])
for i in seen:
    p = pk[i]
    lib = next(t for t in p["targets"] if "lib" in t["kind"])
    print("DMRS_SRC_%s=%s" % (lib["name"], lib["src_path"]))
    print("DMRS_EDITION_%s=%s" % (lib["name"], p["edition"]))
'
