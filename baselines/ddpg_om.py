# DDPG-OM: DDPG whose critic is fed a supervised opponent model's prediction of the others' actions, a PR2 baseline.
# Continuous actions; the networks, buffer, exploration and logging of pr2_continuous.py. Differences: README.md.
# One self-contained file: networks, replay buffer, losses, training loop.
import copy
import os
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # utils/ sits at the repository root
from utils.envs import EnvError, env_label, make_env  # noqa: E402
from utils.logger import Progress, load_checkpoint, make_run_name, make_writer, save_checkpoint  # noqa: E402


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
    """if toggled, save the full training state to runs/<run>/<exp_name>.pt at the end (and on Ctrl-C); its
    networks also serve cross-play (load_policies)"""
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
    """OU noise scale, piecewise constant 'step:scale,...', in [-1, 1] action units
    (default: '0:1.0,1600:0.01,2666:0.001' differential, the original code's; '0:0.3,100000:0.1' otherwise)"""
    ou_theta: float = 0.15
    """OU mean reversion θ"""
    ou_sigma: float = 0.3
    """OU diffusion σ"""
    log_every: int = 100
    """environment steps between log entries"""


ENV_DEFAULTS = {
    "differential": dict(
        total_timesteps=16_000,
        learning_starts=1_000,
        train_frequency=1,
        batch_size=64,
        gamma=0.99,
        learning_rate=3e-4,
        noise_schedule="0:1.0,1600:0.01,2666:0.001",
    ),
    "other": dict(
        total_timesteps=100_000,
        learning_starts=5_000,
        train_frequency=4,
        batch_size=128,
        gamma=0.95,
        learning_rate=1e-3,
        noise_schedule="0:0.3,50000:0.1",
    ),
}


def resolve_args(args: Args) -> Args:
    """Fill per-env defaults and check flags; a problem raises ValueError with a one-line fix."""
    for key, value in ENV_DEFAULTS["differential" if args.env == "differential" else "other"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    positive = ["total_timesteps", "train_frequency", "batch_size", "buffer_size", "hidden_size", "log_every"]
    for name in positive + ["target_update_interval", "torch_threads"]:
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


# ALGO LOGIC: networks. Every network is the original PR2 code's MLP: 2 hidden ReLU layers, Xavier init, zero biases.
class MLP(nn.Module):
    """f(x_1, ..., x_n) with 2 hidden ReLU layers; with squash=True the output is tanh-squashed into [-1, 1].
    The first layer sums one linear map per input, which equals a linear map of their concatenation."""

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

    def state_dict(self) -> dict:
        n = self.size
        arrays = dict(obs=self.obs, next_obs=self.next_obs, actions=self.actions)
        state = {key: [array[:n].copy() for array in value] for key, value in arrays.items()}
        return dict(state, rewards=self.rewards[:n].copy(), dones=self.dones[:n].copy(), pos=self.pos, size=n)

    def load_state_dict(self, state: dict):
        n = self.size = state["size"]
        self.pos = state["pos"]
        for key in ("obs", "next_obs", "actions"):
            for array, saved in zip(getattr(self, key), state[key], strict=True):
                array[:n] = saved
        self.rewards[:n], self.dones[:n] = state["rewards"], state["dones"]

    def sample(self, batch_size: int) -> dict:
        return self.rows(np.random.randint(0, self.size, size=batch_size))

    def recent(self, n: int) -> dict:
        """The n transitions added last: the opponent model's training window."""
        return self.rows((self.pos - 1 - np.arange(min(n, self.size))) % self.capacity)

    def rows(self, idx) -> dict:
        def tensor(array):
            return torch.as_tensor(array[idx], device=self.device)

        return dict(
            obs=[tensor(o) for o in self.obs],
            actions=[tensor(a) for a in self.actions],
            rewards=tensor(self.rewards),
            next_obs=[tensor(o) for o in self.next_obs],
            dones=tensor(self.dones),
        )


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
    with torch.no_grad():
        predicted = agent.opponent_model(obs)
    objective = agent.critic(obs, action_leaf, predicted).mean()
    grad_action = torch.autograd.grad(objective, action_leaf)[0]
    return -(grad_action * action).sum(), -objective.detach()


@torch.no_grad()
def polyak_update(agent: DDPGOMAgent, tau: float):
    """target ← (1 - τ)·target + τ·source, for the actor and the critic."""
    for source, target in ((agent.actor, agent.target_actor), (agent.critic, agent.target_critic)):
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


def update(agents, optimizer, batch: dict, recent: dict, args: Args) -> dict:
    """One simultaneous gradient step of every agent's actor, critic and opponent model; returns the losses by name."""
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
    """{agent name: f(observation) -> action in [-1, 1]}: a checkpoint's noise-free actors, e.g. for cross-play."""
    checkpoint = torch.load(path, map_location=device, weights_only=False)
    agents = build_agents(checkpoint["obs_dims"], checkpoint["act_dims"], checkpoint["args"]["hidden_size"])
    agents.load_state_dict(checkpoint["agents"])
    agents.to(device)

    def policy(actor):
        @torch.no_grad()
        def act(observation):
            return actor(torch.as_tensor(observation, dtype=torch.float32, device=device)).cpu().numpy()

        return act

    return {name: policy(agent.actor) for name, agent in zip(checkpoint["agent_names"], agents)}


def episode_seed(seed: int, episode: int) -> int:
    """Episode k of a run starts from the same state as in pr2_continuous.py with the same --seed."""
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


@torch.no_grad()
def evaluate(agents, args: Args, device, video_dir: str | None = None) -> list[float]:
    """Mean-over-agents returns of --eval-episodes episodes of the noise-free policies μ(o); with video_dir, each
    episode is also saved there as a GIF."""
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
                unit = agents[i].actor(torch.as_tensor(obs[name], device=device)).cpu().numpy()
                actions[name] = to_env_action(unit, env.action_space(name))
            obs, rewards, _, _, _ = env.step(actions)
            total += [rewards[name] for name in names]
        returns.append(float(total.mean()))
        if video_dir:
            from PIL import Image

            frames.append(env.render())
            os.makedirs(video_dir, exist_ok=True)
            images = [Image.fromarray(frame).reduce(2) for frame in frames]
            images[0].save(
                f"{video_dir}/eval_episode_{episode}.gif", save_all=True, append_images=images[1:], duration=80
            )
    env.close()
    return returns


CHECKPOINT_KEYS = ["args", "agent_names", "obs_dims", "act_dims", "agents", "optimizer", "step"]
STRUCTURAL_FLAGS = ["env", "scenario", "max_cycles", "hidden_size", "buffer_size"]


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
        raise SystemExit(f"{script}: error: DDPG-OM needs at least two agents; {args.env} has {len(names)}")
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
    agents = build_agents(obs_dims, act_dims, args.hidden_size).to(device)
    params = [p for p in agents.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=args.learning_rate, fused=True)  # fused: one kernel for all parameters
    buffer = ReplayBuffer(args.buffer_size, obs_dims, act_dims, device)
    noises = [OUNoise(d, args.ou_theta, args.ou_sigma) for d in act_dims]
    noise_schedule = parse_schedule(args.noise_schedule)
    start_step, n_updates, episode, losses, pending = 0, 0, 0, None, dict(returns=[], lengths=[], last=float("nan"))
    if checkpoint is not None:  # continue a saved run where it stopped (a half-played episode is dropped)
        try:
            agents.load_state_dict(checkpoint["agents"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            if checkpoint["buffer"] is not None:
                buffer.load_state_dict(checkpoint["buffer"])
            for noise, state in zip(noises, checkpoint["noise"], strict=True):
                noise.state[:] = state
            random.setstate(checkpoint["rng"]["python"])
            np.random.set_state(checkpoint["rng"]["numpy"])
            torch.set_rng_state(checkpoint["rng"]["torch"])
            start_step, n_updates, (episode, pending) = (
                checkpoint["step"],
                checkpoint["n_updates"],
                checkpoint["episode"],
            )
            losses = {i: {k: torch.tensor(v) for k, v in ls.items()} for i, ls in checkpoint["losses"].items()} or None
            run_name = checkpoint["run_name"]
        except (RuntimeError, ValueError, KeyError, TypeError) as error:
            message = " ".join(str(error).split())  # one line
            raise SystemExit(
                f"{script}: error: --resume: the checkpoint does not fit this run (networks, buffer, noise): {message}"
            ) from None
    else:
        run_name = make_run_name(env_label(args.env, args.scenario), args.exp_name, args.seed)
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
    progress, start_time = Progress(args.total_timesteps, start_step), time.time()
    obs, _ = env.reset(seed=episode_seed(args.seed, episode))
    episode_return, episode_length = np.zeros(len(names)), 0
    for global_step in range(start_step, args.total_timesteps):
        # ALGO LOGIC: act with μ_θ(o) plus scheduled OU noise, clipped to [-1, 1]
        noise_scale = schedule_value(noise_schedule, global_step)
        with torch.no_grad():
            unit_actions = []
            for i, name in enumerate(names):
                action = agents[i].actor(torch.as_tensor(obs[name], device=device)).cpu().numpy()
                unit_actions.append(np.clip(action + noise_scale * noises[i].sample(), -1.0, 1.0))
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
            batch, recent = buffer.sample(args.batch_size), buffer.recent(args.batch_size)
            losses = update(agents, optimizer, batch, recent, args)
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
                        action = agents[i].actor(torch.as_tensor(obs[name], device=device)).item()
                        writer.add_scalar(f"charts/action/{name}", action, step)
            if losses is not None:
                for i, agent_losses in losses.items():
                    for key, value in agent_losses.items():
                        writer.add_scalar(f"losses/{key}/{names[i]}", value.item(), step)
            writer.add_scalar("charts/SPS", int((step - start_step) / (time.time() - start_time)), step)
            writer.add_scalar("charts/noise_scale", noise_scale, step)
            progress.update(step, pending["last"])

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
