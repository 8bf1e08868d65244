"""Run a benchmark grid (benchmarks/grid.py): every (algorithm, task, seed) one run of the real script in its own
process on one thread, `--workers` at a time or on a Ray cluster, not redone where --work-dir or --keep-dir holds its
result.json for the same command; then cross-play and the report (benchmarks/grid_report.py). See docs/benchmarks.md.

    python benchmarks/run_grid.py --workers 2     # the like-for-like grid -> benchmarks/results/grid_like_for_like.md
    python benchmarks/run_grid.py --report-only   # the report from the runs finished (or kept) so far
"""

import concurrent.futures
import importlib.util
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common, grid, grid_report  # noqa: E402
from utils.envs import make_env, to_env_action  # noqa: E402
from utils.logger import read_scalars  # noqa: E402


@dataclass
class Args:
    budget: Literal["like_for_like", "full", "critic_tuning", "reduced", "smoke"] = "like_for_like"
    """which preset of BUDGETS in benchmarks/grid.py (tasks, algorithms, seeds, extra flags) to run"""
    algorithms: list[str] | None = None
    """only these algorithm labels (default: the budget's)"""
    tasks: list[str] | None = None
    """only these tasks (default: the budget's)"""
    seeds: list[int] | None = None
    """these seeds on every task (default: the budget's)"""
    workers: int = 2
    """runs at the same time on this machine (each on one thread); ignored with --ray-address"""
    ray_address: str | None = None
    """a Ray cluster ('auto', 'ray://host:10001'; 'local': a throwaway); repo and --work-dir alike on each node"""
    cross_play_episodes: int = 50
    """evaluation episodes per cross-play pairing and seed"""
    report_only: bool = False
    """write the report from the runs finished so far, start none (e.g. while the grid still runs elsewhere)"""
    name: str | None = None
    """prefix of the output files and of the work folder; None: grid_<budget>"""
    out_dir: str = "benchmarks/results"
    """where the report and the pictures go"""
    work_dir: str = "benchmarks/work"
    """where the runs go (logs, checkpoints, result.json); git-ignored"""
    keep_dir: str | None = None
    """kept runs' result.json, cross-play (and checkpoints pairings wait for); None: <out-dir>/<name>_runs"""


def check(args: Args):
    """Unknown names and bad numbers stop the grid before anything runs."""
    for kind, given, known in (("algorithm", args.algorithms, grid.LABELS), ("task", args.tasks, grid.TASKS)):
        if unknown := [name for name in given or () if name not in known]:
            raise SystemExit(f"run_grid.py: error: unknown {kind} {unknown[0]!r}; known: {', '.join(known)}")
    if args.workers <= 0 or args.cross_play_episodes <= 0:
        raise SystemExit("run_grid.py: error: --workers and --cross-play-episodes must be positive")
    if args.ray_address and importlib.util.find_spec("ray") is None:
        raise SystemExit("run_grid.py: error: --ray-address needs Ray: pip install 'ray[default]'")


def dispatch(jobs: list[grid.Job], args: Args):
    """Yield (job, outcome) as runs end: local processes, --workers at a time, or Ray tasks on a cluster."""
    if args.ray_address:
        import ray  # optional: only this path needs it

        python_path = os.pathsep.join(filter(None, [str(common.ROOT), os.environ.get("PYTHONPATH")]))
        ray.init(address=args.ray_address, runtime_env={"env_vars": {"PYTHONPATH": python_path}})
        remote_execute = ray.remote(num_cpus=1)(common.execute)
        pending = {remote_execute.remote(list(job.command), str(job.folder)): job for job in jobs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            yield pending.pop(done[0]), ray.get(done[0])
        return
    with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
        futures = {pool.submit(common.execute, list(job.command), str(job.folder)): job for job in jobs}
        for future in concurrent.futures.as_completed(futures):
            yield futures[future], future.result()


def final_value(curve: list, total_steps: int) -> float:
    """The mean of a logged curve over the last 10% of training (its last point if none falls there)."""
    tail = [value for step, value in curve if step > 0.9 * total_steps]
    return float(np.mean(tail)) if tail else float(curve[-1][1])


def last_evaluations(curve: list) -> float:
    """The headline: the mean of a run's last LAST_EVALUATIONS logged evaluations (fewer if it has fewer)."""
    return float(np.mean([value for _, value in curve[-grid.LAST_EVALUATIONS :]]))


def training_sps(run_dir: Path, learning_starts: int) -> float:
    """Environment steps per second after learning_starts, from the logged charts/SPS events' wall-clock times."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload().Scalars("charts/SPS")
    training = [(event.step, event.wall_time) for event in events if event.step > learning_starts]
    if len(training) < 2:
        return np.nan
    (first_step, first_wall), (last_step, last_wall) = training[0], training[-1]
    return (last_step - first_step) / max(last_wall - first_wall, 1e-9)


def summarise(job: grid.Job, outcome: dict) -> dict:
    """Read a finished run back (TensorBoard scalars, checkpoint arguments) and store its result.json."""
    run_dir = common.finish(job.folder, list(job.command), outcome)
    scalars, checkpoint = read_scalars(str(run_dir)), next(run_dir.glob("*.pt"))
    run_args = torch.load(checkpoint, map_location="cpu", weights_only=True)["args"]
    if "eval/episodic_return" not in scalars:
        raise RuntimeError(f"{run_dir} logged no evaluation (eval/episodic_return): give the run --eval-episodes > 0")
    evaluations, episodes = scalars["eval/episodic_return"], scalars["charts/episodic_return"]
    agents = [tag.split("/")[-1] for tag in scalars if tag.startswith("charts/episodic_return/")]
    result = dict(
        task=job.task, label=job.algorithm.label, seed=job.seed, max_cycles=run_args["max_cycles"],
        command=common.display_command(list(job.command)), checkpoint=str(checkpoint.relative_to(job.folder)),
        wall_time=outcome["wall_time"], cpu=outcome["cpu"], sps=scalars["charts/SPS"][-1][1],
        schedule={key: run_args[key] for key in grid.SCHEDULE}, eval_curve=evaluations, curve=episodes,
        evaluation=dict(every=run_args["eval_every"], episodes=run_args["eval_episodes"]),
        final_eval=last_evaluations(evaluations), final_return=final_value(episodes, run_args["total_timesteps"]),
        eval_by_agent={agent: last_evaluations(scalars[f"eval/episodic_return/{agent}"]) for agent in agents},
        train_sps=training_sps(run_dir, run_args["learning_starts"]),
    )  # fmt: skip
    common.save_json(job.folder / "result.json", result)
    return result


def policies_of(result: dict, checkpoint: Path) -> dict:
    """{agent name: policy} from a run's checkpoint, through its script's load_policies."""
    script = next(a.script for a in grid.ALGORITHMS if a.label == result["label"])
    return importlib.import_module(script.removesuffix(".py").replace("/", ".")).load_policies(str(checkpoint))


@torch.no_grad()
def play(policies: dict, task: str, max_cycles: int, episodes: int) -> dict:
    """Each agent's mean episode return when agent name -> policy plays `episodes` fixed-seed episodes."""
    env = make_env("particle", task, "continuous", max_cycles)
    totals = dict.fromkeys(env.possible_agents, 0.0)
    for episode in range(episodes):
        obs, _ = env.reset(seed=100_000 + episode)
        while env.agents:
            unit = {name: np.clip(policies[name](obs[name]), -1, 1) for name in env.agents}
            obs, rewards, _, _, _ = env.step({n: to_env_action(a, env.action_space(n)) for n, a in unit.items()})
            for name, reward in rewards.items():
                totals[name] += reward / episodes
    env.close()
    return totals


def cached_cross_play(results: dict, args: Args, task: str, good: str, adversary: str, seed: int) -> tuple:
    """(where one pairing and seed's cross-play is kept, that result if computed from the two runs there now)."""
    name = f"{good}_vs_{adversary}_seed_{seed}_{args.cross_play_episodes}.json"
    cache = grid.keep_root(args) / "cross_play" / task / name
    runs = [results.get((task, label), {}).get(seed) for label in (good, adversary)]
    cached = json.loads(cache.read_text()) if None not in runs and cache.exists() else {}
    return cache, cached if cached.get("runs") == [grid.identity(run) for run in runs if run] else None


def checkpoint_of(args: Args, result: dict) -> Path | None:
    """The run's checkpoint: in --work-dir where it was trained, else its copy in --keep-dir, else None."""
    where = (result["task"], result["label"], result["seed"])
    paths = [folder(args, *where) / result["checkpoint"] for folder in (grid.job_folder, grid.kept_folder)]
    return next((path for path in paths if path.is_file()), None)


def keep_checkpoints(results: dict, unfinished: set, args: Args):
    """Keep in --keep-dir the checkpoints a cross-play pairing with an unfinished run needs; drop the others."""
    for (task, label), runs in results.items():
        for seed, result in runs.items():
            partners = {other for pair in grid.pairings(task) if label in pair for other in pair}
            kept = grid.kept_folder(args, task, label, seed)
            if not any((task, partner, seed) in unfinished for partner in partners):
                shutil.rmtree(kept / "runs", ignore_errors=True)
            elif not (kept / result["checkpoint"]).is_file() and (source := checkpoint_of(args, result)):
                shutil.rmtree(kept / "runs", ignore_errors=True)  # an earlier run's
                (kept / result["checkpoint"]).parent.mkdir(parents=True)
                shutil.copyfile(source, kept / "checkpoint.tmp")
                os.replace(kept / "checkpoint.tmp", kept / result["checkpoint"])


def cross_play(results: dict, args: Args) -> tuple[dict, list]:
    """({(task, good label, adversary label): [{good, adversary, seed}, ...]}, [pairings not computed]): noise-free, the
    good agents of one run against another's adversaries (same seed), kept in --keep-dir by the runs' identities."""
    table, missing = {}, []
    for task in grid.ADVERSARIAL:
        for good, adversary in grid.pairings(task):
            for seed in sorted(set(results.get((task, good), {})) & set(results.get((task, adversary), {}))):
                cache, cached = cached_cross_play(results, args, task, good, adversary, seed)
                runs = results[(task, good)][seed], results[(task, adversary)][seed]
                checkpoints = [checkpoint_of(args, run) for run in runs]
                if cached is None and None in checkpoints:
                    missing.append(f"{task} {good} vs {adversary} seed {seed}")
                    continue
                if cached is None:
                    mine, theirs = (policies_of(*pair) for pair in zip(runs, checkpoints))
                    policies = {name: (theirs if name.startswith("adversary") else mine)[name] for name in mine}
                    returns = play(policies, task, runs[0]["max_cycles"], args.cross_play_episodes)
                    cached = dict(grid.sides(returns), runs=[grid.identity(run) for run in runs])
                    common.save_json(cache, cached)
                table.setdefault((task, good, adversary), []).append(dict(cached, seed=seed))
    return table, missing


def trained_again(results: dict, todo: list[grid.Job], args: Args) -> list[tuple]:
    """Finished runs without a checkpoint in a cross-play pairing not kept yet whose other run is done or coming."""
    coming, again = {(job.task, job.algorithm.label, job.seed) for job in todo}, set()
    for task in grid.ADVERSARIAL:
        for labels in grid.pairings(task):
            for seed in {seed for label in labels for seed in results.get((task, label), {})}:
                runs = [results.get((task, label), {}).get(seed) for label in labels]
                pairing_asked = all(run or (task, label, seed) in coming for run, label in zip(runs, labels))
                if pairing_asked and not cached_cross_play(results, args, task, *labels, seed)[1]:
                    again |= {(task, run["label"], seed) for run in runs if run and not checkpoint_of(args, run)}
    return sorted(again)


def main(args: Args, argv: list[str]):  # argv: the command line's arguments, recorded in the report
    check(args)
    args.name = args.name or f"grid_{args.budget}"
    start, jobs = time.time(), grid.make_jobs(args, grid.BUDGETS[args.budget])
    results, failed, planned = {}, [], {}
    for job in jobs:
        planned.setdefault((job.task, job.algorithm.label), []).append(job.seed)  # the report says what is missing
        command = common.display_command(list(job.command))
        if result := common.load_result(job.folder, command) or common.load_result(job.kept, command):
            if common.load_result(job.kept, command) != result:
                common.save_json(job.kept / "result.json", result)  # a run finished before --keep-dir existed
            results.setdefault((job.task, job.algorithm.label), {})[job.seed] = result
    todo = [job for job in jobs if job.seed not in results.get((job.task, job.algorithm.label), {})]
    if not args.report_only and (again := trained_again(results, todo, args)):
        print(f"{len(again)} kept run(s) trained again for the cross-play their checkpoints are needed in")
        todo = [job for job in jobs if job in todo or (job.task, job.algorithm.label, job.seed) in again]
        for task, label, seed in again:
            del results[(task, label)][seed]
    unfinished = {(job.task, job.algorithm.label, job.seed) for job in todo}
    keep_checkpoints(results, unfinished, args)
    print(f"{len(jobs)} runs: {len(jobs) - len(todo)} already done, {len(todo)} to run")
    if args.report_only:
        print(f"--report-only: {len(todo)} unfinished run(s) left out of the report")
        jobs, todo = [job for job in jobs if job not in todo], []
    for job in todo:
        common.prepare(job.folder)  # an interrupted run starts again from scratch
    for count, (job, outcome) in enumerate(dispatch(todo, args), start=1):
        try:
            result = summarise(job, outcome)
        except (RuntimeError, KeyError, StopIteration) as error:
            failed.append(f"{job.task} {job.algorithm.label} seed {job.seed}: {error}")
            print(f"FAILED {failed[-1]}")
            continue
        results.setdefault((job.task, job.algorithm.label), {})[job.seed] = result
        common.save_json(job.kept / "result.json", result)
        unfinished.discard((job.task, job.algorithm.label, job.seed))
        if job.task in grid.ADVERSARIAL:
            cross_play(results, args)  # now, while the checkpoints are here
            keep_checkpoints(results, unfinished, args)
        left = (time.time() - start) / count * (len(todo) - count)
        run = f"[{count}/{len(todo)}] {job.task} {job.algorithm.label} seed {job.seed}"
        print(f"{run}: final evaluation return {result['final_eval']:.3f}; about {left / 60:.0f} min left")
    crossed, not_crossed = cross_play(results, args)
    timing = dict(wall=time.time() - start, ran=len(todo) - len(failed), reused=len(jobs) - len(todo))
    report = grid_report.write_report(results, crossed, not_crossed, failed, args, argv, timing, planned)
    print(f"wrote {report} and its pictures")
    if failed:
        raise SystemExit(f"run_grid.py: error: {len(failed)} runs failed; see {report}")


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # progress shows in a log file as it happens
    main(tyro.cli(Args), sys.argv[1:])
