"""A float error bound for the `winograd` primitive's float32 results (test_correctness.py,
test_winograd.py).

Winograd's F(m x m, 3 x 3) computes each output as A^T [(G g G^T) * (B^T d B)] A summed over
the input channels: a sum of products of transform coefficients, weights and inputs, each
term passing through at most C + 26 roundings (the channel sum, the row and column passes
of both transforms with up to 6 terms each, the products, the weight transform rounded
once). By the standard forward error analysis its error is at most (C + 32) * 2**-24 times
the same computation on absolute values, |A|^T [(|G| |g| |G|^T) * (|B|^T |d| |B|)] |A|, which
this computes in float64. For m = 2 that is close to direct's bound; for m = 4 the
coefficients (up to 8) make it a few times larger, the price of the transforms."""
from __future__ import annotations

import numpy as np

from dlas.primitives.winograd_compute import transform_matrices


def winograd_abs(x: np.ndarray, w: np.ndarray, padding, m: int) -> np.ndarray:
    """The Winograd computation on |x|, |w| and the transforms' absolute values, NCHW
    output [N, O, OH, OW], float64; padding (top, left, bottom, right)."""
    a, b, g = (np.abs(t) for t in transform_matrices(m))
    alpha = m + 2
    top, left, bottom, right = padding
    d = np.pad(np.abs(x.astype(np.float64)), ((0, 0), (0, 0), (top, bottom), (left, right)))
    n, c, hp, wp = d.shape
    th, tw = (hp - 2) // m, (wp - 2) // m
    tiles = np.lib.stride_tricks.sliding_window_view(d, (alpha, alpha), axis=(2, 3))
    tiles = tiles[:, :, ::m, ::m][:, :, :th, :tw]                    # [n, c, th, tw, alpha, alpha]
    v = np.einsum("ia,ncxyij,jb->ncxyab", b, tiles, b, optimize=True)
    u = np.einsum("ak,ockl,bl->ocab", g, np.abs(w.astype(np.float64)), g, optimize=True)
    prod = np.einsum("ncxyab,ocab->noxyab", v, u, optimize=True)
    y = np.einsum("ai,noxyab,bj->noxiyj", a, prod, a, optimize=True)               # [n, o, th, m, tw, m]
    return y.reshape(n, w.shape[0], th * m, tw * m)


def winograd_bound(x: np.ndarray, w: np.ndarray, padding, m: int) -> np.ndarray:
    """The elementwise bound on |winograd(x, w) - exact| (module docstring)."""
    return (w.shape[1] + 32) * 2.0 ** -24 * winograd_abs(x, w, padding, m)
