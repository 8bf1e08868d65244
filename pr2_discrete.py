# docs and experiment results can be found at docs/pr2_discrete.md
"""PR2 with discrete actions (Wen et al., ICLR 2019): tabular PR2-Q on matrix games, deep PR2 elsewhere.

Every agent i keeps a joint-action critic Q^i(s, a^i, a^-i), an opponent model rho^i(a^-i | s, a^i) and acts
with a Boltzmann policy over its level-1 action values sum_{a^-i} rho(a^-i | s, a^i) Q(s, a^i, a^-i).
"""

import itertools
import math
import os
import random
import signal
import time
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro

from utils.envs import EnvError, env_label, make_env
from utils.logger import Progress, load_checkpoint, make_run_name, make_writer, save_checkpoint

SCRIPT = "pr2_discrete.py"


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run folder's name)"""
    seed: int = 1
    """seed of the experiment: same seed, same command, same numbers"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = True
    """accepted for CleanRL compatibility; this script always runs on the CPU (its networks are tiny)"""
    track: bool = False
    """if toggled, mirror the TensorBoard logs to Weights & Biases (needs `pip install wandb`)"""
    wandb_project_name: str = "pr2"
    """the W&B project name"""
    wandb_entity: str | None = None
    """the W&B entity (team)"""
    save_model: bool = False
    """if toggled, save the full training state to runs/<run>/<exp_name>.pt at the end (and on Ctrl-C), then evaluate
    the greedy policy"""
    save_every: int = 0
    """with --save-model, also save every N environment steps (0: only at the end)"""
    save_buffer: bool = True
    """with --save-model, keep the replay buffer (deep) in the checkpoint, so that a resumed run continues exactly"""
    resume: str | None = None
    """continue training from this checkpoint; flags not given on the command line come from it"""
    eval_episodes: int = 10
    """greedy evaluation episodes after training with --save-model or --capture-video, logged as
    eval/episodic_return"""
    capture_video: bool = False
    """record the evaluation episodes as GIFs in runs/<run>/videos/ (envs with rgb_array rendering, e.g. particle)"""
    torch_threads: int = 1
    """torch.set_num_threads: CPU threads for torch"""

    # Environment
    env: str = "matrix"
    """`matrix` (two-player matrix game), `particle` (mpe2, discrete actions) or `your.module:factory`"""
    scenario: str | None = None
    """matrix: a preset (default `pr2`, the paper's game) or payoffs `'R1/R2'` such as `'0,3;1,2/3,2;0,1'`;
    particle: the mpe2 scenario (default `simple_spread`)"""
    max_cycles: int = 25
    """steps per particle episode"""

    # Algorithm
    algorithm: Literal["pr2q", "deep"] | None = None
    """`pr2q` (tabular PR2-Q, two-player matrix games only) or `deep`; default: pr2q for matrix, else deep"""
    opponent_model: Literal["empirical", "eq12"] = "empirical"
    """rho(a^-i|s,a^i): `empirical` = observed opponent actions (counts in PR2-Q, maximum likelihood in deep
    PR2; the original code's default) or `eq12` = Boltzmann over the opponents' actions under one's own Q"""
    alpha: float = 1.0
    """temperature of the Eq. 12 opponent model and the Eq. 11 soft value (eq12 only)"""
    temperature: float | None = None
    """Boltzmann temperature of the policy (default 1.0: constant in pr2q as in the original code; the start of
    the anneal in deep)"""
    temperature_end: float | None = None
    """deep: the temperature falls linearly to this over `anneal_fraction` of training (default: 0.01; pr2q:
    constant)"""
    anneal_fraction: float = 0.5
    """fraction of `total_timesteps` over which the temperature anneals (deep)"""
    total_timesteps: int | None = None
    """environment steps (default: 1,000 for pr2q; 40,000 for deep, about 8 minutes on one CPU core)"""
    learning_starts: int | None = None
    """deep: uniformly random actions and no training before this step (default: 0 for matrix, 2,000 else)"""
    batch_size: int = 256
    """deep: the batch size of sample from the replay memory"""
    buffer_size: int = 100_000
    """deep: the replay memory buffer size"""
    gamma: float = 0.95
    """deep: the discount factor gamma"""
    tau: float = 0.01
    """deep: target critic smoothing coefficient (Polyak, every training step)"""
    learning_rate: float = 1e-3
    """deep: Adam learning rate of the critic and the opponent model"""
    hidden_size: int = 64
    """deep: units in each of the two hidden layers"""
    train_frequency: int = 2
    """deep: one gradient step per agent every this many env steps"""
    exact_limit: int = 1_000
    """deep: sums over the opponents' joint actions are exact up to this many joint actions, sampled beyond"""
    opponent_samples: int = 32
    """deep: opponent joint actions sampled from rho per state and own action beyond `exact_limit`"""
    log_every: int | None = None
    """log every N env steps (default: 1 for matrix games, 100 otherwise)"""


def resolve_defaults(args: Args) -> Args:
    """Fill the env-dependent defaults (`None` fields) and check the flags; SystemExit on a bad choice."""
    matrix = args.env == "matrix"
    args.algorithm = args.algorithm or ("pr2q" if matrix else "deep")
    pr2q = args.algorithm == "pr2q"
    args.temperature = args.temperature if args.temperature is not None else 1.0
    if args.temperature_end is None:
        args.temperature_end = args.temperature if pr2q else 0.01
    args.total_timesteps = args.total_timesteps if args.total_timesteps is not None else (1_000 if pr2q else 40_000)
    args.learning_starts = args.learning_starts if args.learning_starts is not None else (0 if matrix else 2_000)
    args.log_every = args.log_every if args.log_every is not None else (1 if matrix else 100)
    problems = [
        (pr2q and not matrix, "--algorithm pr2q is tabular and needs --env matrix; use --algorithm deep"),
        (args.total_timesteps <= 0, f"--total-timesteps must be positive, got {args.total_timesteps}"),
        (args.learning_starts < 0, f"--learning-starts must be >= 0, got {args.learning_starts}"),
        (args.batch_size <= 0, f"--batch-size must be positive, got {args.batch_size}"),
        (args.batch_size > args.buffer_size, f"--batch-size {args.batch_size} > --buffer-size {args.buffer_size}"),
        (args.log_every <= 0, f"--log-every must be positive, got {args.log_every}"),
        (args.train_frequency <= 0, f"--train-frequency must be positive, got {args.train_frequency}"),
        (min(args.temperature, args.temperature_end, args.alpha) <= 0, "--temperature(-end) and --alpha must be > 0"),
        (not 0 <= args.gamma <= 1, f"--gamma must be in [0, 1], got {args.gamma}"),
        (not 0 < args.tau <= 1, f"--tau must be in (0, 1], got {args.tau}"),
        (not args.learning_rate > 0, f"--learning-rate must be positive, got {args.learning_rate}"),
        (not 0 <= args.anneal_fraction <= 1, f"--anneal-fraction must be in [0, 1], got {args.anneal_fraction}"),
        (
            min(args.exact_limit, args.opponent_samples, args.hidden_size) <= 0,
            "--exact-limit, --opponent-samples and --hidden-size must be positive",
        ),
        (args.eval_episodes < 0, f"--eval-episodes must be >= 0, got {args.eval_episodes}"),
        (args.save_every < 0, f"--save-every must be >= 0, got {args.save_every}"),
        (args.capture_video and args.eval_episodes == 0, "--capture-video records the evaluation: --eval-episodes > 0"),
    ]
    for bad, message in problems:
        if bad:
            raise SystemExit(f"{SCRIPT}: error: {message}")
    return args


# ALGO LOGIC: networks (deep PR2), one set per agent i
def mlp(n_in: int, n_out: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_out)
    )


class JointCritic(nn.Module):
    """Q^i(o^i, a^i, a^-i) for every own action a^i at once.

    | input  | obs `[..., obs_dim]`, one-hot opponent actions `[..., sum_j n_j]` (broadcastable) |
    | output | `[..., n_i]`: one value per own action                                            |

    The first layer sums a linear map of each input (= one linear map of their concatenation), as the original
    code does; a batch of observations `[B, 1, d]` then broadcasts against all joint actions `[1, N, sum_j n_j]`.
    """

    def __init__(self, obs_dim: int, opp_sizes: list[int], n_actions: int, hidden: int):
        super().__init__()
        self.obs_layer = nn.Linear(obs_dim, hidden)
        self.opp_layer = nn.Linear(sum(opp_sizes), hidden, bias=False)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_actions))

    def forward(self, obs, opp_onehot):
        return self.head(self.obs_layer(obs) + self.opp_layer(opp_onehot))


class OpponentModel(nn.Module):
    """rho^i(a^-i | o^i, a^i): one categorical per opponent j, for every own action a^i at once.

    | input  | obs `[B, obs_dim]`                                            |
    | output | list over opponents j of log-probabilities `[B, n_i, n_j]`   |
    """

    def __init__(self, obs_dim: int, opp_sizes: list[int], n_actions: int, hidden: int):
        super().__init__()
        self.n_actions, self.opp_sizes = n_actions, list(opp_sizes)
        self.net = mlp(obs_dim, n_actions * sum(opp_sizes), hidden)

    def forward(self, obs):
        logits = self.net(obs).view(obs.shape[0], self.n_actions, sum(self.opp_sizes))
        return [F.log_softmax(part, -1) for part in logits.split(self.opp_sizes, -1)]


# ALGO LOGIC: the opponent model and the level-1 values, shared by PR2-Q and deep PR2
def empirical_opponent_model(counts: torch.Tensor) -> torch.Tensor:
    """PR2-Q's count model: rho(o|a) = n(a, o) / (sum_o' n(a, o') + 0.01), as in the original code.

    counts `[n_own, n_opp]` -> `[n_own, n_opp]` (rows of unvisited own actions are 0)."""
    return counts / (counts.sum(-1, keepdim=True) + 0.01)


def soft_marginal_q(q: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. 11: Q(s, a^i) = alpha * log sum_{a^-i} exp(Q(s, a^i, a^-i) / alpha); q `[..., n_opp]` -> `[...]`."""
    return alpha * torch.logsumexp(q / alpha, -1)


def eq12_opponent_model(q: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. 12: rho(a^-i|s,a^i) = exp((Q(s,a^i,a^-i) - Q(s,a^i)) / alpha), normalised over the OPPONENT's actions
    (the last axis; the original code's softmax ran over the own actions). `[..., n_opp]` -> same."""
    return torch.exp((q - soft_marginal_q(q, alpha)[..., None]) / alpha)


def level1_q(q: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """Eq. 6's inner integral: sum_{a^-i} rho(a^-i|s,a^i) Q(s,a^i,a^-i); q, rho `[..., n_own, M]` -> `[..., n_own]`."""
    return (rho * q).sum(-1)


def boltzmann_policy(qbar: torch.Tensor, temperature: float) -> torch.Tensor:
    """pi(a^i|s) proportional to exp(Qbar(s, a^i) / temperature); `[..., n_own]` -> same."""
    return torch.softmax(qbar / temperature, -1)


def pr2q_learning_rate(t: int) -> float:
    """The original PR2-Q step size 10000 / (10000 + t) (starts at 1)."""
    return 10_000 / (10_000 + t)


# ALGO LOGIC: sums over the opponents' joint actions (deep PR2)
def joint_opponent_actions(opp_sizes: list[int], limit: int) -> torch.Tensor | None:
    """All joint opponent actions `[N, m]` if N = prod_j n_j <= limit, else None (sample instead)."""
    if math.prod(opp_sizes) > limit:
        return None
    return torch.tensor(list(itertools.product(*[range(n) for n in opp_sizes])), dtype=torch.long)


def one_hot_joint(actions: torch.Tensor, opp_sizes: list[int]) -> torch.Tensor:
    """Integer joint actions `[..., m]` -> concatenated one-hots `[..., sum_j n_j]`."""
    return torch.cat([F.one_hot(actions[..., j], n) for j, n in enumerate(opp_sizes)], -1).float()


def joint_log_prob(log_rho: list[torch.Tensor], cand: torch.Tensor) -> torch.Tensor:
    """log rho(a^-i | o, a^i) = sum_j log rho_j(a^j | o, a^i) for candidate joint actions.

    log_rho: list of `[B, n_i, n_j]`; cand `[M, m]` (shared) or `[B, n_i, M, m]` -> `[B, n_i, M]`."""
    if cand.dim() == 2:
        return sum(lp[:, :, cand[:, j]] for j, lp in enumerate(log_rho))
    return sum(lp.gather(-1, cand[..., j]) for j, lp in enumerate(log_rho))


def opponent_candidates(log_rho: list[torch.Tensor], joint: torch.Tensor | None, samples: int):
    """The opponent joint actions an expectation under rho runs over, and their log-weights `[B, n_i, M]`.

    exact (joint given): all N joint actions `[N, m]` weighted by rho; else `samples` draws from rho per state and
    own action `[B, n_i, K, m]`, each weighted 1/K."""
    if joint is not None:
        return joint, joint_log_prob(log_rho, joint)
    draws = torch.stack([torch.distributions.Categorical(logits=lp).sample((samples,)) for lp in log_rho], -1)
    cand = draws.permute(1, 2, 0, 3)
    return cand, torch.full(cand.shape[:3], -math.log(samples))


def joint_q_values(critic: JointCritic, obs: torch.Tensor, cand: torch.Tensor, opp_sizes: list[int]):
    """Q(o, a^i, a^-i) for every own action and candidate: obs `[B, d]`, cand as above -> `[B, n_i, M]`."""
    if cand.dim() == 2:  # the same candidates for every state and own action
        return critic(obs[:, None], one_hot_joint(cand, opp_sizes)[None]).transpose(1, 2)
    q = critic(obs[:, None, None], one_hot_joint(cand, opp_sizes))  # [B, n_i, K, n_i]
    return q.diagonal(dim1=1, dim2=3).transpose(1, 2)  # Q at the own action each candidate was drawn for


def level1_values(critic, rho_net, obs, opp_sizes, joint, samples):
    """(Q `[B, n_i, M]`, log-weights `[B, n_i, M]`, log rho `[B, n_i, M]`, candidates) at obs `[B, d]`."""
    log_rho = rho_net(obs)
    cand, log_w = opponent_candidates(log_rho, joint, samples)
    log_p = log_w if joint is not None else joint_log_prob(log_rho, cand)
    return joint_q_values(critic, obs, cand, opp_sizes), log_w, log_p, cand


# ALGO LOGIC: the losses (deep PR2)
def critic_loss(q_taken, rew, done, q_next, log_w_next, log_rho_next, gamma, temperature, alpha):
    """Eq. 13, soft value iteration: y = r + gamma (1 - d) E_{a'~pi} E_{a^-i'~rho}[Q'(s',a',a^-i') - alpha log rho].

    With the Eq. 12 rho the inner term is Eq. 11's alpha log sum exp(Q'/alpha); pass alpha=0 for the plain
    expectation under the empirical rho. q_taken, rew, done `[B]`; *_next `[B, n_i, M]` (target critic)."""
    with torch.no_grad():
        weights = log_w_next.exp()
        qbar = level1_q(q_next, weights)  # the policy's action values (Eq. 6)
        soft = level1_q(q_next - alpha * log_rho_next, weights)
        v_next = (boltzmann_policy(qbar, temperature) * soft).sum(-1)
        target = rew + gamma * (1.0 - done) * v_next
    return 0.5 * ((q_taken - target) ** 2).mean()


def empirical_opponent_loss(log_rho: list[torch.Tensor], own_act: torch.Tensor, opp_act: torch.Tensor):
    """Fit rho to the opponents' observed actions, the deep form of PR2-Q's counts: -log rho(a^-i_obs|o, a^i_obs).

    log_rho: list of `[B, n_i, n_j]`; own_act `[B]`; opp_act `[B, m]`."""
    rows = torch.arange(own_act.shape[0])
    return -sum(lp[rows, own_act, opp_act[:, j]] for j, lp in enumerate(log_rho)).mean()


def eq12_opponent_loss(log_p: torch.Tensor, q: torch.Tensor, alpha: float, exact: bool):
    """Eq. 12 as a projection: KL(rho(.|s,a^i) || exp((Q(s,a^i,.) - Q(s,a^i)) / alpha)) for every own action.

    log_p `[B, n_i, M]` (log rho of the candidates, with grad), q `[B, n_i, M]` (critic, no grad).
    exact: the KL itself; sampled: a score-function surrogate with the same gradient (candidates drawn from rho)."""
    if exact:
        return (log_p.exp() * (log_p - q / alpha)).sum(-1).mean() + torch.logsumexp(q / alpha, -1).mean()
    f = (log_p - q / alpha).detach()
    return ((f - f.mean(-1, keepdim=True)) * log_p).mean()


# ALGO LOGIC: replay buffer (inline; one shared index set for all agents, as the original drivers sample)
class ReplayBuffer:
    def __init__(self, obs_dims: dict, size: int, rng: np.random.Generator):
        self.agents, self.size, self.rng, self.pos, self.full = list(obs_dims), size, rng, 0, False
        self.obs = {a: np.zeros((size, d), np.float32) for a, d in obs_dims.items()}
        self.next_obs = {a: np.zeros((size, d), np.float32) for a, d in obs_dims.items()}
        self.actions = np.zeros((size, len(obs_dims)), np.int64)
        self.rewards = np.zeros((size, len(obs_dims)), np.float32)
        self.dones = np.zeros(size, np.float32)

    def add(self, obs, next_obs, actions, rewards, done):
        for a in self.agents:
            self.obs[a][self.pos], self.next_obs[a][self.pos] = obs[a], next_obs[a]
        self.actions[self.pos] = [actions[a] for a in self.agents]
        self.rewards[self.pos] = [rewards[a] for a in self.agents]
        self.dones[self.pos] = done
        self.pos, self.full = (self.pos + 1) % self.size, self.full or self.pos + 1 == self.size

    def state_dict(self) -> dict:
        n = self.size if self.full else self.pos
        return {
            "obs": {a: x[:n].copy() for a, x in self.obs.items()},
            "next_obs": {a: x[:n].copy() for a, x in self.next_obs.items()},
            "actions": self.actions[:n].copy(),
            "rewards": self.rewards[:n].copy(),
            "dones": self.dones[:n].copy(),
            "pos": self.pos,
            "full": self.full,
        }

    def load_state_dict(self, state: dict):
        n = len(state["dones"])
        for a in self.agents:
            self.obs[a][:n], self.next_obs[a][:n] = state["obs"][a], state["next_obs"][a]
        self.actions[:n], self.rewards[:n], self.dones[:n] = state["actions"], state["rewards"], state["dones"]
        self.pos, self.full = state["pos"], state["full"]

    def sample(self, batch_size: int) -> dict:
        idx = self.rng.integers(0, self.size if self.full else self.pos, batch_size)
        return {
            "obs": {a: torch.from_numpy(self.obs[a][idx]) for a in self.agents},
            "next_obs": {a: torch.from_numpy(self.next_obs[a][idx]) for a in self.agents},
            "actions": torch.from_numpy(self.actions[idx]),
            "rewards": torch.from_numpy(self.rewards[idx]),
            "dones": torch.from_numpy(self.dones[idx]),
        }


class DeepAgent(nn.Module):
    """Agent i's networks: joint critic, its target copy and the opponent model; `opp` = the other agents' indices."""

    def __init__(self, obs_dim, n_actions, opp_sizes, opp, args):
        super().__init__()
        self.opp, self.opp_sizes, self.n_actions = opp, opp_sizes, n_actions
        self.critic = JointCritic(obs_dim, opp_sizes, n_actions, args.hidden_size)
        self.target_critic = JointCritic(obs_dim, opp_sizes, n_actions, args.hidden_size)
        self.target_critic.load_state_dict(self.critic.state_dict())
        self.rho = OpponentModel(obs_dim, opp_sizes, n_actions, args.hidden_size)
        self.joint = joint_opponent_actions(opp_sizes, args.exact_limit)
        self.samples = args.opponent_samples

    def values(self, obs, critic=None):
        return level1_values(
            self.critic if critic is None else critic, self.rho, obs, self.opp_sizes, self.joint, self.samples
        )

    def policy(self, obs, temperature):
        """pi(.|o) and rho(.|o, a^i) over the candidates, for obs `[B, d]` -> `[B, n_i]`, `[B, n_i, M]`."""
        q, log_w, _, _ = self.values(obs)
        return boltzmann_policy(level1_q(q, log_w.exp()), temperature), log_w.exp()


class TabularAgent:
    """PR2-Q (original code: `RRQAgent`) for one agent of a two-player matrix game: tables Q(a, o) and n(a, o)."""

    def __init__(self, n_own: int, n_opp: int, args: Args):
        self.q = torch.rand(n_own, n_opp)  # U[0, 1] as in the original code
        self.counts = torch.zeros(n_own, n_opp)
        self.args = args

    def rho(self) -> torch.Tensor:
        if self.args.opponent_model == "eq12":
            return eq12_opponent_model(self.q, self.args.alpha)
        return empirical_opponent_model(self.counts)

    def policy(self) -> torch.Tensor:
        return boltzmann_policy(level1_q(self.q, self.rho()), self.args.temperature)

    def update(self, own: int, opp: int, reward: float, t: int) -> float:
        """One-shot game, so the target is r: Q(a,o) <- (1 - lr_t) Q(a,o) + lr_t r; returns the squared TD error."""
        self.counts[own, opp] += 1
        error = reward - self.q[own, opp].item()
        self.q[own, opp] += pr2q_learning_rate(t) * error
        return error**2


def check_finite(name: str, value: float, step: int):
    if not math.isfinite(value):
        raise SystemExit(f"{SCRIPT}: error: {name} became {value} at step {step}; try a lower --learning-rate")


def temperature_at(args: Args, step: int, total_timesteps: int | None = None) -> float:
    """Linear anneal from `temperature` to `temperature_end` over `anneal_fraction` of training (of total_timesteps
    if given: a resumed run keeps the anneal of the run it continues, whatever its own --total-timesteps)."""
    total = args.total_timesteps if total_timesteps is None else total_timesteps
    frac = min(1.0, step / max(1.0, args.anneal_fraction * total))
    return args.temperature + frac * (args.temperature_end - args.temperature)


def obs_tensor(obs, agent) -> torch.Tensor:
    return torch.as_tensor(np.asarray(obs[agent], np.float32)).reshape(1, -1)


def select_actions(agents, learners, obs, temperature, greedy=False) -> dict:
    """Each agent samples from its Boltzmann policy over the level-1 values (argmax when greedy)."""
    actions = {}
    with torch.no_grad():
        for agent, learner in zip(agents, learners, strict=True):
            probs = (
                learner.policy()
                if isinstance(learner, TabularAgent)
                else learner.policy(obs_tensor(obs, agent), temperature)[0][0]
            )
            actions[agent] = int(probs.argmax()) if greedy else int(torch.multinomial(probs, 1))
    return actions


def matrix_game_traces(agents, learners, temperature) -> dict:
    """pi(a=0) and the opponent model's P(o=0): marginal over one's own policy and given each own action."""
    scalars = {}
    with torch.no_grad():
        for agent, learner in zip(agents, learners, strict=True):
            if isinstance(learner, TabularAgent):
                pi, rho = learner.policy(), learner.rho()
            else:
                pi, weights = learner.policy(torch.zeros(1, 1), temperature)
                pi, rho = pi[0], (weights[0] * (learner.joint[:, 0] == 0)).sum(-1, keepdim=True)  # P(o=0 | a)
            scalars[f"charts/policy/{agent}"] = pi[0].item()
            scalars[f"charts/opponent_model/{agent}"] = (pi * rho[:, 0]).sum().item()
            for a in range(len(pi)):
                scalars[f"charts/opponent_model/{agent}/given_{a}"] = rho[a, 0].item()
    return scalars


def train_step(learner, optimizers, batch, i, args, temperature) -> dict:
    """One gradient step on agent i's critic (Eq. 13) and opponent model (empirical or Eq. 12)."""
    obs, next_obs = batch["obs"], batch["next_obs"]
    own, opp_act = batch["actions"][:, i], batch["actions"][:, learner.opp]
    alpha = args.alpha if args.opponent_model == "eq12" else 0.0
    with torch.no_grad():
        q_next, log_w_next, log_rho_next, _ = learner.values(next_obs, learner.target_critic)
    q_all = learner.critic(obs, one_hot_joint(opp_act, learner.opp_sizes))
    q_taken = q_all.gather(1, own[:, None]).squeeze(1)
    rew, done = batch["rewards"][:, i], batch["dones"]
    loss_q = critic_loss(q_taken, rew, done, q_next, log_w_next, log_rho_next, args.gamma, temperature, alpha)
    optimizers["critic"].zero_grad()
    loss_q.backward()
    optimizers["critic"].step()

    if args.opponent_model == "empirical":
        loss_rho = empirical_opponent_loss(learner.rho(obs), own, opp_act)
    else:
        log_rho = learner.rho(obs)
        cand, _ = opponent_candidates([lp.detach() for lp in log_rho], learner.joint, learner.samples)
        with torch.no_grad():
            q = joint_q_values(learner.critic, obs, cand, learner.opp_sizes)
        loss_rho = eq12_opponent_loss(joint_log_prob(log_rho, cand), q, args.alpha, learner.joint is not None)
    optimizers["rho"].zero_grad()
    loss_rho.backward()
    optimizers["rho"].step()

    with torch.no_grad():  # Polyak: target <- (1 - tau) target + tau critic
        for p, tp in zip(learner.critic.parameters(), learner.target_critic.parameters(), strict=True):
            tp.lerp_(p, args.tau)
    return {"critic_loss": loss_q.item(), "opponent_model_loss": loss_rho.item(), "q_values": q_taken.mean().item()}


def learner_state(learner) -> dict:
    """An agent's learned state: the Q and count tables (PR2-Q) or the networks' state_dict (deep)."""
    if isinstance(learner, TabularAgent):
        return {"q": learner.q.clone(), "counts": learner.counts.clone()}
    return learner.state_dict()


def load_learner_state(learner, state: dict):
    if not isinstance(learner, TabularAgent):
        learner.load_state_dict(state)
        return
    if set(state) != {"q", "counts"} or state["q"].shape != learner.q.shape:
        raise ValueError(f"PR2-Q tables of shape {tuple(learner.q.shape)} expected")
    learner.q, learner.counts = state["q"].clone(), state["counts"].clone()


def env_generator(env) -> np.random.Generator | None:
    """The env's own random generator (`np_random`, the gymnasium and mpe2 convention), if it keeps one.

    Episodes after the first start from an unseeded `env.reset()`, so a resumed run restores this generator's state
    from just before the last reset and resets again: the same episode starts as in an uninterrupted run."""
    generator = getattr(getattr(env, "unwrapped", env), "np_random", None)
    return generator if isinstance(generator, np.random.Generator) else None


def save_gif(frames: list, path: str):
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    images = [Image.fromarray(frame).reduce(2) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=80)


def evaluate(args: Args, agents, learners, episodes: int, video_dir: str | None = None) -> list[float]:
    """Greedy episodes (argmax of the level-1 values) on a fresh env; returns the mean-over-agents returns.
    With video_dir, each episode is also saved there as a GIF."""
    env = make_env(args.env, args.scenario, "discrete", args.max_cycles, "rgb_array" if video_dir else None, SCRIPT)
    obs, _ = env.reset(seed=args.seed + 10_000)
    returns, total, frames = [], 0.0, []
    while len(returns) < episodes:
        if video_dir:
            frames.append(env.render())
        obs, rewards, terms, truncs, _ = env.step(select_actions(agents, learners, obs, 1.0, greedy=True))
        total += float(np.mean([rewards[a] for a in agents]))
        if not env.agents or any(terms.values()) or any(truncs.values()):
            if video_dir:
                save_gif([*frames, env.render()], f"{video_dir}/eval_episode_{len(returns)}.gif")
                frames = []
            returns.append(total)
            total, (obs, _) = 0.0, env.reset()
    env.close()
    return returns


CHECKPOINT_KEYS = ["args", "agent_names", "obs_dims", "action_sizes", "agents", "step"]
STRUCTURAL_FLAGS = ["env", "scenario", "max_cycles", "algorithm", "hidden_size", "buffer_size"]


def main(args: Args, checkpoint: dict | None = None):
    args = resolve_defaults(args)
    try:
        env = make_env(args.env, args.scenario, "discrete", args.max_cycles, script=SCRIPT)
    except EnvError as error:
        raise SystemExit(f"{SCRIPT}: error: {error}") from None
    agents = list(env.possible_agents)
    sizes = [int(env.action_space(a).n) for a in agents]
    obs_dims = {a: env.observation_space(a).shape[0] for a in agents}
    problems = [
        (
            args.algorithm == "pr2q" and len(agents) != 2,
            f"--algorithm pr2q needs two agents, the env has {len(agents)}",
        ),
        (
            args.capture_video and "rgb_array" not in env.metadata.get("render_modes", []),
            f"--capture-video needs an env with rgb_array rendering; {args.env} has none",
        ),
    ]
    if checkpoint is not None:
        for flag in STRUCTURAL_FLAGS:
            problems.append((
                getattr(args, flag) != checkpoint["args"][flag],
                f"--resume: the checkpoint was trained with --{flag.replace('_', '-')} {checkpoint['args'][flag]}, "
                f"not {getattr(args, flag)}; drop that flag to continue it",
            ))  # fmt: skip
        saved_agents = (checkpoint["agent_names"], checkpoint["obs_dims"], checkpoint["action_sizes"])
        problems += [
            (
                saved_agents != (agents, list(obs_dims.values()), sizes),
                f"--resume: the checkpoint's agents, observation and action sizes {saved_agents} do not match "
                f"this env's {(agents, list(obs_dims.values()), sizes)}",
            ),
            (
                checkpoint["step"] >= args.total_timesteps,
                f"--resume: the checkpoint is at step {checkpoint['step']}; raise --total-timesteps",
            ),
        ]
    for bad, message in problems:
        if bad:
            raise SystemExit(f"{SCRIPT}: error: {message}")

    # TRY NOT TO MODIFY: seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_num_threads(args.torch_threads)  # CPU only (see --cuda)

    # ALGO LOGIC: initialize agents here
    learners, optimizers = [], []
    for i, agent in enumerate(agents):
        opp = [j for j in range(len(agents)) if j != i]
        if args.algorithm == "pr2q":
            learners.append(TabularAgent(sizes[i], sizes[opp[0]], args))
            continue
        obs_dim = env.observation_space(agent).shape[0]
        learner = DeepAgent(obs_dim, sizes[i], [sizes[j] for j in opp], opp, args)
        learners.append(learner)
        optimizers.append({
            "critic": torch.optim.Adam(learner.critic.parameters(), lr=args.learning_rate),
            "rho": torch.optim.Adam(learner.rho.parameters(), lr=args.learning_rate),
        })  # fmt: skip
    rb = ReplayBuffer(obs_dims, args.buffer_size, np.random.default_rng(args.seed))
    start_step, episode, finished, losses, last_return, episode_start_rng = 0, 0, [], {}, float("nan"), None
    anneal_total = args.total_timesteps  # the temperature anneals over a fraction of the first run's length
    if checkpoint is not None:  # continue a saved run where it stopped (a half-played episode starts over)
        try:
            for agent, learner in zip(agents, learners, strict=True):
                load_learner_state(learner, checkpoint["agents"][agent])
            for optimizer, states in zip(optimizers, checkpoint["optimizers"], strict=True):
                for key, state in states.items():
                    optimizer[key].load_state_dict(state)
            if checkpoint["buffer"] is not None:
                rb.load_state_dict(checkpoint["buffer"])
            rng = checkpoint["rng"]
            random.setstate(rng["python"])
            np.random.set_state(rng["numpy"])
            torch.set_rng_state(rng["torch"])
            rb.rng.bit_generator.state = rng["buffer"]
            start_step, episode, finished, losses = checkpoint["step"], checkpoint["episode"], *checkpoint["logs"]
            last_return, episode_start_rng, run_name = checkpoint["last_return"], rng["env"], checkpoint["run_name"]
            anneal_total = checkpoint["anneal_total"]
        except (RuntimeError, ValueError, KeyError, TypeError) as error:
            message = " ".join(str(error).split())  # one line
            raise SystemExit(f"{SCRIPT}: error: --resume: the checkpoint does not fit this run: {message}") from None
    else:
        run_name = make_run_name(env_label(args.env, args.scenario), args.exp_name, args.seed)
    writer = make_writer(run_name, args, purge_step=start_step + 1 if checkpoint else None)
    model_path = f"runs/{run_name}/{args.exp_name}.pt"

    def training_state(step: int) -> dict:
        """Everything a resumed run needs to continue as if it had never stopped."""
        rng = dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state())
        rng.update(buffer=rb.rng.bit_generator.state, env=episode_start_rng)
        rng["action_spaces"] = [env.action_space(agent).np_random.bit_generator.state for agent in agents]
        return dict(
            args=asdict(args),
            agent_names=agents,
            obs_dims=list(obs_dims.values()),
            action_sizes=sizes,
            agents={agent: learner_state(learner) for agent, learner in zip(agents, learners, strict=True)},
            optimizers=[{key: opt.state_dict() for key, opt in pair.items()} for pair in optimizers],
            step=step,
            episode=episode,
            logs=(finished, losses),
            last_return=last_return,
            anneal_total=anneal_total,
            buffer=rb.state_dict() if args.save_buffer and args.algorithm == "deep" else None,
            rng=rng,
            run_name=run_name,
        )

    stop_requested = []
    signal.signal(signal.SIGINT, lambda *_: stop_requested.append(True))  # finish the step, save, then exit

    # TRY NOT TO MODIFY: start the game
    progress, start_time = Progress(args.total_timesteps, start_step), time.time()
    obs, _ = env.reset(seed=args.seed)
    for i, agent in enumerate(agents):
        env.action_space(agent).seed(args.seed + i)
    if checkpoint is not None:
        for agent, state in zip(agents, checkpoint["rng"]["action_spaces"], strict=True):
            env.action_space(agent).np_random.bit_generator.state = state
        if episode_start_rng is not None and env_generator(env) is not None:
            env_generator(env).bit_generator.state = episode_start_rng
            obs, _ = env.reset()
    episode_return, episode_length = dict.fromkeys(agents, 0.0), 0
    for global_step in range(start_step, args.total_timesteps):
        temperature = temperature_at(args, global_step, anneal_total)
        if args.algorithm == "deep" and global_step < args.learning_starts:
            actions = {agent: int(env.action_space(agent).sample()) for agent in agents}
        else:
            actions = select_actions(agents, learners, obs, temperature)
        next_obs, rewards, terms, truncs, _ = env.step(actions)

        # TRY NOT TO MODIFY: record rewards for plotting purposes
        for agent in agents:
            episode_return[agent] += rewards[agent]
        episode_length += 1
        episode_over = not env.agents or any(terms.values()) or any(truncs.values())
        if args.algorithm == "pr2q":  # ALGO LOGIC: PR2-Q table updates
            for i, (agent, learner) in enumerate(zip(agents, learners, strict=True)):
                sq = learner.update(actions[agent], actions[agents[1 - i]], rewards[agent], global_step)
                losses.setdefault(f"critic_loss/{agent}", []).append(sq)
        else:  # done = terminated (not truncated): bootstrap through the time limit
            rb.add(obs, next_obs, actions, rewards, float(any(terms.values())))
        if episode_over:
            finished.append((dict(episode_return), episode_length))
            episode_return, episode_length, episode = dict.fromkeys(agents, 0.0), 0, episode + 1
            generator = env_generator(env)  # its state before the reset: a resumed run replays this reset
            episode_start_rng = generator.bit_generator.state if generator is not None else None
            next_obs, _ = env.reset()
        obs = next_obs  # TRY NOT TO MODIFY: CRUCIAL step easy to overlook

        # ALGO LOGIC: training
        if args.algorithm == "deep" and global_step >= args.learning_starts and global_step % args.train_frequency == 0:
            batch = rb.sample(args.batch_size)
            for i, (agent, learner) in enumerate(zip(agents, learners, strict=True)):
                step_batch = dict(batch, obs=batch["obs"][agent], next_obs=batch["next_obs"][agent])
                for name, value in train_step(learner, optimizers[i], step_batch, i, args, temperature).items():
                    check_finite(f"{name}/{agent}", value, global_step)
                    losses.setdefault(f"{name}/{agent}", []).append(value)

        if (global_step + 1) % args.log_every == 0:
            step = global_step + 1
            if finished:
                means = {a: float(np.mean([r[a] for r, _ in finished])) for a in agents}
                last_return = float(np.mean(list(means.values())))
                writer.add_scalar("charts/episodic_return", last_return, step)
                for agent, value in means.items():
                    writer.add_scalar(f"charts/episodic_return/{agent}", value, step)
                writer.add_scalar("charts/episodic_length", float(np.mean([n for _, n in finished])), step)
                finished = []
            for name, values in losses.items():
                writer.add_scalar(f"losses/{name}", float(np.mean(values)), step)
            losses = {}
            if args.env == "matrix":
                for tag, value in matrix_game_traces(agents, learners, temperature).items():
                    writer.add_scalar(tag, value, step)
            writer.add_scalar("charts/temperature", temperature, step)
            writer.add_scalar("charts/SPS", int((step - start_step) / (time.time() - start_time)), step)
            progress.update(step, last_return)

        if args.save_model and args.save_every and (global_step + 1) % args.save_every == 0:
            save_checkpoint(training_state(global_step + 1), model_path)  # atomically: a temporary file, then a rename
        if stop_requested:
            if args.save_model:
                save_checkpoint(training_state(global_step + 1), model_path)
                print(
                    f"\ninterrupted at step {global_step + 1}; saved {model_path}; continue with --resume {model_path}"
                )
            writer.close()
            raise SystemExit(130)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C during the evaluation stops it at once

    if args.save_model:
        save_checkpoint(training_state(args.total_timesteps), model_path)
        print(f"model saved to {model_path}")
    if args.save_model or args.capture_video:
        video_dir = f"runs/{run_name}/videos" if args.capture_video else None
        for idx, episodic_return in enumerate(evaluate(args, agents, learners, args.eval_episodes, video_dir)):
            writer.add_scalar("eval/episodic_return", episodic_return, idx)
    env.close()
    writer.close()


if __name__ == "__main__":
    cli_args = tyro.cli(Args)
    saved = None
    if cli_args.resume:  # the checkpoint's flags are the defaults; flags given on the command line override them
        try:
            saved = load_checkpoint(cli_args.resume, CHECKPOINT_KEYS, SCRIPT)
        except ValueError as error:
            raise SystemExit(f"{SCRIPT}: error: {error}") from None
        cli_args = tyro.cli(Args, default=Args(**{**saved["args"], "resume": cli_args.resume}))
    main(cli_args, saved)
