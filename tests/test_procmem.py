"""radlens.procmem: summed PSS of a process tree (a forked child's private memory counts)."""
import os
import time

import numpy as np
import pytest

from radlens.procmem import TreeMemory, tree_pss_mb

pytestmark = pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/smaps_rollup"),
                                reason="no /proc/<pid>/smaps_rollup (not Linux)")


def _child_holding(mb: int, r: int, w: int) -> None:
    a = np.ones(mb * 1024 * 1024 // 8)  # private, touched pages
    os.write(w, b"x")
    os.read(r, 1)
    del a
    os._exit(0)


def test_a_forked_childs_private_memory_is_summed_in():
    base = tree_pss_mb()
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        _child_holding(200, r2, w1)
    try:
        os.read(r1, 1)  # the child has touched its 200 MiB
        with_child = tree_pss_mb()
        with TreeMemory(interval=0.05) as mem:
            time.sleep(0.2)
    finally:
        os.write(w2, b"x")
        os.waitpid(pid, 0)
    after = tree_pss_mb()
    assert with_child - base > 180  # 200 MiB of the child's own pages, nothing shared with us
    assert mem.peak_mb >= with_child - 20
    assert after < with_child - 150  # the child is gone, and so is its memory
