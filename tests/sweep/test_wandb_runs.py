"""W&B works with no account: offline, no prompt, no hang; disabled touches nothing."""
import pytest

from dlas.errors import DLASError
from dlas.sweep.wandb_runs import WandbRun, resolve_mode


def test_auto_is_offline_without_credentials(no_account, monkeypatch, tmp_path):
    assert resolve_mode("auto") == "offline"
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password k\n")
    assert resolve_mode("auto") == "online"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode("auto") == "online"
    with pytest.raises(DLASError, match="auto, online, offline, disabled"):
        resolve_mode("sometimes")


def test_offline_run_is_written_and_finished(no_account, tmp_path):
    wandb_run = WandbRun(project="dlas-test", mode="auto", group="sweep-1", name="a/b",
                      config={"model": {"name": "resnet18"}}, directory=str(tmp_path / "wb"))
    assert wandb_run.mode == "offline"
    wandb_run.finish("ok", {"latency_ms_median": 1.5, "model": "resnet18", "nested": {"x": 1}})
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))


def test_disabled_writes_nothing(tmp_path):
    wandb_run = WandbRun(project="p", mode="disabled", group=None, name="n", config={},
                      directory=str(tmp_path / "wb"))
    wandb_run.finish("failed", {})
    assert not (tmp_path / "wb").exists()
