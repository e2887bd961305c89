"""``make bench``: run every benchmark module under bench/ (``bench_*.py``)."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import bench


def main() -> int:
    names = sorted(
        info.name for info in pkgutil.iter_modules(bench.__path__) if info.name.startswith("bench_")
    )
    wanted = set(sys.argv[1:])
    ran = 0
    for name in names:
        if wanted and name not in wanted:
            continue
        print(f"== {name}", flush=True)
        importlib.import_module(f"bench.{name}").main()
        ran += 1
    if not ran:
        print("no benchmarks yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
