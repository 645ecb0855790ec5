"""Fixtures shared by several test modules."""
import pytest


@pytest.fixture
def one_thread():
    """torch and every BLAS pool on one thread: the lens tests' numbers do not depend on thread order,
    and two pytest-xdist workers on two cores do not oversubscribe them."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield


@pytest.fixture(autouse=True)
def _no_zygote_left():
    """A zygote (``radlens radiomics --jobs N`` starts one; radlens.zygote.start_zygote) holds this
    process's state as of its start: a later test's monkeypatches would not reach its workers. None
    outlives the test that started it."""
    yield
    import sys

    zyg = sys.modules.get("radlens.zygote")
    if zyg is not None:
        zyg.stop_zygote()
