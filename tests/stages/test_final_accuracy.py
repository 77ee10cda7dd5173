"""The compress stage records the compressed net's accuracy without a second pass over the
validation set (one pass over ImageNet's val takes minutes)."""
from dlas.stages.compress import final_accuracy


def never():
    raise AssertionError("evaluated again")


def test_the_last_steps_evaluation_of_the_final_net_is_taken():
    steps = [{"acc_after_finetune": 0.5}, {"acc_after_finetune": 0.8}]
    assert final_accuracy(steps, 0.9, never) == 0.8
    steps[-1]["acc_finalized"] = 0.7  # finalizing changed the results (int8 conversion)
    assert final_accuracy(steps, 0.9, never) == 0.7


def test_an_empty_recipe_keeps_the_trained_accuracy_or_evaluates_once():
    assert final_accuracy([], 0.9, never) == 0.9
    assert final_accuracy([], None, lambda: 0.4) == 0.4  # a model stored without val_acc
