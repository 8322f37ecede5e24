#!/usr/bin/env python3
"""Summarises Autobahn|Testsuite index.json reports; exits 1 if any case is not OK/INFORMATIONAL."""
import collections
import json
import sys

PASS = {"OK", "INFORMATIONAL"}
total = collections.Counter()
failed = []
for path in sys.argv[1:]:
    for agent, cases in json.load(open(path)).items():
        for case, result in cases.items():
            verdict = (result["behavior"], result["behaviorClose"])
            total[verdict] += 1
            if not set(verdict) <= PASS:
                failed.append((case, *verdict))
print(f"{sum(total.values())} cases: " + ", ".join(f"{b}/{c}: {n}" for (b, c), n in sorted(total.items())))
for case, behavior, close in sorted(failed, key=lambda f: [int(x) for x in f[0].split(".")]):
    print(f"  {case}: {behavior} (close: {close})")
sys.exit(1 if failed else 0)
