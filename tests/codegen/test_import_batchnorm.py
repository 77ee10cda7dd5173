"""Batch norms PT2E cannot fold (after a concatenation, as in DenseNet) reach the importer as
`aten.batch_norm.default`; they must be imported with their own epsilon."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from tvm import relax
from tvm.relax.frontend.torch import from_exported_program

from dlas.codegen import Untuned, import_model
from dlas.codegen.batchnorm import check_epsilons, relax_epsilons
from dlas.codegen.frontend import _options
from dlas.codegen.quantized import import_options
from dlas.errors import DLASError
from dlas.primitives import Direct

from tests.codegen.int8_structures import SIZE, inputs, quantized
from tests.codegen.test_quantized import HOST


@pytest.fixture(scope="module")
def concat():
    """DenseNet's pattern: concat -> batch norm -> relu -> conv, int8."""
    q = quantized("concat")
    norms = [n for n in q.graph.nodes if "batch_norm" in str(n.target)]
    assert len(norms) == 1  # PT2E folded the stem's batch norm, not the one after the concat
    return q


def program(q) -> torch.export.ExportedProgram:
    return torch.export.export(q, (torch.zeros(1, 3, SIZE, SIZE),))


def test_unfolded_batch_norm_of_an_int8_net_compiles_to_pytorch_results(concat):
    x = torch.from_numpy(inputs())
    executable, _ = Untuned().build(import_model(concat, x[:1]), Direct(), HOST)
    main = relax.VirtualMachine(executable, tvm.cpu())["main"]
    ref = concat(x).detach().numpy()
    out = np.concatenate([main(tvm.runtime.tensor(x[i:i + 1].numpy())).numpy()
                          for i in range(len(x))])
    # the tolerance of test_quantized: integer accumulation vs the float reference
    # (TVM's own import of this batch norm, epsilon 0.1 for 1e-5, is off by ~4 %)
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max() + 1e-6


def test_imported_batch_norm_has_the_module_epsilon(concat):
    # (torchao's train/eval switch of exported graphs rewrites every unfolded batch norm
    # with the default eps, 1e-5, whatever the module's: what the int8 graph holds)
    exported = program(concat)
    mod = from_exported_program(exported, keep_params_as_input=False,
                                unwrap_unit_return_tuple=True, **_options(exported, "int8"))
    assert relax_epsilons(mod) == pytest.approx([1e-5])
    check_epsilons(exported, mod)


def test_a_misread_epsilon_is_named_at_import(concat):
    """TVM 0.27's own conversion of aten.batch_norm reads momentum as epsilon; the check
    says so. (Once TVM reads it right, apache/tvm#18486, DLAS's converter can go.)"""
    exported = program(concat)
    mod = from_exported_program(exported, keep_params_as_input=False,
                                unwrap_unit_return_tuple=True, **import_options(exported))
    with pytest.raises(DLASError, match=r"epsilon=0\.1.*1e-05 as in torch") as err:
        check_epsilons(exported, mod)
    assert err.value.layer == "codegen"
