"""leadflow's demo: a small sales team over 30 simulated days with the default rules and the
periodic jobs, on a SQLite file (``./leadflow-demo.sqlite``), ending with the analytics
dashboard of those days written next to it (``./leadflow-demo-report.html``). It is the
``leadflow demo`` command; this script only runs it, with the same options (``--seed``,
``--days``, ``--url``, ``--fresh``).

Run: python examples/demo.py          (needs the cli extra: pip install -e '.[cli,sql]')
"""

from __future__ import annotations

import sys

try:
    from leadflow.cli import main
except ImportError as exc:  # click or rich missing
    sys.exit(f"examples/demo.py: error: {exc}; install the cli extra: pip install -e '.[cli,sql]'")

if __name__ == "__main__":
    main(["demo", *sys.argv[1:]])
