"""Pieces shared by the benchmark scripts: resumable runs of a script in its own folder, reading a run back, the
differential game's learning path and its landscape picture, and the software versions for the record."""

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from utils.envs import ACTION_SCALE, differential_reward  # noqa: E402

SUCCESS_RADIUS = 1.0  # env units from the differential game's global optimum (5, 5)


# ---------------------------------------------------------------- runs
def load_result(folder: Path, command: str | None = None) -> dict | None:
    """The finished run's result.json, if there is one (and, given a command, if its 'command' is that one)."""
    path = folder / "result.json"
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    return result if command is None or result.get("command") == command else None


def prepare(folder: Path):
    """Make the run folder and remove what an earlier, unfinished run left (TensorBoard logs, checkpoint)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(folder / "runs", ignore_errors=True)
    (folder / "result.json").unlink(missing_ok=True)


def execute(command: list[str], cwd: str) -> dict:
    """Run one training command in `cwd` and report how it went, with its wall time and its own CPU time (user +
    system; unlike wall time, it does not grow when other processes share the cores). Standard library only, so
    that a cluster worker (e.g. a Ray task) can run it without this repository's imports."""
    start = time.time()
    env = dict(os.environ, PYTHONHASHSEED="0")
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return dict(
        returncode=process.returncode,
        output=output,
        wall_time=time.time() - start,
        cpu_time=usage.ru_utime + usage.ru_stime,
    )


def finish(folder: Path, command: list[str], outcome: dict) -> Path:
    """Save the run's console output; return its TensorBoard folder, or raise RuntimeError with the error's end."""
    (folder / "stdout.txt").write_text(outcome["output"])
    if outcome["returncode"] != 0:
        raise RuntimeError(f"{' '.join(command[1:])} failed in {folder}:\n{outcome['output'][-2000:]}")
    return next(path for path in (folder / "runs").iterdir() if path.is_dir())


def save_result(folder: Path, result: dict):
    """Write result.json last and atomically: its presence marks the run as finished."""
    tmp = folder / "result.json.tmp"
    tmp.write_text(json.dumps(result))
    os.replace(tmp, folder / "result.json")


def display_command(command: list[str]) -> str:
    """`python <script relative to the repository> <flags>`, for tables."""
    script = Path(command[1])
    script = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
    return " ".join(["python", str(script), *command[2:]])


def versions() -> str:
    from importlib.metadata import version

    import torch

    packages = ", ".join(f"{name} {version(name)}" for name in ("pettingzoo", "mpe2", "gymnasium", "numpy"))
    return (
        f"torch {torch.__version__}, {packages}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()} with {os.cpu_count()} cores"
    )


# ---------------------------------------------------------------- the differential game
def learning_path(scalars: dict) -> list[tuple]:
    """The noise-free joint action over training in env units, [(step, a¹, a², ...), ...], from charts/action/*."""
    n_agents = sum(tag.startswith("charts/action/agent_") for tag in scalars)
    series = [scalars[f"charts/action/agent_{i}"] for i in range(n_agents)]
    return [(points[0][0], *(value * ACTION_SCALE for _, value in points)) for points in zip(*series)]


def split_formula(scenario: str) -> tuple[str, int]:
    """'paper' -> ('paper', 2); 'code_n3' -> ('code', 3): the --scenario of the differential game."""
    formula, _, n_agents = scenario.partition("_n")
    return formula, int(n_agents or 2)


def differential_outcome(path: list, scenario: str) -> dict:
    """Where the learning path ends, its reward, and whether that is the global optimum (within SUCCESS_RADIUS)."""
    a1, a2, *others = path[-1][1:]
    return dict(
        final_action=[a1, a2, *others],
        reward=float(differential_reward(a1, a2, split_formula(scenario)[0], others)),
        success=bool(np.linalg.norm(np.array(path[-1][1:]) - 5) <= SUCCESS_RADIUS),
    )


def draw_paths(results: dict, formula: str, path: Path, title: str):
    """The reward landscape with every seed's learning path, one panel per label: {label: [result, ...]} where each
    result has 'path' and 'success'. White paths end at the global optimum, red ones elsewhere."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(-10, 10, 401)
    formula, n_agents = split_formula(formula)  # with more agents: the slice where the others play 5
    landscape = differential_reward(grid[None, :], grid[:, None], formula, [5.0] * (n_agents - 2))
    n_cols = min(len(results), 4)
    n_rows = -(-len(results) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(5.2 * n_cols, 5 * n_rows), squeeze=False)
    for ax in axes.flat[len(results) :]:
        ax.axis("off")
    for ax, (label, rows) in zip(axes.flat, results.items()):
        contour = ax.contourf(grid, grid, landscape, levels=np.linspace(-60, 10, 29), cmap="viridis", extend="min")
        for r in sorted(rows, key=lambda r: r["seed"]):
            trajectory = np.array(r["path"])
            color = "white" if r["success"] else "tomato"
            ax.plot(trajectory[:, 1], trajectory[:, 2], color=color, lw=1, alpha=0.8)
            ax.plot(*trajectory[-1, 1:], "o", color=color, ms=4)
        ax.plot([5, -5], [5, -5], "k*", ms=10)
        wins = sum(r["success"] for r in rows)
        ax.set(title=f"{label}: {wins}/{len(rows)} at (5, 5)", xlabel="agent 0 action", ylabel="agent 1 action")
        ax.set_aspect("equal")
    fig.colorbar(contour, ax=axes.ravel().tolist(), label="reward", shrink=0.8)
    fig.suptitle(title)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
