# MASQL: multi-agent soft Q-learning (Wei et al. 2018), the PR2 paper's energy-based baseline. Continuous actions; the
# flags, buffer, loop and logging of baselines/common.py with MASQL's own sampling and update; deviations: below.
"""MASQL as in the PR2 authors' code (maci/learners/masql.py), per agent i:

- critic: one soft joint-action Q^i(v^i, a^i, a^-i), v^i = --critic-input ('own': o^i, the original's; 'state': every
  agent's observation concatenated, what MADDPG's critic sees), with a Polyak target copy;
- sampler: f_i(o^i, z) -> tanh(...) in [-1, 1]^D, z ~ N(0, I_D), a sample of the whole joint action (a^i, a^-i), moved
  by amortised SVGD towards π(a|o) ∝ exp(Q^i/α) (32 particles: 16 fixed, 16 moved; RBF kernel, h = median²/log 16);
- soft value: V(o') = α·(logsumexp_k Q̄^i(o', b_k)/α - log M), M = 16 uniform joint actions b_k on [-1, 1]^D;
- acting: agent i plays its own slice a^i of one joint sample of its own sampler (no OU noise, also during warm-up).

Deviations from the original, each for a stated reason:
- V's constants. The original adds -log M + D·log 2 without the factor α; here -α·log M (V = α·log of a mean: the
  log-integral relative to the uniform measure) and, with --log-volume, +α·D·log 2. Both only shift every Q by a
  constant; the log-volume is off by default, as in pr2_continuous.py (its shift would change as α anneals).
- Units: every network sees [-1, 1] actions. On the differential game the original applies SVGD and its squash
  correction log(1 - x² + 1e-6) to actions scaled to [-10, 10], where the correction is NaN for |x| > 1.
- --svgd-space 'action' (default) is the original's: kernel and particles in the squashed action x, with that
  correction, so the particles settle at exp(Q/α)·Π(1 - x²). 'raw' is pr2_continuous.py's: SVGD on the pre-squash u,
  so tanh(u) follows exp(Q/α) exactly.
- Noise-free play (evaluation, cross-play, the logged action): the mean of the own slice over 64 fixed noise draws
  (as pr2_continuous.py's soft policy); the original has no noise-free mode for this sampler.
- One Adam over every network (per-parameter, so equal to the original's one per network); the target period is
  common.py's 5, not the original's 10 (no effect on the one-shot differential game, where nothing bootstraps).
- Particle defaults: common.py's like-for-like schedule, and α 0.01, the soft PR2's final α there (differential:
  0.5, the paper's). α is fixed unless --alpha-start is given, then annealed as in pr2_continuous.py.
  --noise-schedule and --ou-* have no effect: MASQL explores by sampling.
"""

import copy
import os
import sys
from dataclasses import dataclass, replace
from functools import partial
from typing import Literal

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # baselines/ and utils/: the root
from baselines import common  # noqa: E402
from baselines.common import CHECKPOINT_KEYS, MLP, ReplayBuffer  # noqa: E402
from utils import run  # noqa: E402

SCRIPT = os.path.basename(__file__)
EPS = 1e-6  # the original's floor inside the squash correction log(1 - x² + EPS)


@dataclass
class Args(common.Args):  # the DDPG family's flags (baselines/common.py) and MASQL's own
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run folder's name)"""
    critic_input: Literal["state", "own"] = "own"
    """what the critics see: 'own', agent i's observation (the original's), or 'state', every agent's observation"""
    alpha: float | None = None
    """temperature α of the sampler's target exp(Q/α) and of the soft value; the final α if annealed
    (default: 0.5 differential, the paper's; 0.01 otherwise, the soft PR2's)"""
    alpha_start: float | None = None
    """α at the first gradient step, annealed geometrically to --alpha over --anneal-steps (default: --alpha, fixed)"""
    anneal_steps: int = 3_000
    """gradient steps over which α goes from --alpha-start to --alpha"""
    value_particles: int = 16
    """M: uniform joint actions in the soft value"""
    kernel_particles: int = 32
    """K: sampler particles per state in the SVGD update"""
    kernel_update_ratio: float = 0.5
    """share of the K particles that are moved; the rest are held fixed to build the SVGD direction"""
    svgd_space: Literal["action", "raw"] = "action"
    """'action': SVGD on the squashed joint action with the log(1 - x²) correction (the original's); 'raw': on the
    pre-squash sampler output, so the samples follow exp(Q/α) exactly (pr2_continuous.py's)"""
    log_volume: bool = False
    """add α·D·log 2 to the soft value (the log-volume of [-1, 1]^D; the original adds D·log 2)"""


def check_args(args: Args) -> Args:
    """Fill MASQL's per-env defaults and check its flags; a problem raises ValueError with a one-line fix."""
    alpha = args.alpha if args.alpha is not None else (0.5 if args.env == "differential" else 0.01)
    args = replace(args, alpha=alpha, alpha_start=alpha if args.alpha_start is None else args.alpha_start)
    for name in ("alpha", "alpha_start", "anneal_steps", "value_particles"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    moved = int(args.kernel_particles * args.kernel_update_ratio)
    if not (moved >= 1 and args.kernel_particles - moved >= 2):  # SVGD needs >= 2 particles to fix, >= 1 to move
        raise ValueError(f"--kernel-particles {args.kernel_particles} with --kernel-update-ratio "
                         f"{args.kernel_update_ratio} must leave >= 2 fixed and >= 1 moved particles")  # fmt: skip
    return args


# ALGO LOGIC: networks (common.MLP: the original PR2 code's MLP)
class MASQLAgent(nn.Module):
    """Agent i's networks. o = own obs dim, c = critic input dim (o or all observations), D = joint action dim.

    sampler f_i: o^i, z ~ N(0, I_D) -> u [.., D], the joint action (a^i, a^-i) = tanh u; critic Q_ω: v^i [.., c],
    (a^i, a^-i) [.., D] -> Q^i [.., 1]; target_critic (no target sampler, as in the original). A joint action puts
    agent i's own first, then the others' in agent order.
    """

    def __init__(self, obs_dim: int, act_dim: int, joint_dim: int, critic_dim: int, hidden: int):
        super().__init__()
        self.act_dim, self.joint_dim = act_dim, joint_dim
        self.sampler = MLP([obs_dim, joint_dim], joint_dim, hidden)  # pre-squash: SVGD may run before the tanh
        self.critic = MLP([critic_dim, joint_dim], 1, hidden)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        noise = torch.randn(64, joint_dim, generator=torch.Generator().manual_seed(0))  # draws nothing from the seed
        self.register_buffer("mean_action_noise", noise)

    def sample(self, obs, n: int, raw: bool = False):
        """n joint actions per row from the sampler (raw: before the tanh): obs [B, o] -> [B, n, D]."""
        u = self.sampler(obs[:, None], torch.randn(obs.shape[0], n, self.joint_dim, device=obs.device))
        return u if raw else torch.tanh(u)

    def actor(self, obs):
        """Noise-free own action at obs [.., o]: the mean of a^i over the 64 fixed noise draws -> [.., a]."""
        joint = torch.tanh(self.sampler(obs[..., None, :], self.mean_action_noise))
        return joint[..., : self.act_dim].mean(-2)


def build_agents(obs_dims: list[int], act_dims: list[int], hidden: int, critic_input: str = "own") -> nn.ModuleList:
    view = lambda o: sum(obs_dims) if critic_input == "state" else o  # noqa: E731  (the critic's input size)
    return nn.ModuleList(MASQLAgent(o, a, sum(act_dims), view(o), hidden) for o, a in zip(obs_dims, act_dims))


@torch.no_grad()
def explore(agents, names, obs: dict, device) -> list[np.ndarray]:
    """Agent i plays a^i, its own slice of one joint sample (a^i, a^-i) ~ f_i(o^i, z) of its own sampler."""
    samples = [agent.sample(torch.as_tensor(obs[n], device=device)[None], 1)[0, 0] for agent, n in zip(agents, names)]
    return [sample[: agent.act_dim].cpu().numpy() for agent, sample in zip(agents, samples)]


# ALGO LOGIC: the soft value, the SVGD direction and MASQL's two losses of agent i.
def soft_value(critic, view, joint_dim: int, n_samples: int, alpha: float, log_volume: bool = False):
    """V(v) = α·log ∫ exp(Q(v, b)/α) db relative to the uniform measure on [-1, 1]^D, estimated from n_samples
    uniform b_k shared by the batch: α·(logsumexp_k Q(v, b_k)/α - log n); + α·D·log 2 (Lebesgue measure) with
    log_volume. view [B, c] -> [B]."""
    uniform = 2 * torch.rand(n_samples, joint_dim, device=view.device) - 1
    q = critic(view[:, None], uniform[None]).squeeze(-1)
    return alpha * (torch.logsumexp(q / alpha, -1) - np.log(n_samples) + log_volume * joint_dim * np.log(2))


def svgd_direction(fixed, score, updated):
    """φ(y_l) = mean_j [κ(x_j, y_l) ∇log p(x_j) + ∇_{x_j} κ(x_j, y_l)], κ(x, y) = exp(-‖x - y‖²/h), h = the median of
    the squared distances / log Kx (floor 1e-3, as the original's kernel). fixed x, score [B, Kx, d], y [B, Ky, d]."""
    diff = fixed[:, :, None, :] - updated[:, None, :, :]
    sq_dist = diff.pow(2).sum(-1)
    n = sq_dist.shape[1] * sq_dist.shape[2]
    median = sq_dist.flatten(1).kthvalue(n - n // 2, dim=1).values  # the original's (n//2 + 1)-th largest
    h = torch.clamp(median / np.log(fixed.shape[1]), min=1e-3)[:, None, None]
    kappa = torch.exp(-sq_dist / h)
    grad_kappa = -2.0 * diff / h[..., None] * kappa[..., None]
    return (kappa[..., None] * score[:, :, None, :] + grad_kappa).mean(1)


def views(batch: dict, i: int, critic_input: str):
    """What agent i's critic sees at s and s': its own observation, or every agent's."""
    if critic_input == "own":
        return batch["obs"][i], batch["next_obs"][i]
    return torch.cat(batch["obs"], -1), torch.cat(batch["next_obs"], -1)


def critic_loss(agent: MASQLAgent, i: int, batch: dict, alpha: float, args: Args):
    """Soft Bellman regression: y = reward_scale·r^i + γ(1 - done^i)·V(v'), V = soft_value of the target critic;
    L = ½·mean (y - Q^i(v, a^i, a^-i))² at the observed joint action. Returns (loss, mean Q)."""
    view, next_view = views(batch, i, args.critic_input)
    joint = torch.cat([batch["actions"][i], *(a for j, a in enumerate(batch["actions"]) if j != i)], -1)
    with torch.no_grad():
        next_value = soft_value(agent.target_critic, next_view, agent.joint_dim, args.value_particles, alpha,
                                args.log_volume)  # fmt: skip
        y = args.reward_scale * batch["rewards"][:, i] + args.gamma * (1 - batch["dones"][:, i]) * next_value
    q = agent.critic(view, joint).squeeze(-1)
    return 0.5 * (y - q).pow(2).mean(), q.mean()


def sampler_loss(agent: MASQLAgent, obs, view, alpha: float, args: Args):
    """Amortised SVGD towards log p(x) = Q^i(v, x)/α + Σ_d log(1 - x_d²) over the joint action x = tanh u.

    'action' space: particles and kernel in x, the correction log(1 - x² + EPS) taken as part of the target (the
    original's); 'raw': in u, where Σ log(1 - tanh² u) is the Jacobian of the tanh, so tanh u follows exp(Q/α).
    Surrogate -Σ⟨φ(y), y⟩ over the moved particles y: its gradient moves each along φ through the sampler only.
    Returns (surrogate loss, -mean Q of the fixed particles)."""
    n_fixed = args.kernel_particles - int(args.kernel_particles * args.kernel_update_ratio)
    raw = args.svgd_space == "raw"
    with torch.no_grad():
        fixed = agent.sample(obs, n_fixed, raw=raw)
    updated = agent.sample(obs, args.kernel_particles - n_fixed, raw=raw)
    leaf = fixed.requires_grad_(True)
    x = torch.tanh(leaf) if raw else leaf
    q = agent.critic(view[:, None], x).squeeze(-1)
    log_jacobian = 2 * (np.log(2) - leaf - nn.functional.softplus(-2 * leaf)) if raw else torch.log(1 - x**2 + EPS)
    score = torch.autograd.grad((q / alpha + log_jacobian.sum(-1)).sum(), leaf)[0]  # no gradient reaches the critic
    phi = svgd_direction(leaf.detach(), score, updated.detach())
    return -(phi * updated).sum(), -q.mean().detach()


def temperature(args: Args, n_updates: int) -> float:
    """α at gradient step n_updates (from 1): --alpha-start, annealed geometrically to --alpha over --anneal-steps."""
    return args.alpha_start * (args.alpha / args.alpha_start) ** min((n_updates - 1) / args.anneal_steps, 1.0)


def update(agents, optimizer, buffer: ReplayBuffer, n_updates: int, args: Args) -> dict:
    """The n_updates-th simultaneous gradient step of every agent's critic and sampler on one minibatch, then the
    target critics' Polyak step every --target-update-interval steps. Returns the losses by name, as floats."""
    batch, alpha = buffer.sample(args.batch_size), temperature(args, n_updates)
    losses, total = {}, 0.0
    for i, agent in enumerate(agents):
        q_loss, q_mean = critic_loss(agent, i, batch, alpha, args)
        svgd_loss, sampler_objective = sampler_loss(agent, batch["obs"][i], views(batch, i, args.critic_input)[0],
                                                    alpha, args)  # fmt: skip
        total = total + q_loss + svgd_loss
        losses[i] = dict(critic_loss=q_loss.item(), actor_loss=sampler_objective.item(), q_values=q_mean.item())
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    if n_updates % args.target_update_interval == 0:
        with torch.no_grad():
            for agent in agents:  # target ← (1 - τ)·target + τ·source
                torch._foreach_lerp_(list(agent.target_critic.parameters()), list(agent.critic.parameters()), args.tau)
    return losses


def check_env(names: list[str], args: Args):
    if len(names) < 2:  # the sampler and critic are over a joint action: there must be others
        raise ValueError(f"MASQL needs at least two agents; {args.env} has {len(names)}")


def algorithm(args: Args) -> common.Algorithm:
    """MASQL for common.train: its networks (sized by --critic-input), update, sampling and α chart."""
    alpha_chart = lambda n_updates, args: {"charts/alpha": temperature(args, max(n_updates, 1))}  # noqa: E731
    return common.Algorithm(SCRIPT, partial(build_agents, critic_input=args.critic_input), update,
                            check_env=check_env, explore=explore, extra_charts=alpha_chart)  # fmt: skip


def load_policies(path: str, device: str = "cpu") -> dict:
    """{agent name: f(observation) -> action in [-1, 1]}: a checkpoint's noise-free policies, e.g. for cross-play."""
    saved = run.load_checkpoint(path, CHECKPOINT_KEYS, SCRIPT)["args"]
    return common.load_policies(algorithm(Args(**saved)), path, device)


def main(args: Args, checkpoint: dict | None = None):
    try:
        args = check_args(args)
        if checkpoint is not None:  # --critic-input sizes the critics: a resumed run keeps the saved one
            run.check_run(None, args, checkpoint, ["critic_input"], {})
    except ValueError as error:
        raise SystemExit(f"{SCRIPT}: error: {error}") from None
    common.train(algorithm(args), args, checkpoint)  # the DDPG family's loop with MASQL's sampling and update


if __name__ == "__main__":
    main(*run.parse_args(Args, SCRIPT, CHECKPOINT_KEYS))
