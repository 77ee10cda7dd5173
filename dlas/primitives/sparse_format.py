"""Sparse weight formats shared by the sparse variants of every primitive.

A conv2d weight [O, I/groups, KH, KW] is read as the matrix W[O, K] with K = I/groups*KH*KW
(row o = output channel o, column k = (c, ky, kx) in that order: numpy's reshape of OIHW).

- CSR: data[nnz], indices[nnz] (column k of each stored value), indptr[O + 1].
- BSR with block (bo, bk): the matrix cut into bo x bk tiles, a tile stored whole when any
  of its values is non-zero: data[nnzb, bo, bk], indices[nnzb] (tile column),
  indptr[O/bo + 1].

They enter the compiled module as constants (the weights are known at compile time).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlas.errors import DLASError


def weight_sparsity(weight: np.ndarray) -> float:
    return 1.0 - np.count_nonzero(weight) / weight.size if weight.size else 0.0


def as_matrix(weight: np.ndarray) -> np.ndarray:
    """OIHW -> [O, I*KH*KW]."""
    return weight.reshape(weight.shape[0], -1)


@dataclass(frozen=True)
class CSR:
    data: np.ndarray     # [nnz], the weight's dtype
    indices: np.ndarray  # [nnz] int32
    indptr: np.ndarray   # [rows + 1] int32
    shape: tuple[int, int]


@dataclass(frozen=True)
class BSR:
    data: np.ndarray     # [nnzb, bo, bk]
    indices: np.ndarray  # [nnzb] int32, block column
    indptr: np.ndarray   # [rows / bo + 1] int32
    shape: tuple[int, int]
    block: tuple[int, int]


def to_csr(matrix: np.ndarray) -> CSR:
    rows, cols = np.nonzero(matrix)  # row-major order: rows sorted, columns sorted within
    indptr = np.zeros(matrix.shape[0] + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=matrix.shape[0]), out=indptr[1:])
    return CSR(np.ascontiguousarray(matrix[rows, cols]), cols.astype(np.int32), indptr,
               tuple(matrix.shape))


def check_block(shape: tuple[int, int], block: tuple[int, int], layer: str = "") -> None:
    """A BSR block must tile the matrix exactly."""
    bo, bk = (int(b) for b in block)
    if bo < 1 or bk < 1 or shape[0] % bo or shape[1] % bk:
        where = f" of layer {layer}" if layer else ""
        raise DLASError("primitive.block", list(block),
                        f"a block [bo, bk] dividing the weight matrix{where} "
                        f"[{shape[0]}, {shape[1]}] (output channels x in-channels*kh*kw)",
                        reason="does not divide the layer", layer="primitive")


def to_bsr(matrix: np.ndarray, block: tuple[int, int]) -> BSR:
    check_block(matrix.shape, block)
    bo, bk = (int(b) for b in block)
    rows, cols = matrix.shape
    tiles = matrix.reshape(rows // bo, bo, cols // bk, bk).transpose(0, 2, 1, 3)
    keep = np.any(tiles != 0, axis=(2, 3))  # [rows/bo, cols/bk]
    brow, bcol = np.nonzero(keep)
    indptr = np.zeros(rows // bo + 1, dtype=np.int32)
    np.cumsum(np.bincount(brow, minlength=rows // bo), out=indptr[1:])
    return BSR(np.ascontiguousarray(tiles[brow, bcol]), bcol.astype(np.int32), indptr,
               (rows, cols), (bo, bk))


def csr_to_dense(csr: CSR) -> np.ndarray:
    out = np.zeros(csr.shape, dtype=csr.data.dtype)
    rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
    out[rows, csr.indices] = csr.data
    return out


def bsr_to_dense(bsr: BSR) -> np.ndarray:
    bo, bk = bsr.block
    rows, cols = bsr.shape
    tiles = np.zeros((rows // bo, cols // bk, bo, bk), dtype=bsr.data.dtype)
    brow = np.repeat(np.arange(rows // bo), np.diff(bsr.indptr))
    tiles[brow, bsr.indices] = bsr.data
    return tiles.transpose(0, 2, 1, 3).reshape(rows, cols)


def to_ell(indptr: np.ndarray, *arrays: np.ndarray, group: int = 1) -> list[np.ndarray]:
    """Per-row arrays of a CSR/BSR form (`arrays`[i][j] belongs to row r with indptr[r] <= j
    < indptr[r + 1]) as [rows/group, max_row, group, ...]: within each group of `group`
    consecutive rows (it must divide the rows) the rows' j-th entries side by side, rows
    shorter than the longest padded with zeros; max_row >= 1 (buffers cannot be empty)."""
    lengths = np.diff(indptr)
    rows = lengths.shape[0]
    row = np.repeat(np.arange(rows), lengths)
    slot = np.arange(row.shape[0]) - np.repeat(indptr[:-1], lengths)
    max_row = max(1, int(lengths.max(initial=0)))
    out = []
    for a in arrays:
        ell = np.zeros((rows // group, max_row, group, *a.shape[1:]), a.dtype)
        ell[row // group, slot, row % group] = a
        out.append(ell)
    return out
