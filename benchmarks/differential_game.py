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

import argparse
import concurrent.futures
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import (  # noqa: E402
    ROOT,
    SUCCESS_RADIUS,
    differential_outcome,
    display_command,
    draw_paths,
    execute,
    finish,
    learning_path,
    load_result,
    prepare,
    save_result,
    versions,
)
from utils.envs import ACTION_SCALE  # noqa: E402
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


def parse_config(text: str) -> tuple[str, str, list[str]]:
    label, _, rest = text.partition("=")
    script, _, flags = rest.partition(":")
    if not label or not script.endswith(".py"):
        raise SystemExit(f"error: config {text!r} is not 'label=script.py:flag,flag,...'")
    return label, script, [flag for flag in flags.split(",") if flag]


def load_two_agents(checkpoint_path: Path) -> torch.nn.ModuleList | None:
    """The two PR2Agents of a two-agent pr2_continuous.py checkpoint on the differential game; None for any other."""
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    if "agents" not in checkpoint or "policy" not in checkpoint["args"] or len(checkpoint.get("act_dims", [1, 1])) != 2:
        return None
    import pr2_continuous

    hidden, stochastic = checkpoint["args"]["hidden_size"], checkpoint["args"]["policy"] == "soft"
    agents = torch.nn.ModuleList(pr2_continuous.PR2Agent(1, 1, 1, hidden, stochastic) for _ in range(2))
    agents.load_state_dict(checkpoint["agents"])
    return agents


def critic_maximum(checkpoint_path: Path) -> list[tuple[float, float, float]]:
    """Each agent's joint critic Q^i(s, a^i, a^-i) on a 201x201 grid of env actions: (a^1, a^2, Q) at its maximum."""
    agents = load_two_agents(checkpoint_path)
    if agents is None:
        return []
    grid = torch.linspace(-1, 1, 201)
    own, other = torch.meshgrid(grid, grid, indexing="ij")
    maxima = []
    with torch.no_grad():
        for i, agent in enumerate(agents):
            obs = torch.zeros(own.numel(), 1)
            q = agent.joint_critic(obs, own.reshape(-1, 1), other.reshape(-1, 1)).reshape(own.shape)
            k = int(q.argmax())
            a_own, a_other = float(own.flatten()[k]) * ACTION_SCALE, float(other.flatten()[k]) * ACTION_SCALE
            joint = (a_own, a_other) if i == 0 else (a_other, a_own)
            maxima.append((*joint, float(q.max())))
    return maxima


def value_of_own_action(checkpoint_path: Path, alphas=(20.0, 0.5), n_samples: int = 4096) -> dict:
    """What agent 0's opponent model contributes, from a two-agent pr2_continuous.py checkpoint ({} otherwise).

    response: ρ's mean prediction of the partner's action (env units) given own action +5 and -5.
    gap: Q^0(s, +5) - Q^0(s, -5), the soft values of the two optima's own actions, α·log E_b exp(Q(s, a, b)/α), with
    b from ρ(·|s, a) ('rho') or uniform ('uniform'), at each α in `alphas` (the soft policy's start and end values).
    """
    agents = load_two_agents(checkpoint_path)
    if agents is None:
        return {}
    import pr2_continuous

    agent, obs = agents[0], torch.zeros(1, 1)
    own = torch.tensor([[[5.0 / ACTION_SCALE]], [[-5.0 / ACTION_SCALE]]])  # [2 actions, 1 candidate, 1]
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(0)
    with torch.no_grad():
        noise = torch.randn(2, 1, n_samples, 1)
        response = agent.opponent_model(obs.expand(2, 1)[:, None, None], own[:, :, None], noise).mean((1, 2, 3))
        gap = {}
        for marginal in ("rho", "uniform"):
            flags = argparse.Namespace(soft_marginal=marginal, marginal_particles=n_samples)
            for alpha in alphas:
                value = pr2_continuous.soft_marginal(agent, obs.expand(2, 1), own, alpha, flags).squeeze(-1)
                gap[f"{marginal}@{alpha:g}"] = float(value[0] - value[1])
    torch.random.set_rng_state(generator_state)
    return dict(response=[float(r) * ACTION_SCALE for r in response], gap=gap)


def run_folder(args: Args, label: str, seed: int) -> Path:
    return Path(args.work_dir) / f"{args.name}_{args.formula}" / label / f"seed_{seed}"


def run_one(label: str, script: str, flags: list[str], seed: int, args: Args) -> dict:
    folder = run_folder(args, label, seed)
    result = load_result(folder)
    if result is not None:
        return result
    command = [sys.executable, str(ROOT / script), "--env", "differential", "--scenario", args.formula]
    command += ["--seed", str(seed), "--save-model", "--eval-episodes", "1", "--torch-threads", "1", *flags]
    timing = folder / "timing.json"  # written when training finished: only the summary below is left to do
    if not timing.exists():
        prepare(folder)  # a run that was interrupted starts again from scratch
        outcome = execute(command, str(folder))
        finish(folder, command, outcome)
        timing.write_text(json.dumps({key: outcome[key] for key in ("wall_time", "cpu_time")}))
    run_dir = next(path for path in (folder / "runs").iterdir() if path.is_dir())
    scalars = read_scalars(str(run_dir))
    path = learning_path(scalars)
    result = dict(
        label=label,
        seed=seed,
        command=display_command(command),
        **differential_outcome(path, args.formula),
        critic_max=critic_maximum(next(run_dir.glob("*.pt"))),
        own_action_value=value_of_own_action(next(run_dir.glob("*.pt"))),
        **json.loads(timing.read_text()),
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
        "Critic max: where each agent's learned joint critic Q^i(s, a¹, a²) peaks on a 201×201 grid, and its value.  ",
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
    with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
        futures = {pool.submit(run_one, *job, args): job for job in jobs}
        for future in concurrent.futures.as_completed(futures):
            try:
                result = future.result()
            except Exception as error:  # report, keep the other runs going; rerunning resumes
                print(f"{futures[future][0]} seed {futures[future][3]} failed: {error}", flush=True)
                continue
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
