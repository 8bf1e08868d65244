"""Logging helpers shared by the scripts: run names, TensorBoard writer, optional W&B, reading logs back."""

import dataclasses
import glob
import os
import time

from torch.utils.tensorboard import SummaryWriter


def make_run_name(env_label: str, exp_name: str, seed: int) -> str:
    """CleanRL's run name: '<env>__<exp_name>__<seed>__<unix time>'."""
    return f"{env_label}__{exp_name}__{seed}__{int(time.time())}"


def make_writer(run_name: str, args, runs_dir: str = "runs") -> SummaryWriter:
    """A SummaryWriter at runs/<run_name> with the hyperparameter table, and W&B mirroring on --track."""
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
    writer = SummaryWriter(os.path.join(runs_dir, run_name))
    table = "\n".join(f"|{key}|{value}|" for key, value in config.items())
    writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table}")
    return writer


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
