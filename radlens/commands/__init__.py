"""One module per sub-command (nibabel-style thin command layer).

Each module defines:

``NAME``  the sub-command name (``"fit-pre"``),
``HELP``  one line for ``radlens --help``,
``add_arguments(parser)``  registers its arguments,
``run(args) -> int``  parses nothing else: it calls one library function of the same name.

Modules here must import only the standard library at top level (``radlens --help`` must answer
in about a second); heavy imports go inside ``run``.
"""

import argparse


def floats(text: str) -> list[float]:
    """argparse ``type`` for comma-separated numbers (``"10,25"`` -> ``[10.0, 25.0]``)."""
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
