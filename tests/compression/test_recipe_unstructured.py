import pytest
import torch
import torch.nn as nn

from dlas.compression import Compression, StepContext, UnstructuredPruning, model_metrics
from dlas.errors import DLASError


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3),
                         nn.Flatten(), nn.Linear(8 * 6 * 6, 10))


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_pruning_reaches_ratio_and_finalize_removes_masks(scope):
    net = small_net()
    step = UnstructuredPruning(ratio=0.7, scope=scope)
    step.apply(net)
    assert any("weight_mask" in k for k in net.state_dict())
    step.finalize(net)
    assert not any("mask" in k or "orig" in k for k in net.state_dict())
    m = model_metrics(net, torch.zeros(1, 3, 8, 8))
    assert m["weight_sparsity"] == pytest.approx(0.7, abs=0.01)
    if scope == "layer":
        for mod in (net[0], net[2], net[4]):
            assert (mod.weight == 0).float().mean() == pytest.approx(0.7, abs=0.02)


def test_a_layer_pruned_whole_is_named(caplog):
    net = small_net()
    with torch.no_grad():  # the classifier's weights far below the convs': global 0.9 takes them all
        net[4].weight.mul_(1e-3)
    UnstructuredPruning(ratio=0.9, scope="global").apply(net)
    assert "removed every weight of 4" in caplog.text and "compression.scope=layer" in caplog.text
    caplog.clear()
    UnstructuredPruning(ratio=0.9, scope="layer").apply(small_net())
    assert "removed every weight" not in caplog.text


def test_metrics_of_dense_model():
    net = small_net()
    m = model_metrics(net, torch.zeros(1, 3, 8, 8))
    params = sum(p.numel() for p in net.parameters())
    assert m["params"] == params and m["size_bytes"] == 4 * params
    conv_macs = 8 * 3 * 9 * 64 + 8 * 8 * 9 * 36
    assert m["macs"] >= conv_macs + 288 * 10
    assert m["weight_sparsity"] < 0.01


@pytest.mark.parametrize("ratio", [1.5, 1.0, -0.1, "abc", True])
def test_bad_ratio_is_refused(ratio):
    with pytest.raises(DLASError, match="ratio") as err:
        UnstructuredPruning(ratio=ratio)
    assert "[0, 1)" in str(err.value) and err.value.layer == "compression"


def test_bad_scope_is_refused():
    with pytest.raises(DLASError, match="global, layer"):
        UnstructuredPruning(ratio=0.5, scope="everywhere")


def test_recipe_finetunes_between_apply_and_finalize():
    net = small_net()
    calls = []

    def finetune(model, epochs):
        # the masks must still be in place while fine-tuning
        calls.append((epochs, hasattr(model[0], "weight_mask")))
        return {"budget_hit": True}  # (as fit says when trainer.max_time stopped it)

    recipe = Compression("unstructured", [UnstructuredPruning(0.5)], finetune_epochs=2)
    scores = iter([0.4, 0.8, 0.8])
    net, structure, log = recipe.apply(net, context=StepContext(), evaluate=lambda m: next(scores), finetune=finetune)
    assert calls == [(2, True)]
    assert log == [{"step": "unstructured", "acc_before_finetune": 0.4, "acc_after_finetune": 0.8,
                    "finetuned": True, "budget_hit": True}]
    assert not hasattr(net[0], "weight_mask") and structure is net
    with pytest.raises(DLASError):
        Compression("x", finetune_epochs=-1)


def test_steps_by_name_take_the_recipe_ratio():
    recipe = Compression("unstructured", ["unstructured"], ratio=0.7)
    assert recipe.steps[0].ratio == 0.7
    with pytest.raises(DLASError, match="prune_all.*channel, fp16, int8, unstructured"):
        Compression("x", ["prune_all"])
