"""Benchmark: PR2-Q vs IGA on the paper's iterated matrix game (Wen et al. 2019, Sec. 5.1, Fig. 3).

Runs `pr2_discrete.py --env matrix` (tabular PR2-Q) for each seed with both opponent models (the empirical count
model and Eq. 12), reads pi(a=0) back from TensorBoard, runs IGA from (0, 0.9), and writes a markdown table and a
figure in the style of the paper's Fig. 3 to `benchmarks/results/`.

    python benchmarks/matrix_game.py              # 10 seeds, 1,000 iterations, about a minute on one core

Target (issue 4): the mean pi(a=0) of each agent over the last 100 iterations within 0.05 of 0.5 in 10/10 seeds.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.iga import iga  # noqa: E402
from utils.envs import MATRIX_GAMES  # noqa: E402
from utils.logger import read_scalars  # noqa: E402

AGENTS = ("agent_0", "agent_1")
MODELS = ("empirical", "eq12")


def run_pr2q(seed: int, model: str, iterations: int, workdir: Path) -> dict:
    """Run the real script once (its runs/ folder lands in workdir) and return its traces as arrays."""
    exp_name = f"pr2q_{model}"
    flags = ["--env", "matrix", "--seed", str(seed), "--opponent-model", model, "--total-timesteps", str(iterations)]
    command = [sys.executable, str(ROOT / "pr2_discrete.py"), *flags, "--exp-name", exp_name]
    run_dir = workdir / f"{exp_name}__{seed}"
    subprocess.run(command, cwd=workdir, check=True, capture_output=True, env=dict(os.environ, PYTHONHASHSEED="0"))
    (latest,) = sorted((workdir / "runs").glob(f"matrix_pr2__{exp_name}__{seed}__*"))[-1:]
    if run_dir.exists():
        subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    latest.rename(run_dir)
    scalars = read_scalars(str(run_dir))
    trace = {"policy": np.array([[v for _, v in scalars[f"charts/policy/{a}"]] for a in AGENTS]).T}
    trace["opponent_model"] = np.array([[v for _, v in scalars[f"charts/opponent_model/{a}"]] for a in AGENTS]).T
    return trace


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 11)))
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "work" / "matrix_game")
    cli = parser.parse_args()
    cli.out.mkdir(parents=True, exist_ok=True)
    cli.workdir.mkdir(parents=True, exist_ok=True)

    traces = {m: {s: run_pr2q(s, m, cli.iterations, cli.workdir) for s in cli.seeds} for m in MODELS}
    r1, r2 = MATRIX_GAMES["pr2"]
    iga_path = iga(r1, r2, start=(0.0, 0.9), lr=0.01, iterations=cli.iterations)

    # table: mean of the last 100 iterations per seed
    lines = [
        "# PR2-Q vs IGA on the paper's matrix game",
        "",
        "R1 = [[0, 3], [1, 2]], R2 = [[3, 2], [0, 1]] (rows: agent_0); unique Nash equilibrium (0.5, 0.5).",
        f"{cli.iterations} iterations; entries are the mean pi(a=0) over the last 100 iterations; "
        "'hit' = both agents within 0.05 of 0.5.",
        "",
        "Command: `python benchmarks/matrix_game.py` (runs `python pr2_discrete.py --env matrix --seed S "
        "--opponent-model {empirical,eq12}` for each seed).",
        "",
        "| seed | PR2-Q empirical (count) rho: agent_0 | agent_1 | hit | PR2-Q Eq. 12 rho: agent_0 | agent_1 | hit |",
        "|---|---|---|---|---|---|---|",
    ]
    hits = dict.fromkeys(MODELS, 0)
    for seed in cli.seeds:
        row = [str(seed)]
        for m in MODELS:
            means = traces[m][seed]["policy"][-100:].mean(0)
            hit = bool(np.all(np.abs(means - 0.5) <= 0.05))
            hits[m] += hit
            row += [f"{means[0]:.3f}", f"{means[1]:.3f}", "yes" if hit else "no"]
        lines.append("| " + " | ".join(row) + " |")
    n = len(cli.seeds)
    last = iga_path[-100:]
    lines += [
        "",
        f"**PR2-Q, empirical (count) opponent model: {hits['empirical']}/{n} seeds within 0.05 of (0.5, 0.5).**  ",
        f"**PR2-Q, Eq. 12 opponent model: {hits['eq12']}/{n} seeds within 0.05 of (0.5, 0.5).**",
        "",
        f"IGA from (0, 0.9), step 0.01: mean of the last 100 iterations ({last[:, 0].mean():.3f}, "
        f"{last[:, 1].mean():.3f}); over the last 200 iterations pi1 spans [{iga_path[-200:, 0].min():.2f}, "
        f"{iga_path[-200:, 0].max():.2f}] and pi2 spans [{iga_path[-200:, 1].min():.2f}, "
        f"{iga_path[-200:, 1].max():.2f}]: it keeps cycling.",
        "",
        "![PR2-Q vs IGA](matrix_game.png)",
    ]
    (cli.out / "matrix_game.md").write_text("\n".join(lines) + "\n")

    # figure in the style of Fig. 3: learning paths, policies over time, opponent models over time
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.8))
    ax = axes[0]
    for i, seed in enumerate(cli.seeds):
        p = traces["empirical"][seed]["policy"]
        ax.plot(p[:, 0], p[:, 1], color="tab:blue", lw=0.8, alpha=0.6, label="PR2-Q, empirical rho" if i == 0 else None)
        p = traces["eq12"][seed]["policy"]
        ax.plot(p[:, 0], p[:, 1], color="tab:red", lw=0.8, alpha=0.6, label="PR2-Q, Eq. 12 rho" if i == 0 else None)
    ax.plot(iga_path[:, 0], iga_path[:, 1], color="tab:gray", lw=0.8, label="IGA from (0, 0.9)")
    for m, color in (("empirical", "tab:blue"), ("eq12", "tab:red")):
        ends = np.array([traces[m][s]["policy"][-100:].mean(0) for s in cli.seeds])
        ax.plot(ends[:, 0], ends[:, 1], "o", color=color, mec="k", ms=6, label=f"{m}: last-100 means")
    ax.plot(0.5, 0.5, "k*", ms=12, label="Nash equilibrium")
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="pi^1(a=0)", ylabel="pi^2(a=0)", title="(a) learning paths")
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="lower right")
    first = cli.seeds[0]
    steps = np.arange(1, cli.iterations + 1)
    for ax, (title, series) in zip(
        axes[1:],
        [
            (f"(b) PR2-Q policies (empirical rho, seed {first}) vs IGA", traces["empirical"][first]["policy"]),
            (f"(c) opponent models (empirical rho, seed {first})", traces["empirical"][first]["opponent_model"]),
            (f"(d) Eq. 12 rho: policies and opponent models (seed {first})", traces["eq12"][first]["policy"]),
        ],
        strict=True,
    ):
        for k, agent in enumerate(AGENTS):
            ax.plot(steps, series[:, k], lw=1, label=f"{agent}" if ax is axes[2] else f"{agent}: pi(a=0)")
        ax.axhline(0.5, color="k", lw=0.5, ls=":")
        ax.set(ylim=(-0.02, 1.02), xlabel="iteration", title=title)
    axes[1].plot(np.arange(len(iga_path)), iga_path[:, 0], color="tab:gray", lw=0.8, ls="--", label="IGA agent_0")
    axes[1].plot(np.arange(len(iga_path)), iga_path[:, 1], color="tab:gray", lw=0.8, ls=":", label="IGA agent_1")
    axes[1].set_ylabel("pi(a=0)")
    axes[2].set_ylabel("each agent's model of the opponent's P(a=0)")
    eq12_models = traces["eq12"][first]["opponent_model"]
    for k, agent in enumerate(AGENTS):
        axes[3].plot(steps, eq12_models[:, k], lw=1, ls="--", label=f"{agent}'s model of the opponent's P(a=0)")
    for ax in axes[1:]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(cli.out / "matrix_game.png", dpi=110)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
