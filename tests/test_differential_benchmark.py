"""benchmarks/differential_game.py: the opponent-model diagnostic on a known critic, and a tiny benchmark end to end
(table, ρ section, picture, resuming without redoing runs)."""

import torch

import pr2_continuous
from benchmarks.differential_game import value_of_own_action
from tests.helpers import run_ok

TINY = "--total-timesteps,300,--learning-starts,100,--anneal-steps,50,--eval-episodes,0"


def test_own_action_values_of_a_constant_critic_are_equal(tmp_path):
    agents = torch.nn.ModuleList(pr2_continuous.PR2Agent(1, 1, 1, 8, stochastic=True) for _ in range(2))
    with torch.no_grad():
        for parameter in agents[0].joint_critic.parameters():
            parameter.zero_()
        list(agents[0].joint_critic.parameters())[-1].fill_(3.0)  # Q ≡ 3 whatever the actions
    path = tmp_path / "checkpoint.pt"
    torch.save(dict(args=dict(hidden_size=8, policy="soft"), act_dims=[1, 1], agents=agents.state_dict()), path)
    values = value_of_own_action(path)
    assert set(values["gap"]) == {"rho@20", "rho@0.5", "uniform@20", "uniform@0.5"}
    assert all(abs(gap) < 1e-4 for gap in values["gap"].values()), values
    assert all(-10 <= response <= 10 for response in values["response"])
    assert value_of_own_action(path) == values  # its own fixed seed: the report does not change between reads


def test_differential_benchmark_end_to_end(tmp_path):
    flags = ["--seeds", "0", "--workers", "1", "--work-dir", str(tmp_path / "work"), "--out-dir", str(tmp_path)]
    configs = [
        "--configs",
        f"soft=pr2_continuous.py:{TINY}",
        f"no_rho=pr2_continuous.py:{TINY},--soft-marginal,uniform",
    ]
    first = run_ok("benchmarks/differential_game.py", *configs, *flags, cwd=tmp_path, timeout=300)
    assert "soft seed 0:" in first.stdout and "no_rho seed 0:" in first.stdout
    report = (tmp_path / "differential_paper.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith(("| soft |", "| no_rho |"))]
    assert len(rows) == 4, report  # the summary row and the opponent-model row of each configuration
    assert "What the opponent model contributes" in report
    assert (tmp_path / "differential_paper.png").stat().st_size > 10_000
    again = run_ok("benchmarks/differential_game.py", *configs, *flags, cwd=tmp_path, timeout=300)
    assert (tmp_path / "differential_paper.md").read_text().split("Software:")[1] == report.split("Software:")[1]
    assert "Progress" not in again.stdout and again.stdout.count("seed 0:") == 2  # reported from result.json
