"""int8 step: calibration, conversion to an int8 graph, storage, QAT, bad input."""
from __future__ import annotations

import functools

import pytest
import pytorch_lightning as pl
import torch
import torch.nn as nn

from dlas.compression import Compression, StepContext, stored_bytes
from dlas.compression.int8 import Int8Quantization, is_int8_graph
from dlas.compression.metrics import number_format
from dlas.compression.storage import load_model, save_model
from dlas.errors import DLASError
from dlas.training import evaluate, fit


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU(),  # depthwise
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)).eval()


def batches(n=3, size=8):
    gen = torch.Generator().manual_seed(1)
    data = [(torch.randn(size, 3, 16, 16, generator=gen), torch.zeros(size, dtype=torch.long))
            for _ in range(n)]
    return lambda: iter(data)


def quantize(net, calibration_batches=2):
    context = StepContext(example=torch.zeros(1, 3, 16, 16), train_batches=batches())
    return Int8Quantization(calibration_batches).apply(net, context)


def test_ptq_gives_an_int8_graph_close_to_float():
    net = small_cnn()
    x = batches()().__next__()[0]
    ref = net(x)
    q = quantize(net)
    assert is_int8_graph(q) and number_format(q) == "int8" and number_format(net) == "float32"
    ops = {str(n.target) for n in q.graph.nodes if n.op == "call_function"}
    assert "quantized_decomposed.quantize_per_tensor.default" in ops
    assert "quantized_decomposed.dequantize_per_channel.default" in ops
    out = q(x)
    assert out.shape == ref.shape
    assert float((out - ref).abs().max()) < 0.1 * float(ref.abs().max())  # int8 is close...
    assert not torch.equal(out, ref)  # ...but not float
    # the float weights are gone: int8 weights (1 byte) + float biases and scales
    weights = {k: v for k, v in q.state_dict().items() if v.dim() == 4 or v.dim() == 2}
    assert weights and all(v.dtype == torch.int8 for v in weights.values())
    assert stored_bytes(q) < 0.45 * stored_bytes(net)


def test_int8_model_survives_the_store(tmp_path):
    q = quantize(small_cnn())
    save_model(q, tmp_path, torch.zeros(1, 3, 16, 16))
    back = load_model(tmp_path, architecture=small_cnn)  # (only float models need it)
    x = torch.randn(5, 3, 16, 16)  # another batch size than the example's
    assert torch.equal(back(x), q(x)) and is_int8_graph(back)
    back.train()
    back.eval()  # exported graphs accept train()/eval() (evaluate() and Lightning call them)


@pytest.fixture
def conv_bn_folds(monkeypatch):
    """The conv kinds torchao's QAT conv + batch-norm fold is run for (each costs 8-11 s
    of pattern exports on a 2-core Zen 3): a list the test reads."""
    from torchao.quantization.pt2e import qat_utils

    kinds, fold = [], qat_utils._fold_conv_bn_qat_helper

    def spy(m, conv_fn, *args, **kwargs):
        kinds.append(conv_fn.__name__)
        return fold(m, conv_fn, *args, **kwargs)

    monkeypatch.setattr(qat_utils, "_fold_conv_bn_qat_helper", spy)
    return kinds


def _batch_norms(gm) -> list:
    return [n for n in gm.graph.nodes if "batch_norm" in str(n.target)]


@pytest.mark.slow
def test_qat_with_a_lightning_trainer_on_digits(digits, conv_bn_folds):
    """The recipe's real fine-tuning path: Lightning's Trainer (bf16 autocast) over the
    fake-quantized exported graph; converting folds the batch norm into the conv, asking
    torchao's fold for the graph's one conv kind only."""
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    trainer = functools.partial(pl.Trainer, limit_train_batches=3, limit_val_batches=1,
                                logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False,
                                precision="bf16-mixed")
    recipe = Compression("int8", [Int8Quantization(calibration_batches=2, qat=True)],
                         finetune_epochs=1)
    q, structure, log = recipe.apply(
        net, context=StepContext(torch.zeros(1, 3, 32, 32), digits.train_dataloader),
        evaluate=lambda m: evaluate(m, digits.val_dataloader()),
        finetune=lambda m, e: fit(m, digits, trainer(max_epochs=e),
                                  functools.partial(torch.optim.Adam, lr=1e-3)))
    assert is_int8_graph(q) and log[0]["finetuned"]
    assert 0.0 <= log[0]["acc_after_finetune"] <= 1.0
    assert structure is net  # parameters/MACs are counted on the float architecture
    assert conv_bn_folds == ["conv2d"] and not _batch_norms(q)


def test_post_training_convert_skips_the_qat_fold_and_keeps_a_lone_batch_norm(conv_bn_folds):
    class Concat(nn.Module):  # densenet's shape: a batch norm after a concat, no conv to fold into
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 1)
            self.bn, self.fc = nn.BatchNorm2d(8), nn.Linear(8, 10)

        def forward(self, x):
            y = self.bn(torch.cat([self.a(x), self.b(x)], 1)).relu()
            return self.fc(y.mean((2, 3)))

    torch.manual_seed(0)
    net = Concat().eval()
    net.bn.running_mean.uniform_(-1, 1)
    x = torch.randn(4, 3, 16, 16)
    q = quantize(net)
    assert conv_bn_folds == [] and len(_batch_norms(q)) == 1
    with torch.no_grad():
        assert torch.allclose(q(x), net(x), atol=0.05 * float(net(x).abs().max()))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "8"])
def test_bad_calibration_batches_are_refused(bad):
    with pytest.raises(DLASError, match="calibration_batches") as err:
        Int8Quantization(calibration_batches=bad)
    assert err.value.layer == "compression"


def test_no_calibration_data_is_refused():
    context = StepContext(example=torch.zeros(1, 3, 16, 16), train_batches=lambda: iter(()))
    with pytest.raises(DLASError, match="no training batches"):
        Int8Quantization(2).apply(small_cnn(), context)


def test_recipes_compose_by_name():
    recipe = Compression("channel_int8", ["channel", "int8"], ratio=0.5)
    assert [s.name for s in recipe.steps] == ["channel", "int8"]
    assert recipe.steps[0].ratio == 0.5
