"""The environments in utils/: PettingZoo's own API and seed tests, the payoffs, and the error messages."""

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

from utils.envs import EnvError, check_spaces, differential_reward, make_env, parse_payoffs

OWN_ENVS = [
    ("differential", "paper", "continuous"),
    ("differential", "code", "continuous"),
    ("differential", "paper_n3", "continuous"),
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


def test_differential_env_scales_unit_actions_by_ten():
    env = make_env("differential")
    env.reset(seed=0)
    _, rewards, terminations, _, _ = env.step({"agent_0": np.array([0.5]), "agent_1": np.array([0.5])})
    assert rewards == {"agent_0": pytest.approx(10.0), "agent_1": pytest.approx(10.0)}
    assert all(terminations.values()) and env.agents == []


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
        (dict(env="differential", scenario="paper_n1"), "with a number of agents, e.g. 'paper_n3'"),
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
