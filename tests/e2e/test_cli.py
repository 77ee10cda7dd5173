"""The entry points as a user runs them: bad input gives one line and a non-zero exit.

Every case runs deploy.py's main() in this process (the imports paid once); two run it as a
fresh interpreter does, where nothing else was imported or set up before.
"""
import sys

import pytest

from tests.refusal import error_line, run_script


def run_here(args, tmp_path, monkeypatch, capsys) -> tuple[int, str, str]:
    """deploy.py's main() in this process: (exit status, stdout, stderr)."""
    import deploy

    monkeypatch.setenv("DLAS_OUTPUTS", str(tmp_path))
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # (main() sets it: restored after the test)
    monkeypatch.setattr(sys, "argv", ["deploy.py", *args, "logger.mode=disabled"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        deploy.main()
    out = capsys.readouterr()
    return stopped.value.code, out.out, out.err


CASES = [
    (["model=foo"], "model='foo': no such model config (valid: densenet161, efficientnet_b0, "
                    "mnasnet1_0, mobilenetv2, resnet18, resnet50, vgg16)"),
    (["-m", "model=resnet18,foo"], "model='foo'"),
    (["primitive=fft"], "valid: direct, gemm, spatial_pack, winograd"),
    (["primitive=winograd", "primitive.format=csr"], "primitive.format='csr'"),
    (["modle=resnet18"], "modle"),
    (["compression=unstructured", "compression.ratio=1.5"], "compression.ratio=1.5"),
    (["compression=unstructured", "compression.ratio=abc"], "compression.ratio='abc'"),
    (["primitive.format=coo"], "primitive.format='coo'"),
    (["compression=int8", "compression.steps.0.calibration_batches=0"], "calibration_batches=0"),
    (["compression=channel", "compression.steps=[channel,prune_all]"],
     "compression step='prune_all'"),
    (["hardware.tracker_host=127.0.0.1", "hardware.tracker_port=1"], "127.0.0.1:1"),
]


def one_line_error(code, out, err, expected):
    assert code != 0
    assert expected in error_line(out, err)


@pytest.mark.parametrize("args, expected", CASES)
def test_bad_input_gives_one_line(args, expected, tmp_path, monkeypatch, capsys):
    one_line_error(*run_here(args, tmp_path, monkeypatch, capsys), expected)


@pytest.mark.parametrize("args, expected", [CASES[1], CASES[5]])
def test_bad_input_gives_one_line_from_a_fresh_interpreter(args, expected, tmp_path):
    out = run_script(args, tmp_path)
    one_line_error(out.returncode, out.stdout, out.stderr, expected)
