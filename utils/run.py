"""Run bookkeeping shared by the scripts, none of it algorithm: the run flags, checkpoints (a script builds its own
dict; `Session` saves it atomically, `parse_args` and `check_run` give it back checked), random-number state, and the
logs, evaluations and Ctrl-C around the training loop."""

import dataclasses
import math
import os
import pickle
import random
import re
import signal
import time

import numpy as np
import torch
import tyro

from utils.logger import TrainingLog, make_writer

EVAL_SEED = 2**32 - 1  # evaluation episode k starts from episode_seed(EVAL_SEED, k) in every script and run


@dataclasses.dataclass
class RunArgs:
    """The flags every script shares: seeding, devices, tracking, checkpoints, evaluation."""

    exp_name: str = "run"
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
    """episodes of the noise-free (greedy) policy per evaluation, on env seeds no training episode starts from"""
    eval_every: int = 0
    """also evaluate every N environment steps during training (0: only after training)"""
    capture_video: bool = False
    """record the last evaluation's episodes as GIFs in runs/<run>/videos/ (envs with rgb_array rendering)"""


def parse_args(args_class, script: str, checkpoint_keys: list[str]):
    """(args, checkpoint or None) from the command line; with --resume the checkpoint's flags are the defaults. A bad
    flag, a bad file or a non-finite float flag (a NaN passes every comparison) exits with one line."""
    args, checkpoint = tyro.cli(args_class), None
    if args.resume:
        try:
            checkpoint = load_checkpoint(args.resume, checkpoint_keys, script)
            args = tyro.cli(args_class, default=args_class(**{**checkpoint["args"], "resume": args.resume}))
        except (ValueError, TypeError) as error:
            raise SystemExit(f"{script}: error: {error}") from None
    for field in dataclasses.fields(args):
        value = getattr(args, field.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise SystemExit(f"{script}: error: --{field.name.replace('_', '-')} must be a finite number, got {value}")
    return args, checkpoint


def load_checkpoint(path: str, required_keys, script: str) -> dict:
    """Load a checkpoint or raise ValueError with a one-line reason (missing, truncated, foreign, not from this
    script). weights_only=True: a checkpoint holds tensors and plain values only, so loading never runs its code."""
    if not os.path.isfile(path):
        raise ValueError(f"--resume {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        # weights_only names an object it refuses ("GLOBAL builtins.open"); random bytes fail with other errors
        if isinstance(error, pickle.UnpicklingError) and re.search(r"GLOBAL \S+|allowlisted", str(error)):
            problem = "holds objects other than tensors and plain values; not loaded"
        else:
            problem = f"unreadable, truncated or corrupt ({type(error).__name__})"
        raise ValueError(f"--resume {path}: {problem}") from None
    missing = [key for key in required_keys if not isinstance(state, dict) or key not in state]
    if missing:
        raise ValueError(f"--resume {path}: not a {script} checkpoint (missing {', '.join(missing)})")
    return state


def seed_everything(args, env) -> torch.device:
    """CleanRL's seeding, plus every agent's action space and torch's CPU threads; returns the device to train on."""
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_num_threads(args.torch_threads)
    for i, name in enumerate(env.possible_agents):
        env.action_space(name).seed(args.seed + i)
    return torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")


def check_run(env, args, checkpoint: dict | None, structural_flags: list[str], layout: dict):
    """Raise ValueError with a one-line fix if the run cannot start: a negative count, --capture-video without an
    evaluation or on an env that cannot render (not checked with env None), or, when resuming, a changed structural
    flag, other agents or sizes (layout: {checkpoint key: this env's value}) or no steps left."""
    if min(args.eval_episodes, args.eval_every, args.save_every) < 0 or args.torch_threads <= 0:
        raise ValueError("--eval-episodes, --eval-every and --save-every must be >= 0, --torch-threads positive")
    if args.capture_video and not args.eval_episodes:
        raise ValueError("--capture-video records the evaluation: set --eval-episodes > 0")
    if env is not None and args.capture_video and "rgb_array" not in env.metadata.get("render_modes", []):
        raise ValueError(f"--capture-video needs an env with rgb_array rendering; {args.env} has none")
    if checkpoint is None:
        return
    for flag in (flag for flag in structural_flags if getattr(args, flag) != checkpoint["args"][flag]):
        saved = f"--{flag.replace('_', '-')} {checkpoint['args'][flag]}, not {getattr(args, flag)}"
        raise ValueError(f"--resume: the checkpoint was trained with {saved}; drop that flag to continue it")
    if (saved := tuple(checkpoint[key] for key in layout)) != (now := tuple(layout.values())):
        raise ValueError(f"--resume: the checkpoint's agents, observation and action sizes {saved} do not match this "
                         f"env's {now}")  # fmt: skip
    if checkpoint["step"] >= args.total_timesteps:
        raise ValueError(f"--resume: the checkpoint is at step {checkpoint['step']}; raise --total-timesteps")


def load_states(pairs, optimizers, learning_rate: float, script: str):
    """Load (module or replay buffer, state) and (optimiser, state) pairs, then set every optimiser's learning rate
    to --learning-rate (a saved optimiser brings its own back). A state that does not fit exits with one line."""
    try:
        for target, state in [*pairs, *optimizers]:
            target.load_state_dict(state) if hasattr(target, "load_state_dict") else load_buffer_state(target, state)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as error:
        message = " ".join(str(error).split())  # one line
        raise SystemExit(f"{script}: error: --resume: the checkpoint does not fit this run: {message}") from None
    for optimizer, _ in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate


def rng_state() -> dict:
    """The global random generators (Python, NumPy's legacy one, torch's CPU one) as tensors and plain lists."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return dict(
        python=[version, list(internal), gauss],
        numpy=[kind, keys.tolist(), pos, has_gauss, cached],
        torch=torch.get_rng_state(),
    )


def restore_rng_state(state: dict):
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])


def episode_seed(seed: int, episode: int) -> int:
    """The env seed of episode k of a run with this seed: a resumed run replays its episodes exactly."""
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


def save_gif(frames: list, path: str):
    """rgb_array frames -> an animated GIF at half resolution."""
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    images = [Image.fromarray(frame).reduce(2) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=80)


@torch.no_grad()
def evaluate(make_eval_env, act, episodes: int, video_dir: str | None = None) -> np.ndarray:
    """[episode, agent] returns of `act(env, observations) -> {agent: env action}` on a fresh env
    `make_eval_env(render_mode)`, episode k from `episode_seed(EVAL_SEED, k)`; with video_dir, GIFs of them there."""
    env = make_eval_env("rgb_array" if video_dir else None)
    names, returns = env.possible_agents, np.zeros((episodes, len(env.possible_agents)))
    for episode in range(episodes):
        obs, _ = env.reset(seed=episode_seed(EVAL_SEED, episode))
        frames = []
        while env.agents:
            if video_dir:
                frames.append(env.render())
            obs, rewards, _, _, _ = env.step(act(env, obs))
            returns[episode] += [rewards[name] for name in names]
        if video_dir:
            save_gif([*frames, env.render()], f"{video_dir}/eval_episode_{episode}.gif")
    env.close()
    return returns


class Session:
    """Around a script's training loop: the run folder (kept by --resume), its writer (without the `unused_flags` this
    run never reads) and TrainingLog; logs every --log-every steps, evaluations every --eval-every and at the end,
    checkpoints every --save-every and at the end; on Ctrl-C the loop finishes its step, saves and exits (130)."""

    def __init__(self, args, checkpoint: dict | None, names: list[str], env_label: str, unused_flags=()):
        self.args, step = args, checkpoint["step"] if checkpoint else 0
        new_run_name = f"{env_label}__{args.exp_name}__{args.seed}__{int(time.time())}"  # CleanRL's format
        self.run_name = checkpoint["run_name"] if checkpoint else new_run_name
        purge_step = step + 1 if checkpoint else None
        self.writer = make_writer(self.run_name, args, purge_step=purge_step, leave_out=unused_flags)
        self.log = TrainingLog(self.writer, names, args.total_timesteps, step, checkpoint and checkpoint["log"])
        self.model_path, self.stop_requested = f"runs/{self.run_name}/{args.exp_name}.pt", False
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "stop_requested", True))

    def save(self, state: dict):
        """Write to a temporary file, then rename: an interrupted save never leaves half a checkpoint."""
        torch.save(dict(state, log=self.log.state_dict(), run_name=self.run_name), f"{self.model_path}.tmp")
        os.replace(f"{self.model_path}.tmp", self.model_path)

    def end_step(self, step: int, charts, training_state, evaluate):
        """After environment step `step` (counted from 1): `charts()` -> the log entry's scalars, `training_state(step)`
        -> the checkpoint, `evaluate()` -> [episode, agent] returns; each called only when due."""
        args = self.args
        if step % args.log_every == 0:
            self.log.write(step, charts())
        if args.eval_every and step % args.eval_every == 0 and step < args.total_timesteps:
            self.log.write_eval(step, evaluate())
        if args.save_model and (self.stop_requested or args.save_every and step % args.save_every == 0):
            self.save(training_state(step))
        if self.stop_requested:
            saved = f"; saved {self.model_path}; continue with --resume {self.model_path}" if args.save_model else ""
            print(f"\ninterrupted at step {step}{saved}")
            self.writer.close()
            raise SystemExit(130)

    def finish(self, training_state, evaluate):
        """After training: save, then evaluate (Ctrl-C now stops at once), recording GIFs with --capture-video."""
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if self.args.save_model:
            self.save(training_state(self.args.total_timesteps))
            print(f"model saved to {self.model_path}")
        if self.args.eval_episodes:
            video_dir = f"runs/{self.run_name}/videos" if self.args.capture_video else None
            self.log.write_eval(self.args.total_timesteps, evaluate(video_dir=video_dir))
        self.writer.close()


def parse_schedule(text: str) -> list[tuple[int, float]]:
    """A piecewise-constant schedule flag: '0:1.0,1600:0.01' -> [(0, 1.0), (1600, 0.01)], sorted by step."""
    try:
        points = sorted((int(step), float(value)) for step, value in (item.split(":") for item in text.split(",")))
    except ValueError:
        raise ValueError(f"--noise-schedule {text!r} is not 'step:scale,...', e.g. '0:1.0,1600:0.01'") from None
    if points[0][0] != 0:
        raise ValueError(f"--noise-schedule {text!r} must start at step 0")
    return points


def schedule_value(points: list[tuple[int, float]], step: int) -> float:
    return [value for start, value in points if start <= step][-1]


def buffer_state(buffer) -> dict:
    """A replay buffer's filled rows (of every array attribute or list of arrays) as tensors, with `size` and `pos`."""
    rows = lambda array: torch.from_numpy(array[: buffer.size].copy())  # noqa: E731
    state = {}
    for key, value in vars(buffer).items():
        if isinstance(value, np.ndarray):
            state[key] = rows(value)
        elif isinstance(value, list) and value and all(isinstance(array, np.ndarray) for array in value):
            state[key] = [rows(array) for array in value]
    return dict(state, size=buffer.size, pos=buffer.pos)


def load_buffer_state(buffer, state: dict | None):
    """Refill a buffer from `buffer_state`; None (saved with --no-save-buffer) leaves it empty."""
    if state is not None:
        buffer.size, buffer.pos = state["size"], state["pos"]
        for key, saved in state.items():
            if isinstance(saved, list):
                for array, rows in zip(getattr(buffer, key), saved, strict=True):
                    array[: buffer.size] = rows.numpy()
            elif key not in ("size", "pos"):
                getattr(buffer, key)[: buffer.size] = saved.numpy()
