"""Benchmark: deep discrete PR2 on an mpe2 particle task vs uniformly random actions.

Runs `pr2_discrete.py --env particle --scenario <scenario> --save-model` once per seed, ONE AT A TIME (each run
single-threaded), and is resumable: a seed whose result file exists in the work folder is not run again. Then it
writes a markdown table and a learning-curve figure to `benchmarks/results/`.

    python benchmarks/particle.py --seeds 1 2 3 4 5          # simple_spread with the script's defaults
    python benchmarks/particle.py --seeds 1 2 3 --exp-name pr2_eq12 -- --opponent-model eq12

Everything after `--` is passed to pr2_discrete.py. Wall time depends on what else runs on the machine; CPU time
(user + system of the run's process) depends on it less, but shared cores still inflate it.
Returns are per agent per 25-step episode (mean over agents).
"final (train)" is the mean of `charts/episodic_return` over the last 10% of steps (Boltzmann policy at its final
temperature); "greedy eval" is `eval/episodic_return` (argmax policy) after training.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from utils.envs import make_env  # noqa: E402
from utils.logger import read_scalars  # noqa: E402


def random_baseline(scenario: str, episodes: int = 500, seed: int = 0) -> tuple[float, float]:
    """Mean and std over episodes of the mean-over-agents return with uniformly random actions."""
    env = make_env("particle", scenario, "discrete")
    env.reset(seed=seed)
    for i, agent in enumerate(env.possible_agents):
        env.action_space(agent).seed(seed + i)
    returns = []
    for _ in range(episodes):
        env.reset()
        total = 0.0
        while env.agents:
            _, rewards, _, _, _ = env.step({a: env.action_space(a).sample() for a in env.agents})
            total += float(np.mean(list(rewards.values())))
        returns.append(total)
    return float(np.mean(returns)), float(np.std(returns))


def run_seed(seed: int, scenario: str, exp_name: str, extra: list[str], workdir: Path) -> dict:
    """One training run of the real script; returns (and caches) its summary."""
    result_file = workdir / f"{exp_name}__{seed}.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    command = [sys.executable, str(ROOT / "pr2_discrete.py"), "--env", "particle", "--scenario", scenario]
    command += ["--seed", str(seed), "--exp-name", exp_name, "--save-model", "--eval-episodes", "50", *extra]
    print("running:", " ".join(command[1:]), flush=True)
    start, cpu_start = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    env = dict(os.environ, PYTHONHASHSEED="0")
    subprocess.run(command, cwd=workdir, check=True, stdout=subprocess.DEVNULL, env=env)
    wall, cpu_end = time.time() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_end.ru_utime - cpu_start.ru_utime) + (cpu_end.ru_stime - cpu_start.ru_stime)
    run_dir = sorted((workdir / "runs").glob(f"{scenario}__{exp_name}__{seed}__*"))[-1]
    scalars = read_scalars(str(run_dir))
    curve = scalars["charts/episodic_return"]
    total = curve[-1][0]
    summary = {
        "seed": seed,
        "command": "python " + " ".join(["pr2_discrete.py", *command[2:]]),
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "steps": total,
        "final_train_return": float(np.mean([v for s, v in curve if s > 0.9 * total])),
        "greedy_eval_return": scalars["eval/episodic_return"][-1][1],  # the final evaluation, at the last step
        "curve": curve,
    }
    result_file.write_text(json.dumps(summary))
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--scenario", default="simple_spread")
    parser.add_argument("--exp-name", default="pr2_discrete")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "work" / "particle")
    parser.add_argument("extra", nargs="*", help="flags for pr2_discrete.py, after `--`")
    cli = parser.parse_args()
    cli.out.mkdir(parents=True, exist_ok=True)
    cli.workdir.mkdir(parents=True, exist_ok=True)

    results = [run_seed(s, cli.scenario, cli.exp_name, cli.extra, cli.workdir) for s in cli.seeds]
    rand_mean, rand_std = random_baseline(cli.scenario)
    train = np.array([r["final_train_return"] for r in results])
    greedy = np.array([r["greedy_eval_return"] for r in results])
    name = f"{cli.scenario}_{cli.exp_name}"
    lines = [
        f"# Deep discrete PR2 on mpe2 `{cli.scenario}` ({cli.exp_name})",
        "",
        f"Command: `python benchmarks/particle.py --scenario {cli.scenario} --exp-name {cli.exp_name} --seeds "
        f"{' '.join(map(str, cli.seeds))}{' -- ' + ' '.join(cli.extra) if cli.extra else ''}`",
        "",
        "Return = per agent (mean over agents) per 25-step episode. final (train) = mean `charts/episodic_return` "
        "over the last 10% of steps; greedy eval = 50 argmax-policy episodes after training.",
        "",
        "| seed | steps | wall time (s) | CPU time (s) | final (train) | greedy eval |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['seed']} | {r['steps']:,} | {r['wall_seconds']:.0f} | {r.get('cpu_seconds', 'not recorded')} | "
            f"{r['final_train_return']:.2f} | {r['greedy_eval_return']:.2f} |"
        )
    lines += [
        f"| **mean ± std** | | | | **{train.mean():.2f} ± {train.std():.2f}** | **{greedy.mean():.2f} ± "
        f"{greedy.std():.2f}** |",
        "",
        f"Uniformly random actions (500 episodes): {rand_mean:.2f} ± {rand_std:.2f} (std over episodes).",
        "",
        f"Each run: `{results[0]['command']}` (one process at a time, `--torch-threads 1`, CPU).",
        "",
        f"![learning curves]({name}.png)",
    ]
    (cli.out / f"{name}.md").write_text("\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for r in results:
        steps, values = np.array(r["curve"]).T
        window = 20
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, lw=1, label=f"seed {r['seed']}")
    ax.axhline(rand_mean, color="k", ls="--", lw=1, label="random actions")
    ax.set(xlabel="environment steps", ylabel="episodic return per agent", title=f"deep discrete PR2, {cli.scenario}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(cli.out / f"{name}.png", dpi=110)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
