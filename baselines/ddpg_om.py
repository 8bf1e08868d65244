# DDPG-OM: DDPG whose critic is fed a supervised opponent model's prediction of the others' actions, a PR2 baseline.
# Continuous actions; the networks, buffer, exploration and logging of pr2_continuous.py; differences: docs/baselines.md
# This file is the algorithm (agents, losses, update); the flags, buffer and training loop it shares with MADDPG and
# DDPG are in baselines/common.py, the run plumbing in utils/.
import copy
import os
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # baselines/ and utils/: the root
from baselines import common  # noqa: E402
from baselines.common import CHECKPOINT_KEYS, MLP  # noqa: E402
from utils import run  # noqa: E402

SCRIPT = os.path.basename(__file__)


@dataclass
class Args(common.Args):  # the DDPG family's flags (baselines/common.py); only the run name is this script's
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run folder's name)"""


# ALGO LOGIC: networks (common.MLP: the original PR2 code's, as in pr2_continuous.py)
class DDPGOMAgent(nn.Module):
    """Agent i's networks. o = obs dim, a = own action dim, d = the other agents' joint action dim.

    | network            | maps                                          | shape                  |
    |--------------------|-----------------------------------------------|------------------------|
    | actor μ_θ          | o^i -> a^i                                    | [.., o] -> [.., a]     |
    | critic Q_ω         | o^i, a^i, a^-i -> Q^i                         | -> [.., 1]             |
    | opponent_model ρ_φ | o^i -> â^-i, a prediction of the others' play | [.., o] -> [.., d]     |
    Target copies: target_actor, target_critic (ρ has none, as in the original code).
    """

    def __init__(self, obs_dim: int, act_dim: int, opp_dim: int, hidden: int):
        super().__init__()
        self.actor = MLP([obs_dim], act_dim, hidden, squash=True)
        self.critic = MLP([obs_dim, act_dim, opp_dim], 1, hidden)
        self.opponent_model = MLP([obs_dim], opp_dim, hidden, squash=True)
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)


def build_agents(obs_dims: list[int], act_dims: list[int], hidden: int) -> nn.ModuleList:
    return nn.ModuleList(DDPGOMAgent(o, a, sum(act_dims) - a, hidden) for o, a in zip(obs_dims, act_dims))


# ALGO LOGIC: replay buffer (common.ReplayBuffer), read two ways: uniform minibatches and the newest rows.
class ReplayBuffer(common.ReplayBuffer):
    """common.ReplayBuffer that also reads back its newest rows, the window the opponent model fits."""

    def recent(self, n: int) -> dict:
        """The n transitions added last: the opponent model's training window."""
        return self.sample(n, idx=(self.pos - 1 - np.arange(min(n, self.size))) % self.capacity)


# ALGO LOGIC: the three losses of agent i. All are built from one parameter snapshot and stepped together.
def others(actions: list, i: int):
    """The other agents' actions a^-i, concatenated in agent order: [B, d]."""
    return torch.cat([a for j, a in enumerate(actions) if j != i], -1)


def opponent_model_loss(agent: DDPGOMAgent, i: int, recent: dict):
    """Supervised opponent model: ½·mean ‖ρ_φ(o^i) - a^-i‖² over the most recent transitions (the original code's
    window: the last batch_size steps), a^-i being the actions the others actually played."""
    return 0.5 * (agent.opponent_model(recent["obs"][i]) - others(recent["actions"], i)).pow(2).mean()


def critic_loss(agent: DDPGOMAgent, i: int, batch: dict, args: Args):
    """y = reward_scale·r^i + γ(1 - done^i)·Q̄(o'^i, μ̄(o'^i), ρ(o'^i)): the opponent model predicts the others' next
    actions. L = ½·mean (y - Q(o^i, a^i, a^-i))² at the observed joint action. Returns (loss, mean Q)."""
    obs, next_obs = batch["obs"][i], batch["next_obs"][i]
    with torch.no_grad():
        next_q = agent.target_critic(next_obs, agent.target_actor(next_obs), agent.opponent_model(next_obs)).squeeze(-1)
        y = args.reward_scale * batch["rewards"][:, i] + args.gamma * (1 - batch["dones"][:, i]) * next_q
    q = agent.critic(obs, batch["actions"][i], others(batch["actions"], i)).squeeze(-1)
    return 0.5 * (y - q).pow(2).mean(), q.mean()


def actor_loss(agent: DDPGOMAgent, obs):
    """Deterministic policy gradient against the opponent model: J = Q(o, μ_θ(o), ρ(o)), ρ held fixed. The surrogate
    -⟨∂J/∂a, μ_θ(o)⟩ has J's gradient in θ and leaves the critic and ρ alone. Returns (surrogate loss, -J)."""
    action = agent.actor(obs)
    action_leaf = action.detach().requires_grad_(True)
    objective = agent.critic(obs, action_leaf, agent.opponent_model(obs).detach()).mean()
    grad_action = torch.autograd.grad(objective, action_leaf)[0]
    return -(grad_action * action).sum(), -objective.detach()


def update(agents, optimizer, buffer: ReplayBuffer, n_updates: int, args: Args) -> dict:
    """The n_updates-th simultaneous gradient step of every agent's actor, critic and opponent model, the first two on
    a minibatch, ρ on the newest transitions; then the targets' Polyak step when due (common.gradient_step). Returns
    the losses by name, as floats."""
    batch, recent = buffer.sample(args.batch_size), buffer.recent(args.batch_size)  # recent: ρ's window
    losses, total = {}, 0.0
    for i, agent in enumerate(agents):
        q_loss, q_mean = critic_loss(agent, i, batch, args)
        pi_loss, pi_objective = actor_loss(agent, batch["obs"][i])
        om_loss = opponent_model_loss(agent, i, recent)
        total = total + q_loss + pi_loss + om_loss
        losses[i] = dict(critic_loss=q_loss, actor_loss=pi_objective, q_values=q_mean, opponent_model_loss=om_loss)
    return common.gradient_step(agents, optimizer, total, losses, n_updates, args)


def check_env(names: list[str], args: Args):
    if len(names) < 2:  # ρ predicts the others' actions: there must be others
        raise ValueError(f"DDPG-OM needs at least two agents; {args.env} has {len(names)}")


ALGORITHM = common.Algorithm(SCRIPT, build_agents, update, buffer=ReplayBuffer, check_env=check_env)


def load_policies(path: str, device: str = "cpu") -> dict:
    """{agent name: f(observation) -> action in [-1, 1]}: a checkpoint's noise-free actors, e.g. for cross-play."""
    return common.load_policies(ALGORITHM, path, device)


def main(args: Args, checkpoint: dict | None = None):
    common.train(ALGORITHM, args, checkpoint)  # the loop every DDPG-family baseline shares, with this file's update


if __name__ == "__main__":
    main(*run.parse_args(Args, SCRIPT, CHECKPOINT_KEYS))
