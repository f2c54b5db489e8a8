#!/usr/bin/env python3
"""Benchmark our model server against KServe, MLServer and a bare route: ``make bench``.

Standard library only, so it runs on the system ``python3`` before any venv
exists; ``python3 bench/run.py --help`` lists the flags, bench/README.md
explains the method.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.cli import main

if __name__ == "__main__":
    sys.exit(main())
