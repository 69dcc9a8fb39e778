"""Per-module mutation scores from the last `mutmut run`; exit 1 if a module is below the target.

    mutmut run && python scripts/mutation_scores.py [--min 90]

A mutant counts as caught when a test failed (killed) or hung (timeout); survivors and mutants no
test reached count against the module. `mutmut show NAME` prints any one of them.
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys

CAUGHT = {"killed", "timeout"}
LINE = re.compile(r"^\s*twincnn\.(?P<module>[\w.]+?)\.x\S*__mutmut_\d+: (?P<status>.+)$")


def scores(text: str) -> dict[str, collections.Counter]:
    by_module: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in text.splitlines():
        match = LINE.match(line)
        if match:
            by_module[match["module"]][match["status"].strip()] += 1
    return by_module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min", type=float, default=90.0, help="lowest acceptable score per module, in %%")
    args = parser.parse_args(argv)
    text = subprocess.run(["mutmut", "results", "--all", "true"], capture_output=True, text=True, check=True).stdout
    by_module = scores(text)
    if not by_module:
        print("no mutants found: run `mutmut run` first", file=sys.stderr)
        return 1
    failing = []
    for module, counts in sorted(by_module.items()):
        total = sum(counts.values())
        caught = sum(counts[s] for s in CAUGHT)
        score = 100.0 * caught / total
        others = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s not in CAUGHT)
        print(f"{module:12s} {caught:4d}/{total:<4d} caught = {score:5.1f} %" + (f"  ({others})" if others else ""))
        if score < args.min:
            failing.append(module)
    if failing:
        print(f"below {args.min:g} %: {', '.join(failing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
