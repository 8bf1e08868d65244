"""Shared by the benchmark scripts: resumable runs of a script in its own folder, and differential-game runs with
their pictures and what their checkpoints learned (critic maxima, opponent models)."""

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
import pr2_continuous  # noqa: E402
from baselines import maddpg  # noqa: E402
from utils.envs import ACTION_SCALE, differential_reward  # noqa: E402
from utils.logger import read_scalars  # noqa: E402

SUCCESS_RADIUS = 1.0  # env units from the differential game's global optimum (5, 5)
GLOBAL, LOCAL = 5.0, -5.0  # every agent's own action at the differential game's global and local optimum, env units
GRID_POINTS = {2: 201, 3: 41, 4: 21}  # grid points per agent's action for critic_maximum (9 with more agents)


def load_result(folder: Path, command: str) -> dict | None:
    """The finished run's result.json, if there is one and its 'command' is `command`."""
    path = folder / "result.json"
    result = json.loads(path.read_text()) if path.exists() else {}
    return result if result.get("command") == command else None


def prepare(folder: Path):
    """Make the run folder and remove what an earlier, unfinished run left (logs, checkpoint, result, timing)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(folder / "runs", ignore_errors=True)
    for name in ("result.json", "timing.json"):
        (folder / name).unlink(missing_ok=True)


def execute(command: list[str], cwd: str) -> dict:
    """Run a command in `cwd`: return code, output, wall time, own CPU time and CPU (standard library only: Ray)."""
    start, env = time.time(), dict(os.environ, PYTHONHASHSEED="0")
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return dict(returncode=process.returncode, output=output, wall_time=time.time() - start,
                cpu_time=usage.ru_utime + usage.ru_stime, cpu=cpu())  # fmt: skip


def finish(folder: Path, command: list[str], outcome: dict) -> Path:
    """Save the run's console output; return its TensorBoard folder, or raise RuntimeError with the error's end."""
    (folder / "stdout.txt").write_text(outcome["output"])
    if outcome["returncode"] != 0:
        raise RuntimeError(f"{' '.join(command[1:])} failed in {folder}:\n{outcome['output'][-2000:]}")
    return next(path for path in (folder / "runs").iterdir() if path.is_dir())


def save_json(path: Path, data):
    """Write a JSON file atomically (a temporary file, then rename): a reader never sees half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def train_once(folder: Path, command: list[str]) -> tuple[Path, dict]:
    """Train `command` in `folder` unless timing.json says it finished there: (TensorBoard folder, its timing)."""
    timing_path, shown = folder / "timing.json", display_command(command)
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    if timing.pop("command", None) == shown:
        return next(path for path in (folder / "runs").iterdir() if path.is_dir()), timing
    prepare(folder)
    outcome = execute(command, str(folder))
    run_dir, timing = finish(folder, command, outcome), {key: outcome[key] for key in ("wall_time", "cpu_time")}
    save_json(timing_path, dict(timing, command=shown))
    return run_dir, timing


def display_command(command: list[str]) -> str:
    """`python <script relative to the repository> <flags>`, for tables."""
    script = Path(command[1])
    script = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
    return " ".join(["python", str(script), *command[2:]])


def cpu() -> str:
    """The CPU model and its widest vector instructions, e.g. 'AMD EPYC, avx512f' (standard library only)."""
    info = Path("/proc/cpuinfo")  # Linux; elsewhere platform's name for the processor
    lines = info.read_text().splitlines() if info.exists() else []
    fields = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in lines)}
    model = fields.get("model name") or platform.processor() or platform.machine()
    flags = fields.get("flags", "").split()
    widest = next((flag for flag in ("avx512f", "avx2", "neon", "asimd") if flag in flags), "")
    return ", ".join(filter(None, [model, widest]))


def versions() -> str:
    packages = ", ".join(f"{name} {version(name)}" for name in ("torch", "pettingzoo", "mpe2", "gymnasium", "numpy"))
    system = f"{platform.system()} {platform.machine()} with {os.cpu_count()} cores ({cpu()})"
    return f"{packages}, Python {platform.python_version()}, {system}"


def soft_schedule() -> tuple[float, float]:
    """(first α, final α) of pr2_continuous.py's soft policy at its defaults on the differential game."""
    args = pr2_continuous.resolve_args(pr2_continuous.Args(env="differential", policy="soft"))
    return args.alpha_start, args.alpha


def split_formula(scenario: str) -> tuple[str, int]:
    """'paper' -> ('paper', 2); 'code_n3' -> ('code', 3): the --scenario of the differential game."""
    formula, _, n_agents = scenario.partition("_n")
    return formula, int(n_agents or 2)


def differential_run(folder: Path, label: str, script: str, flags: list[str], scenario: str, seed: int,
                     train: bool = True) -> dict | None:  # fmt: skip
    """One differential-game run in `folder`, or its result.json if that has the same command (train=False: else None):
    learning path, final joint action, reward there, global optimum or not, evaluation return, timing, diagnose()."""
    command = [sys.executable, str(ROOT / script), "--env", "differential", "--scenario", scenario, "--seed", str(seed)]
    command += ["--save-model", "--eval-episodes", "1", "--torch-threads", "1", *flags]
    result = load_result(folder, display_command(command))
    if result is not None or not train:
        return result
    run_dir, timing = train_once(folder, command)
    scalars = read_scalars(str(run_dir))
    actions = [scalars[f"charts/action/agent_{i}"] for i in range(sum("charts/action/agent_" in t for t in scalars))]
    path = [(points[0][0], *(value * ACTION_SCALE for _, value in points)) for points in zip(*actions)]  # env units
    final = list(path[-1][1:])
    result = dict(label=label, game=scenario, seed=seed, command=display_command(command), final_action=final,
                  reward=float(differential_reward(*final[:2], split_formula(scenario)[0], final[2:])),
                  success=bool(np.linalg.norm(np.array(final) - GLOBAL) <= SUCCESS_RADIUS), **timing, path=path,
                  eval_return=scalars.get("eval/episodic_return", [(0, float("nan"))])[-1][1],  # nan: none logged
                  **diagnose(next(run_dir.glob("*.pt")), script))  # fmt: skip
    save_json(folder / "result.json", result)
    return result


def panels(count: int, size: tuple[float, float], max_cols: int = 4, **subplots):
    """(pyplot, figure, axes [rows, cols]) of `count` panels of `size` inches, at most `max_cols` a row, off-screen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_cols = min(count, max_cols)
    n_rows = -(-count // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(size[0] * n_cols, size[1] * n_rows), squeeze=False, **subplots)
    for ax in axes.flat[count:]:
        ax.axis("off")
    return plt, fig, axes


def draw_paths(results: dict, formula: str, path: Path, title: str):
    """One panel per label of {label: [result, ...]}: with two agents, every seed's learning path on the reward
    landscape; with more, every agent's noise-free action over training; the colour says if it ends at the optimum."""
    from matplotlib.lines import Line2D

    (formula, n_agents), styles, grid = split_formula(formula), ["-", "--", ":", "-."], np.linspace(-10, 10, 401)
    plt, fig, axes = panels(len(results), (5.2, 5) if n_agents == 2 else (5.2, 4), max_cols=4 if n_agents == 2 else 3)
    for ax, (label, rows) in zip(axes.flat, results.items()):
        wins = sum(r["success"] for r in rows)
        for r in sorted(rows, key=lambda r: r["seed"]):
            trajectory = np.array(r["path"])
            if n_agents == 2:
                color = "white" if r["success"] else "tomato"
                ax.plot(*trajectory[:, 1:].T, color=color, lw=1, alpha=0.8)
                ax.plot(*trajectory[-1, 1:], "o", color=color, ms=4)
            for i in range(n_agents if n_agents > 2 else 0):
                color = "tab:green" if r["success"] else "tab:red"
                ax.plot(trajectory[:, 0], trajectory[:, 1 + i], color=color, ls=styles[i % 4], lw=0.8, alpha=0.6)
        if n_agents == 2:
            landscape = differential_reward(grid[None, :], grid[:, None], formula, [])
            contour = ax.contourf(grid, grid, landscape, np.linspace(-60, 10, 29), cmap="viridis", extend="min")
            ax.plot([5, -5], [5, -5], "k*", ms=10)
            ax.set(title=f"{label}: {wins}/{len(rows)} at (5, 5)", xlabel="agent 0 action", ylabel="agent 1 action")
            ax.set_aspect("equal")
        else:
            ax.axhline(GLOBAL, color="black", lw=0.6, ls=":")
            ax.axhline(LOCAL, color="black", lw=0.6, ls=":")
            ax.set(title=f"{label}: {wins}/{len(rows)} at the global optimum", ylim=(-10.5, 10.5),
                   xlabel="environment step", ylabel="noise-free action (env units)")  # fmt: skip
    fig.suptitle(title)
    if n_agents == 2:
        fig.colorbar(contour, ax=axes.ravel().tolist(), label="reward", shrink=0.8)
    else:
        handles = [Line2D([], [], color=c, label=f"seed ends {at}") for c, at in
                   (("tab:green", "at the global optimum"), ("tab:red", "elsewhere"))]  # fmt: skip
        handles += [Line2D([], [], color="gray", ls=styles[i % 4], label=f"agent {i}") for i in range(n_agents)]
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        fig.legend(handles=handles, loc="lower center", ncol=len(handles))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def critic_of(agent: torch.nn.Module, i: int):
    """Agent i's learned value of joint actions [N, n] in [-1, 1] -> [N] at the differential game's one state: PR2's
    joint critic Q^i(s, a^i, a^-i) (a^-i: the others in agent order) or MADDPG's centralised Q^i(x, a¹, ..., aⁿ)."""
    if hasattr(agent, "joint_critic"):
        state = torch.zeros(1, agent.joint_critic.input_layers[0].in_features)
        others = lambda joint: torch.cat([joint[:, :i], joint[:, i + 1 :]], 1)  # noqa: E731
        return lambda joint: agent.joint_critic(state, joint[:, i : i + 1], others(joint)).squeeze(-1)
    state = torch.zeros(1, agent.critic.input_layers[0].in_features)
    return lambda joint: agent.critic(state, joint).squeeze(-1)


@torch.no_grad()
def critic_maximum(q, n_agents: int, chunk: int = 65_536) -> dict:
    """Where a critic q (critic_of) peaks on a grid of GRID_POINTS actions per agent spanning [-10, 10]: {argmax: that
    joint action in env units, q_max: q there, q_optimum: q at (5, ..., 5)}."""
    points = GRID_POINTS.get(n_agents, 9)
    grid = torch.cartesian_prod(*[torch.linspace(-1, 1, points)] * n_agents).reshape(-1, n_agents)
    values = torch.cat([q(block) for block in grid.split(chunk)])
    k, optimum = int(values.argmax()), float(q(torch.full((1, n_agents), GLOBAL / ACTION_SCALE))[0])
    return dict(argmax=[float(a) * ACTION_SCALE for a in grid[k]], q_max=float(values[k]), q_optimum=optimum)


def opponent_model_view(agent: torch.nn.Module, n_samples: int = 4096) -> dict:
    """What a PR2 agent's ρ says at the differential game's one state (its own fixed seed). response: ρ's mean guess
    of the others' actions (env units, agent order) at own action [+5, -5]. gap['rho@α' / 'uniform@α'] at each α of
    soft_schedule(): V(+5) - V(-5), V(a) = α·log E_b exp(Q^i(s, a, b)/α) (soft_marginal), b ~ ρ(·|s, a) or uniform."""
    state = torch.zeros(2, agent.joint_critic.input_layers[0].in_features)
    own = torch.tensor([GLOBAL, LOCAL]).reshape(2, 1, 1) / ACTION_SCALE  # [2 actions, 1 candidate, 1]
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        noise = torch.randn(2, 1, n_samples, agent.opp_dim)
        response = agent.opponent_model(state[:, None, None], own[:, :, None], noise).mean((1, 2)) * ACTION_SCALE
        gap = {}
        for marginal in ("rho", "uniform"):
            flags = argparse.Namespace(soft_marginal=marginal, marginal_particles=n_samples)
            for alpha in soft_schedule():
                value = pr2_continuous.soft_marginal(agent, state, own, alpha, flags)[:, 0]
                gap[f"{marginal}@{alpha:g}"] = float(value[0] - value[1])
    return dict(response=response.tolist(), gap=gap)


def diagnose(checkpoint_path: Path, script: str) -> dict:
    """Each agent's critic maximum and, for PR2, what its ρ says, from a checkpoint of pr2_continuous.py or
    baselines/maddpg.py, built as the script builds it from its own flags and sizes; nothing for other scripts."""
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    saved, act_dims = checkpoint.get("args", {}), checkpoint.get("act_dims", [])
    obs_dims = checkpoint.get("obs_dims", [1] * len(act_dims))
    if Path(script).name == "pr2_continuous.py" and "policy" in saved and "agents" in checkpoint:
        known = {field.name for field in dataclasses.fields(pr2_continuous.Args)}  # flags a newer script dropped
        flags = pr2_continuous.Args(**{key: value for key, value in saved.items() if key in known})
        agents = pr2_continuous.build_agents(obs_dims, act_dims, checkpoint.get("state_dim", 0), flags)
    elif Path(script).name == "maddpg.py" and "agents" in checkpoint:
        agents = maddpg.build_agents(obs_dims, act_dims, saved["hidden_size"])
    else:
        return dict(critics=[], opponent_models=[])
    agents.load_state_dict(checkpoint["agents"])
    agents.eval()
    critics = [critic_maximum(critic_of(agent, i), len(agents)) for i, agent in enumerate(agents)]
    models = [opponent_model_view(agent) for agent in agents if hasattr(agent, "opponent_model")]
    return dict(critics=critics, opponent_models=models)
