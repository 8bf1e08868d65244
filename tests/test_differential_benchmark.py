"""benchmarks/differential_game.py: the diagnostics of a saved checkpoint with a known critic, and a tiny benchmark end
to end (report, picture, resuming without redoing runs, --report-only)."""

import re

import pytest
import torch

import pr2_continuous
from benchmarks.common import diagnose
from tests.helpers import run_ok

TINY = "--total-timesteps,300,--learning-starts,100,--anneal-steps,50,--eval-episodes,0"


def test_diagnostics_of_a_checkpoint_with_a_constant_critic(tmp_path):
    agents = torch.nn.ModuleList(pr2_continuous.PR2Agent(1, 1, 1, 8, stochastic=True) for _ in range(2))
    with torch.no_grad():
        for agent in agents:
            for parameter in agent.joint_critic.parameters():
                parameter.zero_()
            list(agent.joint_critic.parameters())[-1].fill_(3.0)  # Q ≡ 3 whatever the actions
    path = tmp_path / "checkpoint.pt"
    torch.save(dict(args=dict(hidden_size=8, policy="soft"), act_dims=[1, 1], agents=agents.state_dict()), path)
    found = diagnose(path, "pr2_continuous.py")
    assert [critic["q_max"] for critic in found["critics"]] == pytest.approx([3.0, 3.0])
    assert [critic["q_optimum"] for critic in found["critics"]] == pytest.approx([3.0, 3.0])
    for model in found["opponent_models"]:
        assert len(model["gap"]) == 4 and all(abs(gap) < 1e-4 for gap in model["gap"].values()), model
        assert all(-10 <= response <= 10 for responses in model["response"] for response in responses)
    assert diagnose(path, "pr2_continuous.py") == found  # its own fixed seed: the report does not change between reads
    assert diagnose(path, "baselines/ddpg.py") == dict(critics=[], opponent_models=[])  # a script it cannot read


def test_differential_benchmark_end_to_end(tmp_path):
    flags = ["--seeds", "0", "--workers", "1", "--work-dir", str(tmp_path / "work"), "--out-dir", str(tmp_path)]
    first = run_ok(
        "benchmarks/differential_game.py", "--configs", f"soft=pr2_continuous.py:{TINY}", *flags, cwd=tmp_path
    )
    assert "paper soft seed 0:" in first.stdout
    report = (tmp_path / "differential_paper.md").read_text()
    assert re.search(r"\| soft \| [01]/1 \| -?\d+\.\d\d \| nan \| \d+ s / \d+ s \|", report), report
    assert re.search(r"\| soft \| \([-+]\d+\.\d\) \| \([-+]\d+\.\d\)( \| [-+]\d+\.\d\d){4} \|", report), report
    assert (tmp_path / "differential_paper.png").stat().st_size > 10_000
    # the finished run is reported from its result.json; a configuration that never ran is left out
    configs = [
        "--configs",
        f"soft=pr2_continuous.py:{TINY}",
        f"no_rho=pr2_continuous.py:{TINY},--soft-marginal,uniform",
    ]
    again = run_ok("benchmarks/differential_game.py", *configs, *flags, "--report-only", cwd=tmp_path, timeout=120)
    assert "Progress" not in again.stdout and again.stdout.count("seed 0:") == 1
    assert (tmp_path / "differential_paper.md").read_text().split("Software:")[1] == report.split("Software:")[1]
