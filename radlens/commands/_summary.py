"""The end-of-run summary printed by ``radlens run`` and ``radlens demo`` (stdout; failures to stderr)."""
from __future__ import annotations

import sys
import textwrap


def print_summary(res) -> None:
    """Stage counts, failed stages, one verdict per analysis, the warning count, the report path."""
    import json

    counts: dict[str, int] = {}
    for s in res.stages:
        counts[s.status] = counts.get(s.status, 0) + 1
    print(f"run folder: {res.run_dir}")
    print("stages: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    for s in res.failed:
        print(f"  FAILED {s.name}: {s.error}", file=sys.stderr)
    found = res.run_dir / "findings.json"
    if res.report and found.exists():
        f = json.loads(found.read_text(encoding="utf-8"))
        print("findings:")
        for v in f.get("verdicts", []):
            print(textwrap.fill(v["text"], width=110, initial_indent="  - ", subsequent_indent="    "))
        ws = f.get("warnings", [])
        if ws:
            by: dict[str, int] = {}
            for w in ws:
                by[w["analysis"]] = by.get(w["analysis"], 0) + 1
            print(f"warnings: {len(ws)} (" + ", ".join(f"{k} {n}" for k, n in by.items())
                  + ") — listed in the Warnings box at the top of the report")
        else:
            print("warnings: none")
    if res.report:
        print(f"report: {res.report}")
