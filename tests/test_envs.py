"""The environments in utils/: PettingZoo's own API and seed tests, the payoffs, and the error messages."""

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

from utils.envs import EnvError, check_spaces, differential_reward, make_env, parse_payoffs

OWN_ENVS = [
    ("differential", "paper", "continuous"),
    ("differential", "code", "continuous"),
    ("differential", "paper_n3", "continuous"),
    ("differential", "paper_n4", "continuous"),
    ("differential", "paper_n5", "continuous"),
    ("differential", "code_n3", "continuous"),
    ("differential", "code_n4", "continuous"),
    ("differential", "code_n5", "continuous"),
    ("differential", "paper_leader", "continuous"),
    ("differential", "paper_leader_n3", "continuous"),
    ("differential", "code_leader_n3", "continuous"),
    ("differential", "saddle", "continuous"),
    ("matrix", "pr2", "discrete"),
    ("matrix", "rock_paper_scissors", "discrete"),
    ("matrix", "0,3,1;1,2,0/3,2,1;0,1,2", "discrete"),
]


@pytest.mark.parametrize("env,scenario,kind", OWN_ENVS)
def test_pettingzoo_parallel_api_and_seed(env, scenario, kind):
    parallel_api_test(make_env(env, scenario, kind), num_cycles=200)
    parallel_seed_test(lambda: make_env(env, scenario, kind), num_cycles=50)


@pytest.mark.parametrize("kind", ["continuous", "discrete"])
def test_particle_scenarios_build_in_both_action_modes(kind):
    env = make_env("particle", "simple_adversary", kind)
    assert env.possible_agents == ["adversary_0", "agent_0", "agent_1"]
    obs, _ = env.reset(seed=0)
    assert [obs[a].shape for a in env.possible_agents] == [(8,), (10,), (10,)]  # heterogeneous agents


def test_differential_reward_optima_and_formulas():
    assert differential_reward(5, 5) == pytest.approx(10.0)
    assert differential_reward(-5, -5) == pytest.approx(0.0)
    assert differential_reward(0, 0, "paper") == pytest.approx(-0.8 * 2 * 25 / 9)
    assert differential_reward(0, 0, "code") == pytest.approx(-0.8 * 2 * 25 / 3)
    grid = np.linspace(-10, 10, 201)
    values = differential_reward(grid[:, None], grid[None, :])
    best = np.unravel_index(values.argmax(), values.shape)
    assert (grid[best[0]], grid[best[1]]) == (pytest.approx(5.0), pytest.approx(5.0))


def test_differential_game_with_three_agents():
    assert differential_reward(5, 5, others=[5]) == pytest.approx(10.0)
    assert differential_reward(5, 5, others=[-5]) == pytest.approx(max(-90.0, 0.8 * -2 * (10 / 3) ** 2))
    env = make_env("differential", "paper_n3")
    assert env.possible_agents == ["agent_0", "agent_1", "agent_2"]


@pytest.mark.parametrize("formula", ["paper", "code"])
@pytest.mark.parametrize("n_agents", [3, 4, 5])
def test_differential_game_with_more_agents_keeps_its_optima(formula, n_agents):
    def reward(actions):
        return differential_reward(actions[0], actions[1], formula, actions[2:])

    assert reward([5.0] * n_agents) == pytest.approx(10.0)  # global optimum
    assert reward([-5.0] * n_agents) == pytest.approx(0.0)  # local optimum
    rng = np.random.default_rng(0)
    for _ in range(20):  # both are maxima: every small move of any agents lowers the reward
        step = rng.normal(0, 0.3, n_agents)
        assert reward(5.0 + step) < 10.0 and reward(-5.0 + step) < 0.0
    env = make_env("differential", f"{formula}_n{n_agents}")
    assert len(env.possible_agents) == n_agents and env.formula == formula


@pytest.mark.parametrize("formula", ["paper", "code"])
def test_leader_game_agent_0_alone_holds_the_local_optimum(formula):
    leader = f"{formula}_leader"
    assert differential_reward(5, 5, leader, [5]) == pytest.approx(10.0)  # global optimum, as in the plain game
    grid = np.linspace(-10, 10, 41)
    a1, a2, a3 = np.meshgrid(grid, grid, grid, indexing="ij")
    values = differential_reward(a1, a2, leader, [a3])
    best = np.unravel_index(values.argmax(), values.shape)
    assert [grid[k] for k in best] == [pytest.approx(5.0)] * 3
    # local optimum: the leader at -5 gets 0 whatever the followers play (f2 <= 10 - 100 there)
    assert np.allclose(values[grid == -5], 0.0)
    assert differential_reward(-5.5, -5, leader, [-5]) < 0 and differential_reward(-4.5, 3, leader, [-9]) < 0
    plain = differential_reward(-5, 0, formula, [0])  # in the plain game the followers' own terms count
    assert plain < 0 and differential_reward(-5, 0, leader, [0]) == pytest.approx(0.0)
    # the global peak needs every agent: one follower at -5 leaves the leader's f1 at a1 = 5
    expected = -0.8 * (10 / 3) ** 2 if formula == "paper" else -0.8 * 100 / 3
    assert differential_reward(5, 5, leader, [-5]) == pytest.approx(expected)
    env = make_env("differential", f"{leader}_n3")
    env.reset(seed=0)
    _, rewards, _, _, _ = env.step({"agent_0": np.array([-0.5]), "agent_1": np.array([0.3]), "agent_2": np.array([-1])})
    assert rewards == {agent: pytest.approx(0.0) for agent in env.possible_agents}


def test_differential_env_scales_unit_actions_by_ten():
    env = make_env("differential")
    env.reset(seed=0)
    _, rewards, terminations, _, _ = env.step({"agent_0": np.array([0.5]), "agent_1": np.array([0.5])})
    assert rewards == {"agent_0": pytest.approx(10.0), "agent_1": pytest.approx(10.0)}
    assert all(terminations.values()) and env.agents == []


def test_saddle_game_is_zero_sum_with_a_pure_saddle_point_at_a_star_b_star():
    """Agent 0 gets f, agent 1 gets -f, unit actions; f(a, -0.4) <= f(0.5, -0.4) <= f(0.5, b) for every a, b: each
    action is the best response to the other."""
    env = make_env("differential", "saddle")
    grid = np.linspace(-1, 1, 201)

    def payoffs(a, b):
        env.reset(seed=0)
        return env.step({"agent_0": np.array([a]), "agent_1": np.array([b])})[1]

    at_saddle = payoffs(0.5, -0.4)
    assert at_saddle == {"agent_0": 0.0, "agent_1": 0.0} and sum(payoffs(0.9, 0.3).values()) == 0.0
    assert payoffs(0.9, 0.3)["agent_0"] == pytest.approx(-(0.4**2) + 0.7**2 + 0.4 * 0.7)
    assert max(payoffs(a, -0.4)["agent_0"] for a in grid) <= 0.0 <= min(payoffs(0.5, b)["agent_0"] for b in grid)


def test_matrix_env_pays_rows_to_agent_0_and_columns_to_agent_1():
    env = make_env("matrix", "pr2", "discrete")
    env.reset(seed=0)
    _, rewards, _, _, _ = env.step({"agent_0": 0, "agent_1": 1})
    assert rewards == {"agent_0": 3.0, "agent_1": 2.0}


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(env="partcle"), "did you mean 'particle'"),
        (dict(env="particle", scenario="simple_sprd"), "did you mean 'simple_spread'"),
        (dict(env="no_such_module_xyz:make"), "cannot import module 'no_such_module_xyz'"),
        (dict(env="utils.envs:no_such_factory"), "has no callable 'no_such_factory'"),
        (dict(env="differential", scenario="papr"), "use 'paper' (default) or 'code'"),
        (dict(env="differential", scenario="paper_n1"), "a number of agents, e.g. 'paper_n3'"),
        (dict(env="differential", scenario="paper_follower_n3"), "optionally with '_leader'"),
        (dict(env="differential", scenario="paper_"), "optionally with '_leader'"),
        (dict(env="differential", scenario="leader_n3"), "use 'paper' (default) or 'code'"),
        (dict(env="differential", scenario="paper_leader_nx"), "'paper_leader_n3'"),
        (dict(env="differential", scenario="code_leader_n4"), None),
        (dict(env="particle", kind="continuous", scenario="simple_spread", script="x.py"), None),
        (dict(env="matrix", kind="continuous"), "has discrete actions"),
        (dict(env="differential", kind="discrete"), "has continuous actions"),
        (dict(env="matrix", scenario="1,2;3/4,5;6", kind="discrete"), "rows of different lengths"),
        (dict(env="matrix", scenario="1,2;3,4", kind="discrete"), "need two matrices"),
        (dict(env="matrix", scenario="1,a;3,4/1,2;3,4", kind="discrete"), "non-number"),
        (dict(env="matrix", scenario="1,2;3,4/1,2,3;4,5,6", kind="discrete"), "same shape"),
    ],
)
def test_bad_env_choices_raise_one_line_errors(kwargs, message):
    if message is None:  # a valid choice, to show the cases above fail for the stated reason only
        make_env(**kwargs)
        return
    with pytest.raises(EnvError) as error:
        make_env(**kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_action_space_kind_mismatch_names_the_other_script():
    discrete_spread = make_env("particle", "simple_spread", "discrete")
    with pytest.raises(EnvError, match="needs a flat Box: use pr2_discrete.py"):
        check_spaces(discrete_spread, "continuous", "pr2_continuous.py")
    continuous_spread = make_env("particle", "simple_spread", "continuous")
    with pytest.raises(EnvError, match="needs Discrete actions: use pr2_continuous.py"):
        check_spaces(continuous_spread, "discrete", "pr2_discrete.py")


def test_parse_payoffs_reads_any_shape():
    r1, r2 = parse_payoffs("1,2,3;4,5,6/6,5,4;3,2,1")
    assert r1.shape == r2.shape == (2, 3) and r1[1, 2] == 6 and r2[0, 0] == 6
