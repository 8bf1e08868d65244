"""Logging helpers shared by the scripts: run names, TensorBoard writer, optional W&B, progress lines,
checkpoint files, reading logs back."""

import dataclasses
import glob
import os
import sys
import time

import torch
from torch.utils.tensorboard import SummaryWriter


def make_run_name(env_label: str, exp_name: str, seed: int) -> str:
    """CleanRL's run name: '<env>__<exp_name>__<seed>__<unix time>'."""
    return f"{env_label}__{exp_name}__{seed}__{int(time.time())}"


def make_writer(run_name: str, args, runs_dir: str = "runs", purge_step: int | None = None) -> SummaryWriter:
    """A SummaryWriter at runs/<run_name> with the hyperparameter table, and W&B mirroring on --track.

    purge_step: when resuming, events at or after this step (written after the checkpoint) are discarded, so the
    resumed curve continues the saved one.
    """
    config = dataclasses.asdict(args) if dataclasses.is_dataclass(args) else dict(vars(args))
    if config.get("track"):
        try:
            import wandb
        except ImportError:
            raise SystemExit("error: --track needs Weights & Biases: pip install wandb") from None
        wandb.init(
            project=config.get("wandb_project_name"),
            entity=config.get("wandb_entity"),
            sync_tensorboard=True,
            config=config,
            name=run_name,
            save_code=True,
        )
    writer = SummaryWriter(os.path.join(runs_dir, run_name), purge_step=purge_step)
    table = "\n".join(f"|{key}|{value}|" for key, value in config.items())
    writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table}")
    return writer


class Progress:
    """One console line per log entry: rewritten in place on a terminal; at most `lines` lines when redirected."""

    def __init__(self, total_steps: int, first_step: int = 0, lines: int = 20):
        self.total, self.first, self.start = total_steps, first_step, time.time()
        self.tty, self.every, self.next_print = sys.stdout.isatty(), max(total_steps // lines, 1), 0

    def update(self, step: int, episodic_return: float):
        elapsed = time.time() - self.start
        sps = (step - self.first) / max(elapsed, 1e-9)
        left = (self.total - step) / max(sps, 1e-9)
        line = (
            f"step {step:,}/{self.total:,} ({100 * step / self.total:.0f}%) | {sps:,.0f} SPS"
            f" | return {episodic_return:.3f} | {left / 60:.1f} min left"
        )
        if self.tty:
            print(f"\r{line}", end="\n" if step >= self.total else "", flush=True)
        elif step >= self.next_print or step >= self.total:
            print(line, flush=True)
            self.next_print = step + self.every


def save_checkpoint(state: dict, path: str):
    """torch.save to a temporary file in the same folder, then rename: an interrupted save never leaves half a file."""
    tmp = f"{path}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str, required_keys, script: str) -> dict:
    """Load a checkpoint or raise ValueError with a one-line reason (missing, truncated, not from this script)."""
    if not os.path.isfile(path):
        raise ValueError(f"--resume {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise ValueError(f"--resume {path}: unreadable, truncated or corrupt ({type(error).__name__})") from None
    missing = [key for key in required_keys if not isinstance(state, dict) or key not in state]
    if missing:
        raise ValueError(f"--resume {path}: not a {script} checkpoint (missing {', '.join(missing)})")
    return state


def read_scalars(run_dir: str) -> dict[str, list[tuple[int, float]]]:
    """All scalars of a run folder as {tag: [(step, value), ...]}, in logging order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents*"))):
        accumulator = EventAccumulator(path, size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((event.step, event.value) for event in accumulator.Scalars(tag))
    return scalars
