#!/usr/bin/env python3
"""python-churn: a real program's allocation pattern: CPython churning dicts, lists and
strings. CPython serves objects up to 512 bytes from its own pools (pymalloc) and asks
malloc for everything bigger: dict and list storage as they grow, long strings, the arenas
of pymalloc itself. The script keeps a working set of records (dicts holding strings and
lists) that it replaces round by round, builds and splits long strings, sorts, and keeps
an index dict that grows and shrinks. Every record is checked against values recomputed
from its key, and the final summary against counts kept on the side, so a misbehaving
allocator shows as a wrong answer (exit status 3), not a fast one.

Arguments (key=value, like the C workloads): rounds, records, seed, threads (ignored).
"""
import random
import sys


def parse_args(argv):
    args = {"rounds": 40, "records": 20000, "seed": 1, "threads": 1}
    for a in argv:
        if a in ("help", "--help"):
            print("usage: python-churn.py [rounds=N] [records=N] [seed=N]")
            sys.exit(0)
        key, sep, value = a.partition("=")
        if not sep or key not in args:
            print(f"error: python-churn: unknown argument {a}", file=sys.stderr)
            sys.exit(2)
        args[key] = int(value, 0)
    return args


WORDS = [
    "alloc", "arena", "bitmap", "cache", "central", "class", "free", "heap", "large", "list",
    "mspan", "page", "pool", "radix", "scavenge", "size", "span", "sweep", "thread", "word",
]


def make_record(rng, key):
    """A record whose every field can be recomputed from its key (checked later)."""
    n = 3 + key % 17
    words = [WORDS[(key * 7 + i * 3) % len(WORDS)] for i in range(n)]
    text = "-".join(words) * (1 + key % 5)
    return {
        "key": key,
        "name": f"record-{key:08d}",
        "words": words,
        "text": text,
        "numbers": [key * i % 1009 for i in range(key % 40)],
        "tags": {w: len(w) for w in words[: 1 + key % 6]},
        "noise": rng.random(),
    }


def check_record(rec, key):
    n = 3 + key % 17
    words = [WORDS[(key * 7 + i * 3) % len(WORDS)] for i in range(n)]
    ok = (
        rec["key"] == key
        and rec["name"] == f"record-{key:08d}"
        and rec["words"] == words
        and rec["text"] == "-".join(words) * (1 + key % 5)
        and rec["numbers"] == [key * i % 1009 for i in range(key % 40)]
        and rec["tags"] == {w: len(w) for w in words[: 1 + key % 6]}
    )
    if not ok:
        print(f"CORRUPTION: python-churn: record {key} differs from what was stored", file=sys.stderr)
        sys.exit(3)


def main():
    args = parse_args(sys.argv[1:])
    rng = random.Random(args["seed"])
    nrec = args["records"]
    live = {}
    next_key = 0
    for _ in range(nrec):
        live[next_key] = make_record(rng, next_key)
        next_key += 1
    checksum = 0
    word_counts = {}
    for rnd in range(args["rounds"]):
        # Replace a quarter of the working set: check and drop old records, add new ones.
        victims = rng.sample(sorted(live), nrec // 4)
        for key in victims:
            check_record(live.pop(key), key)
        for _ in range(nrec // 4):
            live[next_key] = make_record(rng, next_key)
            next_key += 1
        # A long string built and taken apart again.
        keys = sorted(live)[:: max(1, nrec // 2000)]
        blob = "\n".join(live[k]["text"] for k in keys)
        parts = blob.split("\n")
        if len(parts) != len(keys):
            print("CORRUPTION: python-churn: join/split lost lines", file=sys.stderr)
            sys.exit(3)
        for p in parts:
            for w in p.split("-"):
                word_counts[w] = word_counts.get(w, 0) + 1
        # Sorting a list of tuples, and an index dict that grows and is thrown away.
        ranked = sorted(((rec["noise"], k) for k, rec in live.items()), reverse=True)
        index = {live[k]["name"]: k for _, k in ranked[: nrec // 2]}
        for _, k in ranked[: 100]:
            if index[live[k]["name"]] != k:
                print("CORRUPTION: python-churn: index dict lost an entry", file=sys.stderr)
                sys.exit(3)
        checksum = (checksum * 31 + len(blob) + len(index) + rnd) % (1 << 61)
        del blob, parts, ranked, index
    for key, rec in live.items():
        check_record(rec, key)
    if len(live) != nrec:
        print("CORRUPTION: python-churn: working set has the wrong size", file=sys.stderr)
        sys.exit(3)
    total_words = sum(word_counts.values())
    print(f"workload=python-churn rounds={args['rounds']} records={nrec} words={total_words} "
          f"checksum={checksum:016x}")


if __name__ == "__main__":
    main()
