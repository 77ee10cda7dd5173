import numpy as np
import pytest

from dlas.errors import DLASError
from dlas.primitives.sparse_format import (as_matrix, bsr_to_dense, csr_to_dense, to_bsr, to_csr,
                                           to_ell, weight_sparsity)


def sparse_weight(sparsity, shape=(16, 8, 3, 3), dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(dtype)
    w[rng.random(shape) < sparsity] = 0
    return w


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.95, 1.0])
def test_csr_round_trip(sparsity):
    m = as_matrix(sparse_weight(sparsity))
    csr = to_csr(m)
    assert csr.indptr[-1] == np.count_nonzero(m) == len(csr.data) == len(csr.indices)
    assert np.array_equal(csr_to_dense(csr), m)
    assert csr.indices.dtype == csr.indptr.dtype == np.int32


@pytest.mark.parametrize("block", [(1, 1), (4, 1), (4, 8), (16, 72)])
def test_bsr_round_trip_int8(block):
    m = as_matrix(sparse_weight(0.9, dtype=np.int8))
    bsr = to_bsr(m, block)
    assert bsr.data.shape[1:] == block and bsr.data.dtype == np.int8
    assert np.array_equal(bsr_to_dense(bsr), m)


def test_bsr_keeps_only_nonzero_blocks():
    m = np.zeros((8, 8), np.float32)
    m[0, 0] = 1.0
    m[5, 7] = 2.0
    bsr = to_bsr(m, (4, 4))
    assert len(bsr.data) == 2 and list(bsr.indices) == [0, 1] and list(bsr.indptr) == [0, 1, 2]


def test_block_that_does_not_divide_is_refused():
    with pytest.raises(DLASError, match=r"primitive.block=\[3, 4\].*\[16, 72\]"):
        to_bsr(as_matrix(sparse_weight(0.5)), (3, 4))


def test_weight_sparsity():
    assert weight_sparsity(np.zeros((4, 4))) == 1.0
    assert weight_sparsity(np.ones((4, 4))) == 0.0


def test_ell_puts_the_rows_jth_entries_side_by_side():
    """Rows of 2, 0, 3 and 1 entries in groups of 2: [2, 3, 2], the j-th entry of row r at
    [r // 2, j, r % 2], zeros past a row's end; an all-empty matrix keeps one j of zeros."""
    m = np.array([[0, 1, 0, 2], [0, 0, 0, 0], [3, 0, 4, 5], [0, 6, 0, 0]], np.float32)
    csr = to_csr(m)
    values, columns = to_ell(csr.indptr, csr.data, csr.indices, group=2)
    assert values.tolist() == [[[1, 0], [2, 0], [0, 0]], [[3, 6], [4, 0], [5, 0]]]
    assert columns.tolist() == [[[1, 0], [3, 0], [0, 0]], [[0, 1], [2, 0], [3, 0]]]
    (ungrouped,) = to_ell(csr.indptr, csr.data)
    assert ungrouped.shape == (4, 3, 1) and ungrouped[:, :, 0].tolist()[2] == [3, 4, 5]
    bsr = to_bsr(np.kron(m, np.ones((2, 1), np.float32)), (2, 1))
    (blocks,) = to_ell(bsr.indptr, bsr.data, group=4)
    assert blocks.shape == (1, 3, 4, 2, 1) and blocks[0, 2, 2, :, 0].tolist() == [5, 5]
    (empty,) = to_ell(to_csr(np.zeros((2, 3))).indptr, np.zeros(0), group=2)
    assert empty.shape == (1, 1, 2) and not empty.any()
