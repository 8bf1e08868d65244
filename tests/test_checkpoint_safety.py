"""What every script promises about checkpoints and resuming, checked the same way for all five: a checkpoint never
runs code when loaded, a file that is no checkpoint says so, flags given with --resume reach the optimiser, an
extended run's evaluations extend one curve, a resume without the saved buffer waits for the refill, and non-finite
flags stop before training."""

import pickle
import shutil

import numpy as np
import pytest
import torch

from tests.helpers import checkpoint_of, command_line, command_line_error, the_run_dir
from utils.logger import read_scalars

QUICK = ["--learning-starts", "20", "--batch-size", "16", "--log-every", "10", "--eval-episodes", "1"]
SCRIPTS = {  # script: flags of a quick run (all run as their command line does, in this process)
    "pr2_continuous.py": ["--env", "differential", *QUICK],
    "pr2_discrete.py": ["--env", "particle", *QUICK, "--temperature-end", "1", "--max-cycles", "10"],
    "baselines/maddpg.py": ["--env", "differential", *QUICK],
    "baselines/ddpg.py": ["--env", "differential", *QUICK],
    "baselines/ddpg_om.py": ["--env", "differential", *QUICK],
}


class WritesAFile:
    """Unpickling this calls open(path, 'w'): the smallest stand-in for code a crafted checkpoint could run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def train(script: str, folder, monkeypatch, *flags: str):
    folder.mkdir(exist_ok=True)
    command_line(script, *SCRIPTS[script], "--save-model", *flags, cwd=folder, monkeypatch=monkeypatch)
    return checkpoint_of(folder)


def agent_tensors(path) -> list[torch.Tensor]:
    """Every tensor of a checkpoint's learned agents (networks, or PR2-Q's tables)."""
    found = []

    def collect(value):
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                collect(item)

    collect(torch.load(path, weights_only=True)["agents"])
    return found


def learning_rates(value) -> list[float]:
    """The learning rate of every parameter group of every optimiser state in a checkpoint."""
    if isinstance(value, dict) and "param_groups" in value:
        return [group["lr"] for group in value["param_groups"]]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list | tuple) else []
    return [lr for item in items for lr in learning_rates(item)]


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_crafted_checkpoint_runs_no_code(tmp_path, monkeypatch, script):
    marker = tmp_path / "code_ran"
    crafted = tmp_path / "crafted.pt"
    torch.save({"args": {}, "step": 0, "payload": WritesAFile(marker)}, crafted)
    pickle.loads(pickle.dumps(WritesAFile(marker)))  # the payload is a real threat: unpickling it runs its code
    assert marker.exists()
    marker.unlink()
    error = command_line_error(script, "--resume", str(crafted), cwd=tmp_path, monkeypatch=monkeypatch)
    assert "holds objects other than tensors and plain values" in error
    assert not marker.exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_file_of_random_bytes_is_not_a_readable_checkpoint(tmp_path, monkeypatch, script):
    random_bytes = tmp_path / "random.pt"
    random_bytes.write_bytes(np.random.default_rng(0).bytes(5000))
    error = command_line_error(script, "--resume", str(random_bytes), cwd=tmp_path, monkeypatch=monkeypatch)
    assert error.endswith(f"--resume {random_bytes}: unreadable, truncated or corrupt (UnpicklingError)")


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_resumed_run_takes_the_new_learning_rate_and_evaluates_at_each_end(tmp_path, monkeypatch, script):
    checkpoint = train(script, tmp_path, monkeypatch, "--total-timesteps", "40", "--learning-rate", "3e-4")
    assert set(learning_rates(torch.load(checkpoint, weights_only=True))) == {3e-4}
    flags = ["--total-timesteps", "50", "--learning-rate", "1e-5"]
    command_line(script, "--resume", str(checkpoint), *flags, cwd=tmp_path, monkeypatch=monkeypatch)
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["step"] == 50 and set(learning_rates(saved)) == {1e-5}
    evaluations = read_scalars(str(the_run_dir(tmp_path)))["eval/episodic_return"]
    assert [step for step, _ in evaluations] == [40, 50]  # the extended run's evaluations extend one curve


@pytest.mark.parametrize("script", SCRIPTS)
def test_resume_without_the_buffer_waits_until_it_is_refilled(tmp_path, monkeypatch, script):
    """Saved at step 40 without its buffer, the run may train again only once it holds
    max(batch size, learning starts) = 20 new transitions, i.e. from step 60 on."""
    saved = train(script, tmp_path, monkeypatch, "--total-timesteps", "40", "--no-save-buffer")
    before = agent_tensors(saved)
    shutil.copy(saved, tmp_path / "at_40.pt")
    command_line(script, "--resume", str(saved), "--total-timesteps", "60", cwd=tmp_path, monkeypatch=monkeypatch)
    assert all(torch.equal(a, b) for a, b in zip(before, agent_tensors(saved), strict=True))  # no update yet
    shutil.copy(tmp_path / "at_40.pt", saved)  # the resumed run saves to its run folder
    command_line(script, "--resume", str(saved), "--total-timesteps", "70", cwd=tmp_path, monkeypatch=monkeypatch)
    assert not all(torch.equal(a, b) for a, b in zip(before, agent_tensors(saved), strict=True))  # training again


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("flag", [("--learning-rate", "nan"), ("--gamma", "inf"), ("--tau", "-inf")])
def test_a_non_finite_flag_stops_before_training(tmp_path, monkeypatch, script, flag):
    error = command_line_error(script, *SCRIPTS[script], *flag, cwd=tmp_path, monkeypatch=monkeypatch)
    assert f"{flag[0]} must be a finite number" in error
    assert not (tmp_path / "runs").exists()
