#!/usr/bin/env python3
"""Backends the Go loadbalancing exporter picks, computed from its documented ring.

The ring of opentelemetry-collector-contrib's loadbalancingexporter as changed
by PR #41271 (July 2025): every resolved endpoint (sorted, as the resolvers
give them) gets 100 points; point i of endpoint e sits at
crc32_ieee(e bytes + uint32 i little-endian) % 36000; a taken position is
probed forward one slot at a time (wrapping), and a point that finds no free
slot within 10 probes is left out. A trace goes to the first point at or after
crc32_ieee(trace id bytes) % 36000, wrapping to the first point.

Written apart from the Rust code so the unit test's table checks it against
an independent reading. Run: python3 go_ring.py > go_ring.txt (lines "set N endpoints..."
then "N trace-id-hex backend").
"""
import random
import zlib

POSITIONS = 36000
WEIGHT = 100
PROBES = 10


def ring(endpoints):
    taken = set()
    items = []
    for e in sorted(endpoints):
        for i in range(WEIGHT):
            pos = zlib.crc32(e.encode() + i.to_bytes(4, "little")) % POSITIONS
            probed = 0
            while pos in taken and probed < PROBES:
                pos = (pos + 1) % POSITIONS
                probed += 1
            if probed >= PROBES:
                continue
            taken.add(pos)
            items.append((pos, e))
    items.sort()
    return items


def route(items, key):
    pos = zlib.crc32(key) % POSITIONS
    for p, e in items:
        if p >= pos:
            return e
    return items[0][1]


SETS = [
    ["10.0.0.1:4317", "10.0.0.2:4317", "10.0.0.3:4317"],
    ["gateway-0.gateways:4317", "gateway-1.gateways:4317"],
    ["a", "b", "c", "d", "e"],
    ["10.1.2.3", "10.1.2.4", "10.1.2.5", "10.1.2.6"],
    ["[fd00::1]:4317", "[fd00::2]:4317"],
    ["backend:4317", "backend:4317", "other:4317"],
    [f"10.9.{i // 256}.{i % 256}:4317" for i in range(300)],
]

if __name__ == "__main__":
    rng = random.Random(41271)
    for n, s in enumerate(SETS):
        print(f"set {n} {' '.join(s)}")
    for n, s in enumerate(SETS):
        items = ring(s)
        for _ in range(12):
            tid = bytes(rng.getrandbits(8) for _ in range(16))
            print(f"{n} {tid.hex()} {route(items, tid)}")
