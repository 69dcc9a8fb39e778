"""Per-module mutation scores from the last `mutmut run`; exit 1 if a module is below the target.

    mutmut run && python scripts/mutation_scores.py [--min 90]

A mutant counts as caught when a test failed (killed) or hung (timeout); survivors and mutants no
test reached count against the module. `mutmut show NAME` prints any one of them.

A file named in only_mutate without any mutant fails too. mutmut regenerates a file's mutants only when
the source is newer than its copy under mutants/, so a file added to only_mutate after a run keeps its
plain copy (and no test maps to it in mutants/mutmut-stats.json): delete that copy and the stats file.
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the check for files without mutants is skipped
    tomllib = None

CAUGHT = {"killed", "timeout"}
LINE = re.compile(r"^\s*twincnn\.(?P<module>[\w.]+?)\.x\S*__mutmut_\d+: (?P<status>.+)$")


def scores(text: str) -> dict[str, collections.Counter]:
    by_module: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in text.splitlines():
        match = LINE.match(line)
        if match:
            by_module[match["module"]][match["status"].strip()] += 1
    return by_module


def listed_modules(pyproject: Path = Path("pyproject.toml")) -> dict[str, str]:
    """Module name (as in mutant names) -> path, for each plain file named in only_mutate."""
    if tomllib is None:
        return {}
    config = tomllib.loads(pyproject.read_text())["tool"]["mutmut"]
    modules = {}
    for path in config.get("only_mutate", []):
        if path.endswith(".py") and "*" not in path:
            for root in config.get("source_paths", ["src"]):
                if path.startswith(root.rstrip("/") + "/"):
                    modules[path[len(root.rstrip("/")) + 1:-3].replace("/", ".")] = path
    return modules


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
    for module, path in sorted(listed_modules().items()):
        if module not in by_module:
            print(f"{module:12s} no mutants: delete mutants/{path} and mutants/mutmut-stats.json (a copy made "
                  f"before {path} was in only_mutate), then run mutmut again", file=sys.stderr)
            failing.append(module)
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
