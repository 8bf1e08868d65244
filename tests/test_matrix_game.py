"""The matrix game env, PR2-Q on it, and the IGA baseline."""

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

from benchmarks.iga import iga, payoff_gradients
from tests.helpers import final_evaluation, finite_scalars, run_ok, run_script, the_run_dir
from utils.envs import MATRIX_GAMES, MatrixGame, parse_payoffs

SCRIPT = "pr2_discrete.py"


@pytest.mark.parametrize("game", ["pr2", "rock_paper_scissors"])
def test_matrix_game_passes_parallel_api_test(game):
    parallel_api_test(MatrixGame(*MATRIX_GAMES[game]), num_cycles=100)


def test_custom_payoffs_give_the_matrix_rewards():
    env = MatrixGame(*parse_payoffs("0,3;1,2/3,2;0,1"))
    env.reset(seed=0)
    _, rewards, terms, _, _ = env.step({"agent_0": 1, "agent_1": 0})
    assert rewards == {"agent_0": 1.0, "agent_1": 0.0} and all(terms.values())


@pytest.mark.parametrize("payoffs", ["0,3;1,2", "0,3;1,x/3,2;0,1", "0,3;1/3,2;0,1"])
def test_bad_payoffs_exit_with_one_line_error(tmp_path, payoffs):
    result = run_script(SCRIPT, "--env", "matrix", "--scenario", payoffs, cwd=tmp_path)
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("pr2_discrete.py: error:") and "payoffs" in message
    assert not (tmp_path / "runs").exists(), "no run folder before the input is checked"


def test_pr2q_logs_policies_and_opponent_models(tmp_path):
    run_ok(SCRIPT, "--env", "matrix", "--total-timesteps", "200", cwd=tmp_path)
    tags = [f"charts/{kind}/{a}" for kind in ("policy", "opponent_model") for a in ("agent_0", "agent_1")]
    tags += ["charts/episodic_return", "losses/critic_loss/agent_0", "charts/opponent_model/agent_0/given_1"]
    scalars = finite_scalars(the_run_dir(tmp_path), tags)
    assert len(scalars["charts/policy/agent_0"]) == 200  # logged every iteration by default on matrix games
    for tag in tags[:4]:
        assert all(0.0 <= v <= 1.0 for _, v in scalars[tag])
    assert [step for step, _ in scalars["eval/episodic_return"]] == [200]  # the greedy evaluation, after training


def test_pr2q_eq12_locks_at_the_predicted_point_not_nash(tmp_path):
    """With the Eq. 12 opponent model both agents settle at pi(a=0) = 0.755, not at the Nash equilibrium; greedy,
    both play 0, which pays (R1[0, 0], R2[0, 0]) = (0, 3) in every evaluation episode."""
    flags = ("--opponent-model", "eq12", "--total-timesteps", "300", "--save-model")
    run_ok(SCRIPT, "--env", "matrix", *flags, cwd=tmp_path)
    run_dir = the_run_dir(tmp_path)
    scalars = finite_scalars(run_dir, ["charts/policy/agent_0", "charts/policy/agent_1"])
    for agent in ("agent_0", "agent_1"):
        assert scalars[f"charts/policy/{agent}"][-1][1] == pytest.approx(0.7558, abs=2e-3)
    assert final_evaluation(run_dir, 300, ["agent_0", "agent_1"]) == 1.5  # logged once, at the last step
    assert [scalars[f"eval/episodic_return/{a}"] for a in ("agent_0", "agent_1")] == [[(300, 0.0)], [(300, 3.0)]]


def test_pr2q_runs_on_a_three_action_game(tmp_path):
    run_ok(SCRIPT, "--env", "matrix", "--scenario", "rock_paper_scissors", "--total-timesteps", "50", cwd=tmp_path)
    finite_scalars(the_run_dir(tmp_path), ["charts/policy/agent_1", "charts/opponent_model/agent_1/given_2"])


def test_iga_gradients_match_hand_computation():
    r1, r2 = MATRIX_GAMES["pr2"]
    # dV1/dp = 1 - 2q and dV2/dq = 2p - 1 for the paper's game
    assert payoff_gradients(r1, r2, 0.3, 0.8) == pytest.approx((1 - 2 * 0.8, 2 * 0.3 - 1))


def test_iga_cycles_on_the_paper_game_but_converges_on_a_pure_equilibrium():
    path = iga(*MATRIX_GAMES["pr2"], start=(0.0, 0.9), lr=0.01, iterations=1000)
    assert np.ptp(path[-200:, 0]) > 0.5  # still sweeping across the square: no convergence
    pd = iga(*MATRIX_GAMES["prisoners_dilemma"], start=(0.5, 0.5), lr=0.01, iterations=1000)
    assert np.allclose(pd[-1], [0.0, 0.0])  # defect/defect, the dominant-strategy equilibrium
