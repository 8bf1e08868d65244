"""Benchmark grid: PR2 against MADDPG, DDPG and DDPG-OM on the differential game and the four particle tasks.

Every (algorithm, task, seed) is one run of the real script in its own process (`--torch-threads 1`), at most
`--workers` at a time, or dispatched to a Ray cluster with `--ray-address`. A finished run leaves `result.json` in its
folder under `--work-dir` and is not redone (unless its command changed); an interrupted one starts again from
scratch, so a stopped grid resumes where it was. The runs' TensorBoard scalars are read back into

    <out-dir>/<name>.md                       final returns (mean, 95% CI over seeds), SPS, the differential game's
                                              global-optimum share, cross-play, speed ratios, the issue's targets
    <out-dir>/<name>_<task>.png               learning curves, mean ± 95% CI band over seeds
    <out-dir>/<name>_differential_paths.png   every seed's learning path on the reward landscape

    python benchmarks/run_grid.py                            # the committed grid (<name> = grid_committed)
    python benchmarks/run_grid.py --budget full              # every task, algorithm and seed at full length
    python benchmarks/run_grid.py --budget reduced           # the particle tasks in about an hour on 2 cores
    python benchmarks/run_grid.py --budget smoke             # every code path in a few minutes
    python benchmarks/run_grid.py --budget full --tasks simple_tag --algorithms pr2_ac maddpg --seeds 0 1
    python benchmarks/run_grid.py --budget full --ray-address auto   # the same runs on an existing Ray cluster
"""

import concurrent.futures
import glob
import importlib.util
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import (  # noqa: E402
    ROOT,
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
from utils.envs import make_env  # noqa: E402
from utils.logger import read_scalars  # noqa: E402


# ---------------------------------------------------------------- what runs: edit here
@dataclass(frozen=True)
class Algorithm:
    label: str
    script: str  # relative to the repository root
    flags: tuple[str, ...] = ()


ALGORITHMS = [
    # checkpoints leave out the replay buffer here (cross-play needs only the policies)
    Algorithm("pr2_soft", "pr2_continuous.py", ("--policy", "soft", "--no-save-buffer")),  # the variant (default)
    Algorithm("pr2_ac", "pr2_continuous.py", ("--policy", "deterministic", "--no-save-buffer")),  # faithful PR2-AC
    Algorithm("maddpg", "baselines/maddpg.py", ("--no-save-buffer",)),
    Algorithm("ddpg", "baselines/ddpg.py", ("--no-save-buffer",)),
    Algorithm("ddpg_om", "baselines/ddpg_om.py", ("--no-save-buffer",)),
]
TASKS = {
    "differential": ("--env", "differential", "--scenario", "paper"),
    **{name: ("--env", "particle", "--scenario", name) for name in ("simple_spread", "simple_adversary")},
    **{name: ("--env", "particle", "--scenario", name) for name in ("simple_push", "simple_tag")},
}
PARTICLE = ("simple_spread", "simple_adversary", "simple_push", "simple_tag")
ADVERSARIAL = ("simple_adversary", "simple_push", "simple_tag")  # agents named adversary_* form one side
PAIRS = (("pr2_ac", "maddpg"), ("pr2_soft", "maddpg"))  # (PR2, baseline): cross-play and speed ratios
SCHEDULE = ("total_timesteps", "learning_starts", "train_frequency", "batch_size")  # "same update schedule"


@dataclass(frozen=True)
class Budget:
    tasks: tuple[str, ...]
    algorithms: tuple[str, ...] | dict  # the same for every task, or task -> algorithms
    seeds: dict  # task -> seeds
    flags: tuple[str, ...] | dict = ()  # given to every run (or task -> flags); otherwise each script's defaults apply

    def algorithms_for(self, task: str) -> tuple[str, ...]:
        return self.algorithms[task] if isinstance(self.algorithms, dict) else self.algorithms

    def flags_for(self, task: str) -> tuple[str, ...]:
        return self.flags.get(task, ()) if isinstance(self.flags, dict) else self.flags


EVERY = tuple(algorithm.label for algorithm in ALGORITHMS)
SHORT = ("--total-timesteps", "30000", "--learning-starts", "5000", "--train-frequency", "16")
BUDGETS = {
    # Every script at its own defaults (ENV_DEFAULTS in the script), 10 seeds on the differential game, 3 per particle
    # task: about 10 CPU-hours for the particle part.
    "full": Budget(tuple(TASKS), EVERY, {"differential": range(10), **{task: range(3) for task in PARTICLE}}),
    # The committed grid, what fits this 2-core machine in about four hours: simple_spread with every algorithm for
    # 50k steps (the scripts' schedule otherwise), 5 seeds; simple_adversary and simple_push at the scripts' full
    # schedule and simple_tag at the short one (30k steps, a gradient step every 16 environment steps), PR2 and MADDPG
    # only (for cross-play), 3 seeds. The differential game is in benchmarks/differential_game.py's report (all five
    # algorithms, 10 seeds).
    "committed": Budget(
        PARTICLE,
        {"simple_spread": EVERY, **{task: ("pr2_soft", "pr2_ac", "maddpg") for task in ADVERSARIAL}},
        {"simple_spread": range(5), **{task: range(3) for task in ADVERSARIAL}},
        {"simple_spread": ("--total-timesteps", "50000"), "simple_tag": SHORT},
    ),
    # The particle part in about half an hour on this 2-core machine (measured CPU per gradient step on
    # simple_spread, one thread: pr2_soft 52 ms, pr2_ac 34 ms, maddpg 6 ms; about 6 core-minutes per task and seed).
    "reduced": Budget(PARTICLE, ("pr2_soft", "pr2_ac", "maddpg"), {task: range(3) for task in PARTICLE}, SHORT),
    # Every code path (all tasks and algorithms, cross-play, plots) in a few minutes; the numbers mean nothing.
    "smoke": Budget(
        tuple(TASKS),
        EVERY,
        {task: range(2) for task in TASKS},
        ("--total-timesteps", "150", "--learning-starts", "50", "--batch-size", "16", "--log-every", "10"),
    ),
}


@dataclass
class Args:
    budget: Literal["committed", "full", "reduced", "smoke"] = "committed"
    """which preset of BUDGETS (tasks, algorithms, seeds, extra flags) to run"""
    algorithms: list[str] | None = None
    """only these algorithm labels (default: the budget's)"""
    tasks: list[str] | None = None
    """only these tasks (default: the budget's)"""
    seeds: list[int] | None = None
    """these seeds on every task (default: the budget's)"""
    workers: int = 2
    """runs at the same time on this machine (each on one thread); ignored with --ray-address"""
    ray_address: str | None = None
    """send the runs to the Ray cluster at this address ('auto', 'ray://host:10001'; 'local' starts a throwaway one)
    instead of local processes. Needs `pip install "ray[default]"`, and the repository and --work-dir at the same
    paths on every node."""
    cross_play_episodes: int = 50
    """evaluation episodes per cross-play pairing and seed"""
    report_only: bool = False
    """write the report from the runs finished so far, start none (e.g. while the grid still runs elsewhere)"""
    name: str | None = None
    """prefix of the output files and of the work folder; None: grid_<budget>"""
    out_dir: str = "benchmarks/results"
    """where the table and the pictures go"""
    work_dir: str = "benchmarks/work"
    """where the runs go (logs, checkpoints, result.json); git-ignored"""


@dataclass(frozen=True)
class Job:
    task: str
    algorithm: Algorithm
    seed: int
    folder: Path
    command: tuple[str, ...]


def make_jobs(args: Args, budget: Budget) -> list[Job]:
    """Seed by seed, so that one seed's algorithms run side by side under the same machine load."""
    labels = {algorithm.label: algorithm for algorithm in ALGORITHMS}
    jobs = []
    for task in args.tasks or budget.tasks:
        for seed in args.seeds if args.seeds is not None else budget.seeds[task]:
            for label in args.algorithms or budget.algorithms_for(task):
                algorithm = labels[label]
                command = [sys.executable, str(ROOT / algorithm.script), *TASKS[task], *algorithm.flags]
                command += [*budget.flags_for(task), "--seed", str(seed), "--exp-name", label, "--save-model"]
                command += ["--torch-threads", "1"]
                folder = Path(args.work_dir).resolve() / args.name / task / label / f"seed_{seed}"
                jobs.append(Job(task, algorithm, seed, folder, tuple(command)))
    return jobs


def check(args: Args):
    """Unknown names stop the grid before anything runs, with one line."""
    for kind, given, known in (("algorithm", args.algorithms, EVERY), ("task", args.tasks, tuple(TASKS))):
        for name in given or ():
            if name not in known:
                raise SystemExit(f"run_grid.py: error: unknown {kind} {name!r}; known: {', '.join(known)}")
    if args.workers <= 0 or args.cross_play_episodes <= 0:
        raise SystemExit("run_grid.py: error: --workers and --cross-play-episodes must be positive")
    if args.ray_address and importlib.util.find_spec("ray") is None:
        raise SystemExit("run_grid.py: error: --ray-address needs Ray: pip install 'ray[default]'")


# ---------------------------------------------------------------- running
def dispatch(jobs: list[Job], args: Args):
    """Yield (job, outcome) as runs end: local processes, --workers at a time, or Ray tasks on a cluster."""
    if args.ray_address:
        import ray  # optional: only this path needs it

        python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        ray.init(address=args.ray_address, runtime_env={"env_vars": {"PYTHONPATH": python_path}})
        remote_execute = ray.remote(num_cpus=1)(execute)
        pending = {remote_execute.remote(list(job.command), str(job.folder)): job for job in jobs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            yield pending.pop(done[0]), ray.get(done[0])
        return
    with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
        futures = {pool.submit(execute, list(job.command), str(job.folder)): job for job in jobs}
        for future in concurrent.futures.as_completed(futures):
            yield futures[future], future.result()


def final_value(curve: list, total_steps: int) -> float:
    """The mean of a logged curve over the last 10% of training (its last point if none falls there)."""
    tail = [value for step, value in curve if step > 0.9 * total_steps]
    return float(np.mean(tail)) if tail else float(curve[-1][1])


def training_sps(run_dir: Path, learning_starts: int) -> float:
    """Environment steps per second after learning_starts (with gradient steps), from the wall-clock times of the
    logged charts/SPS events; the fast warm-up is left out. NaN if fewer than two events fall after it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = []
    for path in sorted(glob.glob(str(run_dir / "events.out.tfevents*"))):
        accumulator = EventAccumulator(path, size_guidance={"scalars": 0})
        accumulator.Reload()
        events += [(event.step, event.wall_time) for event in accumulator.Scalars("charts/SPS")]
    training = [(step, wall) for step, wall in events if step > learning_starts]
    if len(training) < 2:
        return math.nan
    (first_step, first_wall), (last_step, last_wall) = training[0], training[-1]
    return (last_step - first_step) / max(last_wall - first_wall, 1e-9)


def summarise(job: Job, outcome: dict) -> dict:
    """Read a finished run back (TensorBoard scalars, checkpoint arguments) and store its result.json."""
    run_dir = finish(job.folder, list(job.command), outcome)
    scalars = read_scalars(str(run_dir))
    checkpoint = next(run_dir.glob("*.pt"))
    run_args = torch.load(checkpoint, map_location="cpu", weights_only=True)["args"]
    total = run_args["total_timesteps"]
    agents = [tag.split("/")[-1] for tag in scalars if tag.startswith("charts/episodic_return/")]
    result = dict(
        task=job.task,
        label=job.algorithm.label,
        seed=job.seed,
        command=display_command(list(job.command)),
        wall_time=outcome["wall_time"],
        schedule={key: run_args[key] for key in SCHEDULE},
        curve=scalars["charts/episodic_return"],
        final_return=final_value(scalars["charts/episodic_return"], total),
        final_by_agent={agent: final_value(scalars[f"charts/episodic_return/{agent}"], total) for agent in agents},
        sps=scalars["charts/SPS"][-1][1],
        train_sps=training_sps(run_dir, run_args["learning_starts"]),
        checkpoint=str(checkpoint.relative_to(job.folder)),
        max_cycles=run_args["max_cycles"],
    )
    if job.task == "differential":
        result["path"] = learning_path(scalars)
        result.update(differential_outcome(result["path"], run_args["scenario"] or "paper"))
    save_result(job.folder, result)
    return result


# ---------------------------------------------------------------- cross-play
def load_script(script: str):
    """Import a training script as a module (to call its load_policies), once."""
    name = f"grid_{Path(script).stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / script)
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def policies_of(result: dict, folder: Path) -> dict:
    script = next(a.script for a in ALGORITHMS if a.label == result["label"])
    return load_script(script).load_policies(str(folder / result["checkpoint"]))


@torch.no_grad()
def play(policies: dict, task: str, max_cycles: int, episodes: int) -> dict:
    """Each agent's mean episode return when agent name -> policy plays `episodes` fixed-seed episodes."""
    env = make_env("particle", task, "continuous", max_cycles)
    totals = {name: 0.0 for name in env.possible_agents}
    for episode in range(episodes):
        obs, _ = env.reset(seed=100_000 + episode)
        while env.agents:
            actions = {}
            for name in env.agents:
                space = env.action_space(name)
                unit = np.clip(policies[name](obs[name]), -1, 1)
                actions[name] = (space.low + (unit + 1.0) * 0.5 * (space.high - space.low)).astype(space.dtype)
            obs, rewards, _, _, _ = env.step(actions)
            for name, reward in rewards.items():
                totals[name] += reward / episodes
    env.close()
    return totals


def sides(returns: dict) -> dict:
    """Mean return of the good agents and of the adversaries (mpe2 names the latter adversary_*)."""
    adversary = [value for name, value in returns.items() if name.startswith("adversary")]
    good = [value for name, value in returns.items() if not name.startswith("adversary")]
    return dict(good=float(np.mean(good)), adversary=float(np.mean(adversary)))


def cross_play(results: dict, args: Args) -> dict:
    """{(task, good label, adversary label): [per-seed {good, adversary}]}: good agents from one algorithm's run,
    adversaries from another's run with the same seed index, noise-free, no training. Cached per pairing and seed,
    together with the two checkpoints it was computed from: a redone run is played again."""
    table = {}
    for task in ADVERSARIAL:
        for pr2, baseline in PAIRS:
            for good, adversary in ((pr2, baseline), (baseline, pr2), (baseline, baseline), (pr2, pr2)):
                key = (task, good, adversary)
                seeds = sorted(set(results.get((task, good), {})) & set(results.get((task, adversary), {})))
                if key in table or not seeds:
                    continue
                table[key] = []
                for seed in seeds:
                    cache = Path(args.work_dir).resolve() / args.name / "cross_play" / task
                    cache = cache / f"{good}_vs_{adversary}_seed_{seed}_{args.cross_play_episodes}.json"
                    good_run, adversary_run = results[(task, good)][seed], results[(task, adversary)][seed]
                    checkpoints = [good_run["checkpoint"], adversary_run["checkpoint"]]  # each has its run's timestamp
                    cached = json.loads(cache.read_text()) if cache.exists() else {}
                    if cached.get("checkpoints") != checkpoints:
                        good_policies = policies_of(good_run, job_folder(args, task, good, seed))
                        adversary_policies = policies_of(adversary_run, job_folder(args, task, adversary, seed))
                        policies = {
                            name: (adversary_policies if name.startswith("adversary") else good_policies)[name]
                            for name in good_policies
                        }
                        returns = play(policies, task, good_run["max_cycles"], args.cross_play_episodes)
                        cache.parent.mkdir(parents=True, exist_ok=True)
                        cached = dict(sides(returns), checkpoints=checkpoints)
                        cache.write_text(json.dumps(cached))
                    table[key].append(cached)
    return table


def job_folder(args: Args, task: str, label: str, seed: int) -> Path:
    return Path(args.work_dir).resolve() / args.name / task / label / f"seed_{seed}"


# ---------------------------------------------------------------- statistics
def mean_ci(values, confidence: float = 0.95):
    """Mean over axis 0 and the half-width of its Student-t confidence interval (NaN with a single value)."""
    values = np.asarray(values, dtype=float)
    n = values.shape[0]
    if n < 2:
        return values.mean(0), np.full(values.shape[1:], math.nan) if values.ndim > 1 else math.nan
    from scipy import stats

    half = stats.t.ppf((1 + confidence) / 2, n - 1) * values.std(0, ddof=1) / np.sqrt(n)
    return values.mean(0), half


def difference(a, b, confidence: float = 0.95) -> str:
    """'mean(a) - mean(b) ± half-width' of two independent sets of per-seed numbers (Welch's t interval)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    gap = a.mean() - b.mean()
    if len(a) < 2 or len(b) < 2:
        return f"{gap:+.2f}"
    from scipy import stats

    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if va + vb > 0 else 1.0
    return f"{gap:+.2f} ± {stats.t.ppf((1 + confidence) / 2, dof) * math.sqrt(va + vb):.2f}"


def fmt(values, digits: int = 2) -> str:
    """'mean ± half-width' of a list of per-seed numbers."""
    mean, half = mean_ci(values)
    return f"{mean:.{digits}f}" if math.isnan(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"


# ---------------------------------------------------------------- report
def smooth(values: list[float], window: int) -> np.ndarray:
    """Trailing moving average over `window` points (fewer at the start), so that the first value stays the first."""
    sums = np.cumsum(np.insert(np.asarray(values, dtype=float), 0, 0.0))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def draw_curves(rows: dict, task: str, path: Path, smoothing: float = 0.05):
    """Learning curves of one task: {label: [result, ...]} -> mean ± 95% CI band over seeds, each seed's curve first
    smoothed by a trailing moving average over `smoothing` of its logged points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, results in rows.items():
        steps = sorted(set.intersection(*(set(step for step, _ in r["curve"]) for r in results)))
        window = max(1, int(smoothing * len(steps)))
        values = [smooth([dict(r["curve"])[step] for step in steps], window) for r in results]
        mean, half = mean_ci(values)
        ax.plot(steps, mean, label=f"{label} ({len(results)} seeds)")
        if len(results) > 1:
            ax.fill_between(steps, mean - half, mean + half, alpha=0.2)
    ax.set(title=f"{task} (moving average over {smoothing:.0%} of training)", xlabel="environment steps")
    ax.set(ylabel="episodic return (mean over agents)")
    ax.legend()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def write_report(results: dict, crossed: dict, failed: list, args: Args, argv: list[str], timing: dict, out: Path):
    budget, name = BUDGETS[args.budget], args.name
    tasks = [task for task in TASKS if any(key[0] == task for key in results)]
    # --report-only changes no result: the command that reproduces the grid is the one without it
    command = " ".join(["python benchmarks/run_grid.py", *(flag for flag in argv if flag != "--report-only")])
    lines = [
        f"# PR2 against MADDPG, DDPG and DDPG-OM ({args.budget} budget)",
        "",
        f"Command: `{command}`  ",
        "Extra flags: "
        + "; ".join(f"{task} `{' '.join(budget.flags_for(task)) or 'none (script defaults)'}`" for task in tasks)
        + "  ",
        "Seeds: " + "; ".join(f"{task} {seeds_of(results, task)}" for task in tasks) + "  ",
        f"Software: {versions()}  ",
        f"Wall time: {timing['wall'] / 3600:.2f} h for this invocation ({timing['ran']} runs trained, "
        f"{timing['reused']} reused from earlier invocations); the runs' own wall times add up to "
        f"{timing['compute'] / 3600:.2f} h. Each run on one thread, "
        + (f"dispatched to Ray at `{args.ray_address}`." if args.ray_address else f"{args.workers} at a time."),
        "",
        "**Final return**: `charts/episodic_return` (the per-agent episode return averaged over agents) averaged over "
        "the last 10% of training, then mean ± 95% confidence interval (Student t) over seeds. Good agents / "
        "adversaries: the same for each side's agents. **Training SPS**: environment steps per second after "
        "`learning_starts`, from the wall-clock times of the logged SPS events (warm-up excluded).",
        "",
        "| task | algorithm | seeds | env steps | final return | good agents | adversaries "
        "| global optimum | training SPS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task in tasks:
        for label, rows in by_label(results, task).items():
            good = [sides(r["final_by_agent"])["good"] for r in rows] if task in ADVERSARIAL else None
            adversary = [sides(r["final_by_agent"])["adversary"] for r in rows] if task in ADVERSARIAL else None
            optimum = f"{sum(r['success'] for r in rows)}/{len(rows)}" if task == "differential" else "–"
            lines.append(
                f"| {task} | {label} | {len(rows)} | {rows[0]['schedule']['total_timesteps']:,} "
                f"| {fmt([r['final_return'] for r in rows])} | {fmt(good) if good else '–'} "
                f"| {fmt(adversary) if adversary else '–'} | {optimum} | {fmt([r['train_sps'] for r in rows], 0)} |"
            )
    for task in tasks:
        lines += ["", f"![{task}]({name}_{task}.png)"]
    if "differential" in tasks:
        lines += [
            "",
            "## Differential game: share of seeds at the global optimum",
            "",
            "A seed reaches the global optimum when its final noise-free joint action is within 1 env unit of (5, 5).",
            "",
            f"![learning paths]({name}_differential_paths.png)",
        ]
    lines += cross_play_section(crossed, args) + speed_section(results) + targets_section(results, crossed)
    lines += ["", "## Commands", ""] + sorted({f"- `{seedless(r['command'])}`" for r in all_results(results)})
    if failed:
        lines += ["", "## Failed runs", ""] + [f"- {error.splitlines()[0]}" for error in failed]
    out.write_text("\n".join(lines) + "\n")


def cross_play_section(crossed: dict, args: Args) -> list[str]:
    if not crossed:
        return []
    lines = [
        "",
        "## Cross-play on the adversarial tasks",
        "",
        "How it was done: no training. The noise-free policies of the saved checkpoints (each script's "
        "`load_policies`) play against each other: good agents from one algorithm's run, adversaries (`adversary_*`) "
        f"from another's run with the same seed, {args.cross_play_episodes} episodes with fixed env seeds per pairing "
        "and seed. Each cell: the good agents' mean episode return / the adversaries' (mean ± 95% CI over seeds), as "
        "in the MADDPG paper; higher is better for that side.",
        "",
        "| task | good agents | adversaries | good agents' return | adversaries' return |",
        "|---|---|---|---|---|",
    ]
    for (task, good, adversary), rows in crossed.items():
        lines.append(
            f"| {task} | {good} | {adversary} | {fmt([r['good'] for r in rows])} "
            f"| {fmt([r['adversary'] for r in rows])} |"
        )
    lines += [
        "",
        "Who wins: a PR2 side against the baseline's opponents, compared with the baseline's own side against the "
        "same opponents (difference paired by seed, mean ± 95% CI).",
        "",
        "| task | side | PR2 side vs baseline | baseline side vs baseline | difference | better |",
        "|---|---|---|---|---|---|",
    ]
    for task, pr2, baseline, side, gain in verdicts(crossed):
        mine = fmt([r[side] for r in crossed[playing(task, pr2, baseline, side)]])
        reference = fmt([r[side] for r in crossed[(task, baseline, baseline)]])
        better = pr2 if np.mean(gain) > 0 else baseline if np.mean(gain) < 0 else "tie"
        lines.append(f"| {task} | {side} | {pr2}: {mine} | {baseline}: {reference} | {fmt(gain)} | {better} |")
    return lines


def playing(task: str, pr2: str, baseline: str, side: str) -> tuple:
    """The cross-play key where `pr2` plays `side` ('good' or 'adversary') against `baseline`."""
    return (task, pr2, baseline) if side == "good" else (task, baseline, pr2)


def verdicts(crossed: dict) -> list[tuple]:
    """(task, pr2, baseline, side, per-seed gain of the PR2 side over the baseline's side vs the same opponents)."""
    found = []
    for task in ADVERSARIAL:
        for pr2, baseline in PAIRS:
            for side in ("good", "adversary"):
                mine, reference = playing(task, pr2, baseline, side), (task, baseline, baseline)
                if mine in crossed and reference in crossed:
                    gain = [a[side] - b[side] for a, b in zip(crossed[mine], crossed[reference])]
                    found.append((task, pr2, baseline, side, gain))
    return found


def speed_section(results: dict) -> list[str]:
    lines = []
    for pr2, baseline in PAIRS:
        for task in TASKS:
            if (task, pr2) in results and (task, baseline) in results:
                a, b = list(results[(task, pr2)].values()), list(results[(task, baseline)].values())
                ratio = np.mean([r["train_sps"] for r in a]) / np.mean([r["train_sps"] for r in b])
                same = all(r["schedule"] == a[0]["schedule"] for r in a + b)
                lines.append(
                    f"| {task} | {pr2} / {baseline} | {fmt([r['train_sps'] for r in a], 0)} "
                    f"| {fmt([r['train_sps'] for r in b], 0)} | {ratio:.2f} | {'yes' if same else 'NO'} |"
                )
    if not lines:
        return []
    header = [
        "",
        "## Speed: training SPS side by side",
        "",
        "The runs of both algorithms ran in this grid, interleaved (a task's seeds in turn, each seed's algorithms one "
        "after another), on the same machine and load; ratio = "
        "mean training SPS of the PR2 variant / the baseline's. Same schedule: identical total steps, learning "
        "starts, train frequency and batch size.",
        "",
        "| task | ratio of | PR2 training SPS | baseline training SPS | ratio | same schedule |",
        "|---|---|---|---|---|---|",
    ]
    return header + lines


def targets_section(results: dict, crossed: dict) -> list[str]:
    """The issue's targets that this grid measured, each marked met or missed."""
    lines = []

    def target(text, met):
        lines.append(f"| {text} | {'met' if met else '**missed**'} |")

    if ("differential", "pr2_soft") in results:
        rows = list(results[("differential", "pr2_soft")].values())
        wins = sum(r["success"] for r in rows)
        target(
            f"differential: pr2_soft at the global optimum in ≥ 90% of seeds ({wins}/{len(rows)})",
            wins >= 0.9 * len(rows),
        )
    for first, second in (("pr2_ac", "maddpg"), ("pr2_soft", "maddpg"), ("pr2_soft", "pr2_ac")):
        if ("simple_spread", first) in results and ("simple_spread", second) in results:
            a, b = ([r["final_return"] for r in results[("simple_spread", k)].values()] for k in (first, second))
            target(
                f"simple_spread: {first}'s final return ≥ {second}'s ({np.mean(a):.2f} vs {np.mean(b):.2f}, "
                f"difference {difference(a, b)})",
                np.mean(a) >= np.mean(b),
            )
    for task, pr2, baseline, side, gain in verdicts(crossed):
        who = "good agents" if side == "good" else "adversaries"
        target(
            f"{task}: {pr2} {who} vs {baseline} score ≥ {baseline} {who} (difference {fmt(gain)})", np.mean(gain) >= 0
        )
    for task in PARTICLE:
        for pr2 in ("pr2_ac", "pr2_soft"):
            if (task, pr2) in results and (task, "maddpg") in results:
                a, b = ([r["train_sps"] for r in results[(task, k)].values()] for k in (pr2, "maddpg"))
                target(
                    f"{task}: {pr2} training SPS ≥ 0.5 × maddpg's ({np.mean(a) / np.mean(b):.2f}×)",
                    np.mean(a) >= 0.5 * np.mean(b),
                )
    return ["", "## Targets of the issue", "", "| target | result |", "|---|---|"] + lines if lines else []


def by_label(results: dict, task: str) -> dict:
    """{label: the task's results sorted by seed}, labels in ALGORITHMS order (not in the order runs ended)."""
    runs = {label: runs for (t, label), runs in results.items() if t == task}
    return {label: [runs[label][seed] for seed in sorted(runs[label])] for label in EVERY if label in runs}


def seeds_of(results: dict, task: str) -> list[int]:
    return sorted({seed for (t, _), runs in results.items() if t == task for seed in runs})


def all_results(results: dict):
    return [r for runs in results.values() for r in runs.values()]


def seedless(command: str) -> str:
    words = command.split()
    return " ".join("<seed>" if k and words[k - 1] == "--seed" else word for k, word in enumerate(words))


# ---------------------------------------------------------------- main
def main(args: Args, argv: list[str]):
    """argv: the command line's arguments, recorded in the report."""
    check(args)
    args.name = args.name or f"grid_{args.budget}"
    start = time.time()
    jobs = make_jobs(args, BUDGETS[args.budget])
    results, todo, failed = {}, [], []
    for job in jobs:
        result = load_result(job.folder, display_command(list(job.command)))
        if result is None:
            todo.append(job)
        else:
            results.setdefault((job.task, job.algorithm.label), {})[job.seed] = result
    print(f"{len(jobs)} runs: {len(jobs) - len(todo)} already done, {len(todo)} to run", flush=True)
    if args.report_only:
        print(f"--report-only: {len(todo)} unfinished run(s) left out of the report", flush=True)
        jobs, todo = [job for job in jobs if job not in todo], []
    for job in todo:
        prepare(job.folder)  # an interrupted run starts again from scratch
    for count, (job, outcome) in enumerate(dispatch(todo, args), start=1):
        try:
            result = summarise(job, outcome)
        except (RuntimeError, KeyError, StopIteration) as error:
            failed.append(f"{job.task} {job.algorithm.label} seed {job.seed}: {error}")
            print(f"FAILED {failed[-1]}", flush=True)
            continue
        results.setdefault((job.task, job.algorithm.label), {})[job.seed] = result
        left = (time.time() - start) / count * (len(todo) - count)
        print(
            f"[{count}/{len(todo)}] {job.task} {job.algorithm.label} seed {job.seed}: final return "
            f"{result['final_return']:.3f} in {outcome['wall_time']:.0f} s; about {left / 60:.0f} min left",
            flush=True,
        )
    crossed = cross_play(results, args)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for task in TASKS:
        if rows := by_label(results, task):
            draw_curves(rows, task, out / f"{args.name}_{task}.png")
    if rows := by_label(results, "differential"):
        title = "Differential game (paper formula): noise-free joint action during training"
        draw_paths(rows, "paper", out / f"{args.name}_differential_paths.png", title)
    timing = dict(
        wall=time.time() - start,
        ran=len(todo) - len(failed),
        reused=len(jobs) - len(todo),
        compute=sum(r["wall_time"] for r in all_results(results)),
    )
    write_report(results, crossed, failed, args, argv, timing, out / f"{args.name}.md")
    print(f"wrote {out / args.name}.md and its pictures", flush=True)
    if failed:
        raise SystemExit(f"run_grid.py: error: {len(failed)} runs failed; see {out / args.name}.md")


if __name__ == "__main__":
    main(tyro.cli(Args), sys.argv[1:])
