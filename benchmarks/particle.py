"""Benchmark: deep discrete PR2 on an mpe2 particle task vs uniformly random actions: `pr2_discrete.py --env particle`
once per seed, resumable, then a table and a learning-curve figure. Everything after `--` goes to pr2_discrete.py.

    python benchmarks/particle.py --seeds 1 2 3 4 5          # simple_spread with the script's defaults
    python benchmarks/particle.py --seeds 1 2 3 --exp-name pr2_eq12 -- --opponent-model eq12
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, display_command, panels, train_once  # noqa: E402
from utils.envs import make_env  # noqa: E402
from utils.logger import read_scalars  # noqa: E402


def random_baseline(scenario: str, episodes: int = 500, seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation over episodes of the mean-over-agents return with uniformly random actions."""
    env = make_env("particle", scenario, "discrete")
    env.reset(seed=seed)
    for i, agent in enumerate(env.possible_agents):
        env.action_space(agent).seed(seed + i)
    returns = np.zeros(episodes)
    for episode in range(episodes):
        env.reset()
        while env.agents:
            _, rewards, _, _, _ = env.step({a: env.action_space(a).sample() for a in env.agents})
            returns[episode] += float(np.mean(list(rewards.values())))
    return float(np.mean(returns)), float(np.std(returns))


def run_seed(seed: int, scenario: str, exp_name: str, extra: list[str], workdir: Path) -> dict:
    """One training run of the real script (or the finished one of the same command): its summary."""
    command = [sys.executable, str(ROOT / "pr2_discrete.py"), "--env", "particle", "--scenario", scenario, "--seed",
               str(seed), "--exp-name", exp_name, "--save-model", "--eval-episodes", "50", *extra]  # fmt: skip
    print("running:", display_command(command), flush=True)
    run_dir, timing = train_once(workdir / f"{exp_name}__{seed}", command)
    scalars = read_scalars(str(run_dir))
    curve = scalars["charts/episodic_return"]
    steps = curve[-1][0]
    return dict(seed=seed, command=display_command(command), **timing, steps=steps, curve=curve,
                final_train_return=float(np.mean([v for s, v in curve if s > 0.9 * steps])),
                greedy_eval_return=scalars["eval/episodic_return"][-1][1])  # fmt: skip


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
    results = [run_seed(s, cli.scenario, cli.exp_name, cli.extra, cli.workdir) for s in cli.seeds]
    random_mean, random_std = random_baseline(cli.scenario)
    train, greedy = (np.array([r[key] for r in results]) for key in ("final_train_return", "greedy_eval_return"))
    name = f"{cli.scenario}_{cli.exp_name}"
    lines = [
        f"# Deep discrete PR2 on mpe2 `{cli.scenario}` ({cli.exp_name})", "",
        f"Command: `python benchmarks/particle.py --scenario {cli.scenario} --exp-name {cli.exp_name} --seeds "
        f"{' '.join(map(str, cli.seeds))}{' -- ' + ' '.join(cli.extra) if cli.extra else ''}`", "",
        "Return = per agent (mean over agents) per 25-step episode. final (train) = mean `charts/episodic_return` "
        "(the Boltzmann policy) over the last 10% of steps; greedy eval = `eval/episodic_return`, 50 argmax-policy "
        "episodes after training. CPU time: user + system time of the run's process.", "",
        "| seed | steps | wall time (s) | CPU time (s) | final (train) | greedy eval |",
        "|---|---|---|---|---|---|",
        *(f"| {r['seed']} | {r['steps']:,} | {r['wall_time']:.0f} | {r['cpu_time']:.0f} | "
          f"{r['final_train_return']:.2f} | {r['greedy_eval_return']:.2f} |" for r in results),
        f"| **mean ± std** | | | | **{train.mean():.2f} ± {train.std():.2f}** | **{greedy.mean():.2f} ± "
        f"{greedy.std():.2f}** |", "",
        f"Uniformly random actions (500 episodes): {random_mean:.2f} ± {random_std:.2f} (std over episodes).", "",
        f"Each run: `{results[0]['command']}` (one process at a time, CPU).", "",
        f"![learning curves]({name}.png)",
    ]  # fmt: skip
    (cli.out / f"{name}.md").write_text("\n".join(lines) + "\n")
    plt, fig, ((ax,),) = panels(1, (6.5, 4))
    for r in results:  # a moving average over 20 logged points (all of them in a shorter run)
        steps, values = np.array(r["curve"]).T
        window = min(20, len(values))
        ax.plot(steps[window - 1 :], np.convolve(values, np.ones(window) / window, "valid"), label=f"seed {r['seed']}")
    ax.axhline(random_mean, color="k", ls="--", lw=1, label="random actions")
    ax.set(xlabel="environment steps", ylabel="episodic return per agent", title=f"deep discrete PR2, {cli.scenario}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(cli.out / f"{name}.png", dpi=110)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
