# docs and experiment results can be found at docs/pr2_discrete.md
"""PR2 with discrete actions (Wen et al., ICLR 2019): tabular PR2-Q on matrix games, deep PR2 elsewhere.

Every agent i keeps a joint-action critic Q^i(s, a^i, a^-i), an opponent model rho^i(a^-i | s, a^i) and acts
with a Boltzmann policy over its level-1 action values sum_{a^-i} rho(a^-i | s, a^i) Q(s, a^i, a^-i).
"""

import itertools
import math
import os
from dataclasses import asdict, dataclass
from functools import partial
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils import run
from utils.envs import EnvError, env_label, make_env

SCRIPT = "pr2_discrete.py"


@dataclass
class Args(run.RunArgs):  # the flags every script shares (seed, --save-model, --resume, --eval-every, ...) come first
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run folder's name)"""
    cuda: bool = True
    """accepted for CleanRL compatibility; this script always runs on the CPU (its networks are tiny)"""

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
    """Boltzmann temperature of the policy (default 1.0): constant in pr2q, as in the original code; the start of
    the anneal in deep"""
    temperature_end: float | None = None
    """deep only: the temperature falls linearly to this over `anneal_fraction` of training (default: 0.01); pr2q
    keeps `temperature` constant and refuses this flag"""
    anneal_fraction: float = 0.5
    """deep: fraction of `total_timesteps` over which the temperature anneals"""
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
    """Fill the env-dependent defaults (`None` fields; stored in the checkpoint) and check the flags (ValueError)."""
    matrix = args.env == "matrix"
    args.algorithm = args.algorithm or ("pr2q" if matrix else "deep")
    pr2q = args.algorithm == "pr2q"
    if pr2q and args.temperature_end is not None:  # PR2-Q's temperature is the original code's constant
        raise ValueError("--temperature-end: PR2-Q keeps --temperature constant; drop the flag or use --algorithm deep")
    defaults = dict(
        scenario={"matrix": "pr2", "particle": "simple_spread"}.get(args.env), temperature=1.0,
        temperature_end=None if pr2q else 0.01, total_timesteps=1_000 if pr2q else 40_000,
        learning_starts=0 if matrix else 2_000, log_every=1 if matrix else 100,
    )  # fmt: skip
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    positive = ["total_timesteps", "batch_size", "log_every", "train_frequency", "learning_rate", "temperature"]
    positive += ["alpha", "exact_limit", "opponent_samples", "hidden_size"] + ([] if pr2q else ["temperature_end"])
    for name in positive:
        if not getattr(args, name) > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    for name in ["learning_starts", "eval_episodes", "save_every"]:
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    problems = [
        (pr2q and not matrix, "--algorithm pr2q is tabular and needs --env matrix; use --algorithm deep"),
        (args.batch_size > args.buffer_size, f"--batch-size {args.batch_size} > --buffer-size {args.buffer_size}"),
        (not 0 <= args.gamma <= 1, f"--gamma must be in [0, 1], got {args.gamma}"),
        (not 0 < args.tau <= 1, f"--tau must be in (0, 1], got {args.tau}"),
        (not 0 <= args.anneal_fraction <= 1, f"--anneal-fraction must be in [0, 1], got {args.anneal_fraction}"),
        (args.capture_video and args.eval_episodes == 0, "--capture-video records the evaluation: --eval-episodes > 0"),
    ]
    for bad, message in problems:
        if bad:
            raise ValueError(message)
    return args


# ALGO LOGIC: networks (deep PR2), one set per agent i
class JointCritic(nn.Module):
    """Q^i(o^i, a^i, a^-i) for every own action a^i at once: obs `[..., obs_dim]` and one-hot opponent actions
    `[..., sum_j n_j]` (broadcastable) -> `[..., n_i]`. The first layer sums a linear map of each input (= one linear
    map of their concatenation), as the original code does, so a batch of observations `[B, 1, d]` broadcasts
    against all joint actions `[1, N, sum_j n_j]`."""

    def __init__(self, obs_dim: int, opp_sizes: list[int], n_actions: int, hidden: int):
        super().__init__()
        self.obs_layer = nn.Linear(obs_dim, hidden)
        self.opp_layer = nn.Linear(sum(opp_sizes), hidden, bias=False)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_actions))

    def forward(self, obs, opp_onehot):
        return self.head(self.obs_layer(obs) + self.opp_layer(opp_onehot))


class OpponentModel(nn.Module):
    """rho^i(a^-i | o^i, a^i), one categorical per opponent j, for every own action a^i at once: obs `[B, obs_dim]`
    -> a list over opponents j of log-probabilities `[B, n_i, n_j]`."""

    def __init__(self, obs_dim: int, opp_sizes: list[int], n_actions: int, hidden: int):
        super().__init__()
        self.n_actions, self.opp_sizes = n_actions, list(opp_sizes)
        hidden_layers = [nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()]
        self.net = nn.Sequential(*hidden_layers, nn.Linear(hidden, n_actions * sum(opp_sizes)))

    def forward(self, obs):
        logits = self.net(obs).view(obs.shape[0], self.n_actions, sum(self.opp_sizes))
        return [F.log_softmax(part, -1) for part in logits.split(self.opp_sizes, -1)]


# ALGO LOGIC: the opponent model and the level-1 values, shared by PR2-Q and deep PR2
def empirical_opponent_model(counts: torch.Tensor) -> torch.Tensor:
    """PR2-Q's count model: rho(o|a) = n(a, o) / (sum_o' n(a, o') + 0.01), as in the original code;
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
    """log rho(a^-i | o, a^i) = sum_j log rho_j(a^j | o, a^i) for candidate joint actions;
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
    """Joint transitions: agent i's observations o^i and o'^i, every agent's action and reward, done = terminated.
    Its array attributes, `size` (filled rows) and `pos` are what utils.run.buffer_state saves."""

    def __init__(self, obs_dims: list[int], capacity: int, rng: np.random.Generator):
        self.capacity, self.rng, self.size, self.pos = capacity, rng, 0, 0
        self.obs = [np.zeros((capacity, d), np.float32) for d in obs_dims]
        self.next_obs = [np.zeros((capacity, d), np.float32) for d in obs_dims]
        self.actions = np.zeros((capacity, len(obs_dims)), np.int64)
        self.rewards = np.zeros((capacity, len(obs_dims)), np.float32)
        self.dones = np.zeros(capacity, np.float32)

    def add(self, obs: list, next_obs: list, actions: list, rewards: list, done: float):
        for i in range(len(obs)):
            self.obs[i][self.pos], self.next_obs[i][self.pos] = obs[i], next_obs[i]
        self.actions[self.pos], self.rewards[self.pos], self.dones[self.pos] = actions, rewards, done
        self.pos, self.size = (self.pos + 1) % self.capacity, min(self.size + 1, self.capacity)

    def sample(self, batch_size: int) -> dict:
        idx = self.rng.integers(0, self.size, batch_size)
        batch = {key: torch.from_numpy(getattr(self, key)[idx]) for key in ("actions", "rewards", "dones")}
        return dict(batch, obs=[torch.from_numpy(x[idx]) for x in self.obs],
                    next_obs=[torch.from_numpy(x[idx]) for x in self.next_obs])  # fmt: skip


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
        critic = self.critic if critic is None else critic
        return level1_values(critic, self.rho, obs, self.opp_sizes, self.joint, self.samples)

    def policy(self, obs, temperature):
        """pi(.|o) for obs `[B, d]` -> `[B, n_i]`."""
        q, log_w, _, _ = self.values(obs)
        return boltzmann_policy(level1_q(q, log_w.exp()), temperature)


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
        self.q[own, opp] += 10_000 / (10_000 + t) * error  # the original code's step size lr_t (starts at 1)
        return error**2

    def state_dict(self) -> dict:
        return {"q": self.q.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: dict):  # the table shapes were checked against the env (run.check_run)
        self.q, self.counts = state["q"].clone(), state["counts"].clone()


def check_finite(name: str, value: float, step: int):
    if not math.isfinite(value):
        raise SystemExit(f"{SCRIPT}: error: {name} became {value} at step {step}; try a lower --learning-rate")


def temperature_at(args: Args, step: int, total_timesteps: int | None = None) -> float:
    """PR2-Q: `temperature`, constant. Deep: linear from `temperature` to `temperature_end` over `anneal_fraction` of
    total_timesteps (if given: a resumed run keeps the anneal of the run it continues, whatever its own length)."""
    if args.temperature_end is None:
        return args.temperature
    total = args.total_timesteps if total_timesteps is None else total_timesteps
    frac = min(1.0, step / max(1.0, args.anneal_fraction * total))
    return args.temperature + frac * (args.temperature_end - args.temperature)


@torch.no_grad()
def select_actions(agents, learners, obs, temperature, greedy=False) -> dict:
    """Each agent samples from its Boltzmann policy over the level-1 values (argmax when greedy)."""
    actions = {}
    for agent, learner in zip(agents, learners, strict=True):
        if isinstance(learner, TabularAgent):
            probs = learner.policy()
        else:
            probs = learner.policy(torch.as_tensor(np.asarray(obs[agent], np.float32)).reshape(1, -1), temperature)[0]
        actions[agent] = int(probs.argmax()) if greedy else int(torch.multinomial(probs, 1))
    return actions


@torch.no_grad()
def matrix_game_traces(agents, learners, temperature) -> dict:
    """pi(a=0) and the opponent model's P(o=0): marginal over one's own policy and given each own action."""
    scalars = {}
    for agent, learner in zip(agents, learners, strict=True):
        if isinstance(learner, TabularAgent):
            pi, rho = learner.policy(), learner.rho()
        else:  # exact sums even beyond --exact-limit: a log entry draws no random numbers
            joint = joint_opponent_actions(learner.opp_sizes, math.inf)
            q, log_w, _, _ = level1_values(learner.critic, learner.rho, torch.zeros(1, 1), learner.opp_sizes, joint, 0)
            rho = log_w[0].exp()  # [n_own, n_opp]: rho(o | a), one opponent, joint actions in order 0, 1, ...
            pi = boltzmann_policy(level1_q(q, rho), temperature)[0]
        scalars[f"charts/policy/{agent}"] = pi[0].item()
        scalars[f"charts/opponent_model/{agent}"] = (pi * rho[:, 0]).sum().item()
        for a in range(len(pi)):
            scalars[f"charts/opponent_model/{agent}/given_{a}"] = rho[a, 0].item()
    return scalars


def charts(agents, learners, losses: dict, temperature: float, args: Args) -> dict:
    """A log entry's scalars besides the episodes': the window's mean losses (the window then starts anew), the
    temperature, and on matrix games the policies and opponent models."""
    scalars = {f"losses/{name}": float(np.mean(values)) for name, values in losses.items()}
    losses.clear()
    scalars.update(matrix_game_traces(agents, learners, temperature) if args.env == "matrix" else {})
    return dict(scalars, **{"charts/temperature": temperature})


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


def build_learners(obs_dims: list[int], sizes: list[int], args: Args):
    """Per agent: PR2-Q's tables, or the deep networks with one Adam for the critic and one for rho."""
    if args.algorithm == "pr2q":
        return [TabularAgent(sizes[0], sizes[1], args), TabularAgent(sizes[1], sizes[0], args)], []
    opps = [[j for j in range(len(sizes)) if j != i] for i in range(len(sizes))]
    learners = [DeepAgent(d, n, [sizes[j] for j in opp], opp, args) for d, n, opp in zip(obs_dims, sizes, opps)]
    adam = lambda module: torch.optim.Adam(module.parameters(), lr=args.learning_rate)  # noqa: E731
    return learners, [{"critic": adam(learner.critic), "rho": adam(learner.rho)} for learner in learners]


def env_generator(env) -> np.random.Generator | None:
    """The env's own random generator (`np_random`, as gymnasium and mpe2 envs keep it), or None. Episodes after the
    first start from an unseeded reset(): a resumed run restores its state from before the last reset and resets."""
    generator = getattr(getattr(env, "unwrapped", env), "np_random", None)
    return generator if isinstance(generator, np.random.Generator) else None


def first_observation(env, seed: int, saved_rng: dict | None):
    """The run's first episode starts from reset(seed); a resumed one replays the reset of the episode it stopped in."""
    obs, _ = env.reset(seed=seed)
    if saved_rng is not None:
        for agent, state in zip(env.possible_agents, saved_rng["action_spaces"], strict=True):
            env.action_space(agent).np_random.bit_generator.state = state
        if saved_rng["env"] is not None and env_generator(env) is not None:
            env_generator(env).bit_generator.state = saved_rng["env"]
            obs, _ = env.reset()
    return obs


def restore(checkpoint: dict, learners, optimizers, buffer: ReplayBuffer, args: Args) -> tuple:
    """Load a checkpoint's tables or networks, optimisers, buffer and random state; return its counters."""
    modules = [*zip(learners, checkpoint["agents"].values()), (buffer, checkpoint["buffer"])]  # agents checked
    saved = [(opt, states[k]) for pair, states in zip(optimizers, checkpoint["optimizers"]) for k, opt in pair.items()]
    run.load_states(modules, saved, args.learning_rate, SCRIPT)
    run.restore_rng_state(checkpoint["rng"])
    buffer.rng.bit_generator.state = checkpoint["rng"]["buffer"]
    train_from = checkpoint["train_from"]
    if args.algorithm == "deep" and checkpoint["buffer"] is None:  # no minibatch yet: wait as a fresh run would
        train_from = checkpoint["step"] + max(args.batch_size, args.learning_starts)
    return checkpoint["step"], checkpoint["losses"], train_from, checkpoint["anneal_total"], checkpoint["log"]


CHECKPOINT_KEYS = ["args", "agent_names", "obs_dims", "action_sizes", "agents", "optimizers", "step"]
STRUCTURAL_FLAGS = ["env", "scenario", "max_cycles", "algorithm", "hidden_size", "buffer_size"]


def main(args: Args, checkpoint: dict | None = None):
    try:
        if checkpoint is not None and args.env != checkpoint["args"]["env"]:  # before the saved --scenario meets it
            saved = checkpoint["args"]["env"]
            raise ValueError(f"--resume: the checkpoint was trained with --env {saved}, not {args.env}; drop that flag")
        args = resolve_defaults(args)
        env = make_env(args.env, args.scenario, "discrete", args.max_cycles, script=SCRIPT)
        agents = list(env.possible_agents)
        sizes = [int(env.action_space(a).n) for a in agents]
        obs_dims = [env.observation_space(a).shape[0] for a in agents]
        if args.algorithm == "pr2q" and len(agents) != 2:
            raise ValueError(f"--algorithm pr2q needs two agents, the env has {len(agents)}")
        layout = dict(agent_names=agents, obs_dims=obs_dims, action_sizes=sizes)
        run.check_run(env, args, checkpoint, STRUCTURAL_FLAGS, layout)
    except (ValueError, EnvError) as error:
        raise SystemExit(f"{SCRIPT}: error: {error}") from None
    run.seed_everything(args, env)  # TRY NOT TO MODIFY: seeding (CPU only, see --cuda)

    # ALGO LOGIC: initialise the agents
    learners, optimizers = build_learners(obs_dims, sizes, args)
    rb = ReplayBuffer(obs_dims, args.buffer_size, np.random.default_rng(args.seed))
    start_step, losses, train_from, anneal_total, log_state = 0, {}, 0, args.total_timesteps, None
    if checkpoint is not None:  # continue a saved run where it stopped (a half-played episode starts over)
        start_step, losses, train_from, anneal_total, log_state = restore(checkpoint, learners, optimizers, rb, args)
    session = run.Session(args, checkpoint, agents, env_label(args.env, args.scenario))  # logs, checkpoints, Ctrl-C
    greedy = lambda env, obs: select_actions(agents, learners, obs, 1.0, greedy=True)  # noqa: E731
    evaluate = partial(run.evaluate, partial(make_env, args.env, args.scenario, "discrete", args.max_cycles), greedy,
                       args.eval_episodes)  # fmt: skip
    episode_start_rng = checkpoint["rng"]["env"] if checkpoint else None

    def training_state(step: int) -> dict:
        """Everything a resumed run needs to continue as if it had never stopped (tensors and plain values only)."""
        spaces = [env.action_space(agent).np_random.bit_generator.state for agent in agents]
        rng = dict(run.rng_state(), buffer=rb.rng.bit_generator.state, env=episode_start_rng, action_spaces=spaces)
        return dict(
            args=asdict(args), agent_names=agents, obs_dims=obs_dims, action_sizes=sizes,
            agents={agent: learner.state_dict() for agent, learner in zip(agents, learners, strict=True)},
            optimizers=[{key: opt.state_dict() for key, opt in pair.items()} for pair in optimizers],
            buffer=run.buffer_state(rb) if args.save_buffer and args.algorithm == "deep" else None,
            rng=rng, step=step, losses=losses, anneal_total=anneal_total, train_from=train_from,
        )  # fmt: skip

    # TRY NOT TO MODIFY: start the game
    obs = first_observation(env, args.seed, checkpoint["rng"] if checkpoint else None)
    for global_step in range(start_step, args.total_timesteps):
        temperature = temperature_at(args, global_step, anneal_total)
        if args.algorithm == "deep" and global_step < args.learning_starts:
            actions = {agent: int(env.action_space(agent).sample()) for agent in agents}
        else:
            actions = select_actions(agents, learners, obs, temperature)
        next_obs, rewards, terms, truncs, _ = env.step(actions)

        # TRY NOT TO MODIFY: record rewards for plotting purposes; an episode ends for all when any agent is done
        session.log.add_step([rewards[agent] for agent in agents])
        if args.algorithm == "pr2q":  # ALGO LOGIC: PR2-Q table updates
            for i, (agent, learner) in enumerate(zip(agents, learners, strict=True)):
                sq = learner.update(actions[agent], actions[agents[1 - i]], rewards[agent], global_step)
                losses.setdefault(f"critic_loss/{agent}", []).append(sq)
        else:  # done = terminated (not truncated): bootstrap through the time limit
            per_agent = [[d[agent] for agent in agents] for d in (obs, next_obs, actions, rewards)]
            rb.add(*per_agent, float(any(terms.values())))
        if not env.agents or any(terms.values()) or any(truncs.values()):
            session.log.end_episode()
            generator = env_generator(env)  # its state before the reset: a resumed run replays this reset
            episode_start_rng = generator.bit_generator.state if generator is not None else None
            next_obs, _ = env.reset()
        obs = next_obs  # TRY NOT TO MODIFY: CRUCIAL step easy to overlook

        # ALGO LOGIC: training
        train_now = global_step >= max(args.learning_starts, train_from) and global_step % args.train_frequency == 0
        if args.algorithm == "deep" and train_now:
            batch = rb.sample(args.batch_size)
            for i, (agent, learner) in enumerate(zip(agents, learners, strict=True)):
                step_batch = dict(batch, obs=batch["obs"][i], next_obs=batch["next_obs"][i])
                for name, value in train_step(learner, optimizers[i], step_batch, i, args, temperature).items():
                    check_finite(f"{name}/{agent}", value, global_step)
                    losses.setdefault(f"{name}/{agent}", []).append(value)

        # TRY NOT TO MODIFY: log (this window's mean losses), evaluate and save when due; on Ctrl-C save and exit
        charts_now = partial(charts, agents, learners, losses, temperature, args)
        session.end_step(global_step + 1, charts_now, training_state, evaluate)
    session.finish(training_state, evaluate)
    env.close()


if __name__ == "__main__":
    main(*run.parse_args(Args, SCRIPT, CHECKPOINT_KEYS))
