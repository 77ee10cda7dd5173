"""The end-of-sweep table groups what did not work by layer and reason, with counts."""
from dlas.sweep.summary import summary_table


def row(status, layer=None, reason=None, model="resnet18"):
    return {"status": status, "layer": layer, "reason": reason, "dataset": "digits", "model": model,
            "compression": "none", "primitive": "direct-dense", "codegen": "untuned",
            "hardware": "local", "metrics": {"latency_ms_median": 2.0}}


def test_failures_grouped_by_layer_and_reason():
    crash = "RuntimeError: deep inside TVM (traceback: /out/errors/{}.log)"
    rows = [row("ok"), row("failed", "codegen", crash.format("a1"), "vgg16"),
            row("failed", "codegen", crash.format("b2"), "resnet50"),
            row("unsupported", "model", "model.weights='DEFAULT': needs ImageNet"),
            row("failed", "hardware", "tracker unreachable")]
    table = summary_table(rows)
    assert table.splitlines()[0] == "sweep summary: 5 points — 1 ok, 1 unsupported, 3 failed"
    groups = table[table.index("not ok, by layer and reason:"):].splitlines()[1:]
    assert groups == ["  2 x failed [codegen] RuntimeError: deep inside TVM",
                      "  1 x unsupported [model] model.weights='DEFAULT': needs ImageNet",
                      "  1 x failed [hardware] tracker unreachable"]
    assert "(traceback: /out/errors/a1.log)" in table  # each point's own line keeps its file


def test_a_point_on_a_model_stopped_by_max_time_says_so():
    from dlas.sweep.summary import row_line

    flagged = row("ok")
    flagged["metrics"] = {**flagged["metrics"], "accuracy_torch": 0.5, "budget_hit": True}
    assert "budget_hit" in row_line(flagged) and "budget_hit" not in row_line(row("ok"))
