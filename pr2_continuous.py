# PR2 for continuous actions: Probabilistic Recursive Reasoning (Wen et al., ICLR 2019, arXiv 1901.09207).
# --policy deterministic is the original PR2-AC; --policy soft (default) is our variant with an energy-based policy.
# One self-contained file: networks, SVGD sampler, replay buffer, losses, training loop. Docs and results: README.md.
import os
import random
import signal
import time
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import tyro

from utils.envs import EnvError, env_label, make_env
from utils.logger import Progress, load_checkpoint, make_run_name, make_writer, save_checkpoint


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run folder's name)"""
    seed: int = 1
    """seed of the experiment: same seed, same command, same numbers (on CPU)"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = True
    """if toggled, use CUDA when it is available"""
    torch_threads: int = 1
    """CPU threads for torch; small networks run fastest on one"""
    track: bool = False
    """if toggled, mirror the TensorBoard logs to Weights & Biases (needs `pip install wandb`)"""
    wandb_project_name: str = "pr2"
    """the W&B project name"""
    wandb_entity: str | None = None
    """the W&B entity (team)"""
    save_model: bool = False
    """if toggled, save the full training state to runs/<run>/<exp_name>.pt at the end (and on Ctrl-C)"""
    save_every: int = 0
    """with --save-model, also save every N environment steps (0: only at the end)"""
    save_buffer: bool = True
    """with --save-model, keep the replay buffer in the checkpoint, so that a resumed run continues exactly"""
    resume: str | None = None
    """continue training from this checkpoint; flags not given on the command line come from it"""
    eval_episodes: int = 10
    """episodes of the noise-free policy evaluated after training, logged as eval/episodic_return"""
    capture_video: bool = False
    """record the evaluation episodes as GIFs in runs/<run>/videos/ (envs with rgb_array rendering, e.g. particle)"""

    # Environment
    env: str = "particle"
    """'particle' (an mpe2 scenario), 'differential' (the paper's max-of-two-quadratics game), or 'pkg.module:factory'
    returning your own PettingZoo ParallelEnv with Box actions"""
    scenario: str | None = None
    """particle: the mpe2 scenario (default simple_spread); differential: the reward formula, 'paper' (default) or
    'code' (the original code's /3 variant)"""
    max_cycles: int = 25
    """steps per particle episode"""

    # Training. Fields left at None take the per-env default in ENV_DEFAULTS (printed in the hyperparameter table).
    total_timesteps: int | None = None
    """environment steps (default differential: 6,000 soft policy, 16,000 deterministic (the original code's);
    otherwise 100,000)"""
    learning_starts: int | None = None
    """environment steps before the first gradient step (default: 1,000 differential; 5,000 otherwise)"""
    train_frequency: int | None = None
    """environment steps per gradient step (default: 1 differential; 4 otherwise)"""
    batch_size: int | None = None
    """minibatch size (default: 64 differential; 128 otherwise)"""
    buffer_size: int = 1_000_000
    """replay buffer capacity (joint transitions)"""
    gamma: float | None = None
    """discount factor (default: 0.99 differential, where it has no effect; 0.95 otherwise)"""
    learning_rate: float | None = None
    """Adam learning rate of every network (default: 3e-4 differential, the original code's; 1e-3 otherwise)"""
    tau: float = 0.01
    """Polyak rate of the target networks"""
    target_update_interval: int = 5
    """gradient steps between Polyak updates of the target networks"""
    reward_scale: float = 1.0
    """rewards are multiplied by this in the critic target"""
    hidden_size: int = 100
    """units in each of the two hidden layers of every network"""

    # PR2
    policy: Literal["soft", "deterministic"] = "soft"
    """'soft': an energy-based policy π(a^i|s) ∝ exp(Q^i(s, a^i)/α) over the soft marginal value computed from ρ's
    responses, sampled by amortised SVGD, with an annealed α (our variant, README 'Escaping the local optimum');
    'deterministic': the original PR2-AC (deterministic actor, OU exploration, constant α)"""
    alpha: float | None = None
    """temperature α of the soft value (Eq. 11) and of the opponent model's target (Eq. 12); the final α if annealed
    (default: 0.5, the paper's; 0.1 for the soft policy outside the differential game, whose rewards are smaller)"""
    alpha_start: float | None = None
    """α at the first gradient step, annealed geometrically to --alpha over --anneal-steps (default: 40 × --alpha
    with the soft policy; --alpha, i.e. no annealing, with the deterministic one)"""
    anneal_steps: int = 3_000
    """gradient steps over which α goes from --alpha-start to --alpha"""
    soft_marginal: Literal["rho", "uniform"] = "rho"
    """soft policy: the opponent samples behind Q^i(s, a^i): 'rho' draws them from ρ(·|s, a^i) conditioned on the
    candidate own action (level-1 reasoning); 'uniform' draws them uniformly (the ablation without ρ)"""
    policy_particles: int = 8
    """soft policy: particles of π per state in its SVGD update, split like ρ's"""
    marginal_particles: int = 4
    """soft policy: opponent samples per own-action particle in the soft marginal Q^i(s, a^i)"""
    value_particles: int | None = None
    """M: opponent samples for the soft value and the actor objective (default: 16 differential, the original code's;
    8 otherwise)"""
    kernel_particles: int | None = None
    """K: opponent-model particles per state in the SVGD update (default: 32 differential, the original code's;
    16 otherwise)"""
    kernel_update_ratio: float = 0.5
    """share of the K particles that are moved; the rest are held fixed to build the SVGD direction"""
    actor_objective: Literal["softmax", "mean"] = "softmax"
    """the actor's aggregate over ρ samples b_k: 'softmax' α·log mean_k exp(Q(s, μ(s), b_k)/α) (the original code)
    or 'mean' E_ρ[Q] (Eqs. 6/7)"""

    # Exploration
    noise_schedule: str | None = None
    """OU noise scale, piecewise constant 'step:scale,...', in [-1, 1] action units
    (default: '0:1.0,1600:0.01,2666:0.001' differential, the original code's; '0:0.3,50000:0.1' otherwise)"""
    ou_theta: float = 0.15
    """OU mean reversion θ"""
    ou_sigma: float = 0.3
    """OU diffusion σ"""
    log_every: int = 100
    """environment steps between log entries"""


# The differential game uses the original code's settings. Elsewhere (particle tasks, your envs) an update costs
# ~(batch x particles) network passes per agent, so the defaults trade particles and update rate for speed on a CPU.
ENV_DEFAULTS = {
    "differential": dict(
        total_timesteps=dict(soft=6_000, deterministic=16_000),
        learning_starts=1_000,
        train_frequency=1,
        batch_size=64,
        gamma=0.99,
        learning_rate=3e-4,
        alpha=0.5,
        noise_schedule="0:1.0,1600:0.01,2666:0.001",
        kernel_particles=32,
        value_particles=16,
    ),
    "other": dict(
        total_timesteps=100_000,
        learning_starts=5_000,
        train_frequency=4,
        batch_size=128,
        gamma=0.95,
        learning_rate=1e-3,
        alpha=dict(soft=0.1, deterministic=0.5),
        noise_schedule="0:0.3,50000:0.1",
        kernel_particles=16,
        value_particles=8,
    ),
}


def resolve_args(args: Args) -> Args:
    """Fill per-env defaults and check flags; a problem raises ValueError with a one-line fix."""
    for key, value in ENV_DEFAULTS["differential" if args.env == "differential" else "other"].items():
        if getattr(args, key) is None:
            setattr(args, key, value[args.policy] if isinstance(value, dict) else value)
    positive = ["total_timesteps", "train_frequency", "batch_size", "buffer_size", "hidden_size", "value_particles"]
    for name in positive + ["log_every", "target_update_interval", "torch_threads"]:
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.learning_starts < 0 or args.eval_episodes < 0 or args.save_every < 0:
        raise ValueError("--learning-starts, --eval-episodes and --save-every must be >= 0")
    if args.capture_video and args.eval_episodes == 0:
        raise ValueError("--capture-video records the evaluation episodes: set --eval-episodes > 0")
    if args.batch_size > args.buffer_size:
        raise ValueError(f"--batch-size {args.batch_size} exceeds --buffer-size {args.buffer_size}")
    if not (args.learning_rate > 0 and 0 <= args.gamma <= 1 and 0 < args.tau <= 1):
        raise ValueError(
            f"need --learning-rate > 0, --gamma in [0, 1], --tau in (0, 1]; got {args.learning_rate}, "
            f"{args.gamma}, {args.tau}"
        )
    if args.alpha_start is None:
        args.alpha_start = 40.0 * args.alpha if args.policy == "soft" else args.alpha
    if args.alpha <= 0 or args.alpha_start <= 0:
        raise ValueError(f"--alpha and --alpha-start must be positive, got {args.alpha} and {args.alpha_start}")
    if args.anneal_steps <= 0 or args.marginal_particles <= 0:
        raise ValueError("--anneal-steps and --marginal-particles must be positive")
    if args.policy_particles - int(args.policy_particles * args.kernel_update_ratio) < 2:
        raise ValueError("--policy-particles and --kernel-update-ratio must leave >= 2 fixed particles")
    n_fixed = args.kernel_particles - int(args.kernel_particles * args.kernel_update_ratio)
    if not 2 <= n_fixed < args.kernel_particles:
        raise ValueError("--kernel-particles and --kernel-update-ratio must leave >= 2 fixed and >= 1 moved particles")
    parse_schedule(args.noise_schedule)
    return args


def parse_schedule(text: str) -> list[tuple[int, float]]:
    """'0:1.0,1600:0.01' -> [(0, 1.0), (1600, 0.01)], sorted by step."""
    try:
        points = sorted((int(step), float(value)) for step, value in (item.split(":") for item in text.split(",")))
    except ValueError:
        raise ValueError(f"--noise-schedule {text!r} is not 'step:scale,...', e.g. '0:1.0,1600:0.01'") from None
    if points[0][0] != 0:
        raise ValueError(f"--noise-schedule {text!r} must start at step 0")
    return points


def schedule_value(points: list[tuple[int, float]], step: int) -> float:
    return [value for start, value in points if start <= step][-1]


# ALGO LOGIC: networks. Every network is the original code's MLP: 2 hidden ReLU layers, Xavier init, zero biases.
class MLP(nn.Module):
    """f(x_1, ..., x_n) with 2 hidden ReLU layers; with squash=True the output is tanh-squashed into [-1, 1]
    (raw=True returns the pre-squash u of x = tanh u, where SVGD moves the samplers).

    As in the original code, the first layer sums one linear map per input, which equals a linear map of their
    concatenation but lets an input shared by many particles be mapped once and broadcast:
    obs [B, 1, o] with particles [B, K, d] -> [B, K, out].
    """

    def __init__(self, in_dims: list[int], out_dim: int, hidden: int, squash: bool = False):
        super().__init__()
        self.input_layers = nn.ModuleList(nn.Linear(d, hidden, bias=k == 0) for k, d in enumerate(in_dims))
        self.body = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        self.squash = squash

    def forward(self, *inputs, raw: bool = False):
        out = self.body(sum(layer(x) for layer, x in zip(self.input_layers, inputs, strict=True)))
        return torch.tanh(out) if self.squash and not raw else out


class PR2Agent(nn.Module):
    """Agent i's networks. o = obs dim, a = own action dim, d = opponents' joint action dim.

    | network             | maps                                         | shape                  |
    |---------------------|----------------------------------------------|------------------------|
    | actor               | deterministic μ_θ: s -> a^i                  | [.., o] -> [.., a]     |
    |                     | soft π_θ: s, ξ ~ N(0, I) -> a^i ~ π(·|s)      | [.., o+a] -> [.., a]   |
    | joint_critic Q_ω    | s, a^i, a^-i -> Q^i(s, a^i, a^-i)            | -> [.., 1]             |
    | individual_critic   | s, a^i -> Q^i(s, a^i)                        | -> [.., 1]             |
    | opponent_model ρ_φ  | s, a^i, ξ ~ N(0, I) -> a^-i ~ ρ(·|s, a^i)    | [.., o+a+d] -> [.., d] |
    Target copies: target_actor, target_joint_critic (the individual critic has none, as in the original code).
    """

    def __init__(self, obs_dim: int, act_dim: int, opp_dim: int, hidden: int, stochastic: bool = False):
        super().__init__()
        self.act_dim, self.opp_dim, self.stochastic = act_dim, opp_dim, stochastic
        actor_inputs = [obs_dim, act_dim] if stochastic else [obs_dim]
        self.actor = MLP(actor_inputs, act_dim, hidden, squash=True)
        self.joint_critic = MLP([obs_dim, act_dim, opp_dim], 1, hidden)
        self.individual_critic = MLP([obs_dim, act_dim], 1, hidden)
        self.opponent_model = MLP([obs_dim, act_dim, opp_dim], opp_dim, hidden, squash=True)
        self.target_actor = MLP(actor_inputs, act_dim, hidden, squash=True)
        self.target_joint_critic = MLP([obs_dim, act_dim, opp_dim], 1, hidden)
        self.target_actor.load_state_dict(self.actor.state_dict())
        self.target_joint_critic.load_state_dict(self.joint_critic.state_dict())
        if stochastic:  # fixed noise for the soft policy's mean action: evaluation draws nothing from the global RNG
            noise = torch.randn(64, act_dim, generator=torch.Generator().manual_seed(0))
            self.register_buffer("mean_action_noise", noise)
        for target in (self.target_actor, self.target_joint_critic):
            target.requires_grad_(False)

    def sample_opponents(self, obs, own_action, n: int, raw: bool = False):
        """n samples a^-i ~ ρ_φ(·|s, a^i) per row (raw: before the tanh): obs [B, o], own_action [B, a] -> [B, n, d]."""
        noise = torch.randn(obs.shape[0], n, self.opp_dim, device=obs.device)
        return self.opponent_model(obs[:, None], own_action[:, None], noise, raw=raw)

    def sample_actions(self, obs, n: int, target: bool = False, raw: bool = False):
        """n samples a^i ~ π_θ(·|s) (soft policy) per row (raw: before the tanh): obs [B, o] -> [B, n, a]."""
        noise = torch.randn(obs.shape[0], n, self.act_dim, device=obs.device)
        return (self.target_actor if target else self.actor)(obs[:, None], noise, raw=raw)

    def act(self, obs, explore: bool):
        """The action at obs [.., o]: μ(s) (deterministic); a sample of π, or without exploration π's mean action
        (over 64 fixed noise draws, like the mean of SAC's Gaussian), for the soft policy."""
        if not self.stochastic:
            return self.actor(obs)
        if not explore:
            return self.actor(obs[..., None, :], self.mean_action_noise).mean(-2)
        return self.actor(obs, torch.randn(*obs.shape[:-1], self.act_dim, device=obs.device))


# ALGO LOGIC: the SVGD sampler (Liu & Wang 2016), amortised as in soft Q-learning (Haarnoja et al. 2017).
def rbf_kernel(x, y):
    """κ(x, y) = exp(-‖x - y‖² / h), with h = median‖x - y‖² / log(Kx) per row (floor 1e-3), no gradient through h.

    x [B, Kx, d], y [B, Ky, d] -> kappa [B, Kx, Ky], grad_x kappa [B, Kx, Ky, d], h [B].
    The median is the (n//2 + 1)-th largest of the n = Kx·Ky squared distances, as in soft Q-learning's kernel.
    """
    diff = x[:, :, None, :] - y[:, None, :, :]
    sq_dist = diff.pow(2).sum(-1)
    n = sq_dist.shape[1] * sq_dist.shape[2]
    median = sq_dist.detach().flatten(1).kthvalue(n - n // 2, dim=1).values
    h = torch.clamp(median / np.log(x.shape[1]), min=1e-3)
    kappa = torch.exp(-sq_dist / h[:, None, None])
    grad_x_kappa = -2.0 * diff / h[:, None, None, None] * kappa[..., None]
    return kappa, grad_x_kappa, h


def svgd_direction(fixed, score, updated):
    """Stein variational direction φ(y_l) = mean_j [κ(x_j, y_l) ∇log p(x_j) + ∇_{x_j} κ(x_j, y_l)].

    fixed x [B, Kx, d], score ∇_x log p(x) [B, Kx, d], updated y [B, Ky, d] -> φ [B, Ky, d].
    The first term pulls particles towards high density, the second pushes them apart.
    """
    kappa, grad_x_kappa, _ = rbf_kernel(fixed, updated)
    return (kappa[..., None] * score[:, :, None, :] + grad_x_kappa).mean(1)


def amortised_svgd_loss(log_density, fixed, updated):
    """Surrogate loss that moves a tanh-squashed sampler's outputs x = tanh(u) towards p(x) ∝ exp(log_density(x)).

    SVGD runs on the pre-squash u (kernel in u) towards p(tanh u)·Π(1 - tanh² u), the density of u whose tanh is
    distributed as p exactly. fixed [B, Kx, d]: pre-squash samples with no graph to the sampler (they define the
    direction); updated [B, Ky, d]: pre-squash samples with the graph. The gradient of -Σ⟨φ(u), u⟩ is -φ·∂u/∂params,
    so one optimiser step moves every updated particle along φ. log_density maps x [B, Kx, d] to [B, Kx].
    """
    fixed = fixed.detach().requires_grad_(True)
    log_jacobian = 2 * (np.log(2) - fixed - nn.functional.softplus(-2 * fixed)).sum(-1)  # Σ log(1 - tanh² u), stable
    score = torch.autograd.grad((log_density(torch.tanh(fixed)) + log_jacobian).sum(), fixed)[0]
    phi = svgd_direction(fixed.detach(), score, updated.detach())
    return -(phi * updated).sum()


# ALGO LOGIC: replay buffer. One index set per minibatch serves every agent, so opponent actions line up (spec §5.17).
class ReplayBuffer:
    """Joint transitions (s^i, a^i, r^i, s'^i, done^i) for every agent i; actions in [-1, 1] units."""

    def __init__(self, capacity: int, obs_dims: list[int], act_dims: list[int], device):
        self.capacity, self.device, self.size, self.pos = capacity, device, 0, 0
        n = len(obs_dims)
        self.obs = [np.zeros((capacity, d), np.float32) for d in obs_dims]
        self.next_obs = [np.zeros((capacity, d), np.float32) for d in obs_dims]
        self.actions = [np.zeros((capacity, d), np.float32) for d in act_dims]
        self.rewards = np.zeros((capacity, n), np.float32)
        self.dones = np.zeros((capacity, n), np.float32)

    def add(self, obs, actions, rewards, next_obs, dones):
        for i in range(len(obs)):
            self.obs[i][self.pos], self.next_obs[i][self.pos] = obs[i], next_obs[i]
            self.actions[i][self.pos] = actions[i]
        self.rewards[self.pos], self.dones[self.pos] = rewards, dones
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def state_dict(self) -> dict:
        n = self.size
        arrays = dict(obs=self.obs, next_obs=self.next_obs, actions=self.actions)
        state = {key: [array[:n].copy() for array in value] for key, value in arrays.items()}
        return dict(state, rewards=self.rewards[:n].copy(), dones=self.dones[:n].copy(), pos=self.pos, size=n)

    def load_state_dict(self, state: dict):
        n = self.size = state["size"]
        self.pos = state["pos"]
        for key in ("obs", "next_obs", "actions"):
            for array, saved in zip(getattr(self, key), state[key]):
                array[:n] = saved
        self.rewards[:n], self.dones[:n] = state["rewards"], state["dones"]

    def sample(self, batch_size: int) -> dict:
        idx = np.random.randint(0, self.size, size=batch_size)

        def tensor(array):
            return torch.as_tensor(array[idx], device=self.device)

        return dict(
            obs=[tensor(o) for o in self.obs],
            actions=[tensor(a) for a in self.actions],
            rewards=tensor(self.rewards),
            next_obs=[tensor(o) for o in self.next_obs],
            dones=tensor(self.dones),
        )


# ALGO LOGIC: the four losses of agent i (spec §1.5). All are built from one parameter snapshot and stepped together.
def soft_value(q_values, alpha: float):
    """Eq. 11, α·log ∫ exp(Q/α) da^-i, taken relative to the uniform measure on [-1, 1]^d and estimated from M
    samples b_k: α·log mean_k exp(Q_k/α). q_values [B, M] -> [B].

    The original code also adds the log-volume d·log 2: a constant that only shifts every Q by α·d·log 2/(1 - γ),
    and would shift it again each time α is annealed, so we leave it out (README, item 9).
    """
    return alpha * (torch.logsumexp(q_values / alpha, -1) - np.log(q_values.shape[-1]))


def critic_losses(agent: PR2Agent, i: int, batch: dict, alpha: float, args: Args):
    """Joint critic (Eq. 13, soft Bellman backup) and individual critic, both regressed on the same target y.

    y = reward_scale·r + γ(1 - done)·V(s'), V(s') = Eq. 11 at the target policy's a'^i (μ_θ̄(s'), or a sample of
    the soft policy), over uniform opponent samples. Returns (joint critic loss, individual critic loss, mean Q).
    """
    obs, next_obs = batch["obs"][i], batch["next_obs"][i]
    own = batch["actions"][i]
    opponents = torch.cat([a for j, a in enumerate(batch["actions"]) if j != i], -1)
    dones = batch["dones"][:, i]
    with torch.no_grad():
        next_value = torch.zeros_like(dones)
        if (dones < 1).any():  # one-shot games (every row terminal) need no bootstrap
            next_action = (
                agent.sample_actions(next_obs, 1, target=True)[:, 0]
                if agent.stochastic
                else agent.target_actor(next_obs)
            )
            uniform = 2 * torch.rand(args.value_particles, agent.opp_dim, device=obs.device) - 1  # shared by the batch
            next_q = agent.target_joint_critic(next_obs[:, None], next_action[:, None], uniform[None]).squeeze(-1)
            next_value = soft_value(next_q, alpha)
        y = args.reward_scale * batch["rewards"][:, i] + args.gamma * (1 - dones) * next_value
    q = agent.joint_critic(obs, own, opponents).squeeze(-1)
    q_individual = agent.individual_critic(obs, own).squeeze(-1)
    return 0.5 * (y - q).pow(2).mean(), 0.5 * (y - q_individual).pow(2).mean(), q.mean()


def opponent_model_loss(agent: PR2Agent, obs, own_action, alpha: float, args: Args):
    """ρ_φ(a^-i|s, a^i) by amortised SVGD towards Eq. 12: ρ(x) ∝ exp((Q(s, a^i, x) - Q(s, a^i))/α) on [-1, 1]^d.

    K particles of ρ at (s, a^i) are split into fixed ones (they define the direction) and moved ones; SVGD moves
    them before the tanh (amortised_svgd_loss), so the squashed samples x follow Eq. 12 itself. Returns (surrogate
    loss, the fixed particles x [B, Kx, d] detached, reused as the deterministic actor's opponent samples).
    """
    n_fixed = args.kernel_particles - int(args.kernel_particles * args.kernel_update_ratio)
    with torch.no_grad():
        fixed = agent.sample_opponents(obs, own_action, n_fixed, raw=True)
    updated = agent.sample_opponents(obs, own_action, args.kernel_particles - n_fixed, raw=True)
    with torch.no_grad():
        q_individual = agent.individual_critic(obs, own_action)  # Eq. 11's normaliser: no effect on ∇_x

    def log_density(x):  # Eq. 12, log ρ(x)
        q_joint = agent.joint_critic(obs[:, None], own_action[:, None], x)
        return ((q_joint - q_individual[:, None]) / alpha).squeeze(-1)

    return amortised_svgd_loss(log_density, fixed, updated), torch.tanh(fixed)


def actor_loss(agent: PR2Agent, obs, opponent_samples, alpha: float, args: Args):
    """Deterministic actor against the opponent model's samples b_k ~ ρ(·|s, a^i).

    softmax (original code): J = α·log mean_k exp(Q(s, μ(s), b_k)/α); mean: J = mean_k Q(s, μ(s), b_k) (Eqs. 6/7).
    Q is evaluated at s, fixing the original code's Q(s', μ(s), ·) (spec §5.5). Returns (surrogate loss, -J).
    The gradient ∂J/∂a at a = μ(s) is taken with Q held fixed, so this loss trains only the actor.
    """
    action = agent.actor(obs)
    action_leaf = action.detach().requires_grad_(True)
    q = agent.joint_critic(obs[:, None], action_leaf[:, None], opponent_samples).squeeze(-1)
    if args.actor_objective == "softmax":
        objective = alpha * (torch.logsumexp(q / alpha, -1) - np.log(q.shape[-1]))
    else:
        objective = q.mean(-1)
    grad_action = torch.autograd.grad(objective.mean(), action_leaf)[0]  # Eq. 6: ∇_θ J = ∇_a J · ∇_θ μ(s)
    return -(grad_action * action).sum(), -objective.mean().detach()


def soft_marginal(agent: PR2Agent, obs, own, alpha: float, args: Args):
    """The agent's soft value of its own actions, Q^i(s, a^i) = α·log E_b[exp(Q(s, a^i, b)/α)] (Eq. 11's form).

    obs [B, o], own [B, K, a] -> [B, K]. With 'rho' the opponent samples b ~ ρ(·|s, a^i) are drawn at each candidate
    a^i, so the value of an own action is what ρ predicts the others do in response to it, and the gradient in a^i
    flows through ρ's response too; this is the original code's soft-max actor objective (item 3 in the README),
    evaluated at candidate actions. With 'uniform', b ~ U[-1, 1]^d as in the critic target (Eq. 11 proper).
    """
    n_samples = args.marginal_particles
    if args.soft_marginal == "rho":
        noise = torch.randn(*own.shape[:2], n_samples, agent.opp_dim, device=obs.device)
        opponents = agent.opponent_model(obs[:, None, None], own[:, :, None], noise)
    else:
        opponents = 2 * torch.rand(n_samples, agent.opp_dim, device=obs.device) - 1
    q = agent.joint_critic(obs[:, None, None], own[:, :, None], opponents).squeeze(-1)
    return soft_value(q, alpha)


def soft_policy_loss(agent: PR2Agent, obs, alpha: float, args: Args):
    """Energy-based policy π(a|s) ∝ exp(Q^i(s, a)/α) on [-1, 1]^a (the maximum-entropy optimum of Eqs. 10/11), with
    the soft marginal above as Q^i(s, a), by amortised SVGD before the tanh (the machinery that trains ρ).

    Returns (surrogate loss, -mean Q^i(s, a^i) of the policy's samples, the fixed samples a [B, Kx, a] detached).
    """
    n_fixed = args.policy_particles - int(args.policy_particles * args.kernel_update_ratio)
    with torch.no_grad():
        fixed = agent.sample_actions(obs, n_fixed, raw=True)
    updated = agent.sample_actions(obs, args.policy_particles - n_fixed, raw=True)
    values = []

    def log_density(a):  # log π(a|s) = Q^i(s, a)/α, up to a constant
        value = soft_marginal(agent, obs, a, alpha, args)
        values.append(value.detach())
        return value / alpha

    loss = amortised_svgd_loss(log_density, fixed, updated)
    return loss, -values[0].mean(), torch.tanh(fixed)


def temperature(args: Args, n_updates: int) -> float:
    """α, annealed geometrically from --alpha-start to --alpha over --anneal-steps gradient steps."""
    progress = min(n_updates / args.anneal_steps, 1.0)
    return args.alpha_start * (args.alpha / args.alpha_start) ** progress


@torch.no_grad()
def polyak_update(agent: PR2Agent, tau: float):
    """target ← (1 - τ)·target + τ·source, for the actor and the joint critic."""
    for source, target in ((agent.actor, agent.target_actor), (agent.joint_critic, agent.target_joint_critic)):
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


def update(agents, optimizer, batch: dict, alpha: float, args: Args) -> dict:
    """One simultaneous gradient step of every agent's four networks; returns the losses by name."""
    losses = {}
    total = 0.0
    for i, agent in enumerate(agents):
        obs, own = batch["obs"][i], batch["actions"][i]
        critic_loss, individual_loss, q_mean = critic_losses(agent, i, batch, alpha, args)
        if agent.stochastic:  # ρ is trained where the policy acts: at its own samples, not at old buffer actions
            pi_loss, pi_objective, own_samples = soft_policy_loss(agent, obs, alpha, args)
            rho_loss, _ = opponent_model_loss(agent, obs, own_samples[:, 0], alpha, args)
        else:
            rho_loss, opponent_samples = opponent_model_loss(agent, obs, own, alpha, args)
            pi_loss, pi_objective = actor_loss(agent, obs, opponent_samples[:, : args.value_particles], alpha, args)
        total = total + critic_loss + individual_loss + rho_loss + pi_loss
        losses[i] = dict(
            critic_loss=critic_loss,
            individual_critic_loss=individual_loss,
            opponent_model_loss=rho_loss,
            actor_loss=pi_objective,
            q_values=q_mean,
        )
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    return losses


class OUNoise:
    """Ornstein-Uhlenbeck noise x ← x + θ(0 - x) + σ·N(0, 1); one process per agent that runs across episodes."""

    def __init__(self, dim: int, theta: float, sigma: float):
        self.state, self.theta, self.sigma = np.zeros(dim, np.float32), theta, sigma

    def sample(self):
        self.state += -self.theta * self.state + self.sigma * np.random.randn(len(self.state)).astype(np.float32)
        return self.state


def to_env_action(unit_action, space):
    """Map an action in [-1, 1] to the agent's Box [low, high]."""
    return (space.low + (unit_action + 1.0) * 0.5 * (space.high - space.low)).astype(space.dtype)


def load_policies(path: str, device: str = "cpu") -> dict:
    """{agent name: f(observation) -> action in [-1, 1]}: a checkpoint's noise-free policies, e.g. for cross-play."""
    checkpoint = torch.load(path, map_location=device, weights_only=False)
    agents = build_agents(checkpoint["obs_dims"], checkpoint["act_dims"], Args(**checkpoint["args"])).to(device)
    agents.load_state_dict(checkpoint["agents"])

    def policy(agent):
        @torch.no_grad()
        def act(observation):
            observation = torch.as_tensor(observation, dtype=torch.float32, device=device)
            return agent.act(observation, explore=False).cpu().numpy()

        return act

    return {name: policy(agent) for name, agent in zip(checkpoint["agent_names"], agents)}


def build_agents(obs_dims: list[int], act_dims: list[int], args: Args) -> nn.ModuleList:
    return nn.ModuleList(
        PR2Agent(o, a, sum(act_dims) - a, args.hidden_size, stochastic=args.policy == "soft")
        for o, a in zip(obs_dims, act_dims)
    )


def episode_seed(seed: int, episode: int) -> int:
    """Episode k of a run always starts from the same state, so a resumed run replays exactly."""
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


@torch.no_grad()
def evaluate(agents, args: Args, device, video_dir: str | None = None) -> list[float]:
    """Mean-over-agents returns of --eval-episodes episodes of the noise-free policies (μ(s), or π's mean action)."""
    env = make_env(args.env, args.scenario, "continuous", args.max_cycles, "rgb_array" if video_dir else None)
    names, returns = env.possible_agents, []
    for episode in range(args.eval_episodes):
        obs, _ = env.reset(seed=episode_seed(args.seed + 1, episode))
        total, frames = np.zeros(len(names)), []
        while env.agents:
            if video_dir:
                frames.append(env.render())
            actions = {}
            for i, name in enumerate(names):
                unit = agents[i].act(torch.as_tensor(obs[name], device=device), explore=False).cpu().numpy()
                actions[name] = to_env_action(unit, env.action_space(name))
            obs, rewards, _, _, _ = env.step(actions)
            total += [rewards[name] for name in names]
        if video_dir:
            frames.append(env.render())
        returns.append(float(total.mean()))
        if video_dir:
            from PIL import Image

            os.makedirs(video_dir, exist_ok=True)
            images = [Image.fromarray(frame).reduce(2) for frame in frames]
            images[0].save(
                f"{video_dir}/eval_episode_{episode}.gif", save_all=True, append_images=images[1:], duration=80
            )
    env.close()
    return returns


CHECKPOINT_KEYS = ["args", "agent_names", "obs_dims", "act_dims", "agents", "optimizer", "step"]
STRUCTURAL_FLAGS = ["env", "scenario", "max_cycles", "policy", "hidden_size", "buffer_size"]


def main(args: Args, checkpoint: dict | None = None):
    script = os.path.basename(__file__)
    try:
        args = resolve_args(args)
        env = make_env(args.env, args.scenario, "continuous", args.max_cycles, script=script)
        if args.capture_video and "rgb_array" not in env.metadata.get("render_modes", []):
            raise ValueError(f"--capture-video needs an env with rgb_array rendering; {args.env} has none")
        if checkpoint is not None:
            for flag in STRUCTURAL_FLAGS:
                if getattr(args, flag) != checkpoint["args"][flag]:
                    raise ValueError(
                        f"--resume: the checkpoint was trained with --{flag.replace('_', '-')} "
                        f"{checkpoint['args'][flag]}, not {getattr(args, flag)}; drop that flag to continue it"
                    )
            if checkpoint["step"] >= args.total_timesteps:
                raise ValueError(f"--resume: the checkpoint is at step {checkpoint['step']}; raise --total-timesteps")
    except (ValueError, EnvError) as error:
        raise SystemExit(f"{script}: error: {error}") from None

    names = env.possible_agents
    obs_dims = [env.observation_space(n).shape[0] for n in names]
    act_dims = [env.action_space(n).shape[0] for n in names]
    if len(names) < 2:
        raise SystemExit(f"{script}: error: PR2 needs at least two agents; {args.env} has {len(names)}")
    if checkpoint is not None:
        saved_agents = (checkpoint["agent_names"], checkpoint["obs_dims"], checkpoint["act_dims"])
        if saved_agents != (names, obs_dims, act_dims):
            raise SystemExit(
                f"{script}: error: --resume: the checkpoint's agents, observation and action sizes {saved_agents} "
                f"do not match this env's {(names, obs_dims, act_dims)}"
            )

    # TRY NOT TO MODIFY: seeding and logging
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_num_threads(args.torch_threads)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    for i, name in enumerate(names):
        env.action_space(name).seed(args.seed + i)

    # ALGO LOGIC: initialise agents, one optimiser over all of them (Adam is per-parameter, so this equals one each)
    agents = build_agents(obs_dims, act_dims, args).to(device)
    params = [p for p in agents.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=args.learning_rate, fused=True)  # fused: one kernel for all parameters
    buffer = ReplayBuffer(args.buffer_size, obs_dims, act_dims, device)
    noises = [OUNoise(d, args.ou_theta, args.ou_sigma) for d in act_dims]
    noise_schedule = parse_schedule(args.noise_schedule)
    start_step, n_updates, episode, losses, pending = 0, 0, 0, None, dict(returns=[], lengths=[], last=float("nan"))
    if checkpoint is not None:  # continue a saved run where it stopped (a half-played episode starts over)
        try:
            agents.load_state_dict(checkpoint["agents"])
            optimizer.load_state_dict(checkpoint["optimizer"])
        except (RuntimeError, ValueError, KeyError) as error:
            message = " ".join(str(error).split())  # one line
            raise SystemExit(
                f"{script}: error: --resume: the checkpoint does not fit these networks: {message}"
            ) from None
        if checkpoint["buffer"] is not None:
            buffer.load_state_dict(checkpoint["buffer"])
        for noise, state in zip(noises, checkpoint["noise"]):
            noise.state[:] = state
        random.setstate(checkpoint["rng"]["python"])
        np.random.set_state(checkpoint["rng"]["numpy"])
        torch.set_rng_state(checkpoint["rng"]["torch"])
        start_step, n_updates, episode, pending = checkpoint["step"], checkpoint["n_updates"], *checkpoint["episode"]
        losses = {i: {k: torch.tensor(v) for k, v in ls.items()} for i, ls in checkpoint["losses"].items()} or None
    run_name = (
        checkpoint["run_name"]
        if checkpoint
        else make_run_name(env_label(args.env, args.scenario), args.exp_name, args.seed)
    )
    writer = make_writer(run_name, args, purge_step=start_step + 1 if checkpoint else None)
    model_path = f"runs/{run_name}/{args.exp_name}.pt"

    def training_state(step: int) -> dict:
        """Everything a resumed run needs to continue as if it had never stopped."""
        return dict(
            args=asdict(args),
            agent_names=list(names),
            obs_dims=obs_dims,
            act_dims=act_dims,
            agents=agents.state_dict(),
            optimizer=optimizer.state_dict(),
            step=step,
            n_updates=n_updates,
            episode=(episode + (episode_length > 0), pending),
            losses={i: {k: v.item() for k, v in ls.items()} for i, ls in (losses or {}).items()},
            buffer=buffer.state_dict() if args.save_buffer else None,
            noise=[noise.state.copy() for noise in noises],
            rng=dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state()),
            run_name=run_name,
        )

    stop_requested = []
    signal.signal(signal.SIGINT, lambda *_: stop_requested.append(True))  # finish the step, save, then exit

    # TRY NOT TO MODIFY: start the game
    progress = Progress(args.total_timesteps, start_step)
    start_time = time.time()
    obs, _ = env.reset(seed=episode_seed(args.seed, episode))
    episode_return, episode_length = np.zeros(len(names)), 0
    for global_step in range(start_step, args.total_timesteps):
        # ALGO LOGIC: act with μ_θ(s) plus scheduled OU noise, clipped to [-1, 1]; the soft policy samples π instead
        noise_scale = schedule_value(noise_schedule, global_step)
        with torch.no_grad():
            unit_actions = []
            for i, name in enumerate(names):
                action = agents[i].act(torch.as_tensor(obs[name], device=device), explore=True).cpu().numpy()
                if not np.isfinite(action).all():
                    raise SystemExit(
                        f"{script}: error: non-finite action of {name} at step {global_step}; try a lower lr"
                    )
                if not agents[i].stochastic:
                    action = np.clip(action + noise_scale * noises[i].sample(), -1.0, 1.0)
                unit_actions.append(action)
        env_actions = {name: to_env_action(a, env.action_space(name)) for name, a in zip(names, unit_actions)}
        next_obs, rewards, terminations, truncations, _ = env.step(env_actions)

        # TRY NOT TO MODIFY: record the transition; bootstrap through truncation, not termination
        buffer.add(
            [obs[n] for n in names],
            unit_actions,
            [rewards[n] for n in names],
            [next_obs[n] for n in names],
            [float(terminations[n]) for n in names],
        )
        episode_return += [rewards[n] for n in names]
        episode_length += 1
        ended = [terminations[n] or truncations[n] for n in names]
        if all(ended):
            pending["returns"].append(episode_return.copy())
            pending["lengths"].append(episode_length)
            episode_return[:], episode_length, episode = 0.0, 0, episode + 1
            obs, _ = env.reset(seed=episode_seed(args.seed, episode))
        elif any(ended):
            raise SystemExit(f"{script}: error: agents of {args.env} ended at different steps; they must end together")
        else:
            obs = next_obs  # CRUCIAL step easy to overlook

        # ALGO LOGIC: training
        if global_step >= args.learning_starts and global_step % args.train_frequency == 0:
            alpha = temperature(args, n_updates)
            losses = update(agents, optimizer, buffer.sample(args.batch_size), alpha, args)
            n_updates += 1
            if n_updates % args.target_update_interval == 0:
                for agent in agents:
                    polyak_update(agent, args.tau)
            values = torch.stack([v for agent_losses in losses.values() for v in agent_losses.values()])
            if not torch.isfinite(values).all():
                bad = [f"{k}/{names[i]}" for i, ls in losses.items() for k, v in ls.items() if not torch.isfinite(v)]
                raise SystemExit(f"{script}: error: non-finite {', '.join(bad)} at step {global_step}; try a lower lr")

        # TRY NOT TO MODIFY: record rewards, losses and speed for plotting purposes
        if (global_step + 1) % args.log_every == 0:
            step = global_step + 1
            if pending["returns"]:  # the episodes that ended since the last entry
                returns = np.mean(pending["returns"], axis=0)
                pending["last"] = float(returns.mean())
                writer.add_scalar("charts/episodic_return", returns.mean(), step)
                for name, value in zip(names, returns):
                    writer.add_scalar(f"charts/episodic_return/{name}", value, step)
                writer.add_scalar("charts/episodic_length", np.mean(pending["lengths"]), step)
                pending["returns"], pending["lengths"] = [], []
            if max(act_dims) == 1:  # e.g. the differential game: the noise-free action, to plot the learning path
                with torch.no_grad():
                    for i, name in enumerate(names):
                        observation = torch.as_tensor(obs[name], device=device)
                        writer.add_scalar(f"charts/action/{name}", agents[i].act(observation, False).item(), step)
                        if agents[i].stochastic:  # how widely the soft policy still explores
                            samples = agents[i].actor(observation[None], agents[i].mean_action_noise)
                            writer.add_scalar(f"charts/action_std/{name}", samples.std().item(), step)
            if losses is not None:
                for i, agent_losses in losses.items():
                    for key, value in agent_losses.items():
                        writer.add_scalar(f"losses/{key}/{names[i]}", value.item(), step)
            writer.add_scalar("charts/SPS", int((step - start_step) / (time.time() - start_time)), step)
            writer.add_scalar("charts/alpha", temperature(args, n_updates), step)
            if args.policy == "deterministic":
                writer.add_scalar("charts/noise_scale", noise_scale, step)
            progress.update(step, pending["last"])

        if args.save_model and args.save_every and (global_step + 1) % args.save_every == 0:
            save_checkpoint(training_state(global_step + 1), model_path)
        if stop_requested:
            if args.save_model:
                save_checkpoint(training_state(global_step + 1), model_path)
                print(
                    f"\ninterrupted at step {global_step + 1}; saved {model_path}; continue with --resume {model_path}"
                )
            writer.close()
            raise SystemExit(130)

    if args.save_model:
        save_checkpoint(training_state(args.total_timesteps), model_path)
        print(f"model saved to {model_path}")
    if args.eval_episodes:
        video_dir = f"runs/{run_name}/videos" if args.capture_video else None
        for idx, episodic_return in enumerate(evaluate(agents, args, device, video_dir)):
            writer.add_scalar("eval/episodic_return", episodic_return, idx)
    env.close()
    writer.close()


if __name__ == "__main__":
    cli_args = tyro.cli(Args)
    saved = None
    if cli_args.resume:  # the checkpoint's flags are the defaults; flags given on the command line override them
        try:
            saved = load_checkpoint(cli_args.resume, CHECKPOINT_KEYS, os.path.basename(__file__))
        except ValueError as error:
            raise SystemExit(f"{os.path.basename(__file__)}: error: {error}") from None
        cli_args = tyro.cli(Args, default=Args(**{**saved["args"], "resume": cli_args.resume}))
    main(cli_args, saved)
