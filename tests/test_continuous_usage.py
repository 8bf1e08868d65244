"""Everyday use of pr2_continuous.py: resume, Ctrl-C, faults, evaluation video, tracking, progress, --help,
and copying the script into another project."""

import shutil
import sys
import types

import numpy as np
import pytest
import torch

from tests.helpers import (
    ROOT,
    checkpoint_of,
    command_line,
    command_line_error,
    final_evaluation,
    finite_scalars,
    interrupt_when_training,
    logged_values,
    run_ok,
    the_run_dir,
    undocumented_args,
)

SCRIPT = "pr2_continuous.py"
QUICK = ["--learning-starts", "100", "--batch-size", "16", "--log-every", "50", "--seed", "5"]


@pytest.mark.parametrize(
    "flags",
    [["--env", "particle", "--policy", "deterministic"], ["--env", "differential", "--marginal-particles", "2"]],
    ids=["deterministic-particle", "soft-differential"],
)
def test_resumed_run_logs_the_same_values_as_an_uninterrupted_one(tmp_path, monkeypatch, flags):
    whole, part = tmp_path / "whole", tmp_path / "part"
    whole.mkdir(), part.mkdir()
    common = [*flags, *QUICK, "--eval-episodes", "0"]
    command_line(SCRIPT, *common, "--total-timesteps", "300", cwd=whole, monkeypatch=monkeypatch)
    # stop at step 150 (an episode boundary on both envs), then continue to 300 from the checkpoint
    command_line(SCRIPT, *common, "--total-timesteps", "150", "--save-model", cwd=part, monkeypatch=monkeypatch)
    resume = ["--resume", str(checkpoint_of(part)), "--total-timesteps", "300"]
    command_line(SCRIPT, *resume, cwd=part, monkeypatch=monkeypatch)
    assert logged_values(the_run_dir(part)) == logged_values(the_run_dir(whole))


@pytest.fixture(scope="module")
def saved_at_120(shared_run):
    """The checkpoint of a run on the differential game saved at step 120 (tests copy it before resuming it)."""
    run_dir = shared_run(SCRIPT, "--env", "differential", *QUICK, "--total-timesteps", "120", "--save-model")
    return run_dir / "pr2_continuous.pt"


def test_bad_checkpoints_get_one_line_errors(tmp_path, monkeypatch, saved_at_120):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(saved_at_120.read_bytes()[:5000])
    random_bytes = tmp_path / "random.pt"
    random_bytes.write_bytes(np.random.default_rng(0).bytes(5000))
    not_ours = tmp_path / "other.pt"
    torch.save({"weights": 1}, not_ours)
    good = str(saved_at_120)
    cases = [
        (["--resume", str(tmp_path / "missing.pt")], "no such file"),
        (["--resume", str(truncated)], "unreadable, truncated or corrupt"),
        (["--resume", str(random_bytes)], "unreadable, truncated or corrupt"),
        (["--resume", str(not_ours)], "not a pr2_continuous.py checkpoint"),
        (["--resume", good, "--env", "particle"], "trained with --env differential, not particle"),
        (["--resume", good, "--hidden-size", "64"], "trained with --hidden-size 100, not 64"),
        (["--resume", good, "--total-timesteps", "100"], "the checkpoint is at step 120"),
    ]
    for flags, message in cases:
        error = command_line_error(SCRIPT, *flags, cwd=tmp_path, monkeypatch=monkeypatch)
        assert error.startswith("pr2_continuous.py: error: --resume") and message in error, (flags, error)
    assert not (tmp_path / "runs").exists()


def test_resume_accepts_the_default_scenario_named_explicitly(tmp_path, monkeypatch, saved_at_120):
    shutil.copytree(saved_at_120.parents[1], tmp_path / "runs")  # the resumed run writes to its run folder
    checkpoint = str(checkpoint_of(tmp_path))
    flags = ["--resume", checkpoint, "--scenario", "paper", "--total-timesteps", "150"]
    command_line(SCRIPT, *flags, cwd=tmp_path, monkeypatch=monkeypatch)
    assert torch.load(checkpoint, weights_only=True)["step"] == 150


def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path, monkeypatch):
    flags = ["--env", "differential", *QUICK, "--total-timesteps", "100000", "--save-model", "--log-every", "10"]
    returncode, out, err = interrupt_when_training(SCRIPT, *flags, cwd=tmp_path)
    assert returncode == 130, err
    assert "continue with --resume" in out
    step = torch.load(checkpoint_of(tmp_path), weights_only=True)["step"]
    assert 0 < step < 100000
    resume = ["--resume", str(checkpoint_of(tmp_path)), "--total-timesteps", str(step + 50)]
    command_line(SCRIPT, *resume, cwd=tmp_path, monkeypatch=monkeypatch)
    assert torch.load(checkpoint_of(tmp_path), weights_only=True)["step"] == step + 50


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    flags = ["--env", "differential", *QUICK, "--total-timesteps", "300", "--save-model", "--save-every", "50"]
    error = command_line_error(SCRIPT, *flags, "--reward-scale", "1e39", cwd=tmp_path, monkeypatch=monkeypatch)
    assert "non-finite critic_loss/agent_0" in error and "at step 100" in error  # 1e39 overflows float32: inf
    checkpoint = torch.load(checkpoint_of(tmp_path), weights_only=True)
    assert checkpoint["step"] == 100  # saved before the first (bad) update, not overwritten afterwards
    assert all(torch.isfinite(value).all() for value in checkpoint["agents"].values())


def test_capture_video_records_evaluation_episodes(tmp_path, monkeypatch):
    flags = [*QUICK, "--total-timesteps", "120", "--eval-episodes", "2", "--capture-video"]
    command_line(SCRIPT, *flags, cwd=tmp_path, monkeypatch=monkeypatch)
    videos = sorted((the_run_dir(tmp_path) / "videos").glob("*.gif"))
    assert [v.name for v in videos] == ["eval_episode_0.gif", "eval_episode_1.gif"]
    from PIL import Image

    assert Image.open(videos[0]).n_frames > 10  # 26 rendered frames; the GIF writer merges identical ones
    final_evaluation(the_run_dir(tmp_path), 120, ["agent_0", "agent_1", "agent_2"])
    (tmp_path / "other").mkdir()
    error = command_line_error(SCRIPT, "--env", "differential", "--capture-video", cwd=tmp_path / "other",
                               monkeypatch=monkeypatch)  # fmt: skip
    assert "--capture-video needs an env with rgb_array rendering" in error


FAKE_WANDB = """
import json
def init(**kwargs):
    json.dump({k: kwargs[k] for k in ("project", "sync_tensorboard", "name")}, open("wandb_init.json", "w"))
"""


def test_track_mirrors_to_weights_and_biases(tmp_path, monkeypatch):
    wandb = types.ModuleType("wandb")
    exec(FAKE_WANDB, wandb.__dict__)
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    flags = ["--env", "differential", *QUICK, "--total-timesteps", "110", "--track", "--wandb-project-name", "p"]
    command_line(SCRIPT, *flags, cwd=tmp_path, monkeypatch=monkeypatch)
    init = (tmp_path / "wandb_init.json").read_text()
    assert '"project": "p"' in init and '"sync_tensorboard": true' in init


def test_progress_does_not_flood_a_log_file(tmp_path, monkeypatch, capsys):
    flags = ["--env", "differential", "--total-timesteps", "2000", "--learning-starts", "2000", "--log-every", "10"]
    command_line(SCRIPT, *flags, cwd=tmp_path, monkeypatch=monkeypatch)  # 200 log entries, stdout is no terminal
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert 5 <= len(lines) <= 21 and lines[-1].startswith("step 2,000/2,000 (100%)")
    assert "SPS" in lines[-1] and "min left" in lines[-1]


def test_every_flag_has_a_docstring():
    assert undocumented_args(SCRIPT) == []


CUSTOM_ENV = '''
import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv


class Tug(ParallelEnv):
    """Two heterogeneous agents pull a point along a line; both are paid for keeping it near 0."""

    metadata = {"name": "tug_v0"}

    def __init__(self):
        self.possible_agents = ["left", "right"]
        self.spaces = {"left": spaces.Box(-2, 2, (2,)), "right": spaces.Box(0, 1, (1,))}

    def observation_space(self, agent):
        return spaces.Box(-np.inf, np.inf, (3,) if agent == "left" else (1,))

    def action_space(self, agent):
        return self.spaces[agent]

    def _obs(self):
        return {"left": np.array([self.x, self.t, 1.0], np.float32), "right": np.array([self.x], np.float32)}

    def reset(self, seed=None, options=None):
        self.rng = np.random.default_rng(seed)
        self.agents, self.x, self.t = list(self.possible_agents), float(self.rng.normal()), 0.0
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions):
        self.x += 0.1 * float(actions["left"].sum()) - 0.1 * float(actions["right"][0])
        self.t += 1
        done = self.t >= 10
        agents = self.agents
        self.agents = [] if done else self.agents
        reward = -abs(self.x)
        return (self._obs(), {a: reward for a in agents}, {a: False for a in agents},
                {a: done for a in agents}, {a: {} for a in agents})


def make_env():
    return Tug()
'''


def test_copy_the_script_into_another_project(tmp_path):
    """What the README's 'Using PR2 in your own project' says: copy the script and utils/, point --env at your env."""
    shutil.copy(ROOT / SCRIPT, tmp_path / SCRIPT)
    shutil.copytree(ROOT / "utils", tmp_path / "utils", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "my_envs.py").write_text(CUSTOM_ENV)
    flags = ["--env", "my_envs:make_env", "--total-timesteps", "300", "--learning-starts", "100", "--batch-size", "16"]
    run_ok(str(tmp_path / SCRIPT), *flags, "--log-every", "50", "--save-model", cwd=tmp_path)
    tags = ["charts/episodic_return/left", "charts/episodic_return/right", "losses/opponent_model_loss/right"]
    finite_scalars(the_run_dir(tmp_path), tags + ["eval/episodic_return"])
