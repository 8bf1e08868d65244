"""What the DDPG family of baselines (maddpg.py, ddpg.py, ddpg_om.py) shares: the flags and their per-env defaults,
the network, replay buffer and exploration noise, and the training loop `train`, into which each baseline plugs its
agents and its update (an `Algorithm`). The run plumbing under it (logs, checkpoints, evaluation) is in utils/.
To use a baseline in another project, copy its file, this one and utils/."""

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import partial

import numpy as np
import torch
import torch.nn as nn

from utils import run
from utils.envs import EnvError, env_label, make_env, to_env_action


@dataclass
class Args(run.RunArgs):  # the flags every script shares (seed, --save-model, --resume, --eval-every, ...) come first
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


@torch.no_grad()
def noise_free_actions(agents, names, obs: dict, device) -> list[np.ndarray]:
    """Every agent's action μ_θ(o^i) in [-1, 1], from its own observation: what evaluation plays."""
    return [agent.actor(torch.as_tensor(obs[name], device=device)).cpu().numpy() for agent, name in zip(agents, names)]


def env_actions(env, unit_actions: list[np.ndarray]) -> dict:
    """{agent: its [-1, 1] action mapped to its Box}, what env.step takes."""
    return {name: to_env_action(a, env.action_space(name)) for name, a in zip(env.possible_agents, unit_actions)}


@torch.no_grad()
def charts(agents, names, obs, losses, noise_scale: float | None, device, extra: dict | None = None) -> dict:
    """A log entry's scalars besides the episodes': losses, the noise scale (None: the algorithm adds no noise), the
    algorithm's `extra` ones, and on games with 1-D actions (the differential game) the noise-free action, to plot the
    learning path."""
    scalars = {f"losses/{k}/{names[i]}": v for i, ls in losses.items() for k, v in ls.items()}
    if noise_scale is not None:
        scalars["charts/noise_scale"] = noise_scale
    scalars.update(extra or {})
    actions = noise_free_actions(agents, names, obs, device)
    if max(action.size for action in actions) == 1:
        scalars.update({f"charts/action/{name}": action.item() for name, action in zip(names, actions)})
    return scalars


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
        """A minibatch of `batch_size` uniformly drawn rows, or of the rows `idx`."""
        idx = np.random.randint(0, self.size, size=batch_size) if idx is None else idx
        tensor = lambda array: torch.as_tensor(array[idx], device=self.device)  # noqa: E731
        per_agent = dict(obs=self.obs, actions=self.actions, next_obs=self.next_obs)
        return dict({k: [tensor(a) for a in v] for k, v in per_agent.items()}, rewards=tensor(self.rewards),
                    dones=tensor(self.dones))  # fmt: skip


def gradient_step(agents, optimizer, total, losses: dict, n_updates: int, args: Args) -> dict:
    """The n_updates-th gradient step on `total`, every agent's losses summed (one Adam over all of them steps them
    simultaneously); every --target-update-interval steps the targets then follow, target ← (1 - τ)·target + τ·source.
    Returns `losses` ({agent index: {name: tensor}}) as floats."""
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


@dataclass(frozen=True)
class Algorithm:
    """What a baseline plugs into `train`: the rest of the loop is the same for every member of the family."""

    script: str
    """its file name, which errors and checkpoints carry"""
    build_agents: Callable
    """(obs_dims, act_dims, hidden) -> nn.ModuleList, agent i with .actor, .critic and their target_ copies"""
    update: Callable
    """(agents, optimizer, buffer, n_updates, args) -> {agent index: {loss name: float}}: one gradient step, on
    minibatches it draws from the buffer itself (DDPG-OM draws a second, its opponent model's window)"""
    buffer: type = ReplayBuffer
    """the replay buffer class: ReplayBuffer or a subclass that adds the ways of reading it the update needs"""
    check_env: Callable | None = None
    """(agent names, args) -> None, or ValueError if the algorithm cannot play this env"""
    explore: Callable | None = None
    """(agents, agent names, observations, device) -> every agent's exploring action in [-1, 1]; None: the actor's
    μ_θ(o^i) plus scheduled OU noise"""
    extra_charts: Callable | None = None
    """(n_updates, args) -> {tag: value} logged with every entry besides the losses (e.g. a temperature schedule)"""


CHECKPOINT_KEYS = ["args", "agent_names", "obs_dims", "act_dims", "agents", "optimizer", "step"]
STRUCTURAL_FLAGS = ["env", "scenario", "max_cycles", "hidden_size", "buffer_size"]


def load_policies(algorithm: Algorithm, path: str, device: str = "cpu") -> dict:
    """{agent name: f(observation) -> action in [-1, 1]}: a checkpoint's noise-free actors, e.g. for cross-play."""
    checkpoint = run.load_checkpoint(path, CHECKPOINT_KEYS, algorithm.script)
    hidden = checkpoint["args"]["hidden_size"]
    agents = algorithm.build_agents(checkpoint["obs_dims"], checkpoint["act_dims"], hidden).to(device)
    agents.load_state_dict(checkpoint["agents"])
    to_tensor = partial(torch.as_tensor, dtype=torch.float32, device=device)
    act = torch.no_grad()(lambda actor, observation: actor(to_tensor(observation)).cpu().numpy())
    return {name: partial(act, agent.actor) for name, agent in zip(checkpoint["agent_names"], agents)}


def restore(checkpoint: dict, agents, optimizer, buffer, noises, args: Args, script: str) -> dict:
    """Load a checkpoint's networks, optimiser, buffer, noise and random state; return its counters."""
    modules = [(agents, checkpoint["agents"]), (buffer, checkpoint["buffer"])]
    run.load_states(modules, [(optimizer, checkpoint["optimizer"])], args.learning_rate, script)
    for noise, saved in zip(noises, checkpoint["noise"], strict=True):
        noise.state[:] = saved
    run.restore_rng_state(checkpoint["rng"])
    counters = {key: checkpoint[key] for key in ("step", "n_updates", "episode", "losses", "train_from", "log")}
    if checkpoint["buffer"] is None:  # the refilled buffer holds no minibatch yet: wait as a fresh run would
        counters["train_from"] = counters["step"] + max(args.batch_size, args.learning_starts)
    return counters


def train(algorithm: Algorithm, args: Args, checkpoint: dict | None = None):
    """A baseline's whole run: check the flags and env, then train with OU exploration, logging, evaluating and
    saving as the flags say. `checkpoint`: a saved run to continue (from run.parse_args)."""
    script = algorithm.script
    try:
        args = resolve_args(args)
        env = make_env(args.env, args.scenario, "continuous", args.max_cycles, script=script)
        names = env.possible_agents
        obs_dims = [env.observation_space(n).shape[0] for n in names]
        act_dims = [env.action_space(n).shape[0] for n in names]
        if algorithm.check_env is not None:
            algorithm.check_env(names, args)
        layout = dict(agent_names=list(names), obs_dims=obs_dims, act_dims=act_dims)
        run.check_run(env, args, checkpoint, STRUCTURAL_FLAGS, layout)
        noise_schedule = run.parse_schedule(args.noise_schedule)  # a malformed schedule is a bad flag too
    except (ValueError, EnvError) as error:
        raise SystemExit(f"{script}: error: {error}") from None
    device = run.seed_everything(args, env)  # TRY NOT TO MODIFY: seeding

    # ALGO LOGIC: initialise agents, one fused Adam over all of them (Adam is per-parameter, so this equals one each)
    agents = algorithm.build_agents(obs_dims, act_dims, args.hidden_size).to(device)
    optimizer = torch.optim.Adam([p for p in agents.parameters() if p.requires_grad], lr=args.learning_rate, fused=True)
    buffer = algorithm.buffer(args.buffer_size, obs_dims, act_dims, device)
    noises = [OUNoise(d, args.ou_theta, args.ou_sigma) for d in act_dims]
    counters = dict(step=0, n_updates=0, episode=0, losses={}, train_from=0, log=None)
    if checkpoint is not None:  # continue a saved run where it stopped (a half-played episode starts over)
        counters = restore(checkpoint, agents, optimizer, buffer, noises, args, script)
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
        # ALGO LOGIC: act with μ_θ(o) plus scheduled OU noise, clipped to [-1, 1], unless the algorithm explores itself
        if algorithm.explore is None:
            noise_scale = run.schedule_value(noise_schedule, global_step)
            actions = noise_free_actions(agents, names, obs, device)
            unit_actions = [np.clip(a + noise_scale * noise.sample(), -1.0, 1.0) for a, noise in zip(actions, noises)]
        else:
            noise_scale, unit_actions = None, algorithm.explore(agents, names, obs, device)
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
            raise SystemExit(f"{script}: error: agents of {args.env} ended at different steps; they must end together")
        else:
            obs = next_obs  # CRUCIAL step easy to overlook

        # ALGO LOGIC: training
        if global_step >= max(args.learning_starts, train_from) and global_step % args.train_frequency == 0:
            n_updates += 1
            losses = algorithm.update(agents, optimizer, buffer, n_updates, args)
            if bad := [f"{k}/{names[i]}" for i, ls in losses.items() for k, v in ls.items() if not np.isfinite(v)]:
                raise SystemExit(f"{script}: error: non-finite {', '.join(bad)} at step {global_step}; try a lower lr")

        # TRY NOT TO MODIFY: log, evaluate and save when due; on Ctrl-C save and exit
        extra = algorithm.extra_charts(n_updates, args) if algorithm.extra_charts else None
        charts_now = partial(charts, agents, names, obs, losses, noise_scale, device, extra)
        session.end_step(global_step + 1, charts_now, training_state, evaluate)
    session.finish(training_state, evaluate)
    env.close()
