"""pyradiomics' params validation, done once per params file content (a run-to-run memo).

* :func:`new_extractor`: ``RadiomicsFeatureExtractor(params)`` for a params file or dict, the file's
  pykwalify validation remembered under :func:`params_memo_dir` (:class:`validated_once`);
* :func:`lazy_pykwalify`: ``pykwalify.core`` loaded on first use instead of at ``import radiomics``.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path


def new_extractor(source, **overrides):
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    if isinstance(source, dict):
        import copy

        return RadiomicsFeatureExtractor(copy.deepcopy(source), **overrides)
    with validated_once(source):
        return RadiomicsFeatureExtractor(str(source), **overrides)


def params_memo_dir() -> Path | None:
    """Where params files pyradiomics validated are remembered (:func:`validated_once`):
    ``$RADLENS_PARAMS_MEMO`` (empty or ``0``: nowhere), else ``$XDG_CACHE_HOME/radlens/params``
    (``~/.cache/radlens/params``)."""
    d = os.environ.get("RADLENS_PARAMS_MEMO")
    if d is not None:
        return Path(d) if d.strip() not in ("", "0") else None
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "radlens" / "params"


_MEMO_LOCK = threading.Lock()


class validated_once:
    """Context around ``RadiomicsFeatureExtractor(path)``: pyradiomics' schema validation (pykwalify:
    the schema and the file parsed by a pure-Python YAML parser, ~30 ms per run) is done once per
    params file content, pyradiomics version and schema files. What the validation returned (the
    parsed file, which pyradiomics then applies with its own code) is remembered as JSON under
    :func:`params_memo_dir`; a file with a memo is not parsed or validated again, a file that fails
    validation is never remembered (the same error every time), and a file whose parsed content
    JSON cannot hold exactly (types, key types) is not remembered either."""

    def __init__(self, source):
        self.source = str(source)

    def __enter__(self):
        self.patched = False
        d = params_memo_dir()
        if d is None:
            return self
        import json

        import radiomics
        from radiomics import featureextractor as fe

        from radlens.io.artifacts import bytes_hash

        try:
            schema, funcs = radiomics.getParameterValidationFiles()
            key = bytes_hash(b"\0".join([Path(self.source).read_bytes(), str(radiomics.__version__).encode(),
                                         Path(schema).read_bytes(), Path(funcs).read_bytes()]))
        except OSError:
            return self
        self.path = d / f"{key}.json"
        try:
            memo = self.path.read_text(encoding="utf-8")
            if not isinstance(json.loads(memo), dict):
                memo = None
        except (OSError, ValueError):  # none yet, or unreadable: validate (and remember) again
            memo = None
        self.real = fe.pykwalify  # (its 'core' is not touched here: it may be lazy, see lazy_pykwalify)
        self.captured = captured = []

        class Core:  # what RadiomicsFeatureExtractor._applyParams calls: Core(...).validate()
            def __init__(self, *args, **kwargs):
                if memo is None:
                    import pykwalify.core

                    self.core = pykwalify.core.Core(*args, **kwargs)
                else:
                    self.core = None

            def validate(self, *args, **kwargs):
                if self.core is None:
                    return json.loads(memo)
                out = self.core.validate(*args, **kwargs)
                captured.append(out)
                return out

        from types import SimpleNamespace

        _MEMO_LOCK.acquire()  # featureextractor's own name 'pykwalify' (pykwalify itself untouched)
        fe.pykwalify = SimpleNamespace(core=SimpleNamespace(Core=Core, log=logging.getLogger("pykwalify.core")))
        self.patched = True
        self.fe = fe
        return self

    def __exit__(self, exc_type, *rest):
        if not self.patched:
            return False
        self.fe.pykwalify = self.real
        _MEMO_LOCK.release()
        if exc_type is None and len(self.captured) == 1:
            import json

            try:
                text = json.dumps(self.captured[0])
                if json_exact(self.captured[0], json.loads(text)):
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}")
                    tmp.write_text(text, encoding="utf-8")
                    os.replace(tmp, self.path)
            except (OSError, TypeError, ValueError):  # unwritable folder, not JSON: validate next time
                pass
        return False


def lazy_pykwalify() -> None:
    """Make ``pykwalify.core`` (with the YAML and date parsers it imports: ~20 ms) load on first
    use instead of when pyradiomics is imported: a run whose params validation is remembered
    (:class:`validated_once`) never uses it. Call before the first ``import radiomics``; no-op
    when either is already imported. Until then ``pykwalify.core`` is a stand-in module whose
    first attribute lookup imports the real one (which then replaces it everywhere); importing it
    by name works as usual (``importlib.util.LazyLoader`` cannot do this on Python 3.11: the import
    statement itself reads the module's ``__spec__`` and so loads it)."""
    import importlib
    import importlib.util
    import sys
    import types

    if "pykwalify.core" in sys.modules or "radiomics" in sys.modules:
        return
    try:
        import pykwalify

        spec = importlib.util.find_spec("pykwalify.core")
    except ImportError:
        return
    if spec is None:
        return
    stub = types.ModuleType("pykwalify.core")
    stub.__spec__ = spec

    def __getattr__(name):
        if sys.modules.get("pykwalify.core") is stub:
            del sys.modules["pykwalify.core"]
        real = importlib.import_module("pykwalify.core")  # also sets pykwalify.core = real
        return getattr(real, name)

    stub.__getattr__ = __getattr__
    sys.modules["pykwalify.core"] = stub
    pykwalify.core = stub


def json_exact(a, b) -> bool:
    """``a`` and its JSON round trip ``b`` are the same values of the same types, keys in order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(json_exact(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(json_exact(x, y) for x, y in zip(a, b))
    return a == b
