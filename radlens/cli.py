"""radlens command line: a thin layer, one sub-command per stage.

Sub-commands are discovered from :mod:`radlens.commands`; each parses its arguments and calls one
library function of the same name. The library logs, it never prints; this layer sets up logging.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from radlens import __version__


class UserError(Exception):
    """An error whose message is meant for the user (no traceback shown)."""


def _command_modules(argv: list[str] | None = None):
    """The sub-command modules; only the one ``argv`` names when it names one (a run imports and
    builds one sub-command's parser, not all of them: ``radlens --help`` lists them all)."""
    import radlens.commands as pkg

    name = _command_name(argv) if argv else None
    if name is not None and not name.startswith("_"):
        try:
            mod = importlib.import_module(f"radlens.commands.{name.replace('-', '_')}")
        except ImportError:
            mod = None
        if getattr(mod, "NAME", None) == name and hasattr(mod, "run"):
            return [mod]
    mods = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"radlens.commands.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return mods


def _command_name(argv: list[str]) -> str | None:
    """The first argument that is not one of the top-level options (the sub-command), if any."""
    for a in argv:
        if a in ("-v", "--verbose", "-q", "--quiet") or (a.startswith("-v") and set(a[1:]) == {"v"}):
            continue
        return None if a.startswith("-") else a
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser; with ``argv``, only the sub-command it names (when it names one) is
    registered (same parser for that command; ``radlens --help`` still lists every command)."""
    parser = argparse.ArgumentParser(
        prog="radlens",
        description="What did fine-tuning change inside my encoder? Radiomic lens, CAM drift, "
        "pooling probe and localization scores for medical-imaging encoders.",
        epilog="Start with `radlens demo`: a phantom cohort with planted ground truth, encoders "
        "trained on the spot, every analysis, an HTML report. `radlens COMMAND --help` for details.",
    )
    parser.add_argument("--version", action="version", version=f"radlens {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="progress detail: INFO log lines and nested progress bars (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="errors only (no warnings, no progress bars)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules([] if argv is None else argv):
        p = sub.add_parser(
            mod.NAME,
            help=mod.HELP,
            description=getattr(mod, "DESCRIPTION", mod.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


class _BarSafeHandler(logging.StreamHandler):
    """Log lines printed above a running progress bar instead of through it (``tqdm.write``)."""

    def emit(self, record):
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # never lose a log line to the bar machinery
            super().emit(record)


def _setup_logging(verbose: int, quiet: bool) -> None:
    """Default: warnings and errors, one progress bar at a time, a summary printed by the command.
    ``-v``: INFO lines and nested bars; ``-vv``: DEBUG; ``-q``: errors only, no bars.
    Third-party progress bars (transformers / huggingface_hub) stay off unless -vv."""
    import os

    level = logging.ERROR if quiet else {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    handler = _BarSafeHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    if verbose < 2:
        for noisy in ("radiomics", "distributed", "matplotlib", "PIL", "urllib3", "fsspec", "transformers",
                      "huggingface_hub", "monai"):
            logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
        # read when transformers / huggingface_hub are first imported (after this point)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error" if verbose == 0 else "warning")
    if quiet:
        os.environ["RADLENS_PROGRESS"] = "0"
    if verbose >= 1:
        os.environ.setdefault("RADLENS_PROGRESS_DEPTH", "3")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    _setup_logging(args.verbose, args.quiet)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("radlens: interrupted; finished work is kept on disk and a re-run resumes", file=sys.stderr)
        return 130
    except Exception as exc:  # user-facing errors from the library carry full context
        from radlens.errors import RadlensError

        if isinstance(exc, (RadlensError, UserError)):
            print(f"radlens {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
