"""Benchmark: PR2 on the differential game "max of two quadratic", many seeds per configuration.

Each (configuration, seed) is one run of the real script in its own process, at most `--workers` at a time, with
`--torch-threads 1`. A finished run leaves `result.json` in its work folder and is not redone, so an interrupted
benchmark resumes where it stopped. The outputs are a markdown table and a picture of the reward landscape with every
seed's learning path (the noise-free joint action over training):

    python benchmarks/differential_game.py                      # faithful PR2-AC, 10 seeds, paper formula
    python benchmarks/differential_game.py --formula code       # the original code's /3 formula
    python benchmarks/differential_game.py --configs soft=pr2_continuous.py: \\
        no_rho=pr2_continuous.py:--soft-marginal,uniform

A configuration is `label=script:flag,flag,...` (flags comma-separated, as the script takes them).
"""

import os
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402
from benchmarks.common import (  # noqa: E402
    SUCCESS_RADIUS,
    critic_of,
    differential_command,
    differential_outcome,
    display_command,
    draw_paths,
    learning_path,
    load_agents,
    load_result,
    opponent_model_view,
    parse_config,
    run_parallel,
    save_result,
    train_once,
    versions,
)
from utils.logger import read_scalars  # noqa: E402


@dataclass
class Args:
    configs: list[str] = field(default_factory=lambda: ["faithful=pr2_continuous.py:--policy,deterministic"])
    """configurations as 'label=script:flag,flag,...'"""
    seeds: list[int] = field(default_factory=lambda: list(range(10)))
    """seeds to run for every configuration"""
    formula: str = "paper"
    """reward formula: 'paper' or 'code' (the original code's)"""
    workers: int = 2
    """runs at the same time (each on one thread)"""
    name: str = "differential"
    """prefix of the output files in --out-dir"""
    out_dir: str = "benchmarks/results"
    """where the table and the picture go"""
    work_dir: str = "benchmarks/work"
    """where the runs go (logs, checkpoints, result.json); git-ignored"""


def critic_maximum(checkpoint_path: Path, script: str = "pr2_continuous.py") -> list[tuple[float, float, float]]:
    """Each agent's learned critic of a two-agent PR2 or MADDPG checkpoint on a 201x201 grid of env actions: (a¹, a², Q)
    at its maximum; [] for another script's or more agents."""
    agents = load_agents(checkpoint_path, script)
    if agents is None or len(agents) != 2:
        return []
    maxima = [common.critic_maximum(critic_of(agent, i), 2) for i, agent in enumerate(agents)]
    return [(*peak["argmax"], peak["q_max"]) for peak in maxima]


def value_of_own_action(checkpoint_path: Path, alphas=(20.0, 0.5), n_samples: int = 4096) -> dict:
    """What agent 0's opponent model contributes, from a two-agent pr2_continuous.py checkpoint ({} otherwise).

    response: ρ's mean prediction of the partner's action (env units) given own action +5 and -5.
    gap: Q^0(s, +5) - Q^0(s, -5), the soft values of the two optima's own actions, α·log E_b exp(Q(s, a, b)/α), with
    b from ρ(·|s, a) ('rho') or uniform ('uniform'), at each α in `alphas` (common.opponent_model_view).
    """
    agents = load_agents(checkpoint_path)
    if agents is None or len(agents) != 2:
        return {}
    view = opponent_model_view(agents[0], alphas, n_samples)
    return dict(response=[response[0] for response in view["response"]], gap=view["gap"])


def run_folder(args: Args, label: str, seed: int) -> Path:
    return Path(args.work_dir) / f"{args.name}_{args.formula}" / label / f"seed_{seed}"


def run_one(label: str, script: str, flags: list[str], seed: int, args: Args) -> dict:
    folder = run_folder(args, label, seed)
    command = differential_command(script, args.formula, seed, flags)
    result = load_result(folder, display_command(command))  # a run is redone only if its command changed
    if result is not None:
        return result
    run_dir, timing = train_once(folder, command)
    scalars = read_scalars(str(run_dir))
    path = learning_path(scalars)
    result = dict(
        label=label,
        seed=seed,
        command=display_command(command),
        **differential_outcome(path, args.formula),
        critic_max=critic_maximum(next(run_dir.glob("*.pt")), script),
        own_action_value=value_of_own_action(next(run_dir.glob("*.pt"))),
        **timing,
        sps=scalars["charts/SPS"][-1][1],
        path=path,
    )
    save_result(folder, result)
    return result


def write_table(results: dict, args: Args, path: Path, picture: Path):
    n_seeds = len(args.seeds)
    lines = [
        f"# Differential game (--scenario {args.formula}): {n_seeds} seeds per configuration",
        "",
        f"Command: `python benchmarks/differential_game.py {' '.join(sys.argv[1:])}`  ",
        f"Software: {versions()}. Each run on one thread, {args.workers} runs at a time.  ",
        f"Success: final noise-free joint action within {SUCCESS_RADIUS:g} env unit of the global optimum (5, 5).  ",
        "Critic max: where each agent's learned joint critic Q^i(s, a¹, a²) (PR2's; MADDPG's centralised one) peaks "
        "on a 201×201 grid, and its value.  ",
        "CPU time: user + system time of the run's process (wall time grows when other processes share the cores).",
        "",
        f"![learning paths]({picture.name})",
        "",
        "| configuration | global optimum | mean final reward | mean CPU time per seed |",
        "|---|---|---|---|",
    ]
    for label, rows in results.items():
        cpu = [r["cpu_time"] for r in rows if "cpu_time" in r]
        lines.append(
            f"| {label} | {sum(r['success'] for r in rows)}/{len(rows)} | {np.mean([r['reward'] for r in rows]):.2f} "
            f"| {f'{np.mean(cpu):.0f} s' if cpu else 'not recorded'} |"
        )
    lines += own_action_value_table(results)
    for label, rows in results.items():
        rows = sorted(rows, key=lambda r: r["seed"])
        lines += [
            f"## {label}: global optimum in {sum(r['success'] for r in rows)}/{len(rows)} seeds",
            "",
            "`" + rows[0]["command"].replace(f"--seed {rows[0]['seed']} ", "--seed <seed> ") + "`",
            "",
            "| seed | final joint action | reward | global optimum | critic max agent 0 | critic max agent 1 "
            "| CPU time | wall time | SPS |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            critic = [f"({m[0]:+.1f}, {m[1]:+.1f}): {m[2]:.1f}" for m in r["critic_max"]] or ["n/a", "n/a"]
            action = ", ".join(f"{a:+.2f}" for a in r["final_action"])
            cpu = f"{r['cpu_time']:.0f} s" if "cpu_time" in r else "–"
            lines.append(
                f"| {r['seed']} | ({action}) | {r['reward']:.2f} | {'yes' if r['success'] else 'no'} "
                f"| {critic[0]} | {critic[1]} | {cpu} | {r['wall_time']:.0f} s | {r['sps']:.0f} |"
            )
        lines.append("")
    path.write_text("\n".join(lines))


def own_action_value_table(results: dict) -> list[str]:
    """Mean over seeds of value_of_own_action, for the configurations that have an opponent model."""
    lines = [
        "",
        "## What the opponent model contributes (agent 0, end of training)",
        "",
        "ρ(·|+5), ρ(·|−5): ρ's mean prediction of the partner's action given agent 0's own action +5 or −5 (the best "
        "responses are +5 and −5). Q⁰(+5) − Q⁰(−5): the soft values α·log E_b exp(Q⁰(s, a, b)/α) of the two "
        "optima's own actions under the learned joint critic, with b from ρ(·|s, a) or uniform on [−10, 10], at the "
        "soft policy's starting (20) and final (0.5) α; a positive value means the soft policy's energy favours "
        "the global optimum. Mean over seeds (4,096 samples each).",
        "",
        "| configuration | ρ(·\\|+5) | ρ(·\\|−5) | gap from ρ, α = 20 | gap from ρ, α = 0.5 "
        "| gap from uniform, α = 20 | gap from uniform, α = 0.5 |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, rows in results.items():
        values = [r["own_action_value"] for r in rows if r.get("own_action_value")]
        if not values:
            continue
        response = np.mean([v["response"] for v in values], 0)
        gap = {key: np.mean([v["gap"][key] for v in values]) for key in values[0]["gap"]}
        lines.append(
            f"| {label} | {response[0]:+.1f} | {response[1]:+.1f} | {gap['rho@20']:+.1f} | {gap['rho@0.5']:+.1f} "
            f"| {gap['uniform@20']:+.1f} | {gap['uniform@0.5']:+.1f} |"
        )
    return [*lines, ""]


def main(args: Args):
    configs = [parse_config(text) for text in args.configs]
    jobs = [(label, script, flags, seed) for label, script, flags in configs for seed in args.seeds]
    results = {label: [] for label, _, _ in configs}
    for _, result in run_parallel(partial(run_one, args=args), jobs, args.workers):
        if result is not None:
            results[result["label"]].append(result)
            print(f"{result['label']} seed {result['seed']}: {result['final_action']} success={result['success']}")
    for label, rows in results.items():  # added to runs finished before this diagnostic existed
        for result in rows:
            if "own_action_value" not in result:
                checkpoint = next((run_folder(args, label, result["seed"]) / "runs").glob("*/*.pt"))
                result["own_action_value"] = value_of_own_action(checkpoint)
                save_result(run_folder(args, label, result["seed"]), result)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    picture = out / f"{args.name}_{args.formula}.png"
    title = f"Differential game ({args.formula} formula): noise-free joint action during training"
    draw_paths(results, args.formula, picture, title)
    write_table(results, args, out / f"{args.name}_{args.formula}.md", picture)
    print(f"wrote {out / f'{args.name}_{args.formula}.md'} and {picture}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main(tyro.cli(Args))
