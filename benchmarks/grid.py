"""What a benchmark grid is (benchmarks/run_grid.py runs it, benchmarks/grid_report.py reports it): the algorithms, the
tasks, the budgets (which algorithms run on which task with which seeds and extra flags), the jobs a budget makes."""

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT


@dataclass(frozen=True)
class Algorithm:
    label: str
    script: str  # relative to the repository root
    flags: tuple[str, ...] = ()
    critic: str = ""  # what its critics (and PR2's ρ) are given, for the report's "critic sees" column


# Checkpoints leave out the replay buffer (cross-play needs only the policies). PR2's critic input is named on every
# PR2 command, also where it is the script's default, so that the commands say what the report's table says.
PR2, NO_BUFFER = "pr2_continuous.py", ("--no-save-buffer",)
SOFT, STATE = ("--policy", "soft", *NO_BUFFER), ("--critic-input", "state")
STATE_SEES = "state s (all agents' observations) + all actions"
# docs/results.md's tuning plan for the soft policy's critic target and opponent model: pr2_soft with these flags
CANDIDATES = {
    "c0_today": ("uniform", "mc", "helpers"),
    "c1_uniform_is": ("uniform", "importance", "helpers"),
    "c2_rho": ("rho", "mc", "helpers"),
    "c3_policies": ("policies", "mc", "helpers"),
    "c4_sides_uniform": ("uniform", "mc", "sides"),
    "c5_sides_rho": ("rho", "mc", "sides"),
    "c6_sides_policies": ("policies", "mc", "sides"),
}


def soft_with(target: str, estimator: str, model: str) -> tuple[str, ...]:
    return (*SOFT, *STATE, "--critic-target", target, "--uniform-estimator", estimator, "--opponent-model", model)


# The tuning's winner (grid_critic_tuning.md) on the grid's seeds, against today's default (pr2_soft)
CHALLENGER, WINNER = "pr2_soft_sides", soft_with(*CANDIDATES["c6_sides_policies"])
ALGORITHMS = [
    Algorithm("pr2_soft", PR2, (*SOFT, *STATE), STATE_SEES),
    Algorithm(CHALLENGER, PR2, WINNER, STATE_SEES),
    Algorithm("pr2_ac", PR2, ("--policy", "deterministic", *STATE, *NO_BUFFER), STATE_SEES),
    Algorithm("maddpg", "baselines/maddpg.py", NO_BUFFER, "all observations + all actions"),
    Algorithm("ddpg", "baselines/ddpg.py", NO_BUFFER, "own observation + own action"),
    Algorithm("ddpg_om", "baselines/ddpg_om.py", NO_BUFFER, "own observation, own + predicted opponents' actions"),
    # ablations, one change each: what the state does, what ρ does
    Algorithm("pr2_soft_own", PR2, (*SOFT, "--critic-input", "own"), "own observation + all actions"),
    Algorithm("pr2_soft_uniform", PR2, (*SOFT, *STATE, "--soft-marginal", "uniform"), STATE_SEES),
    Algorithm(f"{CHALLENGER}_uniform", PR2, (*WINNER, "--soft-marginal", "uniform"), STATE_SEES),
    Algorithm("masql", "baselines/masql.py", (*NO_BUFFER, *STATE), "state s (all agents' observations) + all actions"),
    *(Algorithm(label, PR2, soft_with(*flags), STATE_SEES) for label, flags in CANDIDATES.items()),
]
GRID = tuple(algorithm.label for algorithm in ALGORITHMS[:10])  # the like-for-like grid's algorithms
LABELS = tuple(algorithm.label for algorithm in ALGORITHMS)
TASKS = ("simple_spread", "simple_adversary", "simple_push", "simple_tag")  # particle (mpe2) scenarios
ADVERSARIAL = ("simple_adversary", "simple_push", "simple_tag")  # agents named adversary_* form one side
VARIANTS = ("pr2_soft", CHALLENGER, "pr2_ac")
# ablation -> (the label it ablates, what it takes away)
ABLATIONS = {"pr2_soft_own": ("pr2_soft", "the state"), "pr2_soft_uniform": ("pr2_soft", "ρ")}
ABLATIONS[f"{CHALLENGER}_uniform"] = (CHALLENGER, "ρ")
BASELINE = "maddpg"
# (label, baseline) for cross-play and speed: every PR2 label and MASQL against MADDPG, the soft PR2s against MASQL
PAIRS = tuple((label, BASELINE) for label in (*VARIANTS, *ABLATIONS, "masql", *CANDIDATES))
PAIRS += (("pr2_soft", "masql"), (CHALLENGER, "masql"))
SCHEDULE = ("total_timesteps", "learning_starts", "train_frequency", "batch_size")  # "same update schedule"
LAST_EVALUATIONS = 3  # the headline averages this many of a run's last evaluations


@dataclass(frozen=True)
class Budget:
    algorithms: tuple[str, ...]  # on every task, unless only_on says otherwise
    seeds: range  # of every algorithm, unless seeds_of says otherwise
    flags: tuple[str, ...] = ()  # given to every run; otherwise each script's defaults apply
    seeds_of: dict = field(default_factory=dict)  # label -> its seeds
    only_on: dict = field(default_factory=dict)  # label -> the tasks it runs on


# The same evaluation for every algorithm: 10 noise-free episodes every 5,000 steps and after training
EVALUATION = ("--eval-every", "5000", "--eval-episodes", "10")
FEWER = dict.fromkeys(("pr2_soft_own", "pr2_soft_uniform"), range(3))
ONLY_ON = dict.fromkeys(("ddpg", "ddpg_om"), TASKS[:1]) | {"masql": TASKS[:3]}
TUNING_ON = dict.fromkeys(CANDIDATES, TASKS[:3]) | {BASELINE: TASKS[1:3]}
CONFIRMED = ("c3_policies", "c6_sides_policies")  # the screen's two best by docs/results.md's rule
CONFIRM = dict.fromkeys((*CONFIRMED, BASELINE), range(100, 103))
SHORT = ("--total-timesteps", "30000", "--learning-starts", "5000", "--train-frequency", "16")
TINY = ("--total-timesteps", "150", "--learning-starts", "50", "--batch-size", "16", "--log-every", "10")
BUDGETS = {
    # The scripts' full schedule (100k steps): 5 seeds of the PR2 variants, MADDPG and the challenger's ablation on
    # the four tasks, of DDPG and DDPG-OM on simple_spread, of MASQL on all but simple_tag; 3 of the other ablations.
    "like_for_like": Budget(GRID, range(5), EVALUATION, FEWER, ONLY_ON),
    "full": Budget(GRID, range(5), EVALUATION, FEWER),  # every algorithm on every task
    # The tuning plan: every candidate on seed 100, the two best (CONFIRM) and MADDPG (for cross-play) also on 101-102
    "critic_tuning": Budget((*CANDIDATES, BASELINE), range(100, 101), EVALUATION, CONFIRM, TUNING_ON),
    "reduced": Budget((*VARIANTS, BASELINE), range(3), (*SHORT, *EVALUATION)),  # about half an hour on 2 cores
    # Every code path (all tasks and algorithms, cross-play, plots) in a few minutes; the numbers mean nothing. Six
    # evaluations: more than the headline averages.
    "smoke": Budget(GRID, range(2), (*TINY, "--eval-every", "25", "--eval-episodes", "2")),
}


@dataclass(frozen=True)
class Job:
    task: str
    algorithm: Algorithm
    seed: int
    folder: Path  # under --work-dir: logs, checkpoint, result.json
    command: tuple[str, ...]
    kept: Path  # under --keep-dir: result.json (and a checkpoint a cross-play pairing still waits for)


def job_folder(args, task: str, label: str, seed: int) -> Path:
    """A run's folder under --work-dir (args: run_grid.Args, or anything with its name, work_dir)."""
    return Path(args.work_dir).resolve() / args.name / task / label / f"seed_{seed}"


def keep_root(args) -> Path:
    return Path(args.keep_dir or Path(args.out_dir) / f"{args.name}_runs")


def kept_folder(args, task: str, label: str, seed: int) -> Path:
    return keep_root(args) / task / label / f"seed_{seed}"


def make_jobs(args, budget: Budget) -> list[Job]:
    """The budget's runs, or args.tasks, args.algorithms and args.seeds where given, seed by seed over every task: a
    grid stopped half way has the first seeds of every task, and one seed's algorithms run under the same load."""
    labels = {algorithm.label: algorithm for algorithm in ALGORITHMS}
    planned = {
        (task, label): list(args.seeds if args.seeds is not None else budget.seeds_of.get(label, budget.seeds))
        for task in args.tasks or TASKS
        for label in args.algorithms or budget.algorithms
        if args.algorithms or task in budget.only_on.get(label, TASKS)
    }
    # The baseline first within a task and seed: a PR2 run then finds the baseline's checkpoint when it ends, and
    # cross-play with it is done (and kept) before the session that trained it can end.
    planned = dict(sorted(planned.items(), key=lambda item: (TASKS.index(item[0][0]), item[0][1] != BASELINE)))
    jobs = []
    for seed in sorted({seed for seeds in planned.values() for seed in seeds}):
        for (task, label), seeds in planned.items():
            if seed in seeds:
                algorithm = labels[label]
                command = [sys.executable, str(ROOT / algorithm.script), "--env", "particle", "--scenario", task]
                command += [*algorithm.flags, *budget.flags, "--seed", str(seed), "--exp-name", label]
                command += ["--save-model", "--torch-threads", "1"]
                folders = [folder(args, task, label, seed) for folder in (job_folder, kept_folder)]
                jobs.append(Job(task, algorithm, seed, folders[0], tuple(command), folders[1]))
    return jobs


def pairings(task: str) -> list[tuple[str, str]]:
    """(good label, adversary label) of every cross-play pairing on an adversarial task: each PR2 label against the
    baseline on either side and itself, the baseline against itself."""
    found = dict.fromkeys(pair for pr2, base in PAIRS for pair in ((pr2, base), (base, pr2), (base, base), (pr2, pr2)))
    return list(found) if task in ADVERSARIAL else []


def identity(result: dict) -> str:
    """What a cross-play result was computed from: the run's command and its evaluation curve. A run trained again
    from the same command (seeded, so the same weights) keeps its cross-play results; a different one does not."""
    return hashlib.sha256(json.dumps([result["command"], result["eval_curve"]]).encode()).hexdigest()[:16]


def sides(returns: dict) -> dict:
    """Mean return of the good agents and of the adversaries (mpe2 names the latter adversary_*)."""
    adversary = [value for name, value in returns.items() if name.startswith("adversary")]
    good = [value for name, value in returns.items() if not name.startswith("adversary")]
    return dict(good=float(np.mean(good)), adversary=float(np.mean(adversary)))
