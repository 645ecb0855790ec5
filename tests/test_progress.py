"""Quiet console: one radlens progress bar at a time by default, nested ones with -v."""
import io

from radlens.progress import progress


def test_nested_bars_hidden_by_default(monkeypatch):
    monkeypatch.setenv("RADLENS_PROGRESS", "1")
    monkeypatch.delenv("RADLENS_PROGRESS_DEPTH", raising=False)
    err = io.StringIO()
    shown = []
    outer = progress(range(2), desc="stages", file=err)
    outer_shown = not outer.disable  # (tqdm sets disable when a bar closes)
    for _ in outer:
        inner = progress(range(3), desc="cases", file=err)
        shown.append(not inner.disable)
        list(inner)
    assert outer_shown and shown == [False, False]
    assert "cases" not in err.getvalue() and "stages" in err.getvalue()
    # once the outer bar is closed, the next top-level bar shows again
    nxt = progress(range(1), desc="next", file=err)
    assert not nxt.disable
    list(nxt)


def test_verbose_depth_shows_nested_bars(monkeypatch):
    monkeypatch.setenv("RADLENS_PROGRESS", "1")
    monkeypatch.setenv("RADLENS_PROGRESS_DEPTH", "3")
    err = io.StringIO()
    outer = progress(range(1), desc="stages", file=err)
    for _ in outer:
        inner = progress(range(2), desc="cases", file=err)
        assert not inner.disable
        list(inner)
    assert "cases" in err.getvalue()


def test_progress_off_switch(monkeypatch):
    monkeypatch.setenv("RADLENS_PROGRESS", "0")
    assert progress(range(2)).disable


def test_cli_default_is_quiet_and_silences_third_party_bars(monkeypatch):
    import logging

    from radlens import cli

    for var in ("HF_HUB_DISABLE_PROGRESS_BARS", "RADLENS_PROGRESS_DEPTH", "TRANSFORMERS_VERBOSITY", "RADLENS_PROGRESS"):
        monkeypatch.delenv(var, raising=False)  # restored after the test
    root = logging.getLogger()
    old = root.level, list(root.handlers)
    root.handlers.clear()
    try:
        cli._setup_logging(0, False)
        assert root.level == logging.WARNING
        import os

        assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
        assert "RADLENS_PROGRESS_DEPTH" not in os.environ
        root.handlers.clear()
        cli._setup_logging(1, False)
        assert root.level == logging.INFO and os.environ["RADLENS_PROGRESS_DEPTH"] == "3"
    finally:
        root.handlers[:] = old[1]
        root.setLevel(old[0])
