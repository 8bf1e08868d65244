"""Environments for the PR2 scripts, all PettingZoo ``ParallelEnv``s, built by ``make_env``: ``--env differential``
(the paper's one-shot "max of two quadratic" game, Box actions), ``matrix`` (a two-player matrix game, Discrete),
``particle`` (an mpe2 scenario) or ``pkg.mod:factory`` (your own). A bad choice raises ``EnvError`` before training."""

import difflib
import importlib
import os
import sys
from typing import Literal

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

ActionKind = Literal["continuous", "discrete"]


class EnvError(ValueError):
    """A bad environment choice. The message is one line: the problem and the fix."""


# Differential game "max of two quadratic" (Wen et al. 2019, Sec. 5.2; spec §2.2)
DIFFERENTIAL_FORMULAS = ("paper", "code", "paper_leader", "code_leader")
ACTION_SCALE = 10.0  # agents act in [-1, 1]; the game is defined on [-10, 10]


def differential_reward(a1, a2, formula: str = "paper", others=()):
    """Shared reward max(f1, f2) at env-unit actions a1, a2 (and `others`, for more agents) in [-10, 10].

    paper: f1 = 0.8 * (-((a1 + 5) / 3)^2 - ((a2 + 5) / 3)^2)   local max 0 at (-5, -5)
    code:  f1 = 0.8 * (-(a1 + 5)^2 / 3  - (a2 + 5)^2 / 3)      (the original code's variant)
    both:  f2 = -(a1 - 5)^2 - (a2 - 5)^2 + 10                 global max 10 at (5, 5)
    More agents each add their term to both sums. '<formula>_leader' (e.g. 'paper_leader'): f1 keeps a1's term only,
    so agent 0 alone secures the local 0 at a1 = -5 whatever the others play, while the global 10 at (5, 5, ...)
    still needs every agent. Numpy broadcasting applies."""
    if formula not in DIFFERENTIAL_FORMULAS:
        raise EnvError(f"unknown differential-game formula {formula!r}: use 'paper' or 'code', optionally + '_leader'")
    actions = [np.asarray(a, dtype=np.float64) for a in (a1, a2, *others)]
    local = actions[:1] if formula.endswith("_leader") else actions
    if formula.startswith("paper"):
        f1 = 0.8 * sum(-(((a + 5) / 3) ** 2) for a in local)
    else:
        f1 = 0.8 * sum(-((a + 5) ** 2) / 3 for a in local)
    f2 = sum(-((a - 5) ** 2) for a in actions) + 10.0
    return np.maximum(f1, f2)


class OneShotGame(ParallelEnv):
    """A game with a single state, as in the original code: the observation is a constant 0, every episode is one
    joint action, and `payoffs(actions)` gives each agent's reward."""

    def __init__(self, action_spaces: dict):
        self.possible_agents, self.agents, self.render_mode = list(action_spaces), [], None
        self._action_spaces, self._observation_space = action_spaces, spaces.Box(-1.0, 1.0, (1,), np.float32)

    def observation_space(self, agent):
        return self._observation_space

    def action_space(self, agent):
        return self._action_spaces[agent]

    def reset(self, seed=None, options=None):
        if seed is not None:
            for i, agent in enumerate(self.possible_agents):
                self._action_spaces[agent].seed(seed + i)
        self.agents = list(self.possible_agents)
        return {agent: np.zeros(1, np.float32) for agent in self.agents}, {agent: {} for agent in self.agents}

    def step(self, actions):
        rewards, agents, self.agents = self.payoffs(actions), self.agents, []
        observations = {agent: np.zeros(1, np.float32) for agent in agents}
        done, not_done, infos = dict.fromkeys(agents, True), dict.fromkeys(agents, False), {a: {} for a in agents}
        return observations, rewards, done, not_done, infos

    def unit_actions(self, actions) -> list[float]:
        return [float(np.clip(np.asarray(actions[agent]).reshape(-1)[0], -1, 1)) for agent in self.possible_agents]


class DifferentialGame(OneShotGame):
    """Two (or more) agents, 1-D actions in [-1, 1] (scaled x10 inside), a shared reward."""

    metadata = {"name": "differential_game_v0", "render_modes": [], "is_parallelizable": True}

    def __init__(self, formula: str = "paper", n_agents: int = 2):
        differential_reward(0.0, 0.0, formula)  # validates the formula name
        self.formula = formula
        super().__init__({f"agent_{i}": spaces.Box(-1.0, 1.0, (1,), np.float32) for i in range(n_agents)})

    def payoffs(self, actions):
        a1, a2, *others = (action * ACTION_SCALE for action in self.unit_actions(actions))
        return dict.fromkeys(self.agents, float(differential_reward(a1, a2, self.formula, others)))


SADDLE = dict(a=0.5, b=-0.4, k=1.0)  # --scenario saddle: the pure saddle point (a*, b*) and the coupling k


def saddle_reward(a, b):
    """Agent 0's reward f(a, b) = -(a - a*)² + (b - b*)² + k(a - a*)(b - b*) at unit actions a (agent 0's), b (agent
    1's) in [-1, 1]; agent 1 gets -f. f is concave in a and convex in b: (a*, b*) = (0.5, -0.4) is the pure saddle
    point, where each action is the best response to the other (a = a* + k(b - b*)/2, b = b* - k(a - a*)/2)."""
    delta_a, delta_b = a - SADDLE["a"], b - SADDLE["b"]
    return -(delta_a**2) + delta_b**2 + SADDLE["k"] * delta_a * delta_b


class SaddleGame(OneShotGame):
    """`--env differential --scenario saddle`: rewards f and -f (saddle_reward) at unscaled 1-D actions in [-1, 1]."""

    metadata = {"name": "saddle_game_v0", "render_modes": [], "is_parallelizable": True}

    def __init__(self):
        super().__init__({f"agent_{i}": spaces.Box(-1.0, 1.0, (1,), np.float32) for i in range(2)})

    def payoffs(self, actions):
        a, b = self.unit_actions(actions)
        return dict(zip(self.possible_agents, (saddle_reward(a, b), -saddle_reward(a, b))))


# Two-player matrix games (Wen et al. 2019, Sec. 5.1; spec §2.1): name -> (R1, R2), rows agent_0's, columns agent_1's
MATRIX_GAMES = {
    "pr2": ([[0, 3], [1, 2]], [[3, 2], [0, 1]]),  # the paper's game, unique mixed NE (0.5, 0.5)
    "matching_pennies": ([[1, -1], [-1, 1]], [[-1, 1], [1, -1]]),
    "prisoners_dilemma": ([[-1, -3], [0, -2]], [[-1, 0], [-3, -2]]),
    "stag_hunt": ([[4, 0], [3, 3]], [[4, 3], [0, 3]]),
    "coordination": ([[1, 0], [0, 1]], [[1, 0], [0, 1]]),
    "rock_paper_scissors": ([[0, -1, 1], [1, 0, -1], [-1, 1, 0]], [[0, 1, -1], [-1, 0, 1], [1, -1, 0]]),
    "climbing": ([[11, -30, 0], [-30, 7, 6], [0, 0, 5]], [[11, -30, 0], [-30, 7, 6], [0, 0, 5]]),
}
PAYOFF_FORMAT = "'R1/R2' with rows separated by ';' and entries by ',', e.g. '0,3;1,2/3,2;0,1'"


def parse_payoffs(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Two payoff matrices of the same shape from PAYOFF_FORMAT."""
    parts = text.split("/")
    if len(parts) != 2:
        raise EnvError(f"payoffs {text!r} need two matrices: write {PAYOFF_FORMAT}")
    matrices = []
    for part in parts:
        try:
            rows = [[float(x) for x in row.split(",")] for row in part.strip().split(";")]
        except ValueError:
            raise EnvError(f"payoffs {text!r} hold a non-number: write {PAYOFF_FORMAT}") from None
        if len({len(row) for row in rows}) != 1:
            raise EnvError(f"payoffs {text!r} have rows of different lengths: write {PAYOFF_FORMAT}")
        matrices.append(np.array(rows))
    r1, r2 = matrices
    if r1.shape != r2.shape or min(r1.shape) < 2:
        raise EnvError(f"payoffs {text!r}: both matrices need the same shape, at least 2x2 (got {r1.shape}, "
                       f"{r2.shape})")  # fmt: skip
    if not (np.isfinite(r1).all() and np.isfinite(r2).all()):
        raise EnvError(f"payoffs {text!r} hold a non-finite value")
    return r1, r2


class MatrixGame(OneShotGame):
    """A one-shot two-player matrix game: agent_0 picks a row, agent_1 a column; rewards R1[row, col], R2[row, col]."""

    metadata = {"name": "matrix_game_v0", "render_modes": [], "is_parallelizable": True}

    def __init__(self, r1, r2):
        self.matrices = (np.asarray(r1, dtype=np.float64), np.asarray(r2, dtype=np.float64))
        n_rows, n_cols = self.matrices[0].shape
        super().__init__({"agent_0": spaces.Discrete(n_rows), "agent_1": spaces.Discrete(n_cols)})

    def payoffs(self, actions):
        row, col = int(actions["agent_0"]), int(actions["agent_1"])
        return {agent: float(payoff[row, col]) for agent, payoff in zip(self.possible_agents, self.matrices)}


# mpe2 particle tasks and user envs
def _closest(name: str, choices) -> str:
    match = difflib.get_close_matches(name, list(choices), n=1)
    return f"did you mean {match[0]!r}? " if match else ""


def _make_particle(scenario: str, kind: ActionKind, max_cycles: int, render_mode):
    from mpe2.all_modules import mpe_environments

    # scenario name without version suffix -> mpe2 module, e.g. 'simple_spread' -> simple_spread_v3
    scenarios = {key.split("/")[-1].rsplit("_v", 1)[0]: module for key, module in mpe_environments.items()}
    name = scenario.rsplit("_v", 1)[0] if scenario.rsplit("_v", 1)[-1].isdigit() else scenario
    if name not in scenarios:
        choices = f"{_closest(name, scenarios)}available: {', '.join(sorted(scenarios))}"
        raise EnvError(f"unknown particle --scenario {scenario!r}: {choices}")
    return scenarios[name].parallel_env(continuous_actions=kind == "continuous", max_cycles=max_cycles,
                                        render_mode=render_mode)  # fmt: skip


def _make_from_factory(spec: str, render_mode):
    module_name, _, factory_name = spec.partition(":")
    if os.getcwd() not in sys.path:  # like `python -m`: modules in the current folder are importable
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # ImportError, or anything the user's module raises on import
        raise EnvError(
            f"--env {spec!r}: cannot import module {module_name!r} ({type(error).__name__}: {error}); "
            "run from the folder that holds it or add that folder to PYTHONPATH"
        ) from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise EnvError(f"--env {spec!r}: module {module_name!r} has no callable {factory_name!r}")
    try:
        env = factory(render_mode=render_mode) if render_mode else factory()
    except Exception as error:
        raise EnvError(f"--env {spec!r}: {factory_name}() raised {type(error).__name__}: {error}") from None
    if not all(hasattr(env, attr) for attr in ("possible_agents", "reset", "step", "action_space")):
        raise EnvError(f"--env {spec!r}: {factory_name}() must return a PettingZoo ParallelEnv, got {type(env)}")
    return env


def check_spaces(env, kind: ActionKind, script: str):
    """Every agent needs a flat Box observation and a Box (continuous) or Discrete action space."""
    other = "pr2_discrete.py" if kind == "continuous" else "pr2_continuous.py"
    flat_box = lambda space: isinstance(space, spaces.Box) and len(space.shape) == 1  # noqa: E731
    for agent in env.possible_agents:
        obs_space, act_space = env.observation_space(agent), env.action_space(agent)
        if not flat_box(obs_space):
            raise EnvError(f"agent {agent!r} has observation space {obs_space}; {script} needs a flat Box: wrap your "
                           "env to flatten observations")  # fmt: skip
        if kind == "continuous" and not flat_box(act_space):
            raise EnvError(f"agent {agent!r} has action space {act_space}; {script} needs a flat Box: use {other} for "
                           "discrete actions")  # fmt: skip
        if kind == "continuous" and not (np.isfinite(act_space.low).all() and np.isfinite(act_space.high).all()):
            raise EnvError(f"agent {agent!r} has an unbounded action space {act_space}; give it finite bounds")
        if kind == "discrete" and not isinstance(act_space, spaces.Discrete):
            raise EnvError(f"agent {agent!r} has action space {act_space}; {script} needs Discrete actions: use "
                           f"{other} for Box actions")  # fmt: skip


def make_env(env: str, scenario=None, kind: ActionKind = "continuous", max_cycles=25, render_mode=None,
             script="this script") -> ParallelEnv:  # fmt: skip
    """Build the env named by ``--env``/``--scenario`` and check it suits ``kind`` actions.

    scenario: for ``particle`` the mpe2 scenario (default ``simple_spread``); for ``differential`` the formula
    (``paper``, default, or ``code``), optionally ``_leader`` and ``_n<agents>`` (e.g. ``paper_leader_n3``, see
    ``differential_reward``), or ``saddle`` (the zero-sum ``SaddleGame``); for ``matrix`` a preset name from
    ``MATRIX_GAMES`` (default ``pr2``) or payoffs as ``'R1/R2'`` (``PAYOFF_FORMAT``)."""
    if env == "differential":
        if kind != "continuous":
            raise EnvError(f"--env differential has continuous actions; {script} needs discrete ones")
        formula, _, n_agents = (scenario or "paper").partition("_n")  # e.g. 'paper_leader_n3': three agents
        n_agents = n_agents or "2"
        if scenario == "saddle":
            game = SaddleGame()
        elif formula in DIFFERENTIAL_FORMULAS and n_agents.isdigit() and int(n_agents) >= 2:
            game = DifferentialGame(formula, int(n_agents))
        else:
            raise EnvError(
                f"unknown differential --scenario {scenario!r}: use 'paper' (default) or 'code', "
                "optionally with '_leader' and a number of agents, e.g. 'paper_n3' or 'paper_leader_n3'; or 'saddle'"
            )
    elif env == "matrix":
        if kind != "discrete":
            raise EnvError(f"--env matrix has discrete actions; {script} needs continuous ones")
        scenario = scenario or "pr2"
        if any(sep in scenario for sep in "/;,"):
            game = MatrixGame(*parse_payoffs(scenario))
        elif scenario in MATRIX_GAMES:
            game = MatrixGame(*MATRIX_GAMES[scenario])
        else:
            raise EnvError(
                f"unknown matrix --scenario {scenario!r}: {_closest(scenario, MATRIX_GAMES)}"
                f"use one of {', '.join(MATRIX_GAMES)} or payoffs as {PAYOFF_FORMAT}"
            )
    elif env == "particle":
        game = _make_particle(scenario or "simple_spread", kind, max_cycles, render_mode)
    elif ":" in env:
        game = _make_from_factory(env, render_mode)
    else:
        known = ["differential", "particle"] if kind == "continuous" else ["matrix", "particle"]
        raise EnvError(
            f"unknown --env {env!r}: {_closest(env, known)}use {' or '.join(repr(k) for k in known)}, "
            "or 'your.module:factory' for your own PettingZoo ParallelEnv"
        )
    check_spaces(game, kind, script)
    return game


def to_env_action(unit_action, space):
    """Map an action in [-1, 1] to the agent's Box [low, high]."""
    return (space.low + (unit_action + 1.0) * 0.5 * (space.high - space.low)).astype(space.dtype)


def global_state(env, obs: dict) -> np.ndarray:
    """The global state a centralised critic sees: the env's state() where it declares a state_space (mpe2's is every
    agent's observation concatenated), else every agent's observation concatenated in agent order."""
    if getattr(env, "state_space", None) is not None:
        return np.asarray(env.state(), np.float32)
    return np.concatenate([obs[agent] for agent in env.possible_agents]).astype(np.float32)


def global_state_dim(env) -> int:
    space = getattr(env, "state_space", None)
    return space.shape[0] if space is not None else sum(env.observation_space(a).shape[0] for a in env.possible_agents)


def env_label(env: str, scenario: str | None) -> str:
    """A short name for run folders: 'simple_spread', 'differential_paper', 'matrix_pr2', 'my_env'."""
    if env == "particle":
        return scenario or "simple_spread"
    if env == "differential":
        return f"differential_{scenario or 'paper'}"
    if env == "matrix":
        scenario = scenario or "pr2"
        return f"matrix_{scenario}" if scenario in MATRIX_GAMES else "matrix_custom"
    return env.partition(":")[2] or env
