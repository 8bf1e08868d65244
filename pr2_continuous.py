# PR2, Probabilistic Recursive Reasoning (Wen et al., ICLR 2019, arXiv 1901.09207), for continuous actions, in one
# file. --policy soft (default): our energy-based variant; --policy deterministic: PR2-AC. Docs: docs/pr2_continuous.md
import copy
import os
from dataclasses import asdict, dataclass
from functools import partial
from typing import Literal

import numpy as np
import torch
import torch.nn as nn

from utils import run
from utils.envs import EnvError, env_label, global_state, global_state_dim, make_env, to_env_action


@dataclass
class Args(run.RunArgs):  # the flags every script shares (seed, --save-model, --resume, --eval-every, ...) come first
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run folder's name)"""

    # Environment
    env: str = "particle"
    """'particle' (mpe2), 'differential' (the paper's max-of-two-quadratics game), or 'pkg.module:factory' (yours)"""
    scenario: str | None = None
    """particle: the mpe2 scenario (default simple_spread); differential: 'paper' (default), 'code' (/3 formula), ..."""
    max_cycles: int = 25
    """steps per particle episode"""
    # Training. Fields left at None take the per-env default in ENV_DEFAULTS (printed in the hyperparameter table).
    total_timesteps: int | None = None
    """environment steps (default: differential 6,000 soft, 16,000 deterministic (the original code's); 100,000)"""
    learning_starts: int | None = None
    """environment steps before the first gradient step (default: differential 100 soft, 1,000 deterministic; 5,000)"""
    train_frequency: int | None = None
    """environment steps per gradient step (default: 1 differential; 4 otherwise)"""
    batch_size: int | None = None
    """minibatch size (default: 64 differential; 128 otherwise)"""
    buffer_size: int = 1_000_000
    """replay buffer capacity (joint transitions)"""
    gamma: float | None = None
    """discount factor (default: 0.99 differential, where it has no effect; 0.95 otherwise)"""
    learning_rate: float | None = None
    """Adam learning rate of every network (default: 1e-3; 3e-4 for the deterministic one on the differential game)"""
    tau: float = 0.01
    """Polyak rate of the target networks"""
    target_update_interval: int = 5
    """gradient steps between Polyak updates of the target networks"""
    reward_scale: float = 1.0
    """rewards are multiplied by this in the critic target"""
    hidden_size: int = 100
    """units in each of the two hidden layers of every network"""
    critic_input: Literal["state", "own"] | None = None
    """what the critics and ρ see: 'state' (global) or 'own' (o^i; default if deterministic or differential)"""
    # PR2
    policy: Literal["soft", "deterministic"] = "soft"
    """'soft': our energy-based π(a^i|s) ∝ exp(Q^i(s, a^i)/α), α annealed; 'deterministic': the original PR2-AC"""
    alpha: float | None = None
    """temperature α of Eqs. 11 and 12, the final one if annealed (default: 0.5; 0.01 soft off the differential game)"""
    alpha_start: float | None = None
    """α at the first gradient step (default soft: 50 differential, 40 × --alpha otherwise; deterministic: --alpha)"""
    anneal_steps: int = 3_000
    """gradient steps over which α goes from --alpha-start to --alpha"""
    soft_marginal: Literal["rho", "uniform"] = "rho"
    """soft policy: opponent samples behind Q^i(s, a^i), 'rho' from ρ(·|s, a^i) (level 1) or 'uniform' (without ρ)"""
    policy_particles: int = 8
    """soft policy: particles of π per state in its SVGD update, split like ρ's"""
    rho_uniform_share: float | None = None
    """soft policy: share of rows where ρ trains at a uniform own action, not π's (default: 0.5 differential; 0)"""
    marginal_particles: int = 4
    """soft policy: opponent samples per own-action particle in the soft marginal Q^i(s, a^i)"""
    value_particles: int | None = None
    """M: opponent samples for the soft value and the actor objective (default: 16 differential, as the original; 8)"""
    kernel_particles: int | None = None
    """K: opponent-model particles per state in the SVGD update (default: 32 differential, as the original; 16)"""
    kernel_update_ratio: float = 0.5
    """share of the K particles that are moved; the rest are held fixed to build the SVGD direction"""
    actor_objective: Literal["softmax", "mean"] = "softmax"
    """the actor's aggregate over ρ's samples: 'softmax' α·log mean_k exp(Q/α) (the original) or 'mean' (Eqs. 6/7)"""
    critic_target: Literal["uniform", "rho", "policies"] = "uniform"
    """V(s') in the critics' target: 'uniform' Eq. 11 over uniform opponents, 'rho' E_ρ[Q], 'policies' MADDPG's"""
    uniform_estimator: Literal["mc", "importance"] = "mc"
    """--critic-target uniform: 'mc' plain Monte Carlo (biased low at small α) or 'importance' (nearly unbiased)"""
    opponent_model: Literal["helpers", "sides"] = "helpers"
    """'helpers': every other agent helps agent i (Eq. 12); 'sides': other teams (--teams) oppose it (soft minimax)"""
    teams: tuple[str, ...] = ()
    """--opponent-model sides: teams of comma-separated agents (default: mpe2's adversary_* against the rest)"""
    # Exploration
    noise_schedule: str | None = None
    """OU noise scale, piecewise constant 'step:scale,...' (default: differential '0:1.0,1600:0.01,2666:0.001')"""
    ou_theta: float = 0.15
    """OU mean reversion θ"""
    ou_sigma: float = 0.3
    """OU diffusion σ"""
    log_every: int = 100
    """environment steps between log entries"""


# The differential game: the original code's settings, but for the soft policy's faster critic and broader start.
# Elsewhere an update costs ~(batch x particles) network passes per agent: fewer particles and updates, for a CPU.
ENV_DEFAULTS = {
    "differential": dict(total_timesteps=dict(soft=6_000, deterministic=16_000), train_frequency=1, batch_size=64,
                         learning_starts=dict(soft=100, deterministic=1_000), learning_rate=dict(soft=1e-3,
                         deterministic=3e-4), alpha_start=dict(soft=50.0, deterministic=None), gamma=0.99, alpha=0.5,
                         kernel_particles=32, value_particles=16, critic_input="own", rho_uniform_share=0.5,
                         noise_schedule="0:1.0,1600:0.01,2666:0.001"),
    "other": dict(total_timesteps=100_000, learning_starts=5_000, train_frequency=4, batch_size=128, gamma=0.95,
                  learning_rate=1e-3, alpha=dict(soft=0.01, deterministic=0.5), kernel_particles=16, value_particles=8,
                  noise_schedule="0:0.3,50000:0.1", critic_input=dict(soft="state", deterministic="own"),
                  rho_uniform_share=0.0),
}  # fmt: skip


def resolve_args(args: Args) -> Args:
    """Fill per-env defaults and check flags; a problem raises ValueError with a one-line fix."""
    for key, value in ENV_DEFAULTS["differential" if args.env == "differential" else "other"].items():
        if getattr(args, key) is None:
            setattr(args, key, value[args.policy] if isinstance(value, dict) else value)
    if args.alpha_start is None:
        args.alpha_start = 40.0 * args.alpha if args.policy == "soft" else args.alpha
    if args.scenario is None:  # stored resolved, so that naming the default on --resume matches the checkpoint
        args.scenario = {"particle": "simple_spread", "differential": "paper"}.get(args.env)
    for name in ["total_timesteps", "train_frequency", "batch_size", "buffer_size", "hidden_size", "value_particles",
                 "log_every", "target_update_interval", "learning_rate", "alpha", "alpha_start", "anneal_steps",
                 "marginal_particles"]:  # fmt: skip
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    ratio = args.kernel_update_ratio  # SVGD needs >= 2 fixed and >= 1 moved particles; PR2-AC's M come from the fixed
    fixed = args.kernel_particles - int(args.kernel_particles * ratio)
    problems = [
        (args.learning_starts < 0, f"--learning-starts must be >= 0, got {args.learning_starts}"),
        (not 0 <= args.rho_uniform_share <= 1, f"--rho-uniform-share must be in [0, 1], got {args.rho_uniform_share}"),
        (args.batch_size > args.buffer_size, f"--batch-size {args.batch_size} exceeds --buffer-size "
         f"{args.buffer_size}"),
        (not (0 <= args.gamma <= 1 and 0 < args.tau <= 1), f"need --gamma in [0, 1] and --tau in (0, 1]; got "
         f"{args.gamma}, {args.tau}"),
        (args.teams and args.opponent_model == "helpers", "--teams is read by --opponent-model sides only: add it"),
        (args.uniform_estimator == "importance" and args.critic_target != "uniform", "--uniform-estimator importance "
         "is read by --critic-target uniform only: drop one"),
        *((not (int(n * ratio) >= 1 and n - int(n * ratio) >= 2), f"--{flag.replace('_', '-')} {n} with "
           f"--kernel-update-ratio {ratio} must leave >= 2 fixed and >= 1 moved particles")
          for flag, n in [("policy_particles", args.policy_particles), ("kernel_particles", args.kernel_particles)]),
        (args.policy == "deterministic" and args.value_particles > fixed, f"--value-particles {args.value_particles} "
         f"exceeds the {fixed} fixed opponent-model particles: use at most {fixed} or raise --kernel-particles"),
    ]  # fmt: skip
    if problem := next((message for bad, message in problems if bad), None):
        raise ValueError(problem)
    run.parse_schedule(args.noise_schedule)
    return args


# ALGO LOGIC: networks. Every network is the original code's MLP: 2 hidden ReLU layers, Xavier init, zero biases.
class MLP(nn.Module):
    """f(x_1, ..., x_n), tanh-squashed if squash (raw=True: before it); the first layer sums a map of each input."""

    def __init__(self, in_dims: list[int], out_dim: int, hidden: int, squash: bool = False):
        super().__init__()
        self.input_layers = nn.ModuleList(nn.Linear(d, hidden, bias=k == 0) for k, d in enumerate(in_dims))
        self.body = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
        for layer in (module for module in self.modules() if isinstance(module, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias) if layer.bias is not None else None
        self.squash = squash

    def forward(self, *inputs, raw: bool = False):
        out = self.body(sum(layer(x) for layer, x in zip(self.input_layers, inputs, strict=True)))
        return torch.tanh(out) if self.squash and not raw else out


class PR2Agent(nn.Module):
    """Agent i's networks; o, c, a, d: own obs, critic input (s or o: --critic-input), own and opponents' action dims.
    actor μ_θ(o^i) or soft π_θ(o^i, ξ ~ N(0, I)) -> a^i, joint_critic Q_ω(s, a^i, a^-i), individual_critic Q^i(s, a^i),
    opponent_model ρ_φ(s, a^i, ξ) -> a^-i; target copies of the actor and joint critic only (as the original code)."""

    def __init__(self, obs_dim, act_dim, opp_dim, hidden, stochastic=False, critic_dim: int | None = None):
        super().__init__()
        self.act_dim, self.opp_dim, self.stochastic = act_dim, opp_dim, stochastic
        actor_inputs, c = [obs_dim, act_dim] if stochastic else [obs_dim], critic_dim or obs_dim
        self.actor = MLP(actor_inputs, act_dim, hidden, squash=True)
        self.joint_critic = MLP([c, act_dim, opp_dim], 1, hidden)
        self.individual_critic = MLP([c, act_dim], 1, hidden)
        self.opponent_model = MLP([c, act_dim, opp_dim], opp_dim, hidden, squash=True)
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.target_joint_critic = copy.deepcopy(self.joint_critic).requires_grad_(False)
        self.opponent_signs = None  # [d] ±1 per opponent dim with adversaries (opponent_signs()); None: Eq. 12 as is
        if stochastic:  # fixed noise for the soft policy's mean action: evaluation draws nothing from the global RNG
            noise = torch.randn(64, act_dim, generator=torch.Generator().manual_seed(0))
            self.register_buffer("mean_action_noise", noise)

    def sample_opponents(self, state, own_action, n: int, raw: bool = False):
        """n samples a^-i ~ ρ_φ(·|s, a^i) per row (raw: before the tanh): state [B, c], own [B, a] -> [B, n, d]."""
        noise = torch.randn(state.shape[0], n, self.opp_dim, device=state.device)
        return self.opponent_model(state[:, None], own_action[:, None], noise, raw=raw)

    def sample_actions(self, obs, n: int, target: bool = False, raw: bool = False):
        """n samples a^i ~ π_θ(·|o^i) (soft policy) per row (raw: before the tanh): obs [B, o] -> [B, n, a]."""
        noise = torch.randn(obs.shape[0], n, self.act_dim, device=obs.device)
        return (self.target_actor if target else self.actor)(obs[:, None], noise, raw=raw)

    @torch.no_grad()
    def act(self, observation, explore: bool) -> np.ndarray:
        """The action in [-1, 1] at o^i: μ(o^i); or a sample of π, without exploration π's mean over 64 fixed draws."""
        obs = torch.as_tensor(observation, dtype=torch.float32, device=next(self.parameters()).device)
        if self.stochastic and not explore:
            return self.actor(obs[None], self.mean_action_noise).mean(0).cpu().numpy()
        noise = [torch.randn(self.act_dim, device=obs.device)] if self.stochastic else []
        return self.actor(obs, *noise).cpu().numpy()


# ALGO LOGIC: the SVGD sampler (Liu & Wang 2016), amortised as in soft Q-learning (Haarnoja et al. 2017).
def rbf_kernel(x, y):
    """κ(x, y) = exp(-‖x - y‖²/h), h = median‖x - y‖²/log(Kx) ≥ 1e-3 per row (no gradient): -> κ, ∇_x κ [.., d], h."""
    diff = x[:, :, None, :] - y[:, None, :, :]
    sq_dist = diff.pow(2).sum(-1)
    n = sq_dist.shape[1] * sq_dist.shape[2]  # the median is the (n//2 + 1)-th largest, as in soft Q-learning's kernel
    median = sq_dist.detach().flatten(1).kthvalue(n - n // 2, dim=1).values
    h = torch.clamp(median / np.log(x.shape[1]), min=1e-3)
    kappa = torch.exp(-sq_dist / h[:, None, None])
    grad_x_kappa = -2.0 * diff / h[:, None, None, None] * kappa[..., None]
    return kappa, grad_x_kappa, h


def svgd_direction(fixed, score, updated):
    """Stein direction φ(y) = mean_j [κ(x_j, y) ∇log p(x_j) + ∇_{x_j} κ(x_j, y)]: x, score [B, Kx, d], y [B, Ky, d]."""
    kappa, grad_x_kappa, _ = rbf_kernel(fixed, updated)
    return (kappa[..., None] * score[:, :, None, :] + grad_x_kappa).mean(1)


def amortised_svgd_loss(log_density, fixed, updated, signs=None):
    """Loss moving a sampler's x = tanh(u) towards p(x) ∝ exp(log_density(x)) ([B, K, d] -> [B, K]) by SVGD on u towards
    p(tanh u)·Π(1 - tanh² u): φ from fixed u [B, Kx, d], updated [B, Ky, d] move along it (∇ of -Σ⟨φ, u⟩ = -φ·∂u/∂θ).
    signs [d] (±1) flip ∇log_density per dim, Jacobian kept: the side-aware ρ's saddle (+ dims climb, - descend)."""
    fixed = fixed.detach().requires_grad_(True)
    log_jacobian = 2 * (np.log(2) - fixed - nn.functional.softplus(-2 * fixed)).sum(-1)  # Σ log(1 - tanh² u), stable
    if signs is None:
        score = torch.autograd.grad((log_density(torch.tanh(fixed)) + log_jacobian).sum(), fixed)[0]
    else:  # d/du Σ log(1 - tanh² u) = -2 tanh u
        score = signs * torch.autograd.grad(log_density(torch.tanh(fixed)).sum(), fixed)[0] - 2 * torch.tanh(fixed)
    phi = svgd_direction(fixed.detach(), score, updated.detach())
    return -(phi * updated).sum()


# ALGO LOGIC: replay buffer. One index set per minibatch serves every agent, so opponent actions line up (spec §5.17).
class ReplayBuffer:
    """Joint transitions (o^i, a^i, r^i, o'^i, done^i) of all agents, with s and s' if state_dim; actions in [-1, 1]."""

    def __init__(self, capacity: int, obs_dims: list[int], act_dims: list[int], device, state_dim: int = 0):
        self.capacity, self.device, self.size, self.pos = capacity, device, 0, 0
        self.obs, self.next_obs = ([np.zeros((capacity, d), np.float32) for d in obs_dims] for _ in range(2))
        self.actions = [np.zeros((capacity, d), np.float32) for d in act_dims]
        self.rewards, self.dones = (np.zeros((capacity, len(obs_dims)), np.float32) for _ in range(2))
        self.state, self.next_state = (np.zeros((capacity, state_dim), np.float32) for _ in range(2))

    def add(self, obs, actions, rewards, next_obs, dones, state=None, next_state=None):
        for i in range(len(obs)):
            self.obs[i][self.pos], self.next_obs[i][self.pos] = obs[i], next_obs[i]
            self.actions[i][self.pos] = actions[i]
        self.rewards[self.pos], self.dones[self.pos] = rewards, dones
        if self.state.shape[1]:
            self.state[self.pos], self.next_state[self.pos] = state, next_state
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int) -> dict:
        idx = np.random.randint(0, self.size, size=batch_size)
        tensor = lambda array: torch.as_tensor(array[idx], device=self.device)  # noqa: E731
        batch = {key: [tensor(a) for a in getattr(self, key)] for key in ("obs", "actions", "next_obs")}
        for key, obs_key in ("state", "obs"), ("next_state", "next_obs"):  # what the critics and ρ see: s or o^i
            view = [tensor(getattr(self, key))] * len(self.obs) if self.state.shape[1] else batch[obs_key]
            batch[key.replace("state", "view")] = view
        return dict(batch, rewards=tensor(self.rewards), dones=tensor(self.dones))


# ALGO LOGIC: the four losses of agent i (spec §1.5). All are built from one parameter snapshot and stepped together.
def soft_value(q_values, alpha: float):
    """Eq. 11 on [-1, 1]^d's uniform measure, α·log mean_k exp(Q_k/α), [B, M] -> [B]; no d·log 2 (docs, deviation 9)."""
    return alpha * (torch.logsumexp(q_values / alpha, -1) - np.log(q_values.shape[-1]))


def target_action(agent: PR2Agent, next_obs):
    """The target policy's action at o' [B, o] -> [B, a]: a sample of the soft π̄, or μ̄(o')."""
    return agent.sample_actions(next_obs, 1, target=True)[:, 0] if agent.stochastic else agent.target_actor(next_obs)


# V(s') of the critics' target (--critic-target), at rows next_state [B, c], next_action a'^i [B, a] -> [B]. Errors:
# mean (sd) against the exact value, Q = mean(b) in d = 10, M 8, K 16, at α 0.01/0.1/1 (tests/test_critic_targets.py)
def uniform_value_mc(agent: PR2Agent, next_state, next_action, alpha: float, args: Args):
    """Eq. 11's V_u(α) by MC, M uniform samples shared by the batch: -0.46 (0.10), -0.04 (0.09), 0.00 (0.06)."""
    uniform = 2 * torch.rand(args.value_particles, agent.opp_dim, device=next_state.device) - 1
    next_q = agent.target_joint_critic(next_state[:, None], next_action[:, None], uniform[None]).squeeze(-1)
    return soft_value(next_q, alpha)


def uniform_value_importance(agent: PR2Agent, next_state, next_action, alpha: float, args: Args):
    """V_u(α) = α·log(Σ_m U/q(x_m)·exp(Q̄_m/α) / 2M), q = ½U + ½KDE (M draws each) of K pre-tanh ρ samples (bandwidth
    std·K^(-1/(d+4)) ≥ 0.01): unbiased for any ρ. Exact ρ: -0.01 (0.013), -0.02 (0.06), -0.015 (0.14)."""
    rows, d, n = next_action.shape[0], agent.opp_dim, args.value_particles
    centres = agent.sample_opponents(next_state, next_action, args.kernel_particles, raw=True)  # [B, K, d]
    bandwidth = (centres.std(1, keepdim=True) * centres.shape[1] ** (-1 / (d + 4))).clamp(min=1e-2)
    pick = torch.randint(centres.shape[1], (rows, n, 1), device=centres.device).expand(rows, n, d)
    near = torch.tanh(torch.gather(centres, 1, pick) + bandwidth * torch.randn(rows, n, d, device=centres.device))
    x = torch.cat([2 * torch.rand_like(near) - 1, near], 1).clamp(-1 + 1e-6, 1 - 1e-6)  # [B, 2M, d]
    z = (torch.atanh(x)[:, :, None] - centres[:, None]) / bandwidth[:, None]  # [B, 2M, K, d]
    log_kde_u = torch.logsumexp(-0.5 * z.pow(2).sum(-1), -1) - bandwidth.log().sum(-1) - 0.5 * d * np.log(2 * np.pi)
    log_kde = log_kde_u - np.log(centres.shape[1]) - torch.log1p(-x.pow(2)).sum(-1)  # density of x = tanh u
    log_uniform = torch.full_like(log_kde, -d * np.log(2))
    log_weight = log_uniform - torch.logaddexp(log_uniform, log_kde) + np.log(2)  # log U/q
    q = agent.target_joint_critic(next_state[:, None], next_action[:, None], x).squeeze(-1)
    return alpha * (torch.logsumexp(log_weight + q / alpha, -1) - np.log(2 * n))


def saddle_value_mc(agent: PR2Agent, next_state, next_action, alpha: float, args: Args):
    """Side-aware V_u = -α·log mean_n exp(-V_n/α), V_n = α·log mean_m exp(Q̄(t_m, e_n)/α), over an M×M uniform grid of
    teammate t_m and adversary e_n samples. 5 + 5 dims, Q weights 0.1/0.05: -0.12 (0.085), -0.01 (0.06), 0.00 (0.05)."""
    team, adversaries = 2 * torch.rand(2, args.value_particles, 1, agent.opp_dim, device=next_state.device) - 1
    grid = torch.where(agent.opponent_signs > 0, team.transpose(0, 1), adversaries)  # [n, m, d]
    q = agent.target_joint_critic(next_state[:, None, None], next_action[:, None, None], grid[None]).squeeze(-1)
    return -soft_value(-soft_value(q, alpha), alpha)


def rho_value(agent: PR2Agent, next_state, next_action, alpha: float, args: Args):
    """Level-1 V = mean_k Q̄(s', a'^i, b_k), b_k ~ ρ(·|s', a'^i): unbiased; exact ρ: 0.00 (0.011, 0.06, 0.065)."""
    opponents = agent.sample_opponents(next_state, next_action, args.value_particles)
    return agent.target_joint_critic(next_state[:, None], next_action[:, None], opponents).squeeze(-1).mean(-1)


def policies_value(agents, i: int, batch: dict, next_state, next_action):
    """V = Q̄(s', a'^i, a'^-i), a'^j the others' target actions at o'^j: MADDPG's target, exact given those policies."""
    others = torch.cat([target_action(agent, batch["next_obs"][j]) for j, agent in enumerate(agents) if j != i], -1)
    return agents[i].target_joint_critic(next_state, next_action, others).squeeze(-1)


def critic_losses(agents, i: int, batch: dict, alpha: float, args: Args):
    """Agent i's joint (Eq. 13) and individual critic losses on y = reward_scale·r + γ(1 - done)·V(s'), and mean Q."""
    agent, own, state, next_state = agents[i], batch["actions"][i], batch["view"][i], batch["next_view"][i]
    opponents = torch.cat([a for j, a in enumerate(batch["actions"]) if j != i], -1)
    dones = batch["dones"][:, i]
    with torch.no_grad():
        next_value = torch.zeros_like(dones)
        if (dones < 1).any():  # one-shot games (every row terminal) need no bootstrap
            next_action = target_action(agent, batch["next_obs"][i])
            uniform = dict(mc=uniform_value_mc, importance=uniform_value_importance)[args.uniform_estimator]
            uniform = saddle_value_mc if agent.opponent_signs is not None else uniform
            if args.critic_target == "policies":
                next_value = policies_value(agents, i, batch, next_state, next_action)
            else:
                estimator = rho_value if args.critic_target == "rho" else uniform
                next_value = estimator(agent, next_state, next_action, alpha, args)
        y = args.reward_scale * batch["rewards"][:, i] + args.gamma * (1 - dones) * next_value
    q = agent.joint_critic(state, own, opponents).squeeze(-1)
    q_individual = agent.individual_critic(state, own).squeeze(-1)
    return 0.5 * (y - q).pow(2).mean(), 0.5 * (y - q_individual).pow(2).mean(), q.mean()


def opponent_model_loss(agent: PR2Agent, state, own_action, alpha: float, args: Args):
    """ρ_φ(a^-i|s, a^i) by amortised SVGD towards Eq. 12, ρ(x) ∝ exp((Q(s, a^i, x) - Q(s, a^i))/α), adversaries along
    -∇Q/α. Returns (surrogate loss, the fixed particles [B, Kx, d] detached: the deterministic actor's samples)."""
    n_fixed = args.kernel_particles - int(args.kernel_particles * args.kernel_update_ratio)
    with torch.no_grad():
        fixed = agent.sample_opponents(state, own_action, n_fixed, raw=True)
        q_individual = agent.individual_critic(state, own_action)  # Eq. 11's normaliser: no effect on ∇_x
    updated = agent.sample_opponents(state, own_action, args.kernel_particles - n_fixed, raw=True)

    def log_density(x):  # Eq. 12, log ρ(x)
        q_joint = agent.joint_critic(state[:, None], own_action[:, None], x)
        return ((q_joint - q_individual[:, None]) / alpha).squeeze(-1)

    return amortised_svgd_loss(log_density, fixed, updated, agent.opponent_signs), torch.tanh(fixed)


def actor_loss(agent: PR2Agent, obs, state, opponent_samples, alpha: float, args: Args):
    """Actor μ against b_k ~ ρ(·|s, a^i): J = α·log mean_k exp(Q(s, μ(s), b_k)/α) (softmax) or mean_k Q (Eqs. 6/7); Q at
    s, not the original's s' (spec §5.5), held fixed so only the actor trains. Returns (surrogate loss, -J)."""
    action = agent.actor(obs)
    action_leaf = action.detach().requires_grad_(True)
    q = agent.joint_critic(state[:, None], action_leaf[:, None], opponent_samples).squeeze(-1)
    objective = soft_value(q, alpha) if args.actor_objective == "softmax" else q.mean(-1)
    grad_action = torch.autograd.grad(objective.mean(), action_leaf)[0]  # Eq. 6: ∇_θ J = ∇_a J · ∇_θ μ(s)
    return -(grad_action * action).sum(), -objective.mean().detach()


def soft_marginal(agent: PR2Agent, state, own, alpha: float, args: Args):
    """Q^i(s, a^i) at candidates: state [B, c], own [B, K, a] -> [B, K]. 'rho': α·log mean_k exp(Q(s, a^i, b_k)/α),
    b_k ~ ρ(·|s, a^i), sharper than Eq. 11 (docs deviation 3), or mean Q if ρ soft-mins adversaries; 'uniform': MC."""
    if args.soft_marginal == "rho":
        noise = torch.randn(*own.shape[:2], args.marginal_particles, agent.opp_dim, device=own.device)
        opponents = agent.opponent_model(state[:, None, None], own[:, :, None], noise)
    else:
        opponents = 2 * torch.rand(args.marginal_particles, agent.opp_dim, device=own.device) - 1
    q = agent.joint_critic(state[:, None, None], own[:, :, None], opponents).squeeze(-1)
    return q.mean(-1) if args.soft_marginal == "rho" and agent.opponent_signs is not None else soft_value(q, alpha)


def soft_policy_loss(agent: PR2Agent, obs, state, alpha: float, args: Args):
    """π(a|s) ∝ exp(Q^i(s, a)/α) on [-1, 1]^a (Q^i: soft_marginal) by amortised SVGD, as ρ; not Eqs. 10/11's optimum
    (no -α·log π in V(s')). Returns (surrogate loss, -mean Q^i of π's samples, the fixed ones [B, Kx, a] detached)."""
    n_fixed = args.policy_particles - int(args.policy_particles * args.kernel_update_ratio)
    with torch.no_grad():
        fixed = agent.sample_actions(obs, n_fixed, raw=True)
    updated = agent.sample_actions(obs, args.policy_particles - n_fixed, raw=True)
    values = []

    def log_density(a):  # log π(a|s) = Q^i(s, a)/α, up to a constant
        value = soft_marginal(agent, state, a, alpha, args)
        values.append(value.detach())
        return value / alpha

    return amortised_svgd_loss(log_density, fixed, updated), -values[0].mean(), torch.tanh(fixed)


def temperature(args: Args, n_updates: int) -> float:
    """α, annealed geometrically from --alpha-start to --alpha over --anneal-steps gradient steps."""
    return args.alpha_start * (args.alpha / args.alpha_start) ** min(n_updates / args.anneal_steps, 1.0)


def update(agents, optimizer, batch: dict, n_updates: int, args: Args) -> dict:
    """Gradient step n_updates + 1 of all agents' networks (Polyak when due); returns {agent: {loss name: value}}."""
    losses, total, alpha = {}, 0.0, temperature(args, n_updates)
    for i, agent in enumerate(agents):
        obs, own, state = batch["obs"][i], batch["actions"][i], batch["view"][i]
        critic_loss, individual_loss, q_mean = critic_losses(agents, i, batch, alpha, args)
        if agent.stochastic:  # ρ is trained at the policy's own samples (not old buffer actions) and at uniform ones
            pi_loss, pi_objective, own_samples = soft_policy_loss(agent, obs, state, alpha, args)
            n_uniform = int(args.rho_uniform_share * len(own))
            rho_at = torch.cat([2 * torch.rand_like(own[:n_uniform]) - 1, own_samples[n_uniform:, 0]])
            rho_loss, _ = opponent_model_loss(agent, state, rho_at, alpha, args)
        else:
            rho_loss, samples = opponent_model_loss(agent, state, own, alpha, args)
            pi_loss, pi_objective = actor_loss(agent, obs, state, samples[:, : args.value_particles], alpha, args)
        total = total + critic_loss + individual_loss + rho_loss + pi_loss
        named = dict(critic_loss=critic_loss, individual_critic_loss=individual_loss, opponent_model_loss=rho_loss)
        losses[i] = {key: value.item() for key, value in dict(named, actor_loss=pi_objective, q_values=q_mean).items()}
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    with torch.no_grad():  # Polyak: target ← (1 - τ)·target + τ·source
        for agent in agents if (n_updates + 1) % args.target_update_interval == 0 else ():
            for source, target in ((agent.actor, agent.target_actor), (agent.joint_critic, agent.target_joint_critic)):
                torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), args.tau)
    return losses


class OUNoise:
    """Ornstein-Uhlenbeck noise x ← x + θ(0 - x) + σ·N(0, 1); one process per agent that runs across episodes."""

    def __init__(self, dim: int, theta: float, sigma: float):
        self.state, self.theta, self.sigma = np.zeros(dim, np.float32), theta, sigma

    def sample(self):
        self.state += -self.theta * self.state + self.sigma * np.random.randn(len(self.state)).astype(np.float32)
        return self.state


def build_agents(obs_dims: list[int], act_dims: list[int], state_dim: int, args: Args) -> nn.ModuleList:
    view = lambda o: state_dim if args.critic_input == "state" else o  # noqa: E731  (the critics' input size)
    soft, opp = args.policy == "soft", sum(act_dims)
    return nn.ModuleList(PR2Agent(o, a, opp - a, args.hidden_size, soft, view(o)) for o, a in zip(obs_dims, act_dims))


def opponent_signs(names: list[str], act_dims: list[int], args: Args) -> list[torch.Tensor | None]:
    """Per agent, +1/-1 per opponent action dim (teammate/adversary by --teams, else mpe2's adversary_*), or None."""
    teams = [team.split(",") for team in args.teams]
    if teams and sorted(sum(teams, [])) != sorted(names):
        raise ValueError(f"--teams {' '.join(args.teams)} must list each agent exactly once: {', '.join(names)}")
    adversaries = [name for name in names if name.startswith("adversary_")] if args.env == "particle" else []
    team = [next((k for k, members in enumerate(teams or [adversaries]) if name in members), -1) for name in names]
    signs = [torch.tensor([float(team[j] == team[i]) * 2 - 1 for j in range(len(names)) if j != i
                           for _ in range(act_dims[j])]) for i in range(len(names))]  # fmt: skip
    return [sign if args.opponent_model == "sides" and (sign < 0).any() else None for sign in signs]


def noise_free_actions(agents, env, obs: dict) -> dict:
    """What evaluation plays: every agent's noise-free action (μ(o^i) or π's mean action), in the env's units."""
    names = env.possible_agents
    return {n: to_env_action(agent.act(obs[n], False), env.action_space(n)) for n, agent in zip(names, agents)}


def load_policies(path: str, device: str = "cpu") -> dict:
    """{agent name: f(observation) -> action in [-1, 1]}: a checkpoint's noise-free policies, e.g. for cross-play."""
    checkpoint = run.load_checkpoint(path, CHECKPOINT_KEYS, SCRIPT)
    dims = [checkpoint[key] for key in ("obs_dims", "act_dims", "state_dim")]
    agents = build_agents(*dims, Args(**checkpoint["args"])).to(device)
    agents.load_state_dict(checkpoint["agents"])
    return {name: partial(agent.act, explore=False) for name, agent in zip(checkpoint["agent_names"], agents)}


def charts(agents, names, obs, losses, noise_scale: float, n_updates: int, args: Args) -> dict:
    """A log entry's scalars besides the episodes': losses, α, noise scale, and the noise-free action if 1-D."""
    scalars = {f"losses/{k}/{names[i]}": v for i, ls in losses.items() for k, v in ls.items()}
    for agent, name in zip(agents, names) if max(agent.act_dim for agent in agents) == 1 else ():
        scalars[f"charts/action/{name}"] = agent.act(obs[name], False).item()
    scalars["charts/alpha"] = temperature(args, max(n_updates - 1, 0))  # the α of the last update, not of the next
    if args.policy == "deterministic":
        scalars["charts/noise_scale"] = noise_scale
    return scalars


SCRIPT = os.path.basename(__file__)
CHECKPOINT_KEYS = ["args", "agent_names", "obs_dims", "act_dims", "state_dim", "agents", "optimizer", "step"]
CHECKPOINT_COUNTERS = ["step", "n_updates", "episode", "losses", "train_from"]
STRUCTURAL_FLAGS = ["env", "scenario", "max_cycles", "policy", "hidden_size", "buffer_size", "critic_input"]
UNREAD_FLAGS = dict(deterministic=["rho_uniform_share", "soft_marginal", "policy_particles", "marginal_particles"],
                    soft=["actor_objective", "noise_schedule", "ou_theta", "ou_sigma"])  # fmt: skip


def main(args: Args, checkpoint: dict | None = None):
    try:
        args = resolve_args(args)
        if checkpoint is not None:  # a new --env meets the saved scenario in make_env: say what is wrong first
            run.check_run(None, args, checkpoint, STRUCTURAL_FLAGS, {})
        env = make_env(args.env, args.scenario, "continuous", args.max_cycles, script=SCRIPT)
        names = env.possible_agents
        obs_dims, act_dims = ([space(n).shape[0] for n in names] for space in (env.observation_space, env.action_space))
        if len(names) < 2:
            raise ValueError(f"PR2 needs at least two agents; {args.env} has {len(names)}")
        layout = dict(agent_names=list(names), obs_dims=obs_dims, act_dims=act_dims)
        run.check_run(env, args, checkpoint, STRUCTURAL_FLAGS, layout)
        signs = opponent_signs(names, act_dims, args)
        if args.uniform_estimator == "importance" and any(sign is not None for sign in signs):
            raise ValueError("--uniform-estimator importance has no side-aware form: use mc or --critic-target rho")
    except (ValueError, EnvError) as error:
        raise SystemExit(f"{SCRIPT}: error: {error}") from None
    device = run.seed_everything(args, env)  # TRY NOT TO MODIFY: seeding

    # ALGO LOGIC: initialise agents, one fused optimiser over all of them (Adam is per-parameter: equals one each)
    state_dim = global_state_dim(env) if args.critic_input == "state" else 0
    agents = build_agents(obs_dims, act_dims, state_dim, args).to(device)
    for agent, sign in zip(agents, signs):
        agent.opponent_signs = sign if sign is None else sign.to(device)
    optimizer = torch.optim.Adam([p for p in agents.parameters() if p.requires_grad], lr=args.learning_rate, fused=True)
    buffer = ReplayBuffer(args.buffer_size, obs_dims, act_dims, device, state_dim)
    noises = [OUNoise(d, args.ou_theta, args.ou_sigma) for d in act_dims]
    noise_schedule = run.parse_schedule(args.noise_schedule)
    start, n_updates, episode, losses, train_from = 0, 0, 0, {}, 0
    if checkpoint is not None:  # continue a saved run where it stopped (a half-played episode starts over)
        modules = [(agents, checkpoint["agents"]), (buffer, checkpoint["buffer"])]
        run.load_states(modules, [(optimizer, checkpoint["optimizer"])], args.learning_rate, SCRIPT)
        run.restore_rng_state(checkpoint["rng"])
        for noise, saved in zip(noises, checkpoint["noise"]):
            noise.state[:] = saved
        start, n_updates, episode, losses, train_from = (checkpoint[key] for key in CHECKPOINT_COUNTERS)
        if checkpoint["buffer"] is None:  # the refilled buffer holds no minibatch yet: wait as a fresh run would
            train_from = start + max(args.batch_size, args.learning_starts)
    session = run.Session(args, checkpoint, names, env_label(args.env, args.scenario), UNREAD_FLAGS[args.policy])
    eval_env = partial(make_env, args.env, args.scenario, "continuous", args.max_cycles)
    evaluate = partial(run.evaluate, eval_env, partial(noise_free_actions, agents), args.eval_episodes)

    def training_state(step: int) -> dict:
        """Everything a resumed run needs to continue as if it had never stopped (tensors and plain values only)."""
        return dict(
            args=asdict(args), agent_names=list(names), obs_dims=obs_dims, act_dims=act_dims, state_dim=state_dim,
            agents=agents.state_dict(), optimizer=optimizer.state_dict(), noise=[ou.state.tolist() for ou in noises],
            buffer=run.buffer_state(buffer) if args.save_buffer else None, rng=run.rng_state(), losses=losses,
            step=step, n_updates=n_updates, episode=episode + (session.log.episode_length > 0), train_from=train_from,
        )  # fmt: skip

    # TRY NOT TO MODIFY: start the game
    obs, _ = env.reset(seed=run.episode_seed(args.seed, episode))
    for global_step in range(start, args.total_timesteps):
        # ALGO LOGIC: act with μ_θ(s) plus scheduled OU noise; the soft policy samples π instead
        noise_scale = run.schedule_value(noise_schedule, global_step)
        unit_actions = [agent.act(obs[name], explore=True) for agent, name in zip(agents, names)]
        if args.policy == "deterministic":  # clipped into [-1, 1]
            unit_actions = [np.clip(a + noise_scale * ou.sample(), -1.0, 1.0) for a, ou in zip(unit_actions, noises)]
        if not np.isfinite(np.concatenate(unit_actions)).all():
            raise SystemExit(f"{SCRIPT}: error: non-finite action at step {global_step}; try a lower lr")
        env_actions = {name: to_env_action(a, env.action_space(name)) for name, a in zip(names, unit_actions)}
        state = global_state(env, obs) if state_dim else None  # env.state() is the current one: read it before the step
        next_obs, rewards, terminations, truncations, _ = env.step(env_actions)

        # TRY NOT TO MODIFY: record the transition; bootstrap through truncation, not termination
        per_agent = [[d[n] for n in names] for d in (obs, rewards, next_obs, terminations)]
        next_state = global_state(env, next_obs) if state_dim else None
        buffer.add(per_agent[0], unit_actions, per_agent[1], per_agent[2], np.float32(per_agent[3]), state, next_state)
        session.log.add_step(per_agent[1])
        ended = [terminations[n] or truncations[n] for n in names]
        if all(ended):
            session.log.end_episode()
            episode += 1
            obs, _ = env.reset(seed=run.episode_seed(args.seed, episode))
        elif any(ended):
            raise SystemExit(f"{SCRIPT}: error: agents of {args.env} ended at different steps; they must end together")
        else:
            obs = next_obs  # CRUCIAL step easy to overlook

        # ALGO LOGIC: training
        if global_step >= max(args.learning_starts, train_from) and global_step % args.train_frequency == 0:
            losses = update(agents, optimizer, buffer.sample(args.batch_size), n_updates, args)
            n_updates += 1
            if bad := [f"{k}/{names[i]}" for i, ls in losses.items() for k, v in ls.items() if not np.isfinite(v)]:
                raise SystemExit(f"{SCRIPT}: error: non-finite {', '.join(bad)} at step {global_step}; try a lower lr")

        # TRY NOT TO MODIFY: log, evaluate and save when due; on Ctrl-C save and exit
        charts_now = partial(charts, agents, names, obs, losses, noise_scale, n_updates, args)
        session.end_step(global_step + 1, charts_now, training_state, evaluate)
    session.finish(training_state, evaluate)
    env.close()


if __name__ == "__main__":
    main(*run.parse_args(Args, SCRIPT, CHECKPOINT_KEYS))
