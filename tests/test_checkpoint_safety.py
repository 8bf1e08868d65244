"""What every script promises about checkpoints and resuming, checked the same way for all five: a checkpoint never
runs code when loaded, flags given with --resume reach the optimiser, a resume without the saved buffer waits for
the refill, an extended run's evaluations extend one curve, and non-finite flags stop before training."""

import pickle
import shutil

import pytest
import torch

from tests.helpers import checkpoint_of, run_ok, run_script, the_run_dir
from utils.logger import read_scalars

QUICK = ["--learning-starts", "100", "--batch-size", "16", "--log-every", "25", "--eval-episodes", "1"]
SCRIPTS = {  # script: flags of a quick run
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


def train(script: str, folder, *flags: str):
    folder.mkdir(exist_ok=True)
    run_ok(script, *SCRIPTS[script], "--save-model", *flags, cwd=folder)
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
def test_a_crafted_checkpoint_runs_no_code(tmp_path, script):
    marker = tmp_path / "code_ran"
    crafted = tmp_path / "crafted.pt"
    torch.save({"args": {}, "step": 0, "payload": WritesAFile(marker)}, crafted)
    pickle.loads(pickle.dumps(WritesAFile(marker)))  # the payload is a real threat: unpickling it runs its code
    assert marker.exists()
    marker.unlink()
    result = run_script(script, "--resume", str(crafted), cwd=tmp_path)
    assert result.returncode != 0
    assert "holds objects other than tensors and plain values" in result.stderr.strip().splitlines()[-1]
    assert not marker.exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_learning_rate_given_on_resume_reaches_the_optimiser(tmp_path, script):
    checkpoint = train(script, tmp_path, "--total-timesteps", "150", "--learning-rate", "3e-4")
    assert set(learning_rates(torch.load(checkpoint, weights_only=True))) == {3e-4}
    run_ok(script, "--resume", str(checkpoint), "--total-timesteps", "175", "--learning-rate", "1e-5", cwd=tmp_path)
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["step"] == 175 and set(learning_rates(saved)) == {1e-5}


@pytest.mark.parametrize("script", SCRIPTS)
def test_resume_without_the_buffer_waits_until_it_is_refilled(tmp_path, script):
    """Saved at step 150 without its buffer, the run may train again only once it holds
    max(batch size, learning starts) = 100 new transitions, i.e. from step 250 on."""
    saved = train(script, tmp_path, "--total-timesteps", "150", "--no-save-buffer")
    before = agent_tensors(saved)
    shutil.copy(saved, tmp_path / "at_150.pt")
    run_ok(script, "--resume", str(saved), "--total-timesteps", "250", cwd=tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(before, agent_tensors(saved), strict=True))  # no update yet
    shutil.copy(tmp_path / "at_150.pt", saved)  # the resumed run saves to its run folder
    run_ok(script, "--resume", str(saved), "--total-timesteps", "275", cwd=tmp_path)
    assert not all(torch.equal(a, b) for a, b in zip(before, agent_tensors(saved), strict=True))  # training again


@pytest.mark.parametrize("script", SCRIPTS)
def test_an_extended_run_evaluates_at_each_end(tmp_path, script):
    checkpoint = train(script, tmp_path, "--total-timesteps", "150")
    run_ok(script, "--resume", str(checkpoint), "--total-timesteps", "200", cwd=tmp_path)
    scalars = read_scalars(str(the_run_dir(tmp_path)))
    assert [step for step, _ in scalars["eval/episodic_return"]] == [150, 200]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("flag", [("--learning-rate", "nan"), ("--gamma", "inf"), ("--tau", "-inf")])
def test_a_non_finite_flag_stops_before_training(tmp_path, script, flag):
    result = run_script(script, *SCRIPTS[script], *flag, cwd=tmp_path)
    assert result.returncode != 0
    assert f"{flag[0]} must be a finite number" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "runs").exists()
