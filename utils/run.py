"""Run bookkeeping shared by the scripts: flags, checkpoints, resuming, random-number state, Ctrl-C, evaluation, GIFs.

Nothing here knows an algorithm. A script builds its own checkpoint dict (networks, optimiser, buffer, counters) and
hands it to `save_checkpoint`; `parse_args` and `check_resume` give it back checked; `rng_state` and
`restore_rng_state` make a resumed run draw the numbers the uninterrupted one would have drawn.
"""

import dataclasses
import math
import os
import pickle
import random
import signal

import numpy as np
import torch
import tyro


def parse_args(args_class, script: str, checkpoint_keys: list[str]):
    """Parse the command line into `args_class`; with --resume, the checkpoint's flags are the defaults and flags
    given on the command line override them. Returns (args, checkpoint or None); a bad flag or file exits with one
    line. Checks that every float flag is finite (a NaN passes every comparison)."""
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


def save_checkpoint(state: dict, path: str):
    """torch.save to a temporary file in the same folder, then rename: an interrupted save never leaves half a file."""
    tmp = f"{path}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str, required_keys, script: str) -> dict:
    """Load a checkpoint or raise ValueError with a one-line reason (missing, truncated, foreign, not from this
    script). weights_only=True: a checkpoint holds tensors and plain Python values only, so loading one never runs
    code from it."""
    if not os.path.isfile(path):
        raise ValueError(f"--resume {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights_only" not in str(error):
            raise ValueError(f"--resume {path}: unreadable, truncated or corrupt (UnpicklingError)") from None
        raise ValueError(f"--resume {path}: holds objects other than tensors and plain values; not loaded") from None
    except Exception as error:
        raise ValueError(f"--resume {path}: unreadable, truncated or corrupt ({type(error).__name__})") from None
    missing = [key for key in required_keys if not isinstance(state, dict) or key not in state]
    if missing:
        raise ValueError(f"--resume {path}: not a {script} checkpoint (missing {', '.join(missing)})")
    return state


def seed_everything(args, env) -> torch.device:
    """CleanRL's seeding (Python, NumPy, torch, cuDNN determinism) plus every agent's action space; torch's CPU
    threads; the device (CUDA only with --cuda and a GPU)."""
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_num_threads(args.torch_threads)
    for i, name in enumerate(env.possible_agents):
        env.action_space(name).seed(args.seed + i)
    return torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")


def check_run(env, args, checkpoint: dict | None, structural_flags: list[str], layout: dict):
    """Raise ValueError with a one-line fix if the run cannot start: --capture-video on an env that cannot render,
    or, when resuming, a structural flag that differs, other agents or sizes (layout: {checkpoint key: this env's
    value}), or no steps left. With env None, only the flags and steps (e.g. before the saved scenario meets a new
    --env)."""
    if env is not None and args.capture_video and "rgb_array" not in env.metadata.get("render_modes", []):
        raise ValueError(f"--capture-video needs an env with rgb_array rendering; {args.env} has none")
    if checkpoint is None:
        return
    for flag in structural_flags:
        if getattr(args, flag) != checkpoint["args"][flag]:
            raise ValueError(
                f"--resume: the checkpoint was trained with --{flag.replace('_', '-')} {checkpoint['args'][flag]}, "
                f"not {getattr(args, flag)}; drop that flag to continue it"
            )
    saved, now = tuple(checkpoint[key] for key in layout), tuple(layout.values())
    if saved != now:
        raise ValueError(
            f"--resume: the checkpoint's agents, observation and action sizes {saved} do not match this env's {now}"
        )
    if checkpoint["step"] >= args.total_timesteps:
        raise ValueError(f"--resume: the checkpoint is at step {checkpoint['step']}; raise --total-timesteps")


def load_states(pairs, optimizers, learning_rate: float, script: str):
    """Load saved states into (module or replay buffer, state) pairs and (optimiser, state) pairs, then set every
    optimiser's learning rate to the run's --learning-rate (a saved optimiser would bring its own back). A state
    that does not fit exits with one line."""
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


class StopOnCtrlC:
    """Ctrl-C sets `requested` instead of raising, so the loop finishes its step, saves and exits; `release()` puts
    the default back (e.g. for the evaluation, which Ctrl-C then stops at once)."""

    def __init__(self):
        self.requested = False
        signal.signal(signal.SIGINT, self._request)

    def _request(self, *_):
        self.requested = True

    def release(self):
        signal.signal(signal.SIGINT, signal.default_int_handler)


def episode_seed(seed: int, episode: int) -> int:
    """Episode k of a run always starts from the same state, so a resumed run replays exactly."""
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


def save_gif(frames: list, path: str):
    """rgb_array frames -> an animated GIF at half resolution."""
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    images = [Image.fromarray(frame).reduce(2) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=80)


@torch.no_grad()
def evaluate(env, act, episodes: int, seed: int, video_dir: str | None = None) -> np.ndarray:
    """Returns [episode, agent] of `episodes` episodes of `act(observations) -> {agent: env action}`; episode k
    starts from `episode_seed(seed, k)`. With video_dir (an env made with render_mode='rgb_array'), each episode is
    also saved there as a GIF."""
    names, returns = env.possible_agents, np.zeros((episodes, len(env.possible_agents)))
    for episode in range(episodes):
        obs, _ = env.reset(seed=episode_seed(seed, episode))
        frames = []
        while env.agents:
            if video_dir:
                frames.append(env.render())
            obs, rewards, _, _, _ = env.step(act(obs))
            returns[episode] += [rewards[name] for name in names]
        if video_dir:
            save_gif([*frames, env.render()], f"{video_dir}/eval_episode_{episode}.gif")
    env.close()
    return returns


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


def exit_interrupted(step: int, saved_to: str | None, writer):
    """After Ctrl-C: say where the run stopped and how to continue it, close the logs, exit with 130."""
    print(
        f"\ninterrupted at step {step}" + (f"; saved {saved_to}; continue with --resume {saved_to}" if saved_to else "")
    )
    writer.close()
    raise SystemExit(130)


def _is_array_field(value) -> bool:
    return isinstance(value, np.ndarray) or (isinstance(value, list) and all(isinstance(v, np.ndarray) for v in value))


def buffer_state(buffer) -> dict:
    """A replay buffer's filled rows as tensors: every attribute that holds an array or a list of arrays (one row per
    transition), with its `size` and write position `pos`."""
    rows = lambda array: torch.from_numpy(array[: buffer.size].copy())  # noqa: E731
    arrays = {key: value for key, value in vars(buffer).items() if _is_array_field(value) and len(value)}
    state = {key: [rows(a) for a in value] if isinstance(value, list) else rows(value) for key, value in arrays.items()}
    return dict(state, size=buffer.size, pos=buffer.pos)


def load_buffer_state(buffer, state: dict | None):
    """Refill a buffer from `buffer_state`; None (saved with --no-save-buffer) leaves it empty."""
    if state is None:
        return
    buffer.size, buffer.pos = state["size"], state["pos"]
    for key, saved in state.items():
        if key not in ("size", "pos"):
            arrays, rows = (
                (getattr(buffer, key), saved) if isinstance(saved, list) else ([getattr(buffer, key)], [saved])
            )
            for array, row in zip(arrays, rows, strict=True):
                array[: buffer.size] = row.numpy()
