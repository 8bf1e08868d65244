# DDPG-OM: DDPG whose critic is fed a supervised opponent model's prediction of the others' actions, a PR2 baseline.
# Continuous actions; the networks, buffer, exploration and logging of pr2_continuous.py. Differences: README.md.
# One self-contained file: networks, replay buffer, losses, training loop; the run plumbing is in utils/.
import copy
import os
import sys
from dataclasses import asdict, dataclass, replace
from functools import partial

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # utils/ is at the repository root
from utils import run  # noqa: E402
from utils.envs import EnvError, env_label, make_env, to_env_action  # noqa: E402


@dataclass
class Args(run.RunArgs):  # the flags every script shares (seed, --save-model, --resume, --eval-every, ...) come first
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run folder's name)"""

    # Environment
    env: str = "particle"
    """'particle' (mpe2), 'differential' (the paper's max-of-two-quadratics game), or 'pkg.module:factory' (yours)"""
    scenario: str | None = None
    """particle: mpe2 scenario (default simple_spread); differential: 'paper' (default) or 'code' (its /3 formula)"""
    max_cycles: int = 25
    """steps per particle episode"""
    # Training: the same fields and per-env defaults as pr2_continuous.py (ENV_DEFAULTS)
    total_timesteps: int | None = None
    """environment steps (default: 16,000 differential; 100,000 otherwise)"""
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
    """gradient steps between Polyak updates of the target networks (PR2's 5; the original baselines used 10)"""
    reward_scale: float = 1.0
    """rewards are multiplied by this in the critic target (PR2's 1; the original baselines used 0.1)"""
    hidden_size: int = 100
    """units in each of the two hidden layers of every network"""
    # Exploration
    noise_schedule: str | None = None
    """OU noise scale, 'step:scale,...' (default: '0:1.0,1600:0.01,2666:0.001' differential, else '0:0.3,50000:0.1')"""
    ou_theta: float = 0.15
    """OU mean reversion θ"""
    ou_sigma: float = 0.3
    """OU diffusion σ"""
    log_every: int = 100
    """environment steps between log entries"""


ENV_DEFAULTS = {
    "differential": dict(total_timesteps=16_000, learning_starts=1_000, train_frequency=1, batch_size=64, gamma=0.99,
                         learning_rate=3e-4, noise_schedule="0:1.0,1600:0.01,2666:0.001"),
    "other": dict(total_timesteps=100_000, learning_starts=5_000, train_frequency=4, batch_size=128, gamma=0.95,
                  learning_rate=1e-3, noise_schedule="0:0.3,50000:0.1"),
}  # fmt: skip


def resolve_args(args: Args) -> Args:
    """Fill per-env defaults and check flags; a problem raises ValueError with a one-line fix."""
    defaults = ENV_DEFAULTS["differential" if args.env == "differential" else "other"]
    args = replace(args, **{key: value for key, value in defaults.items() if getattr(args, key) is None})
    positive = ["total_timesteps", "train_frequency", "batch_size", "buffer_size", "hidden_size", "log_every"]
    problems = [(getattr(args, name) <= 0, f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
                for name in [*positive, "target_update_interval", "torch_threads"]] + [
        (min(args.learning_starts, args.eval_episodes, args.save_every) < 0,
         "--learning-starts, --eval-episodes and --save-every must be >= 0"),
        (args.capture_video and not args.eval_episodes, "--capture-video records the evaluation: --eval-episodes > 0"),
        (args.batch_size > args.buffer_size, f"--batch-size {args.batch_size} exceeds --buffer-size "
         f"{args.buffer_size}"),
        (not (args.learning_rate > 0 and 0 <= args.gamma <= 1 and 0 < args.tau <= 1), "need --learning-rate > 0, "
         f"--gamma in [0, 1], --tau in (0, 1]; got {args.learning_rate}, {args.gamma}, {args.tau}"),
    ]  # fmt: skip
    if message := next((message for bad, message in problems if bad), None):
        raise ValueError(message)
    return args


# ALGO LOGIC: networks. Every network is the original PR2 code's MLP: 2 hidden ReLU layers, Xavier init, zero biases.
class MLP(nn.Module):
    """f(x_1, ..., x_n) with 2 hidden ReLU layers; with squash=True the output is tanh-squashed into [-1, 1].
    The first layer sums one linear map per input, which equals a linear map of their concatenation."""

    def __init__(self, in_dims: list[int], out_dim: int, hidden: int, squash: bool = False):
        super().__init__()
        self.input_layers = nn.ModuleList(nn.Linear(d, hidden, bias=k == 0) for k, d in enumerate(in_dims))
        self.body = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
        for layer in (module for module in self.modules() if isinstance(module, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        self.squash = squash

    def forward(self, *inputs):
        out = self.body(sum(layer(x) for layer, x in zip(self.input_layers, inputs, strict=True)))
        return torch.tanh(out) if self.squash else out


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


@torch.no_grad()
def noise_free_actions(agents, names, obs: dict, device) -> list[np.ndarray]:
    """Every agent's action μ_θ(o^i) in [-1, 1], from its own observation: what evaluation plays."""
    return [agent.actor(torch.as_tensor(obs[name], device=device)).cpu().numpy() for agent, name in zip(agents, names)]


def env_actions(env, unit_actions: list[np.ndarray]) -> dict:
    """{agent: its [-1, 1] action mapped to its Box}, what env.step takes."""
    return {name: to_env_action(a, env.action_space(name)) for name, a in zip(env.possible_agents, unit_actions)}


@torch.no_grad()
def charts(agents, names, obs, losses, noise_scale: float, device) -> dict:
    """A log entry's scalars besides the episodes': losses, the noise scale, and on games with 1-D actions (the
    differential game) the noise-free action, to plot the learning path."""
    scalars = {f"losses/{k}/{names[i]}": v for i, ls in losses.items() for k, v in ls.items()}
    scalars["charts/noise_scale"] = noise_scale
    actions = noise_free_actions(agents, names, obs, device)
    if max(action.size for action in actions) == 1:
        scalars.update({f"charts/action/{name}": action.item() for name, action in zip(names, actions)})
    return scalars


def load_policies(path: str, device: str = "cpu") -> dict:
    """{agent name: f(observation) -> action in [-1, 1]}: a checkpoint's noise-free actors, e.g. for cross-play."""
    checkpoint = run.load_checkpoint(path, CHECKPOINT_KEYS, SCRIPT)
    agents = build_agents(checkpoint["obs_dims"], checkpoint["act_dims"], checkpoint["args"]["hidden_size"]).to(device)
    agents.load_state_dict(checkpoint["agents"])
    to_tensor = partial(torch.as_tensor, dtype=torch.float32, device=device)
    act = torch.no_grad()(lambda actor, observation: actor(to_tensor(observation)).cpu().numpy())
    return {name: partial(act, agent.actor) for name, agent in zip(checkpoint["agent_names"], agents)}


# ALGO LOGIC: replay buffer. One index set per minibatch serves every agent, so the joint actions line up.
class ReplayBuffer:
    """Joint transitions (s^i, a^i, r^i, s'^i, done^i) for every agent i; actions in [-1, 1] units."""

    def __init__(self, capacity: int, obs_dims: list[int], act_dims: list[int], device):
        self.capacity, self.device, self.size, self.pos = capacity, device, 0, 0
        self.obs = [np.zeros((capacity, d), np.float32) for d in obs_dims]
        self.next_obs = [np.zeros((capacity, d), np.float32) for d in obs_dims]
        self.actions = [np.zeros((capacity, d), np.float32) for d in act_dims]
        self.rewards = np.zeros((capacity, len(obs_dims)), np.float32)
        self.dones = np.zeros((capacity, len(obs_dims)), np.float32)

    def add(self, obs, actions, rewards, next_obs, dones):
        for i in range(len(obs)):
            self.obs[i][self.pos], self.next_obs[i][self.pos] = obs[i], next_obs[i]
            self.actions[i][self.pos] = actions[i]
        self.rewards[self.pos], self.dones[self.pos] = rewards, dones
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, idx=None) -> dict:
        idx = np.random.randint(0, self.size, size=batch_size) if idx is None else idx
        tensor = lambda array: torch.as_tensor(array[idx], device=self.device)  # noqa: E731
        per_agent = dict(obs=self.obs, actions=self.actions, next_obs=self.next_obs)
        return dict({k: [tensor(a) for a in v] for k, v in per_agent.items()}, rewards=tensor(self.rewards),
                    dones=tensor(self.dones))  # fmt: skip

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


def update(agents, optimizer, batch: dict, recent: dict, n_updates: int, args: Args) -> dict:
    """The n_updates-th simultaneous gradient step of every agent's actor, critic and opponent model; every
    --target-update-interval steps the targets follow: target ← (1 - τ)·target + τ·source. Returns losses as floats."""
    losses, total = {}, 0.0
    for i, agent in enumerate(agents):
        q_loss, q_mean = critic_loss(agent, i, batch, args)
        pi_loss, pi_objective = actor_loss(agent, batch["obs"][i])
        om_loss = opponent_model_loss(agent, i, recent)
        total = total + q_loss + pi_loss + om_loss
        losses[i] = dict(critic_loss=q_loss, actor_loss=pi_objective, q_values=q_mean, opponent_model_loss=om_loss)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    if n_updates % args.target_update_interval == 0:
        with torch.no_grad():
            for agent in agents:
                for source, target in ((agent.actor, agent.target_actor), (agent.critic, agent.target_critic)):
                    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), args.tau)
    return {i: {k: v.item() for k, v in ls.items()} for i, ls in losses.items()}


class OUNoise:
    """Ornstein-Uhlenbeck noise x ← x + θ(0 - x) + σ·N(0, 1); one process per agent that runs across episodes."""

    def __init__(self, dim: int, theta: float, sigma: float):
        self.state, self.theta, self.sigma = np.zeros(dim, np.float32), theta, sigma

    def sample(self):
        self.state += -self.theta * self.state + self.sigma * np.random.randn(len(self.state)).astype(np.float32)
        return self.state


def restore(checkpoint: dict, agents, optimizer, buffer, noises, args: Args) -> dict:
    """Load a checkpoint's networks, optimiser, buffer, noise and random state; return its counters."""
    modules = [(agents, checkpoint["agents"]), (buffer, checkpoint["buffer"])]
    run.load_states(modules, [(optimizer, checkpoint["optimizer"])], args.learning_rate, SCRIPT)
    for noise, saved in zip(noises, checkpoint["noise"], strict=True):
        noise.state[:] = saved
    run.restore_rng_state(checkpoint["rng"])
    counters = {key: checkpoint[key] for key in ("step", "n_updates", "episode", "losses", "train_from", "log")}
    if checkpoint["buffer"] is None:  # the refilled buffer holds no minibatch yet: wait as a fresh run would
        counters["train_from"] = counters["step"] + max(args.batch_size, args.learning_starts)
    return counters


SCRIPT = os.path.basename(__file__)
CHECKPOINT_KEYS = ["args", "agent_names", "obs_dims", "act_dims", "agents", "optimizer", "step"]
STRUCTURAL_FLAGS = ["env", "scenario", "max_cycles", "hidden_size", "buffer_size"]


def main(args: Args, checkpoint: dict | None = None):
    try:
        args = resolve_args(args)
        env = make_env(args.env, args.scenario, "continuous", args.max_cycles, script=SCRIPT)
        names = env.possible_agents
        obs_dims = [env.observation_space(n).shape[0] for n in names]
        act_dims = [env.action_space(n).shape[0] for n in names]
        if len(names) < 2:
            raise ValueError(f"DDPG-OM needs at least two agents; {args.env} has {len(names)}")
        layout = dict(agent_names=list(names), obs_dims=obs_dims, act_dims=act_dims)
        run.check_run(env, args, checkpoint, STRUCTURAL_FLAGS, layout)
        noise_schedule = run.parse_schedule(args.noise_schedule)  # a malformed schedule is a bad flag too
    except (ValueError, EnvError) as error:
        raise SystemExit(f"{SCRIPT}: error: {error}") from None
    device = run.seed_everything(args, env)  # TRY NOT TO MODIFY: seeding

    # ALGO LOGIC: initialise agents, one fused Adam over all of them (Adam is per-parameter, so this equals one each)
    agents = build_agents(obs_dims, act_dims, args.hidden_size).to(device)
    optimizer = torch.optim.Adam([p for p in agents.parameters() if p.requires_grad], lr=args.learning_rate, fused=True)
    buffer = ReplayBuffer(args.buffer_size, obs_dims, act_dims, device)
    noises = [OUNoise(d, args.ou_theta, args.ou_sigma) for d in act_dims]
    counters = dict(step=0, n_updates=0, episode=0, losses={}, train_from=0, log=None)
    if checkpoint is not None:  # continue a saved run where it stopped (a half-played episode starts over)
        counters = restore(checkpoint, agents, optimizer, buffer, noises, args)
    start_step, n_updates, episode, train_from = (counters[k] for k in ("step", "n_updates", "episode", "train_from"))
    losses = counters["losses"]
    session = run.Session(args, checkpoint, names, env_label(args.env, args.scenario))  # logs, checkpoints, Ctrl-C
    act = lambda env, obs: env_actions(env, noise_free_actions(agents, names, obs, device))  # noqa: E731
    evaluate = partial(run.evaluate, partial(make_env, args.env, args.scenario, "continuous", args.max_cycles), act,
                       args.eval_episodes)  # fmt: skip

    def training_state(step: int) -> dict:
        """Everything a resumed run needs to continue as if it had never stopped (tensors and plain values only)."""
        return dict(
            args=asdict(args), **layout, agents=agents.state_dict(), optimizer=optimizer.state_dict(),
            buffer=run.buffer_state(buffer) if args.save_buffer else None,
            noise=[noise.state.tolist() for noise in noises], rng=run.rng_state(),
            step=step, n_updates=n_updates, episode=episode + (session.log.episode_length > 0), losses=losses,
            train_from=train_from,
        )  # fmt: skip

    # TRY NOT TO MODIFY: start the game
    obs, _ = env.reset(seed=run.episode_seed(args.seed, episode))
    for global_step in range(start_step, args.total_timesteps):
        # ALGO LOGIC: act with μ_θ(o) plus scheduled OU noise, clipped to [-1, 1]
        noise_scale = run.schedule_value(noise_schedule, global_step)
        actions = noise_free_actions(agents, names, obs, device)
        unit_actions = [np.clip(a + noise_scale * noise.sample(), -1.0, 1.0) for a, noise in zip(actions, noises)]
        next_obs, rewards, terminations, truncations, _ = env.step(env_actions(env, unit_actions))

        # TRY NOT TO MODIFY: record the transition; bootstrap through truncation, not termination
        per_agent = [[d[n] for n in names] for d in (obs, rewards, next_obs, terminations)]
        buffer.add(per_agent[0], unit_actions, per_agent[1], per_agent[2], np.float32(per_agent[3]))
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
            n_updates += 1
            batch, recent = buffer.sample(args.batch_size), buffer.recent(args.batch_size)  # recent: ρ's window
            losses = update(agents, optimizer, batch, recent, n_updates, args)
            if bad := [f"{k}/{names[i]}" for i, ls in losses.items() for k, v in ls.items() if not np.isfinite(v)]:
                raise SystemExit(f"{SCRIPT}: error: non-finite {', '.join(bad)} at step {global_step}; try a lower lr")

        # TRY NOT TO MODIFY: log, evaluate and save when due; on Ctrl-C save and exit
        charts_now = partial(charts, agents, names, obs, losses, noise_scale, device)
        session.end_step(global_step + 1, charts_now, training_state, evaluate)
    session.finish(training_state, evaluate)
    env.close()


if __name__ == "__main__":
    main(*run.parse_args(Args, SCRIPT, CHECKPOINT_KEYS))
