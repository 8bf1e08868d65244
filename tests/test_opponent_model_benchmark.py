"""benchmarks/opponent_model.py and the diagnostics it reports (benchmarks/common.py): the soft values of --gaps
against a direct sum at pr2_continuous.py's own α schedule, the critic maximum and ρ's response on known networks, a
run redone only when its command changes, and a tiny three-agent benchmark end to end (every seed in the report, with
finite diagnostics)."""

import json
import math
import re
import sys

import numpy as np
import pytest
import torch

import pr2_continuous
from benchmarks import opponent_model
from benchmarks.common import critic_maximum, critic_of, opponent_model_view, train_once
from tests.helpers import run_ok

# the soft policy's α schedule on the differential game, from the script itself
SCHEDULE = pr2_continuous.resolve_args(pr2_continuous.Args(env="differential", policy="soft"))
ALPHAS = (SCHEDULE.alpha_start, SCHEDULE.alpha)

PEAK = torch.tensor([0.3, -0.2, 0.7])  # the stub critics' maximum, in [-1, 1] units: (+3, -2, +7) env
SLOPE = torch.tensor([1.0, -0.4])  # the stub ρ predicts the others' actions SLOPE · own action


class StubCritic(torch.nn.Module):
    """Agent i's Q^i(s, a^i, a^-i) = 7 - ‖(a^i, a^-i) - PEAK‖², the others in agent order: maximum 7 at PEAK."""

    def __init__(self, i: int):
        super().__init__()
        self.input_layers = torch.nn.ModuleList([torch.nn.Linear(1, 1)])  # the state's size, as the MLP's
        self.own_peak, self.others_peak = PEAK[i : i + 1], torch.cat([PEAK[:i], PEAK[i + 1 :]])

    def forward(self, state, own, others):
        own_term = (own - self.own_peak).pow(2).sum(-1, keepdim=True)
        return 7 - own_term - (others - self.others_peak).pow(2).sum(-1, keepdim=True)


class StubOpponentModel(torch.nn.Module):
    def forward(self, state, own, noise):
        return own * SLOPE + 0.1 * noise


def stub_agent(i: int) -> pr2_continuous.PR2Agent:
    agent = pr2_continuous.PR2Agent(1, 1, 2, 8, stochastic=True)
    agent.joint_critic, agent.opponent_model = StubCritic(i), StubOpponentModel()
    return agent


@pytest.mark.parametrize("i", [0, 1, 2])
def test_critic_maximum_finds_the_known_peak_in_agent_order(i):
    peak = critic_maximum(critic_of(stub_agent(i), i), n_agents=3)
    assert peak["argmax"] == pytest.approx([3.0, -2.0, 7.0], abs=1e-4), peak
    assert peak["q_max"] == pytest.approx(7.0, abs=1e-5)
    assert peak["q_optimum"] == pytest.approx(7 - float((0.5 - PEAK).pow(2).sum()), abs=1e-5)  # at (5, 5, 5)


def test_opponent_model_view_reports_the_known_response_and_gaps():
    view = opponent_model_view(stub_agent(0))
    assert view["response"][0] == pytest.approx([5.0, -2.0], abs=0.05)  # SLOPE · (+5), env units
    assert view["response"][1] == pytest.approx([-5.0, 2.0], abs=0.05)
    own_gap = (-0.5 - 0.3) ** 2 - (0.5 - 0.3) ** 2  # Q's own term at +5 minus at -5
    assert set(view["gap"]) == {
        f"{m}@{a:g}" for m in ("rho", "uniform") for a in (SCHEDULE.alpha_start, SCHEDULE.alpha)
    }
    for alpha in (f"{SCHEDULE.alpha_start:g}", f"{SCHEDULE.alpha:g}"):
        # uniform: the same samples at both own actions, so their term cancels exactly
        assert view["gap"][f"uniform@{alpha}"] == pytest.approx(own_gap, abs=1e-4)
        # ρ: the others play SLOPE · a, (0.5, -0.2) at +5 and (-0.5, 0.2) at -5, against PEAK's (-0.2, 0.7)
        others_gap = (0.3**2 + 0.5**2) - (0.7**2 + 0.9**2)
        assert view["gap"][f"rho@{alpha}"] == pytest.approx(own_gap + others_gap, abs=0.05)
    assert opponent_model_view(stub_agent(0)) == view  # its own fixed seed


def test_gap_tables_follow_pr2_continuous_schedule_and_match_a_direct_sum():
    role = opponent_model.role_gaps("paper_n3", 0)
    alphas = [row["alpha"] for row in role["rows"]]
    assert (alphas[0], alphas[-1]) == ALPHAS and alphas == sorted(alphas, reverse=True)
    # the symmetric grid of partner actions against every ordered pair (b1, b2), trapezoid weights
    reward, roles = opponent_model.game("paper_n3")
    nodes = np.arange(-10.0, 10.0 + opponent_model.STEP / 2, opponent_model.STEP)
    weight = np.r_[0.5, np.ones(len(nodes) - 2), 0.5]
    b1, b2 = (x.ravel() for x in np.meshgrid(nodes, nodes))
    w = np.outer(weight, weight).ravel() / np.outer(weight, weight).sum()
    own = np.array([opponent_model.GLOBAL, 0.0, opponent_model.LOCAL])
    v_u, v_rho, v_br = opponent_model.soft_values(reward, roles, 0, own, alphas[:1] + [2.0])
    for k, alpha in enumerate(alphas[:1] + [2.0]):
        r = np.stack([reward(np.stack([np.full_like(b1, a), b1, b2], -1)) for a in own])  # [own, partners]
        uniform = alpha * np.log((w * np.exp(r / alpha)).sum(1))
        rho = alpha * np.log((w * np.exp(2 * r / alpha)).sum(1) / (w * np.exp(r / alpha)).sum(1))  # b ~ w·exp(r/α)
        assert v_u[k] == pytest.approx(uniform, abs=1e-9) and v_rho[k] == pytest.approx(rho, abs=1e-9)
    assert v_br == pytest.approx(r.max(1))


def test_a_run_is_redone_only_when_its_command_changes(tmp_path):
    def command(tag: str) -> list[str]:
        code = f"import os; os.makedirs('runs/r'); open('trained_{tag}', 'a').write('x')"
        return [sys.executable, "-c", code]

    folder = tmp_path / "run"
    run_dir, timing = train_once(folder, command("a"))
    assert run_dir == folder / "runs" / "r" and set(timing) == {"wall_time", "cpu_time"}
    assert train_once(folder, command("a")) == (run_dir, timing)  # finished: not trained again
    assert (folder / "trained_a").read_text() == "x"
    train_once(folder, command("b"))  # another command: trained again from scratch
    assert (folder / "trained_b").read_text() == "x" and json.loads((folder / "timing.json").read_text())["command"]


def test_opponent_model_benchmark_end_to_end(tmp_path):
    tiny = "--total-timesteps,150,--learning-starts,100,--log-every,50"
    configs = [f"soft_rho=pr2_continuous.py:{tiny},--anneal-steps,50", f"maddpg=baselines/maddpg.py:{tiny}"]
    flags = ["--train", "--games", "paper_n3", "--seeds", "0", "1", "--workers", "2", "--configs", *configs]
    flags += ["--work-dir", str(tmp_path / "work"), "--out-dir", str(tmp_path)]
    first = run_ok("benchmarks/opponent_model.py", *flags, cwd=tmp_path, timeout=300)
    assert first.stdout.count("paper_n3 soft_rho seed") == 2 and first.stdout.count("paper_n3 maddpg seed") == 2
    report = (tmp_path / "opponent_model.md").read_text()
    assert (tmp_path / "opponent_model_paper_n3.png").stat().st_size > 10_000
    for label in ("soft_rho", "maddpg"):
        section = report.split(f"### {label}:")[1].split("###")[0]
        rows = [line.split("|")[1:-1] for line in section.splitlines() if re.match(r"\| [0-9 ]", line)]
        assert [row[0].strip() for row in rows] == ["0", "", "", "1", "", ""], section  # every seed, 3 agents each
        for row in rows:
            critic = [float(x) for cell in row[7:10] for x in re.findall(r"[-+]?\d+\.\d+", cell)]
            assert len(critic) == 5 and all(map(math.isfinite, critic)), row  # argmax (3 actions), max, Q(5, 5, 5)
            model = [cell.strip() for cell in row[10:]]
            if label == "maddpg":
                assert model == ["—"] * 5, row
            else:
                values = [float(x) for cell in model for x in re.findall(r"[-+]?\d+\.\d+", cell)]
                assert len(values) == 6 and all(map(math.isfinite, values)), row  # ρ(·|+5): 2 actions, 4 gaps
        outcome = [float(cell.strip(" s")) for row in rows[::3] for cell in (row[2], row[3], row[5])]
        assert all(map(math.isfinite, outcome)), rows  # final reward, evaluation return, CPU time
    again = run_ok("benchmarks/opponent_model.py", *flags, cwd=tmp_path, timeout=120)
    assert "Progress" not in again.stdout and again.stdout.count("paper_n3") == 4  # reported from result.json
    assert (tmp_path / "opponent_model.md").read_text().split("Software:")[1] == report.split("Software:")[1]
    # --report-only: a configuration and a seed that never ran are left out and said to be missing; nothing trains
    wider = ["--train", "--games", "paper_n3", "--seeds", "0", "1", "2", "--configs", *configs]
    wider += [f"soft_uniform=pr2_continuous.py:{tiny}", *flags[-4:]]
    partial = run_ok("benchmarks/opponent_model.py", *wider, "--report-only", cwd=tmp_path, timeout=120)
    assert "Progress" not in partial.stdout and not (tmp_path / "work/opponent_model/paper_n3/soft_uniform").exists()
    partial_report = (tmp_path / "opponent_model.md").read_text()
    assert "| soft_uniform" not in partial_report and "--report-only" not in partial_report
    assert re.search(r"\| soft_rho \| \d/2 \(1 of 3 seeds missing\) \|", partial_report), partial_report
