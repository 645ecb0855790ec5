"""Vision-transformer token layouts: token sequences -> patch grids for CAMs.

A ViT block outputs ``(B, N, D)`` tokens: ``n_prefix`` class/register tokens followed by the
patch tokens in raster order of the patch grid. CAMs need ``(B, D, *grid)`` channel-first maps, so
the prefix tokens are dropped and the patch tokens reshaped onto the grid (row-major, the order
``Conv2d``/``Conv3d`` patch embeddings flatten in).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from radlens.errors import InputError


@dataclass(frozen=True)
class TokenLayout:
    """Where the patch tokens sit in a ViT token sequence.

    Parameters
    ----------
    grid : tuple of int
        Patch grid, ``(h, w)`` or ``(d, h, w)``; ``prod(grid)`` patch tokens.
    n_prefix : int
        Number of leading non-patch tokens (class + register tokens) that are dropped.
    """

    grid: tuple[int, ...]
    n_prefix: int = 1

    def __post_init__(self):
        grid = tuple(int(g) for g in self.grid)
        if len(grid) not in (2, 3) or any(g < 1 for g in grid):
            raise InputError(f"TokenLayout: grid={self.grid!r} must be 2 or 3 positive ints (h, w) or (d, h, w)")
        if int(self.n_prefix) < 0:
            raise InputError(f"TokenLayout: n_prefix={self.n_prefix!r} must be >= 0")
        object.__setattr__(self, "grid", grid)
        object.__setattr__(self, "n_prefix", int(self.n_prefix))

    @property
    def n_patches(self) -> int:
        return math.prod(self.grid)

    def to_grid(self, tokens):
        """Reshape tokens onto the patch grid.

        Parameters
        ----------
        tokens : torch.Tensor, shape (B, N, D)
            ``N == n_prefix + prod(grid)``.

        Returns
        -------
        torch.Tensor, shape (B, D, *grid)
        """
        if tokens.ndim != 3:
            raise InputError(f"TokenLayout.to_grid: expected tokens of shape (B, N, D), got {tuple(tokens.shape)}")
        b, n, d = tokens.shape
        if n != self.n_prefix + self.n_patches:
            raise InputError(
                f"TokenLayout: the layer emits {n} tokens but the layout expects {self.n_prefix} prefix + "
                f"{self.n_patches} patch tokens (grid {self.grid}); pass the grid and the number of "
                "class/register tokens of this model")
        patches = tokens[:, self.n_prefix:, :]
        return patches.transpose(1, 2).reshape(b, d, *self.grid)

    @classmethod
    def infer(cls, n_tokens: int, grid) -> "TokenLayout":
        """Layout for a layer emitting ``n_tokens`` tokens over a known patch ``grid``: every token
        beyond ``prod(grid)`` is taken as a leading class/register token."""
        n_patch = math.prod(int(g) for g in grid)
        if n_tokens < n_patch:
            raise InputError(f"TokenLayout.infer: {n_tokens} tokens cannot hold a {tuple(grid)} patch grid")
        return cls(tuple(grid), n_tokens - n_patch)
