"""Benchmark: PR2-Q vs IGA on the paper's iterated matrix game (Wen et al. 2019, Sec. 5.1, Fig. 3): tabular PR2-Q
(`pr2_discrete.py --env matrix`) per seed with both opponent models, and IGA: a table and a figure in Fig. 3's style.

    python benchmarks/matrix_game.py              # 10 seeds, 1,000 iterations, about a minute on one core
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, panels, train_once  # noqa: E402
from benchmarks.iga import iga  # noqa: E402
from utils.envs import MATRIX_GAMES  # noqa: E402
from utils.logger import read_scalars  # noqa: E402

AGENTS = ("agent_0", "agent_1")
MODELS = {"empirical": "empirical (count)", "eq12": "Eq. 12"}  # opponent models


def run_pr2q(seed: int, model: str, iterations: int, workdir: Path) -> dict:
    """One run (common.train_once): pi(a=0) and each agent's model of the opponent's P(a=0), [iterations, agent]."""
    flags = ["--env", "matrix", "--seed", str(seed), "--opponent-model", model, "--total-timesteps", str(iterations)]
    run_dir, _ = train_once(workdir / f"pr2q_{model}__{seed}", [sys.executable, str(ROOT / "pr2_discrete.py"), *flags])
    scalars = read_scalars(str(run_dir))
    return {kind: np.array([[v for _, v in scalars[f"charts/{kind}/{a}"]] for a in AGENTS]).T
            for kind in ("policy", "opponent_model")}  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 11)))
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "work" / "matrix_game")
    cli = parser.parse_args()
    cli.out.mkdir(parents=True, exist_ok=True)
    traces = {m: {s: run_pr2q(s, m, cli.iterations, cli.workdir) for s in cli.seeds} for m in MODELS}
    iga_path = iga(*MATRIX_GAMES["pr2"], start=(0.0, 0.9), lr=0.01, iterations=cli.iterations)
    ends = {m: np.array([traces[m][s]["policy"][-100:].mean(0) for s in cli.seeds]) for m in MODELS}
    hits = {m: np.all(np.abs(ends[m] - 0.5) <= 0.05, 1) for m in MODELS}
    lines = [
        "# PR2-Q vs IGA on the paper's matrix game", "",
        "R1 = [[0, 3], [1, 2]], R2 = [[3, 2], [0, 1]] (rows: agent_0); unique Nash equilibrium (0.5, 0.5).",
        f"{cli.iterations} iterations; entries are the mean pi(a=0) over the last 100 iterations; "
        "'hit' = both agents within 0.05 of 0.5.", "",
        "Command: `python benchmarks/matrix_game.py` (runs `python pr2_discrete.py --env matrix --seed S "
        "--opponent-model {empirical,eq12}` for each seed).", "",
        "| seed | " + " | ".join(f"PR2-Q {name} rho: agent_0 | agent_1 | hit" for name in MODELS.values()) + " |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for k, seed in enumerate(cli.seeds):
        cells = [f"{ends[m][k, 0]:.3f} | {ends[m][k, 1]:.3f} | {'yes' if hits[m][k] else 'no'}" for m in MODELS]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    last, tail = iga_path[-100:].mean(0), iga_path[-200:]
    found = (f"PR2-Q, {name} opponent model: {hits[m].sum()}/{len(cli.seeds)}" for m, name in MODELS.items())
    lines += ["", *(f"**{text} seeds within 0.05 of (0.5, 0.5).**  " for text in found)]
    spans = " and ".join(f"pi{k + 1} spans [{tail[:, k].min():.2f}, {tail[:, k].max():.2f}]" for k in range(2))
    settled = "keeps cycling" if np.ptp(tail, 0).max() > 0.5 else "has settled"
    iga_line = f"IGA from (0, 0.9), step 0.01: mean of the last 100 iterations ({last[0]:.3f}, {last[1]:.3f}); "
    lines += ["", f"{iga_line}over the last 200 iterations {spans}: it {settled}.", ""]
    lines.append("![PR2-Q vs IGA](matrix_game.png)")
    (cli.out / "matrix_game.md").write_text("\n".join(lines) + "\n")
    plt, fig, axes = panels(4, (5, 4.8))
    ax, axes, first, steps = axes[0, 0], axes[0, 1:], cli.seeds[0], np.arange(1, cli.iterations + 1)
    for m, color in zip(MODELS, ("tab:blue", "tab:red")):
        for k, seed in enumerate(cli.seeds):
            label = None if k else f"PR2-Q, {MODELS[m]} rho"
            ax.plot(*traces[m][seed]["policy"].T, color=color, lw=0.8, alpha=0.6, label=label)
        ax.plot(*ends[m].T, "o", color=color, mec="k", ms=6, label=f"{m}: last-100 means")
    ax.plot(*iga_path.T, color="tab:gray", lw=0.8, label="IGA from (0, 0.9)")
    ax.plot(0.5, 0.5, "k*", ms=12, label="Nash equilibrium")
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="pi^1(a=0)", ylabel="pi^2(a=0)", title="(a) learning paths",
           aspect="equal")  # fmt: skip
    ax.legend(fontsize=7, loc="lower right")
    panels_content = [
        (f"(b) PR2-Q policies (empirical rho, seed {first}) vs IGA", "pi(a=0)", traces["empirical"][first]["policy"]),
        (f"(c) opponent models (empirical rho, seed {first})", "each agent's model of the opponent's P(a=0)",
         traces["empirical"][first]["opponent_model"]),
        (f"(d) Eq. 12 rho: policies and opponent models (seed {first})", "", traces["eq12"][first]["policy"]),
    ]  # fmt: skip
    for ax, (title, ylabel, series) in zip(axes, panels_content):
        for k, agent in enumerate(AGENTS):
            ax.plot(steps, series[:, k], lw=1, label=agent + ": pi(a=0)" * (ax is not axes[1]))
        ax.axhline(0.5, color="k", lw=0.5, ls=":")
        ax.set(ylim=(-0.02, 1.02), xlabel="iteration", ylabel=ylabel, title=title)
    for k, (agent, style) in enumerate(zip(AGENTS, ("--", ":"))):
        axes[0].plot(iga_path[:, k], color="tab:gray", lw=0.8, ls=style, label=f"IGA {agent}")
        model = traces["eq12"][first]["opponent_model"][:, k]
        axes[2].plot(steps, model, lw=1, ls="--", label=f"{agent}'s model of the opponent's P(a=0)")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(cli.out / "matrix_game.png", dpi=110)
    plt.close(fig)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
