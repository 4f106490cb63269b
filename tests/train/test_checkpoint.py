"""Checkpoints: atomic writes, clear errors, and exact resume after a real ``kill -9``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from stabletrain.errors import CheckpointError
from stabletrain.train.checkpoint import load_checkpoint, save_checkpoint

from .helpers import CONFIGS, REPO, losses_by_step, read_jsonl, train

# 4 epochs x 23 steps, a checkpoint every 7 steps, dropout on: resume must restore the RNG too
RUN = ("train.epochs=4", "run.checkpoint_every=7", "run.tensorboard=false")


def test_save_is_atomic_and_load_validates(tmp_path: Path) -> None:
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "optimizer": {}, "loop": {}, "rng": {}})
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temp file left behind
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    with pytest.raises(CheckpointError, match="nothing to resume"):
        load_checkpoint(tmp_path / "missing.pt")
    path.write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(path)
    save_checkpoint(path, {"model": {}})
    with pytest.raises(CheckpointError, match="not a stabletrain checkpoint"):
        load_checkpoint(path)


class _Touch:
    """A real pickle payload: unpickling it runs ``touch MARKER`` (issue 12, item 1)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_checkpoint_with_a_pickle_payload_is_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "optimizer": {}, "loop": _Touch(marker), "rng": {}}, path)
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt cannot be read safely") as err:
        load_checkpoint(path)
    assert not marker.exists(), "the payload ran"
    # the error names what the file asked for and never relays torch's advice to disable the check
    assert "weights_only" not in str(err.value)
    assert "unsupported global" in str(err.value).lower()


def test_resume_from_a_crafted_checkpoint_exits_2_without_running_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert train("digits-cnn.yaml", run, "train.epochs=1", "train.max_steps=3") == 0
    marker = tmp_path / "pwned"
    torch.save(
        {"model": {}, "optimizer": {}, "loop": _Touch(marker), "rng": {}}, run / "checkpoint.pt"
    )
    capsys.readouterr()
    assert train("digits-cnn.yaml", run, "train.epochs=1", "train.max_steps=3", resume=True) == 2
    err = capsys.readouterr().err
    assert not marker.exists(), "the payload ran"
    assert "checkpoint.pt" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_everything_a_run_saves_loads_with_weights_only(tmp_path: Path) -> None:
    """The real checkpoint of a real run (guard snapshots, numpy RNG...) loads with weights_only."""
    run = tmp_path / "run"
    assert train("digits-cnn.yaml", run, "train.epochs=1", "run.checkpoint_every=5") == 0
    raw = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert {"model", "optimizer", "guard", "rng", "loop"} <= raw.keys()
    state = load_checkpoint(run / "checkpoint.pt")
    assert isinstance(state["rng"]["numpy"][1], np.ndarray)
    assert state["rng"]["numpy"][1].dtype == np.uint32


def test_guard_state_round_trips_through_the_checkpoint(tmp_path: Path) -> None:
    """Guard(...).state_dict() after real steps (one a NaN batch) survives save + safe load."""
    from stabletrain.guard.guard import Guard

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    guard = Guard(model, opt)
    x, y = torch.randn(64, 32), torch.randint(0, 2, (64,))
    for i in range(12):
        xb = torch.full_like(x[:8], float("nan")) if i == 5 else x[i % 8 * 8 : i % 8 * 8 + 8]
        loss = torch.nn.functional.cross_entropy(model(xb), y[:8])
        guard.step(loss)
    before = guard.state_dict()
    save_checkpoint(
        tmp_path / "ck.pt", {"model": {}, "optimizer": {}, "loop": {}, "rng": {}, "guard": before}
    )
    after = load_checkpoint(tmp_path / "ck.pt")["guard"]
    _assert_same(after, before)
    fresh = Guard(model, torch.optim.SGD(model.parameters(), lr=0.1))
    fresh.load_state_dict(after)
    _assert_same(fresh.state_dict(), before)


def _assert_same(a: object, b: object, path: str = "guard") -> None:
    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict)), path
    if isinstance(b, dict):
        assert isinstance(a, dict) and a.keys() == b.keys(), path
        for k in b:
            _assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(b, (list, tuple)):
        assert isinstance(a, (list, tuple)) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{path}[{i}]")
    elif isinstance(b, torch.Tensor):
        assert isinstance(a, torch.Tensor) and torch.equal(a, b), path
    elif isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b), path
    elif isinstance(b, float) and b != b:
        assert isinstance(a, float) and a != a, path
    else:
        assert a == b, path


def _small_tmpfs(path: Path, size: str) -> bool:
    """Mount a tiny tmpfs at ``path`` (needs root); False where the system does not allow it."""
    path.mkdir()
    if os.geteuid() != 0:
        return False
    cmd = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]
    return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


def test_disk_full_on_a_real_small_filesystem(tmp_path: Path) -> None:
    """A real ENOSPC: the partial temp file is removed, the previous checkpoint survives."""
    disk = tmp_path / "disk"
    if not _small_tmpfs(disk, "300k"):
        pytest.skip("mounting a tmpfs needs root; the injected-ENOSPC test covers the logic")
    try:
        path = disk / "checkpoint.pt"
        small = {"model": {"w": torch.arange(20000.0)}, "optimizer": {}, "loop": {}, "rng": {}}
        save_checkpoint(path, small)
        big = {**small, "model": {"w": torch.zeros(60000)}}
        with pytest.raises(CheckpointError, match=r"disk full writing checkpoint .*checkpoint\.pt"):
            save_checkpoint(path, big)
        assert [p.name for p in disk.iterdir()] == ["checkpoint.pt"]  # no temp file left
        assert torch.equal(load_checkpoint(path)["model"]["w"], torch.arange(20000.0))
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_disk_full_at_fsync_cleans_up_and_says_what_was_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC injected at the file-write boundary (fsync reports it on delayed-allocation disks)."""
    import errno

    import stabletrain.train.checkpoint as ck

    path = tmp_path / "checkpoint.pt"
    state = {"model": {"w": torch.ones(3)}, "optimizer": {}, "loop": {}, "rng": {}}

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ck.os, "fsync", full)
    with pytest.raises(CheckpointError, match="no earlier checkpoint exists") as e:
        save_checkpoint(path, state)
    assert "\n" not in str(e.value) and "No space left on device" in str(e.value)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    save_checkpoint(path, state)
    monkeypatch.setattr(ck.os, "fsync", full)
    with pytest.raises(CheckpointError, match=r"kept the previous checkpoint .*--resume"):
        save_checkpoint(path, {**state, "model": {"w": torch.zeros(3)}})
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))


def test_train_on_a_full_disk_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    disk = tmp_path / "disk"
    if not _small_tmpfs(disk, "1m"):
        pytest.skip("mounting a tmpfs needs root")
    try:
        capsys.readouterr()
        assert train("digits-cnn.yaml", disk / "run", "train.epochs=1") == 2
        err = capsys.readouterr().err.strip()
        assert "disk full" in err and "\n" not in err and "Traceback" not in err
        assert not list((disk / "run").glob(".checkpoint.pt.tmp*"))
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def _kill_mid_training(run_dir: Path, after_steps: int) -> None:
    cmd = [sys.executable, "-m", "stabletrain.cli", "train", str(CONFIGS / "digits-cnn.yaml"),
           "--run-dir", str(run_dir), "--no-progress"]  # fmt: skip
    cmd += [a for o in RUN for a in ("--set", o)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    steps = run_dir / "steps.jsonl"
    deadline = time.monotonic() + 60
    with subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    ) as proc:
        while time.monotonic() < deadline and proc.poll() is None:
            if steps.is_file() and steps.read_text().count("\n") >= after_steps:
                break
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()


@pytest.mark.slow
def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    _kill_mid_training(killed, after_steps=20)

    # the log survived the crash: every line parses, every completed step is there
    logged = read_jsonl(killed / "steps.jsonl")
    assert [r["step"] for r in logged] == list(range(len(logged)))
    assert 20 <= len(logged) < 92
    ck = load_checkpoint(killed / "checkpoint.pt")["loop"]
    assert ck["step"] % 7 == 0 and ck["step"] <= len(logged)

    assert train("digits-cnn.yaml", killed, *RUN, resume=True) == 0
    assert train("digits-cnn.yaml", tmp_path / "straight", *RUN) == 0

    resumed, straight = losses_by_step(killed), losses_by_step(tmp_path / "straight")
    assert len(straight) == 92 and resumed.keys() == straight.keys()
    after = [s for s in straight if s >= ck["step"]]
    assert [resumed[s] for s in after] == [straight[s] for s in after]  # bitwise: exact floats
    ev = read_jsonl(killed / "evals.jsonl")[-1]
    assert ev == {
        **ev,
        **{
            k: v
            for k, v in read_jsonl(tmp_path / "straight" / "evals.jsonl")[-1].items()
            if k != "wall_time"
        },
    }
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["steps"] == 92 and summary["epochs"] == 4


def test_resume_without_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    assert train("digits-cnn.yaml", tmp_path / "none", "train.epochs=1", resume=True) == 2
