"""Exception types shared by every radlens module.

Every message names the case (``case_id``), file or parameter at fault, the cause, and the fix.
"""


class RadlensError(Exception):
    """Base class for errors the user can act on (shown without a traceback by the CLI)."""


class ManifestError(RadlensError, ValueError):
    """The manifest has problems; the message lists *all* of them with row numbers."""


class InputError(RadlensError, ValueError):
    """A bad input file, parameter or case."""


class ConfigError(RadlensError, ValueError):
    """A configuration (YAML) value is missing or not allowed."""


class CaseError(RadlensError):
    """One case failed at one stage; the others proceed and it lands in a failures table."""

    def __init__(self, case_id: str, stage: str, message: str):
        self.case_id = case_id
        self.stage = stage
        self.message = message
        super().__init__(f"case {case_id!r} ({stage}): {message}")


class NothingToDo(RadlensError):
    """A stage has no input to work on for a stated, data-driven reason (e.g. no case was classified
    correctly by both checkpoints, so there is no CAM to score). A study records the stage as
    ``skipped`` with this reason instead of ``failed``."""
