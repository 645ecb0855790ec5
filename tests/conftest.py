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
