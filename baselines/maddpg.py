# MADDPG: multi-agent DDPG with centralised critics (Lowe et al., NeurIPS 2017, arXiv 1706.02275), a PR2 baseline.
# Continuous actions; the networks, buffer, exploration and logging of pr2_continuous.py; differences: docs/baselines.md
# This file is the algorithm (agents, losses, update); the flags, buffer and training loop it shares with DDPG and
# DDPG-OM are in baselines/common.py, the run plumbing in utils/.
import copy
import os
import sys
from dataclasses import dataclass

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # baselines/ and utils/: the root
from baselines import common  # noqa: E402
from baselines.common import CHECKPOINT_KEYS, MLP, ReplayBuffer  # noqa: E402
from utils import run  # noqa: E402

SCRIPT = os.path.basename(__file__)


@dataclass
class Args(common.Args):  # the DDPG family's flags (baselines/common.py); only the run name is this script's
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run folder's name)"""


# ALGO LOGIC: networks (common.MLP: the original PR2 code's, as in pr2_continuous.py)
class MADDPGAgent(nn.Module):
    """Agent i's networks. o = own obs dim, a = own action dim, O = all agents' obs dims, A = joint action dim.

    | network        | maps                                            | shape                    |
    |----------------|-------------------------------------------------|--------------------------|
    | actor μ_θ      | o^i -> a^i (decentralised: own observation)     | [.., o] -> [.., a]       |
    | critic Q_ω     | x = (o^1..o^n), (a^1..a^n) -> Q^i (centralised) | [.., O], [.., A] -> [.., 1] |
    Target copies: target_actor, target_critic.
    """

    def __init__(self, obs_dim: int, act_dim: int, all_obs_dim: int, all_act_dim: int, hidden: int):
        super().__init__()
        self.actor = MLP([obs_dim], act_dim, hidden, squash=True)
        self.critic = MLP([all_obs_dim, all_act_dim], 1, hidden)
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)


def build_agents(obs_dims: list[int], act_dims: list[int], hidden: int) -> nn.ModuleList:
    return nn.ModuleList(MADDPGAgent(o, a, sum(obs_dims), sum(act_dims), hidden) for o, a in zip(obs_dims, act_dims))


# ALGO LOGIC: the two losses of agent i. All are built from one parameter snapshot and stepped together.
def critic_loss(agent: MADDPGAgent, i: int, batch: dict, next_actions, args: Args):
    """Centralised critic: y = reward_scale·r^i + γ(1 - done^i)·Q̄^i(x', μ̄^1(o'^1), ..., μ̄^n(o'^n)),
    L = ½·mean (y - Q^i(x, a^1, ..., a^n))², with every agent's observed action a^j from the buffer.

    next_actions [B, A]: all agents' target actors at s' (computed once per update). Returns (loss, mean Q).
    """
    with torch.no_grad():
        next_q = agent.target_critic(torch.cat(batch["next_obs"], -1), next_actions).squeeze(-1)
        y = args.reward_scale * batch["rewards"][:, i] + args.gamma * (1 - batch["dones"][:, i]) * next_q
    q = agent.critic(torch.cat(batch["obs"], -1), torch.cat(batch["actions"], -1)).squeeze(-1)
    return 0.5 * (y - q).pow(2).mean(), q.mean()


def actor_loss(agent: MADDPGAgent, i: int, batch: dict):
    """Deterministic policy gradient through the centralised critic: J = Q^i(x, a^1, .., μ_θ(o^i), .., a^n), the other
    agents' actions taken from the buffer (as in MADDPG). The surrogate -⟨∂J/∂a^i, μ_θ(o^i)⟩ has J's gradient in θ
    and leaves the critic alone. Returns (surrogate loss, -J)."""
    action = agent.actor(batch["obs"][i])
    action_leaf = action.detach().requires_grad_(True)
    joint = torch.cat([action_leaf if j == i else a for j, a in enumerate(batch["actions"])], -1)
    objective = agent.critic(torch.cat(batch["obs"], -1), joint).mean()
    grad_action = torch.autograd.grad(objective, action_leaf)[0]
    return -(grad_action * action).sum(), -objective.detach()


def update(agents, optimizer, buffer: ReplayBuffer, n_updates: int, args: Args) -> dict:
    """The n_updates-th simultaneous gradient step of every agent's actor and critic on one minibatch, then the
    targets' Polyak step when due (common.gradient_step). Returns the losses by name, as floats."""
    batch = buffer.sample(args.batch_size)
    with torch.no_grad():
        next_actions = torch.cat([agent.target_actor(o) for agent, o in zip(agents, batch["next_obs"])], -1)
    losses, total = {}, 0.0
    for i, agent in enumerate(agents):
        q_loss, q_mean = critic_loss(agent, i, batch, next_actions, args)
        pi_loss, pi_objective = actor_loss(agent, i, batch)
        total = total + q_loss + pi_loss
        losses[i] = dict(critic_loss=q_loss, actor_loss=pi_objective, q_values=q_mean)
    return common.gradient_step(agents, optimizer, total, losses, n_updates, args)


ALGORITHM = common.Algorithm(SCRIPT, build_agents, update)


def load_policies(path: str, device: str = "cpu") -> dict:
    """{agent name: f(observation) -> action in [-1, 1]}: a checkpoint's noise-free actors, e.g. for cross-play."""
    return common.load_policies(ALGORITHM, path, device)


def main(args: Args, checkpoint: dict | None = None):
    common.train(ALGORITHM, args, checkpoint)  # the loop every DDPG-family baseline shares, with this file's update


if __name__ == "__main__":
    main(*run.parse_args(Args, SCRIPT, CHECKPOINT_KEYS))
