"""Everyday use of pr2_discrete.py and the baselines (what tests/test_continuous_usage.py checks for
pr2_continuous.py): resume, Ctrl-C, bad checkpoints, non-finite losses, evaluation video, documented flags.

Runs are in-process (main() as the command line calls it, or the script's command line itself, without a new
interpreter's start-up); only Ctrl-C runs as a subprocess."""

import math
import re

import pytest
import torch

import pr2_discrete
from baselines import ddpg, ddpg_om, maddpg
from tests.helpers import (
    checkpoint_of,
    command_line,
    command_line_error,
    final_evaluation,
    interrupt_when_training,
    logged_values,
    run_in_process,
    the_run_dir,
    undocumented_args,
)
from utils.run import load_checkpoint

# The discrete policy's temperature anneals over a fraction of --total-timesteps, so a run stopped early would anneal
# faster than the uninterrupted one; a constant temperature (--temperature-end 1) makes the two comparable.
DISCRETE = dict(env="particle", learning_starts=50, batch_size=16, log_every=25, temperature_end=1.0)
BASELINE = dict(env="particle", learning_starts=100, batch_size=16, log_every=50)
CASES = {  # id: (module, script, flags of a quick particle run)
    "pr2_discrete": (pr2_discrete, "pr2_discrete.py", DISCRETE),
    "maddpg": (maddpg, "baselines/maddpg.py", BASELINE),
    "ddpg": (ddpg, "baselines/ddpg.py", BASELINE),
    "ddpg_om": (ddpg_om, "baselines/ddpg_om.py", BASELINE),
}
PR2Q = (pr2_discrete, "pr2_discrete.py", dict(env="matrix", log_every=10))


def cli(flags: dict) -> list[str]:
    return [f"--{key.replace('_', '-')}={value}" for key, value in flags.items()]


def resume_in_process(module, script, folder, monkeypatch, **overrides):
    """main() as `python <script> --resume <checkpoint> <overrides>` calls it."""
    monkeypatch.chdir(folder)
    path = str(checkpoint_of(folder))
    saved = load_checkpoint(path, module.CHECKPOINT_KEYS, script.split("/")[-1])
    module.main(module.Args(**{**saved["args"], "resume": path, **overrides}), saved)


@pytest.mark.parametrize("case", [*CASES, "pr2q"])
def test_resumed_run_logs_the_same_values_as_an_uninterrupted_one(tmp_path, monkeypatch, case):
    module, script, flags = PR2Q if case == "pr2q" else CASES[case]
    common = dict(flags, seed=5, eval_episodes=0)
    whole = run_in_process(module, tmp_path / "whole", monkeypatch, total_timesteps=300, **common)
    # stop at step 150 (an episode boundary), then continue to 300 from the checkpoint, in the same run folder
    run_in_process(module, tmp_path / "part", monkeypatch, total_timesteps=150, save_model=True, **common)
    resume_in_process(module, script, tmp_path / "part", monkeypatch, total_timesteps=300)
    resumed = logged_values(the_run_dir(tmp_path / "part"))
    assert resumed == logged_values(whole)
    assert max(step for step, _ in resumed["charts/episodic_return"]) == 300


def test_resumed_discrete_run_keeps_its_temperature_anneal(tmp_path, monkeypatch):
    """Trained 100 steps (anneal over the first 50), resumed to 300: the temperature stays annealed."""
    flags = dict(env="matrix", algorithm="deep", batch_size=8, log_every=10, eval_episodes=0, save_model=True)
    run_dir = run_in_process(pr2_discrete, tmp_path, monkeypatch, total_timesteps=100, **flags)
    resume_in_process(pr2_discrete, "pr2_discrete.py", tmp_path, monkeypatch, total_timesteps=300)
    temperatures = dict(logged_values(run_dir)["charts/temperature"])
    assert temperatures[40] > 0.1 and all(temperatures[step] == pytest.approx(0.01) for step in range(60, 301, 10))


# MADDPG, DDPG and DDPG-OM share their training loop, Ctrl-C, checkpoints and evaluation (baselines/common.py), so
# what only that loop does is checked on MADDPG
LOOPS = ["pr2_discrete", "maddpg"]


@pytest.mark.parametrize("case", LOOPS)
def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path, monkeypatch, case):
    _, script, flags = CASES[case]
    flags = cli(dict(flags, log_every=10, total_timesteps=100_000, eval_episodes=1))
    returncode, out, err = interrupt_when_training(script, *flags, "--save-model", cwd=tmp_path)
    assert returncode == 130, err[-2000:]
    assert "continue with --resume" in out
    step = torch.load(checkpoint_of(tmp_path), weights_only=True)["step"]
    assert 0 < step < 100_000
    resume = ["--resume", str(checkpoint_of(tmp_path)), "--total-timesteps", str(step + 30)]
    command_line(script, *resume, cwd=tmp_path, monkeypatch=monkeypatch)
    assert torch.load(checkpoint_of(tmp_path), weights_only=True)["step"] == step + 30  # the same run folder


@pytest.mark.parametrize("case", LOOPS)
def test_bad_checkpoints_get_one_line_errors_before_training(tmp_path, monkeypatch, case):
    module, script, flags = CASES[case]
    name = script.split("/")[-1]
    run_in_process(module, tmp_path, monkeypatch, **dict(flags, total_timesteps=60, eval_episodes=0, save_model=True))
    good = checkpoint_of(tmp_path)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:3000])
    error = command_line_error(script, "--resume", str(truncated), cwd=tmp_path, monkeypatch=monkeypatch)
    assert error.startswith(f"{name}: error: --resume {truncated}: unreadable"), error
    other_env = "matrix" if module is pr2_discrete else "differential"
    cases = [
        (dict(env=other_env), f"trained with --env particle, not {other_env}"),
        (dict(hidden_size=8), "trained with --hidden-size"),
        (dict(total_timesteps=60), "the checkpoint is at step 60; raise --total-timesteps"),
    ]
    saved = load_checkpoint(str(good), module.CHECKPOINT_KEYS, name)
    for overrides, message in cases:
        with pytest.raises(SystemExit) as stop:
            module.main(module.Args(**{**saved["args"], "resume": str(good), **overrides}), saved)
        assert str(stop.value).startswith(f"{name}: error: --resume") and message in str(stop.value), overrides
        assert "\n" not in str(stop.value)
    broken = dict(saved, agents={key: {} for key in saved["agents"]} if module is pr2_discrete else {})
    with pytest.raises(SystemExit, match="the checkpoint does not fit this run") as stop:
        module.main(module.Args(**{**saved["args"], "total_timesteps": 90}), broken)
    assert "\n" not in str(stop.value)


@pytest.mark.parametrize("case", ["maddpg", "ddpg", "ddpg_om"])
def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, case):
    module, _, flags = CASES[case]
    with pytest.raises(SystemExit, match=r"non-finite critic_loss/agent_0.* at step 100"):
        flags = dict(flags, total_timesteps=300, save_model=True, save_every=50, reward_scale=math.nan)
        run_in_process(module, tmp_path, monkeypatch, **flags)
    checkpoint = torch.load(checkpoint_of(tmp_path), weights_only=True)
    assert checkpoint["step"] == 100  # saved before the first (bad) update, not overwritten afterwards
    assert all(torch.isfinite(value).all() for value in checkpoint["agents"].values())


def test_discrete_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_train_step, calls = pr2_discrete.train_step, []

    def diverging(learner, optimizers, batch, i, args, temperature):  # 3 agents train at steps 50, 52, 54, 56, ...
        losses = real_train_step(learner, optimizers, batch, i, args, temperature)
        calls.append(i)
        return dict(losses, critic_loss=math.inf) if len(calls) > 9 else losses  # from agent_0's 4th update on

    monkeypatch.setattr(pr2_discrete, "train_step", diverging)
    flags = dict(DISCRETE, total_timesteps=300, save_model=True, save_every=50)
    with pytest.raises(SystemExit, match=r"critic_loss/agent_0 became inf at step 56"):
        run_in_process(pr2_discrete, tmp_path, monkeypatch, **flags)
    assert torch.load(checkpoint_of(tmp_path), weights_only=True)["step"] == 50


@pytest.mark.parametrize("case", LOOPS)
def test_capture_video_records_evaluation_episodes_as_gifs(tmp_path, monkeypatch, case):
    module, _, flags = CASES[case]
    flags = dict(flags, total_timesteps=60, learning_starts=30, eval_episodes=2, capture_video=True)
    run_dir = run_in_process(module, tmp_path / "run", monkeypatch, **flags)
    videos = sorted((run_dir / "videos").glob("*.gif"))
    assert [v.name for v in videos] == ["eval_episode_0.gif", "eval_episode_1.gif"]
    from PIL import Image

    assert Image.open(videos[0]).n_frames > 10  # 26 rendered frames; the GIF writer merges identical ones
    final_evaluation(run_dir, 60, ["agent_0", "agent_1", "agent_2"])
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    no_rendering = "matrix" if module is pr2_discrete else "differential"
    with pytest.raises(SystemExit, match="--capture-video needs an env with rgb_array rendering"):
        module.main(module.Args(env=no_rendering, capture_video=True))
    with pytest.raises(SystemExit, match="--capture-video records the evaluation"):
        module.main(module.Args(capture_video=True, eval_episodes=0))
    assert not (tmp_path / "other" / "runs").exists()


@pytest.mark.parametrize(
    "flags,message",
    [
        (dict(env="particle", learning_rate=0.0), "--learning-rate must be positive"),
        (dict(save_every=-5), "--save-every must be >= 0"),
        (dict(env="particle", batch_size=64, buffer_size=32), "--batch-size 64 > --buffer-size 32"),
    ],
)
def test_discrete_bad_flags_stop_before_training(tmp_path, monkeypatch, flags, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=f"^pr2_discrete.py: error: .*{re.escape(message)}"):
        pr2_discrete.main(pr2_discrete.Args(**flags))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "script",
    ["pr2_discrete.py", "baselines/common.py", "baselines/maddpg.py", "baselines/ddpg.py", "baselines/ddpg_om.py"],
)
def test_every_flag_has_a_docstring(script):
    assert undocumented_args(script) == []


def test_the_shared_run_flags_are_documented_and_shown_by_every_script(tmp_path, monkeypatch, capsys):
    assert undocumented_args("utils/run.py", "RunArgs") == []
    for script in ["pr2_continuous.py", "pr2_discrete.py", "baselines/maddpg.py"]:
        with pytest.raises(SystemExit) as stop:
            command_line(script, "--help", cwd=tmp_path, monkeypatch=monkeypatch)
        help_text = " ".join(capsys.readouterr().out.split())
        assert stop.value.code == 0 and "--eval-every INT" in help_text and "also evaluate every" in help_text, script
