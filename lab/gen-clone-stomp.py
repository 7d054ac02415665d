#!/usr/bin/env python3
# Writes lab/scenarios/clone-stomp.dmrs (python3 lab/gen-clone-stomp.py > lab/scenarios/clone-stomp.dmrs):
# the header below, then stamps at seeded random places and, after each step, reads
# covering every 4 KiB of the clone with the pattern it must hold.
HEADER = '''# dmtest's pattern_stomp_test (device-mapper-test-suite feature-dm-clone,
# lib/dmtest/tests/clone/consistency_tests.rb) on 4 MiB with 4 KiB
# regions: the clone reads the source; scattered whole-region stamps (1, 2,
# 3 or 8 blocks, overlapping) read back over the source; hydration (waited
# for by its event) changes nothing the clone reads; more stamps after it;
# the source is never written. Every 4 KiB of the device is checked after
# each step. Stamp offsets: random.seed(13); lab/gen-clone-stomp.py wrote this.
# dmtest hydrates with the default threshold and batch; here 256/16, to
# keep the TCG guest quick.
#! disk src.img 4M pattern=SOURCE
#! disk dest.img 4M
#! disk meta.img 4M nocompare
#! disk dest2.img 4M nocompare
#! disk meta2.img 4M nocompare
#! deterministic
'''
import random
random.seed(13)
N=1024  # 4 KiB blocks of the 4 MiB clone
state=['SOURCE']*N
out=[]
def stamp(tag, nwrites):
    for _ in range(nwrites):
        b=random.randrange(N); n=random.choice([1,1,1,2,3,8])
        n=min(n,N-b)
        p=f"{tag}{random.randrange(4)}"
        out.append(f"write cl --offset {b*4096} --pattern {p} --length {n*4096}")
        for i in range(b,b+n): state[i]=p
def verify(dev='cl', st=None):
    st = st or state
    i=0
    while i<N:
        j=i
        while j<N and st[j]==st[i]: j+=1
        out.append(f"read {dev} --offset {i*4096} --length {(j-i)*4096} --expect-pattern {st[i]}")
        i=j

print(HEADER, end="")
out.append("create cl --table '0 8192 clone meta.img dest.img src.img 8 1 no_hydration'")
out.append("# verify(0, 1): the clone reads the source")
verify()
out.append("# stamp(10), verify(0, 2)")
stamp('STOMPA',10); verify()
out.append("status cl")
out.append("# enable_hydration, wait_until_hydrated (by event), verify(0, 2)")
out.append("message cl 0 hydration_threshold 256")
out.append("message cl 0 hydration_batch_size 16")
out.append("message cl 0 enable_hydration")
out.append("wait cl 0")
out.append("events cl")
out.append("status cl")
verify()
out.append("# stamp(5), verify(0, 3)")
stamp('STOMPB',5); verify()
out.append("status cl")
out.append("remove cl")
out.append("# source_stomper.verify(0, 1): the source is unchanged, read through a")
out.append("# second clone on fresh metadata and destination")
out.append("create cl2 --table '0 8192 clone meta2.img dest2.img src.img 8 1 no_hydration'")
verify('cl2',['SOURCE']*N)
out.append("remove cl2")
print("\n".join(out))
