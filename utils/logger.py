"""Logging shared by the scripts: the TensorBoard writer (and W&B), training charts, progress lines, reading back."""

import dataclasses
import os
import sys
import time

import numpy as np
from torch.utils.tensorboard import SummaryWriter


def make_writer(run_name: str, args, runs_dir="runs", purge_step: int | None = None, leave_out=()) -> SummaryWriter:
    """The run's SummaryWriter, with the hyperparameter table (every flag but `leave_out`) and W&B on --track. A resume
    passes purge_step: events at or after it, logged after the checkpoint, are dropped so the curves continue."""
    config = dataclasses.asdict(args) if dataclasses.is_dataclass(args) else dict(vars(args))
    config = {key: value for key, value in config.items() if key not in leave_out}
    if config.get("track"):
        try:
            import wandb
        except ImportError:
            raise SystemExit("error: --track needs Weights & Biases: pip install wandb") from None
        project, entity = config.get("wandb_project_name"), config.get("wandb_entity")
        wandb.init(project=project, entity=entity, sync_tensorboard=True, config=config, name=run_name, save_code=True)
    log_dir = os.path.join(runs_dir, run_name)
    # Event files are read in name order, which is opening time only to the second: the pid and writer count that
    # follow sort as text (…9 after …10). A resumed writer therefore opens in a later second than the files before it.
    resumed = purge_step is not None and os.path.isdir(log_dir)
    opened = [int(name.split(".")[3]) for name in os.listdir(log_dir) if name.startswith("events.")] if resumed else []
    while opened and int(time.time()) <= max(opened):
        time.sleep(0.05)
    writer = SummaryWriter(log_dir, purge_step=purge_step)
    table = "\n".join(f"|{key}|{value}|" for key, value in config.items())
    writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table}")
    return writer


class TrainingLog:
    """CleanRL's charts: `charts/episodic_return` (mean over agents), `charts/episodic_return/<agent>` and
    `charts/episodic_length` of the episodes ended since the last entry, the script's scalars, `charts/SPS`, and a
    progress line (in place on a terminal, 20 at most when redirected). `state_dict()` keeps unlogged episodes."""

    def __init__(self, writer, names: list[str], total_steps: int, start_step: int = 0, state: dict | None = None):
        self.writer, self.names, self.start_step, self.start_time = writer, names, start_step, time.time()
        self.total_steps, self.tty, self.next_print = total_steps, sys.stdout.isatty(), 0
        self.episode_return, self.episode_length = np.zeros(len(names)), 0
        self.ended = [(np.array(r), n) for r, n in state["ended"]] if state else []
        self.last_return = state["last_return"] if state else float("nan")

    def add_step(self, rewards: list[float]):
        self.episode_return += rewards
        self.episode_length += 1

    def end_episode(self):
        self.ended.append((self.episode_return.copy(), self.episode_length))
        self.episode_return[:], self.episode_length = 0.0, 0

    def write(self, step: int, scalars: dict):
        if self.ended:
            returns = np.mean([r for r, _ in self.ended], axis=0)
            self.last_return = float(returns.mean())
            self.writer.add_scalar("charts/episodic_return", returns.mean(), step)
            for name, value in zip(self.names, returns):
                self.writer.add_scalar(f"charts/episodic_return/{name}", value, step)
            self.writer.add_scalar("charts/episodic_length", np.mean([n for _, n in self.ended]), step)
            self.ended = []
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)
        sps = (step - self.start_step) / (time.time() - self.start_time)
        self.writer.add_scalar("charts/SPS", int(sps), step)
        self.print_progress(step, sps)

    def write_eval(self, step: int, returns: np.ndarray):
        """Logged at the policy's training step, so that a resumed run's evaluations extend one curve."""
        self.writer.add_scalar("eval/episodic_return", returns.mean(), step)
        for name, value in zip(self.names, returns.mean(0)):
            self.writer.add_scalar(f"eval/episodic_return/{name}", value, step)

    def state_dict(self) -> dict:
        return dict(ended=[(r.tolist(), n) for r, n in self.ended], last_return=self.last_return)

    def print_progress(self, step: int, sps: float):
        total, left = self.total_steps, (self.total_steps - step) / max(sps, 1e-9)
        line = f"step {step:,}/{total:,} ({100 * step / total:.0f}%) | {sps:,.0f} SPS"
        line += f" | return {self.last_return:.3f} | {left / 60:.1f} min left"
        if self.tty:
            print(f"\r{line}", end="\n" if step >= total else "", flush=True)
        elif step >= self.next_print or step >= total:
            print(line, flush=True)
            self.next_print = step + max(total // 20, 1)


def read_scalars(run_dir: str) -> dict[str, list[tuple[int, float]]]:
    """All scalars of a run folder as {tag: [(step, value), ...]}, in logging order, as TensorBoard shows them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not os.path.isdir(run_dir):
        return {}
    # One accumulator over the folder reads its event files in name (= opening time) order and applies a resumed
    # writer's purge_step, dropping what a crashed session logged after its checkpoint (each file alone would keep it).
    accumulator = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    accumulator.Reload()
    tags = accumulator.Tags()["scalars"]
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)] for tag in tags}
