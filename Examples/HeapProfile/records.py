# records.py: a small CPython workload for the README's heap profile (gomalloc profile):
# records built, serialised to JSON and parsed back, then indexed; gomalloc_profile_dump
# (through ctypes: the drop-in library is in the process) writes the heap of that moment.
import collections, ctypes, json, sys
records = [{"id": i, "name": "user%d" % i, "tags": ["t%d" % (i % 7), "t%d" % (i % 11)]} for i in range(100000)]
text = json.dumps(records)
back = json.loads(text)
index = collections.defaultdict(list)
for r in back:
    index[r["tags"][0]].append(r["id"])
del records, text
# The heap of this moment, while `back` and `index` are live (the exit profile shows them freed).
ctypes.CDLL(None).gomalloc_profile_dump(sys.argv[1].encode())
