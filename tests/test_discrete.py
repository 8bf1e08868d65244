"""pr2_discrete.py: the opponent models, the deep PR2 pieces, and end-to-end runs read back from TensorBoard."""

import itertools
import math
import shutil
from functools import partial

import pytest
import torch

import pr2_discrete as pr2
from tests.helpers import (
    checkpoint_of,
    command_line,
    command_line_error,
    final_evaluation,
    finite_scalars,
    logged_values,
    run_script,
    the_run_dir,
)
from utils import run
from utils.envs import make_env
from utils.logger import read_scalars

SCRIPT = "pr2_discrete.py"

R1 = torch.tensor([[0.0, 3.0], [1.0, 2.0]])  # the paper's game, agent_0's payoffs Q(a, o)


# ---------------------------------------------------------------------------------------------
# PR2-Q opponent models
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [1.0, 0.5, 3.0])
def test_eq12_opponent_model_is_a_softmax_over_the_opponent_actions(alpha):
    rho = pr2.eq12_opponent_model(R1, alpha)
    assert torch.allclose(rho.sum(-1), torch.ones(2)), "each row rho(.|a) must sum to 1 over the opponent's actions"
    e = math.exp
    expected = [
        [e(0 / alpha) / (e(0 / alpha) + e(3 / alpha)), e(3 / alpha) / (e(0 / alpha) + e(3 / alpha))],
        [e(1 / alpha) / (e(1 / alpha) + e(2 / alpha)), e(2 / alpha) / (e(1 / alpha) + e(2 / alpha))],
    ]
    assert torch.allclose(rho, torch.tensor(expected), atol=1e-6)
    assert not torch.allclose(rho.sum(0), torch.ones(2)), "normalised over the own actions (the original bug)"


def test_eq11_soft_marginal_is_the_log_normaliser_of_eq12():
    v = pr2.soft_marginal_q(R1, 0.5)
    assert torch.allclose(v, 0.5 * torch.log(torch.exp(R1 / 0.5).sum(-1)))


def test_count_model_matches_hand_computed_frequencies():
    counts = torch.tensor([[3.0, 1.0], [0.0, 2.0], [0.0, 0.0]])
    rho = pr2.empirical_opponent_model(counts)
    expected = torch.tensor([[3 / 4.01, 1 / 4.01], [0.0, 2 / 2.01], [0.0, 0.0]])
    assert torch.allclose(rho, expected)


def test_pr2q_policy_with_eq12_model_is_the_predicted_0_755():
    """Hand computation: Qbar(0) = 3 e^3/(1+e^3), Qbar(1) = (e + 2e^2)/(e + e^2); pi(0) = sigmoid(diff)."""
    agent = pr2.TabularAgent(2, 2, pr2.Args(opponent_model="eq12", alpha=1.0, temperature=1.0))
    agent.q = R1.clone()
    e = math.exp
    qbar0, qbar1 = 3 * e(3) / (1 + e(3)), (e(1) + 2 * e(2)) / (e(1) + e(2))
    assert agent.policy()[0].item() == pytest.approx(1 / (1 + e(qbar1 - qbar0)), abs=1e-6)
    assert agent.policy()[0].item() == pytest.approx(0.7558, abs=1e-3)


def test_pr2q_update_uses_the_original_step_size():
    agent = pr2.TabularAgent(2, 2, pr2.Args())
    agent.q.zero_()
    agent.update(own=1, opp=0, reward=2.0, t=10_000)  # lr = 10000 / 20000 = 0.5
    assert agent.q[1, 0].item() == pytest.approx(1.0) and agent.counts[1, 0].item() == 1


def test_pr2q_logs_the_constant_temperature_its_policy_uses(tmp_path, monkeypatch):
    agent = pr2.TabularAgent(2, 2, pr2.Args(temperature=2.0))
    agent.q = R1.clone()
    assert torch.allclose(agent.policy(), torch.softmax(pr2.level1_q(R1, agent.rho()) / 2.0, -1))
    flags = ["--env", "matrix", "--temperature", "2", "--total-timesteps", "20"]
    command_line(SCRIPT, *flags, cwd=tmp_path, monkeypatch=monkeypatch)
    scalars = finite_scalars(the_run_dir(tmp_path), ["charts/temperature"])
    assert [v for _, v in scalars["charts/temperature"]] == [2.0] * 20


def test_pr2q_refuses_a_temperature_anneal_it_would_not_use(tmp_path, monkeypatch):
    """The policy's temperature is PR2-Q's constant --temperature, so --temperature-end is an error, not a chart."""
    flags = ["--env", "matrix", "--temperature-end", "0.05"]
    error = command_line_error(SCRIPT, *flags, cwd=tmp_path, monkeypatch=monkeypatch)
    assert error.startswith(f"{SCRIPT}: error: --temperature-end: PR2-Q keeps --temperature constant"), error
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------
# deep PR2 pieces
# ---------------------------------------------------------------------------------------------
def test_joint_opponent_actions_enumerate_or_defer_to_sampling():
    joint = pr2.joint_opponent_actions([2, 3], limit=6)
    assert joint.tolist() == [list(x) for x in itertools.product(range(2), range(3))]
    assert pr2.joint_opponent_actions([2, 3], limit=5) is None


def test_factorised_rho_is_a_distribution_over_all_joint_actions():
    torch.manual_seed(0)
    model = pr2.OpponentModel(obs_dim=4, opp_sizes=[2, 3], n_actions=5, hidden=8)
    log_p = pr2.joint_log_prob(model(torch.randn(7, 4)), pr2.joint_opponent_actions([2, 3], 100))
    assert log_p.shape == (7, 5, 6)
    assert torch.allclose(log_p.exp().sum(-1), torch.ones(7, 5), atol=1e-6)


def test_sampled_and_exact_joint_q_values_agree_on_the_same_candidates():
    """The sampled path evaluates Q at the own action each candidate was drawn for."""
    torch.manual_seed(0)
    critic = pr2.JointCritic(obs_dim=3, opp_sizes=[2, 4], n_actions=3, hidden=8)
    obs = torch.randn(5, 3)
    cand = torch.stack([torch.randint(0, 2, (5, 3, 6)), torch.randint(0, 4, (5, 3, 6))], -1)  # [B, n_i, K, m]
    q = pr2.joint_q_values(critic, obs, cand, [2, 4])
    b, a, k = 4, 2, 5
    direct = critic(obs[b], pr2.one_hot_joint(cand[b, a, k], [2, 4]))[a]
    assert q.shape == (5, 3, 6) and q[b, a, k].item() == pytest.approx(direct.item(), abs=1e-6)
    joint = pr2.joint_opponent_actions([2, 4], 100)
    q_exact = pr2.joint_q_values(critic, obs, joint, [2, 4])
    assert torch.allclose(q_exact[b, a, 3], critic(obs[b], pr2.one_hot_joint(joint[3], [2, 4]))[a])


def test_eq12_loss_is_the_kl_to_the_boltzmann_target():
    q = torch.tensor([[[0.0, 3.0, 1.0]]])
    target = torch.softmax(q / 0.5, -1)
    assert pr2.eq12_opponent_loss(target.log(), q, 0.5, exact=True).item() == pytest.approx(0.0, abs=1e-6)
    rho = torch.tensor([[[0.2, 0.5, 0.3]]])
    kl = (rho * (rho.log() - target.log())).sum().item()
    assert pr2.eq12_opponent_loss(rho.log(), q, 0.5, exact=True).item() == pytest.approx(kl, abs=1e-6)


def test_critic_target_uses_the_soft_value_of_eq11_with_the_eq12_model():
    """With rho = Eq. 12, E_rho[Q - alpha log rho] = alpha logsumexp(Q / alpha) (Theorem 1)."""
    q_next = torch.tensor([[[0.0, 3.0], [1.0, 2.0]]])  # [B=1, n_i=2, M=2]
    log_rho = pr2.eq12_opponent_model(q_next, 0.7).log()
    pi = pr2.boltzmann_policy(pr2.level1_q(q_next, log_rho.exp()), 2.0)
    v = (pi * pr2.soft_marginal_q(q_next, 0.7)).sum()
    q_taken = torch.zeros(1)
    loss = pr2.critic_loss(q_taken, torch.ones(1), torch.zeros(1), q_next, log_rho, log_rho, 0.9, 2.0, 0.7)
    assert loss.item() == pytest.approx(0.5 * (1 + 0.9 * v.item()) ** 2, rel=1e-5)


def test_nan_loss_stops_with_the_loss_name_and_step():
    with pytest.raises(SystemExit, match=r"critic_loss/agent_0 became nan at step 42"):
        pr2.check_finite("critic_loss/agent_0", float("nan"), 42)


# ---------------------------------------------------------------------------------------------
# end-to-end runs
# ---------------------------------------------------------------------------------------------
TINY = ("--total-timesteps", "150", "--learning-starts", "50", "--batch-size", "16", "--log-every", "25")
SPREAD = ("--env", "particle", "--scenario", "simple_spread", *TINY, "--save-model", "--eval-episodes", "2")
AGENTS = ["agent_0", "agent_1", "agent_2"]
DEEP_TAGS = [
    "charts/episodic_return",
    "charts/episodic_length",
    "charts/SPS",
    "losses/critic_loss/agent_0",
    "losses/opponent_model_loss/agent_0",
]


def test_deep_pr2_on_simple_spread_logs_cleanrl_metrics(shared_run):
    tags = DEEP_TAGS + [f"charts/episodic_return/agent_{i}" for i in range(3)] + ["losses/critic_loss/agent_2"]
    scalars = finite_scalars(shared_run(SCRIPT, *SPREAD, "--seed", "7"), tags)
    assert [n for _, n in scalars["charts/episodic_length"]] == [25.0] * 6


def test_the_greedy_evaluation_replays_from_the_checkpoint_with_the_shared_seeds(shared_run):
    """One evaluation at the last training step: greedy episodes k = 0, 1 from run.episode_seed(run.EVAL_SEED, k),
    the same seeds as the other scripts, so the saved agents reproduce it; the checkpoint holds tensors and plain
    values only (the buffer as tensors) and is written whole."""
    run_dir = shared_run(SCRIPT, *SPREAD, "--seed", "7")
    logged = final_evaluation(run_dir, 150, AGENTS)
    checkpoint = torch.load(run_dir / "pr2_discrete.pt", weights_only=True)
    assert not list(run_dir.glob("*.tmp")) and set(checkpoint["agents"]) == set(AGENTS)
    assert checkpoint["buffer"]["size"] == 150 and all(isinstance(x, torch.Tensor) for x in checkpoint["buffer"]["obs"])
    args = pr2.Args(**checkpoint["args"])
    learners, _ = pr2.build_learners(checkpoint["obs_dims"], checkpoint["action_sizes"], args)
    for learner, state in zip(learners, checkpoint["agents"].values(), strict=True):
        learner.load_state_dict(state)
    greedy = lambda env, obs: pr2.select_actions(AGENTS, learners, obs, 1.0, greedy=True)  # noqa: E731
    returns = run.evaluate(partial(make_env, "particle", "simple_spread", "discrete", 25), greedy, 2)
    assert logged == pytest.approx(returns.mean(), rel=1e-6)


def test_same_seed_gives_identical_logged_values(shared_run, tmp_path, monkeypatch):
    first = logged_values(shared_run(SCRIPT, *SPREAD, "--seed", "7"))
    for name, seed in ("again", "7"), ("other", "8"):  # runs of their own: shared_run would return the first again
        (tmp_path / name).mkdir()
        command_line(SCRIPT, *SPREAD, "--seed", seed, cwd=tmp_path / name, monkeypatch=monkeypatch)
    again, other = (logged_values(the_run_dir(tmp_path / name)) for name in ("again", "other"))
    assert first == again
    assert first["losses/critic_loss/agent_0"] != other["losses/critic_loss/agent_0"], "the seed must matter"


def test_user_factory_with_heterogeneous_agents(tmp_path, monkeypatch):
    """simple_adversary through `--env module:factory`: observation sizes 8 vs 10."""
    command_line(SCRIPT, "--env", "mpe2.simple_adversary_v3:parallel_env", *TINY, cwd=tmp_path, monkeypatch=monkeypatch)
    finite_scalars(the_run_dir(tmp_path), DEEP_TAGS + ["losses/critic_loss/adversary_0", "losses/critic_loss/agent_1"])


def test_eq12_model_with_sampled_opponent_actions(tmp_path, monkeypatch):
    """--exact-limit 10 < 25 joint opponent actions forces the sampled path."""
    flags = ("--opponent-model", "eq12", "--exact-limit", "10", "--eval-episodes", "0")
    command_line(SCRIPT, "--env", "particle", *TINY, *flags, cwd=tmp_path, monkeypatch=monkeypatch)
    finite_scalars(the_run_dir(tmp_path), DEEP_TAGS)


@pytest.mark.parametrize("exact_limit", ["1000", "1"])
def test_deep_pr2_on_the_matrix_game_logs_policy_traces(tmp_path, monkeypatch, exact_limit):
    """--exact-limit 1 < 2 opponent actions: deep PR2 acts from sampled sums, and the traces are still exact."""
    flags = ["--env", "matrix", "--algorithm", "deep", "--total-timesteps", "60", "--batch-size", "8", "--log-every",
             "10", "--exact-limit", exact_limit]  # fmt: skip
    command_line(SCRIPT, *flags, cwd=tmp_path, monkeypatch=monkeypatch)
    tags = ["charts/policy/agent_0", "charts/opponent_model/agent_1", "charts/opponent_model/agent_1/given_1"]
    scalars = finite_scalars(the_run_dir(tmp_path), tags)
    assert all(len(scalars[tag]) == 6 and all(0 <= v <= 1 for _, v in scalars[tag]) for tag in tags)


@pytest.mark.parametrize(
    ("flags", "label"),
    [(("--env", "matrix", "--total-timesteps", "50", "--save-model", "--eval-episodes", "2"), "matrix_pr2"),
     ((*SPREAD, "--seed", "7"), "simple_spread")],
)  # fmt: skip
def test_resume_accepts_the_default_scenario_named_explicitly(tmp_path, monkeypatch, shared_run, flags, label):
    """The checkpoint stores the resolved --scenario, so naming the default on --resume is not a change. Each end
    of the extended run is evaluated once."""
    shutil.copytree(shared_run(SCRIPT, *flags).parent, tmp_path / "runs")  # the resumed run writes to its run folder
    assert the_run_dir(tmp_path).name.startswith(f"{label}__pr2_discrete__")  # the run folder's name is unchanged
    scenario = label.removeprefix("matrix_")
    assert torch.load(checkpoint_of(tmp_path), weights_only=True)["args"]["scenario"] == scenario
    total = {"matrix_pr2": "60", "simple_spread": "175"}[label]
    resume = ["--resume", str(checkpoint_of(tmp_path)), "--scenario", scenario, "--total-timesteps", total]
    command_line(SCRIPT, *resume, cwd=tmp_path, monkeypatch=monkeypatch)
    assert torch.load(checkpoint_of(tmp_path), weights_only=True)["step"] == int(total)
    evaluations = read_scalars(str(the_run_dir(tmp_path)))["eval/episodic_return"]
    assert [step for step, _ in evaluations] == [int(flags[flags.index("--total-timesteps") + 1]), int(total)]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("--env", "utils.envs:DifferentialGame"), "pr2_continuous.py"),
        (("--env", "particle", "--batch-size", "512", "--buffer-size", "100"), "--batch-size 512 > --buffer-size 100"),
        (("--env", "particle", "--total-timesteps", "-5"), "--total-timesteps must be positive"),
        (("--env", "particle", "--scenario", "simple_sprad"), "did you mean 'simple_spread'"),
        (("--env", "matrix", "--alpha", "nan"), "--alpha must be a finite number, got nan"),
        (("--env", "matrix", "--total-timesteps", "0"), "--total-timesteps must be positive, got 0"),
    ],
)
def test_bad_input_exits_with_one_line_error(tmp_path, monkeypatch, flags, expected):
    error = command_line_error(SCRIPT, *flags, cwd=tmp_path, monkeypatch=monkeypatch)
    assert error.startswith("pr2_discrete.py: error:") and expected in error, error
    assert not (tmp_path / "runs").exists()


def test_bad_input_on_the_command_line_prints_one_line(tmp_path):
    result = run_script(SCRIPT, "--env", "particle", "--algorithm", "pr2q", cwd=tmp_path)
    assert result.returncode != 0 and not (tmp_path / "runs").exists()
    assert result.stderr.strip().splitlines() == [
        "pr2_discrete.py: error: --algorithm pr2q is tabular and needs --env matrix; use --algorithm deep"
    ]
