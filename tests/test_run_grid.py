"""benchmarks/run_grid.py, grid.py and grid_report.py: the statistics on known numbers, a run read back from its logs,
the committed report regenerated from its kept runs, the like-for-like budget, cross-play kept across checkouts, and
a tiny grid end to end (the evaluation headline, resuming, a fresh checkout, an interrupted run, a stub and a real
Ray)."""

import contextlib
import importlib.util
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from torch.utils.tensorboard import SummaryWriter

from benchmarks import grid, grid_report, run_grid
from benchmarks.common import cpu
from tests.helpers import ROOT, finite_scalars, run_ok
from utils.logger import read_scalars

SMOKE = ["--budget", "smoke", "--tasks", "simple_spread", "--seeds", "0", "1"]
SEES_STATE = grid.STATE_SEES  # the report's "critic sees" for PR2 with --critic-input state
COMMITTED = ROOT / "benchmarks/results/grid_like_for_like.md"
# seeds with one value: scipy warns, the interval is that value (grid_report's own filter is undone by pytest)
pytestmark = pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")


def table_rows(report: str, task: str) -> dict:
    """{label: the row's cells} of a task in the report's results table (11 columns; the other tables have fewer)."""
    rows = [line.split(" | ") for line in report.splitlines() if line.startswith(f"| {task} | ")]
    return {cells[1]: cells for cells in rows if len(cells) == 11}


def table_numbers(report: str) -> list[list[tuple]]:
    """Every table row of a report, each cell as (its text with the numbers taken out, its numbers as floats): what
    two reports must share for their numbers to match."""
    number = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")
    rows = [line.strip("|").split(" | ") for line in report.splitlines() if line.startswith("| ")]
    return [
        [(number.sub("#", cell).strip(), [float(n.replace(",", "")) for n in number.findall(cell)]) for cell in cells]
        for cells in rows
    ]


def test_statistics_are_student_t_and_welch_intervals():
    mean, half = grid_report.mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert mean == 3.0 and half == pytest.approx(2.776445 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)  # t(.975, 4)·s/√n
    means, halves = grid_report.mean_ci([[0.0, 10.0], [2.0, 10.0]])  # per column: over seeds, along axis 0
    assert means.tolist() == [1.0, 10.0] and halves[0] == pytest.approx(12.706205, rel=1e-6) and halves[1] == 0.0
    assert math.isnan(grid_report.mean_ci([4.0])[1]) and grid_report.fmt([4.0]) == "4.00"
    assert (
        grid_report.fmt([1.0, 2.0, 3.0, 4.0, 5.0]) == "3.00 ± 1.96" and grid_report.fmt([100.0, 100.0], 0) == "100 ± 0"
    )

    # Welch: the variances apart, the Welch–Satterthwaite degrees of freedom
    a, b = np.array([-21.3, -20.6, -21.4, -20.2]), np.array([-21.1, -20.2, -19.5])
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    expected = (a.mean() - b.mean(), stats.t.ppf(0.975, dof) * math.sqrt(va + vb))
    assert grid_report.welch(a, b) == pytest.approx(expected, rel=1e-9)
    assert grid_report.difference(a, b) == f"{expected[0]:+.2f} ± {expected[1]:.2f}" == "-0.61 ± 1.60"
    assert grid_report.difference([1.0], [2.0, 3.0]) == "-1.50"  # one seed: no interval
    assert grid_report.difference([2.0, 2.0], [1.0, 1.0]) == "+1.00 ± 0.00"


def test_a_run_is_read_back_from_its_logs(tmp_path):
    # the headline: the last three evaluations; the training return: the last tenth of training
    assert run_grid.last_evaluations([(25, 1.0), (50, 2.0), (75, 3.0), (100, 10.0)]) == 5.0
    assert run_grid.last_evaluations([(100, 4.0)]) == 4.0  # fewer evaluations: all of them
    curve = [(step, float(step)) for step in range(100, 1001, 100)]
    assert run_grid.final_value(curve, 1000) == 1000.0  # only step 1000 is past 900
    assert run_grid.final_value(curve, 2000) == 1000.0  # nothing logged in the last tenth: the last point
    assert run_grid.final_value([(s, v) for s, v in curve if s > 800] + [(950, 0.0)], 1000) == 500.0
    # training SPS leaves out the warm-up: 1000 steps in 1 s, then 10 steps per second
    writer = SummaryWriter(str(tmp_path))
    for step in range(100, 2001, 100):
        writer.add_scalar("charts/SPS", 0, step, walltime=1e9 + (step / 1000 if step <= 1000 else (step - 900) / 10))
    writer.close()
    assert run_grid.training_sps(tmp_path, learning_starts=1000) == pytest.approx(10.0)
    # the training curves' smoothing is a trailing moving average
    assert grid_report.smooth([1.0, 3.0, 5.0, 7.0], 2).tolist() == [1.0, 2.0, 4.0, 6.0]
    assert grid_report.smooth([2.0, 4.0], 1).tolist() == [2.0, 4.0]


def test_the_committed_report_is_regenerated_from_its_kept_runs(tmp_path):
    """`run_grid.py --report-only` on the kept runs (a copy: nothing may change them) gives every number of the
    committed report: the results, ablation, cross-play and speed tables."""
    kept = tmp_path / "kept"
    shutil.copytree(ROOT / "benchmarks/results/grid_like_for_like_runs", kept)
    args = run_grid.Args(report_only=True, work_dir=str(tmp_path / "work"), out_dir=str(tmp_path / "out"))
    args.keep_dir = str(kept)
    run_grid.main(args, [])
    regenerated, committed = (tmp_path / "out/grid_like_for_like.md").read_text(), COMMITTED.read_text()
    finished = len([path for path in kept.rglob("result.json") if "cross_play" not in path.parts])
    assert f"{finished} of 149 runs finished" in regenerated
    # part-way through retraining, a grid lists the cross-play it cannot compute yet: the same list as committed
    assert not_computed(regenerated) == not_computed(committed)
    assert len(table_numbers(committed)) >= 5 + 25 + 8 + 39 + 24 + 16  # headers; results, ablation, cross-play, speed
    assert table_numbers(regenerated) == table_numbers(committed)
    assert [path.name for path in sorted((tmp_path / "out").glob("*.png"))] == [
        f"grid_like_for_like_{task}.png" for task in sorted(grid.TASKS)
    ]
    assert not (tmp_path / "work").exists()  # nothing trained, no checkpoint needed
    assert files(kept) == files(ROOT / "benchmarks/results/grid_like_for_like_runs")


def not_computed(report: str) -> list[str]:
    return [line for line in report.splitlines() if line.startswith("Not computed")]


def test_the_critic_tuning_budget_and_its_score():
    jobs = grid.make_jobs(run_grid.Args(budget="critic_tuning", name="t"), grid.BUDGETS["critic_tuning"])
    seeds = {
        label: {job.seed for job in jobs if job.algorithm.label == label} for label in (*grid.CANDIDATES, "maddpg")
    }
    confirmed = (*grid.CONFIRMED, grid.BASELINE)  # tuning seeds: no other table has them
    assert seeds == {label: set(range(100, 103 if label in confirmed else 101)) for label in seeds}
    expected = {(task, label) for task in grid.TASKS[:3] for label in grid.CANDIDATES}
    assert {(job.task, job.algorithm.label) for job in jobs} == expected | {(t, "maddpg") for t in grid.TASKS[1:3]}
    soft = next(a for a in grid.ALGORITHMS if a.label == "pr2_soft").flags
    for label, (target, estimator, model) in grid.CANDIDATES.items():
        flags = next(a for a in grid.ALGORITHMS if a.label == label).flags
        assert flags == (*soft, "--critic-target", target, "--uniform-estimator", estimator, "--opponent-model", model)

    # the rule on made-up measures: three candidates screened on seed 100, two of them confirmed on 100-102
    labels, base = list(grid.CANDIDATES)[:3], grid.BASELINE
    spread = {labels[0]: [-14.0, -13.0, -13.5], labels[1]: [-13.0, -14.5, -14.0], labels[2]: [-15.0]}
    gain = {labels[0]: [0.4, 0.2, 0.3], labels[1]: [1.0, -0.2, 0.0], labels[2]: [-0.5]}  # on both sides, both tasks
    results, crossed = {}, {}
    for label in labels:
        for task in grid.TASKS[:3]:
            sps = 50.0 + labels.index(label)  # labels[1] the faster of the two confirmed
            results[(task, label)] = {100 + k: dict(final_eval=v, train_sps=sps) for k, v in enumerate(spread[label])}
        for task in grid.TASKS[1:3]:
            seeds = range(100, 100 + len(gain[label]))
            crossed[(task, base, base)] = [dict(seed=seed, good=1.0, adversary=-2.0) for seed in range(100, 103)]
            crossed[(task, label, base)] = [
                dict(seed=s, good=1.0 + g, adversary=0.0) for s, g in zip(seeds, gain[label])
            ]
            crossed[(task, base, label)] = [
                dict(seed=s, good=0.0, adversary=-2 + g) for s, g in zip(seeds, gain[label])
            ]
    rows = [line.split(" | ") for line in grid_report.tuning_section(results, crossed) if line.startswith("| screen")]
    screen = np.array([[spread[label][0], gain[label][0], gain[label][0]] for label in labels])
    scores = ((screen - screen.mean(0)) / screen.std(0)).sum(1)
    assert [row[1] for row in rows] == [labels[k] for k in np.argsort(-scores)]
    assert [float(row[6]) for row in rows] == pytest.approx(sorted(scores, reverse=True), abs=0.006)
    assert [row[3:6] for row in rows] == [[f"{v:+.2f}" for v in screen[k]] for k in np.argsort(-scores)]
    confirm = [line.split(" | ") for line in grid_report.tuning_section(results, crossed) if "| confirm" in line]
    means = np.array([[np.mean(spread[label]), *[np.mean(gain[label])] * 2] for label in labels[:2]])
    order = np.argsort(-((means - means.mean(0)) / means.std(0)).sum(1))
    assert [row[1] for row in confirm[:2]] == [labels[k] for k in order] and len(confirm) == 3
    first, second = (spread[labels[k]] for k in order)
    assert confirm[2][3] == grid_report.difference(first, second)  # Welch's interval over the three seeds
    # no difference is significant (every interval holds 0): the faster one wins, whatever its score
    prose = "\n".join(grid_report.tuning_section(results, crossed))
    assert f"Confirmation: {labels[1]} wins (no task's difference is significant: the higher training SPS)" in prose


def test_the_default_rule_on_the_grid_seeds():
    labels, base, seeds = ("pr2_soft", grid.CHALLENGER), grid.BASELINE, range(5)
    noise = np.array([0.1, -0.2, 0.0, 0.2, -0.1])  # per seed: the two labels' differences are then exact
    results = {("simple_spread", label): {s: dict(final_eval=-14.0 + k + noise[s]) for s in seeds}
               for k, label in enumerate(labels)}  # fmt: skip
    crossed = {}
    for task in grid.ADVERSARIAL:
        crossed[(task, base, base)] = [dict(seed=s, good=0.0, adversary=0.0) for s in seeds]
        for k, label in enumerate(labels):  # the challenger's sides 0.5 better than pr2_soft's
            crossed[(task, label, base)] = [dict(seed=s, good=0.5 * k + noise[s], adversary=9.0) for s in seeds]
            crossed[(task, base, label)] = [dict(seed=s, good=9.0, adversary=0.5 * k + noise[s]) for s in seeds]
            # against MASQL: not a measure of the rule
            crossed[(task, label, "masql")] = [dict(seed=s, good=-50.0 * k, adversary=0.0) for s in seeds]
    text = "\n".join(grid_report.default_section(results, crossed))
    assert f"Scores by the tuning rule: {grid.CHALLENGER} +3.00, pr2_soft -3.00" in text, text
    assert "Significantly worse (Welch's 95% interval below zero): none" in text
    assert f"{grid.CHALLENGER} becomes the default" in text
    # Student t(.975, 4)·sd/√5 = 0.20; Welch, equal variances: t(.975, 8)·sd·√(2/5) = 0.23
    assert "| simple_tag good vs maddpg | 0.00 ± 0.20 | 0.50 ± 0.20 | +0.50 ± 0.23 |" in text

    # simple_tag is not in the score, but a side significantly worse there keeps today's default
    crossed[("simple_tag", base, grid.CHALLENGER)] = [dict(seed=s, good=9.0, adversary=-1 + noise[s]) for s in seeds]
    text = "\n".join(grid_report.default_section(results, crossed))
    assert f"Scores by the tuning rule: {grid.CHALLENGER} +3.00" in text
    assert "interval below zero): simple_tag adversary vs maddpg." in text
    assert f"{grid.CHALLENGER} does not become the default" in text
    # the same simple_spread mean for both: that task adds 0 to each score (not NaN)
    results[("simple_spread", grid.CHALLENGER)] = results[("simple_spread", "pr2_soft")]
    text = "\n".join(grid_report.default_section(results, crossed))
    assert f"Scores by the tuning rule: {grid.CHALLENGER} +2.00, pr2_soft -2.00" in text, text
    del results[("simple_spread", "pr2_soft")][4]
    assert grid_report.default_section(results, crossed) == []  # not before every measure has every seed


def files(root: Path) -> dict:
    return {path.relative_to(root): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def test_the_like_for_like_budget_and_bad_input(tmp_path):
    args = run_grid.Args(name="grid")
    assert args.budget == "like_for_like"
    jobs = grid.make_jobs(args, grid.BUDGETS[args.budget])
    seeds = {}
    for job in jobs:
        seeds.setdefault((job.task, job.algorithm.label), []).append(job.seed)
    five, three = [0, 1, 2, 3, 4], [0, 1, 2]
    challenger = (grid.CHALLENGER, f"{grid.CHALLENGER}_uniform")
    expected = {(task, label): five for task in grid.TASKS for label in ("pr2_soft", "pr2_ac", "maddpg", *challenger)}
    expected |= {("simple_spread", "ddpg"): five, ("simple_spread", "ddpg_om"): five}
    expected |= {(task, label): three for task in grid.TASKS for label in ("pr2_soft_own", "pr2_soft_uniform")}
    expected |= {(task, "masql"): five for task in grid.TASKS[:3]}
    assert seeds == expected and len(jobs) == 149
    # seed by seed over every task, the baseline first within each task and seed
    groups = {}
    for job in jobs:
        groups.setdefault((job.seed, job.task), []).append(job.algorithm.label)
    assert all(labels[0] == "maddpg" for labels in groups.values()) and len(groups) == 20
    assert list(groups)[:4] == [(0, task) for task in grid.TASKS]
    for job in jobs:
        words = list(job.command)

        def flag(name, words=words):
            return words[words.index(name) + 1] if name in words else None

        assert (flag("--eval-every"), flag("--eval-episodes"), flag("--seed")) == ("5000", "10", str(job.seed))
        assert not {"--total-timesteps", "--learning-starts", "--train-frequency", "--batch-size"} & set(words)
        if job.algorithm.script == "pr2_continuous.py":
            label = job.algorithm.label
            assert flag("--policy") == ("deterministic" if label == "pr2_ac" else "soft"), words
            assert flag("--critic-input") == ("own" if label == "pr2_soft_own" else "state"), words
            assert flag("--soft-marginal") == ("uniform" if label.endswith("_uniform") else None), words
            tuned = label.startswith(grid.CHALLENGER)
            assert flag("--critic-target") == ("policies" if tuned else None), words
            assert flag("--opponent-model") == ("sides" if tuned else None), words
        if job.algorithm.label == "masql":  # the same critic information as PR2's
            assert flag("--critic-input") == "state" and job.task != "simple_tag", words

    # with no finished run, the report lists every row it waits for
    where = dict(work_dir=str(tmp_path / "work"), out_dir=str(tmp_path / "out"), keep_dir=str(tmp_path / "kept"))
    run_grid.main(run_grid.Args(report_only=True, **where), [])
    report = (tmp_path / "out" / "grid_like_for_like.md").read_text()
    assert "0 of 149 runs finished" in report and "Evaluation: no run has finished yet" in report
    tag = table_rows(report, "simple_tag")
    critics = dict.fromkeys(["pr2_soft", grid.CHALLENGER, "pr2_ac"], SEES_STATE) | {
        "maddpg": "all observations + all actions"
    }
    critics |= {
        "pr2_soft_own": "own observation + all actions",
        "pr2_soft_uniform": SEES_STATE,
        challenger[1]: SEES_STATE,
    }
    assert list(tag) == list(critics)
    assert [cells[2:4] for cells in tag.values()] == [
        [critic, f"0/{len(expected[('simple_tag', label)])}"] for label, critic in critics.items()
    ]
    assert "own observation + own action" in table_rows(report, "simple_spread")["ddpg"][2]

    # bad input stops the grid before anything runs, with one line
    shutil.rmtree(tmp_path / "out")
    bad = [
        (dict(algorithms=["maddgp"]), "unknown algorithm 'maddgp'; known: pr2_soft, pr2_soft_sides, pr2_ac, maddpg"),
        (dict(tasks=["differential"]), "unknown task 'differential'; known: simple_spread"),
        (dict(workers=0), "--workers and --cross-play-episodes must be positive"),
    ]
    if importlib.util.find_spec("ray") is None:
        bad.append((dict(ray_address="auto"), "--ray-address needs Ray: pip install"))
    for flags, message in bad:
        with pytest.raises(SystemExit, match=message):
            run_grid.main(run_grid.Args(**flags, **where), [])
    assert not list(tmp_path.iterdir())


def test_speed_ablation_and_cross_play_tables_pair_what_they_compare():
    def run(label, sps, final):
        schedule = dict(total_timesteps=100, learning_starts=10, train_frequency=1, batch_size=8)
        return dict(label=label, train_sps=sps, final_eval=final, schedule=schedule)

    results = {
        ("simple_spread", "pr2_soft"): {0: run("pr2_soft", 30.0, -24.5), 1: run("pr2_soft", 30.0, -23.5)},
        ("simple_spread", "pr2_ac"): {0: run("pr2_ac", 40.0, -20.0), 1: run("pr2_ac", 60.0, -22.0)},
        ("simple_spread", "maddpg"): {0: run("maddpg", 100.0, -25.0), 1: run("maddpg", 100.0, -23.0)},
        # an ablation on fewer seeds is compared on the seeds both have
        ("simple_spread", "pr2_soft_own"): {1: run("pr2_soft_own", 30.0, -30.0)},
    }
    speed = "\n".join(grid_report.speed_section(results))
    assert "| simple_spread | pr2_ac / maddpg | 50 ± 127 | 100 ± 0 | 0.50 | yes |" in speed
    results[("simple_spread", "pr2_ac")][1]["schedule"] = dict(run("", 0, 0)["schedule"], batch_size=16)
    assert "| simple_spread | pr2_ac / maddpg | 50 ± 127 | 100 ± 0 | 0.50 | NO |" in "\n".join(
        grid_report.speed_section(results)
    )
    ablations = "\n".join(grid_report.ablation_section(results))
    assert "| simple_spread | the state | pr2_soft | pr2_soft_own | [1] | -23.50 | -30.00 | +6.50 |" in ablations

    # cross-play pairs seeds by seed, not by position: pr2_ac has only seed 1 here
    crossed = {
        ("simple_tag", "pr2_ac", "maddpg"): [dict(seed=1, good=-4.0, adversary=4.0)],
        ("simple_tag", "maddpg", "maddpg"): [
            dict(seed=0, good=-5.0, adversary=5.0),
            dict(seed=1, good=-3.0, adversary=3.0),
        ],
    }
    assert grid_report.verdicts(crossed) == [("simple_tag", "pr2_ac", "maddpg", "good", [1], [-4.0], [-3.0])]
    # three seeds: pr2_soft's good agents score 10 more than maddpg's against maddpg's adversaries
    reference = [dict(seed=seed, good=-5.0 + seed, adversary=5.0 - seed) for seed in range(3)]
    crossed = {("simple_push", "maddpg", "maddpg"): reference, ("simple_push", "maddpg", "pr2_soft"): reference}
    crossed[("simple_push", "pr2_soft", "maddpg")] = [dict(r, good=r["good"] + 10.0) for r in reference]
    section = "\n".join(
        grid_report.cross_play_section(crossed, ["simple_tag pr2_ac vs maddpg seed 0"], run_grid.Args())
    )
    assert "| simple_push | pr2_soft | maddpg | 3 | 6.00 ± 2.48 | 4.00 ± 2.48 |" in section  # t(.975, 2)·1/√3
    wins = [
        line.split(" | ")[1:] for line in section.splitlines() if line.startswith("| simple_push | ") and "±" in line
    ]
    wins = [cells for cells in wins if cells[0] in ("good", "adversary")]  # Welch: t(.975, 4)·√(2/3) = 2.27
    assert wins == [
        ["good", "pr2_soft: 6.00 ± 2.48", "maddpg: -4.00 ± 2.48", "10.00 ± 0.00", "+10.00 ± 2.27", "pr2_soft |"],
        ["adversary", "pr2_soft: 4.00 ± 2.48", "maddpg: 4.00 ± 2.48", "0.00 ± 0.00", "+0.00 ± 2.27", "tie |"],
    ]
    assert "Not computed (1; a run's checkpoint is not in --work-dir" in section and "seed 0." in section


def test_cross_play_is_kept_per_pair_of_runs_across_checkouts(tmp_path, monkeypatch):
    played, loaded = [], []

    def policies_of(run, path):
        loaded.append(path)
        return {"adversary_0": run, "agent_0": run}

    monkeypatch.setattr(run_grid, "policies_of", policies_of)
    monkeypatch.setattr(
        run_grid, "play", lambda policies, *_: played.append(policies) or {"adversary_0": -1.0, "agent_0": 1.0}
    )
    args = run_grid.Args(
        work_dir=str(tmp_path / "work"), keep_dir=str(tmp_path / "kept"), name="grid", cross_play_episodes=2
    )

    def finished(task, label, curve, seed=0):
        run = dict(task=task, label=label, seed=seed, command=f"python {label}.py --seed {seed}", eval_curve=curve)
        run |= dict(checkpoint=f"runs/{task}__{label}__{seed}/{label}.pt", max_cycles=25)
        path = grid.job_folder(args, task, label, seed) / run["checkpoint"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(label.encode())
        return run

    def job(task, label, seed=0):
        algorithm = next(a for a in grid.ALGORITHMS if a.label == label)
        folders = (folder(args, task, label, seed) for folder in (grid.job_folder, grid.kept_folder))
        return grid.Job(task, algorithm, seed, next(folders), (), next(folders))

    results = {("simple_tag", "pr2_ac"): {0: finished("simple_tag", "pr2_ac", [[5, 1.0]])}}
    results[("simple_tag", "maddpg")] = {0: finished("simple_tag", "maddpg", [[5, 2.0]])}
    table, missing = run_grid.cross_play(results, args)
    assert len(played) == 4 and not missing and table[("simple_tag", "pr2_ac", "maddpg")][0]["good"] == 1.0
    assert run_grid.cross_play(results, args) == (table, []) and len(played) == 4  # kept
    shutil.rmtree(tmp_path / "work")  # a fresh checkout: no checkpoints, the kept results only
    assert run_grid.cross_play(results, args) == (table, []) and len(played) == 4
    assert run_grid.trained_again(results, [], args) == []
    # maddpg trained again from the same command, the same evaluations (seeded): nothing is played again
    results[("simple_tag", "maddpg")][0] = finished("simple_tag", "maddpg", [[5, 2.0]])
    assert run_grid.cross_play(results, args) == (table, []) and len(played) == 4
    # a different maddpg run: its pairings with pr2_ac, whose checkpoint is gone, wait for pr2_ac to be trained again
    results[("simple_tag", "maddpg")][0] = finished("simple_tag", "maddpg", [[5, 3.0]])
    table, missing = run_grid.cross_play(results, args)
    assert missing == ["simple_tag pr2_ac vs maddpg seed 0", "simple_tag maddpg vs pr2_ac seed 0"]
    assert len(played) == 5 and list(table) == [("simple_tag", "maddpg", "maddpg"), ("simple_tag", "pr2_ac", "pr2_ac")]
    assert run_grid.trained_again(results, [], args) == [("simple_tag", "pr2_ac", 0)]
    # a kept run without its checkpoint, whose partner is about to run, is trained again; without one, it is not
    del results[("simple_tag", "maddpg")]
    assert run_grid.trained_again(results, [job("simple_tag", "maddpg")], args) == [("simple_tag", "pr2_ac", 0)]
    assert run_grid.trained_again(results, [], args) == []

    # a baseline's checkpoint waiting for its pairings is kept until they are played
    results = {("simple_push", "maddpg"): {2: finished("simple_push", "maddpg", [[5, 1.0]], seed=2)}}
    kept = grid.kept_folder(args, "simple_push", "maddpg", 2) / results[("simple_push", "maddpg")][2]["checkpoint"]
    run_grid.keep_checkpoints(results, {("simple_push", "pr2_soft", 2)}, args)
    assert kept.read_bytes() == b"maddpg"  # pr2_soft has not run yet
    shutil.rmtree(tmp_path / "work")  # the session ends; the next one trains pr2_soft on a fresh checkout
    results[("simple_push", "pr2_soft")] = {2: finished("simple_push", "pr2_soft", [[5, 1.0]], seed=2)}
    table, missing = run_grid.cross_play(results, args)
    assert not missing and len(table) == 4 and kept in loaded and run_grid.trained_again(results, [], args) == []
    run_grid.keep_checkpoints(results, set(), args)
    assert not kept.exists() and not (kept.parents[1]).exists()  # no pairing needs it any more


RAY_STUB = """
import json, os

def init(address=None, runtime_env=None):
    with open(os.environ["RAY_STUB_LOG"], "a") as log:
        log.write(json.dumps(dict(address=address, runtime_env=runtime_env)) + "\\n")

class Ref:
    def __init__(self, value):
        self.value = value

def remote(**options):
    assert options == {"num_cpus": 1}
    def wrap(function):
        class Task:
            @staticmethod
            def remote(*args):
                return Ref(function(*args))
        return Task
    return wrap

def wait(refs, num_returns=1):
    return refs[:num_returns], refs[num_returns:]

def get(ref):
    return ref.value
"""


def run_grid_ok(*flags, cwd, extra_env=None) -> str:
    return run_ok("benchmarks/run_grid.py", *flags, cwd=cwd, timeout=300, extra_env=extra_env).stdout


def run_dirs(work):
    return sorted(work.glob("grid_smoke/simple_spread/*/seed_*/runs/*"))


def test_tiny_grid_reports_the_evaluation_headline_resumes_and_restarts_an_interrupted_run(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    where = ["--work-dir", str(work), "--out-dir", str(out), "--workers", "2"]
    flags = [*SMOKE, "--algorithms", "pr2_soft", "maddpg", *where]
    assert "4 runs: 0 already done, 4 to run" in run_grid_ok(*flags, cwd=tmp_path)
    report = (out / "grid_smoke.md").read_text()
    rows = table_rows(report, "simple_spread")
    assert list(rows) == ["pr2_soft", "maddpg"], rows
    assert "--budget smoke --tasks simple_spread" in report and "torch " in report and "mpe2 1." in report
    assert f"CPUs the runs trained on: {cpu()} (4 runs)" in report
    assert (out / "grid_smoke_simple_spread.png").stat().st_size > 10_000

    # the headline read back from the logs: each run's last three evaluations averaged, then mean ± CI over seeds;
    # the training return beside it
    evaluation, training = {}, {}
    for label in rows:
        logs = [read_scalars(str(run)) for run in run_dirs(work) if run.parents[2].name == label]
        assert [[step for step, _ in log["eval/episodic_return"]] for log in logs] == [[25, 50, 75, 100, 125, 150]] * 2
        evaluation[label] = [np.mean([value for _, value in log["eval/episodic_return"][-3:]]) for log in logs]
        training[label] = [run_grid.final_value(log["charts/episodic_return"], 150) for log in logs]
        every = [np.mean([value for _, value in log["eval/episodic_return"]]) for log in logs]
        assert grid_report.fmt(every) != grid_report.fmt(evaluation[label])  # so that the next lines tell them apart
    critics = {"pr2_soft": SEES_STATE, "maddpg": "all observations + all actions"}
    for label, cells in rows.items():
        assert cells[2:6] == [critics[label], "2/2", "150", f"**{grid_report.fmt(evaluation[label])}**"], cells
        assert cells[7] == grid_report.fmt(training[label]), cells
    assert rows["pr2_soft"][6] == grid_report.difference(evaluation["pr2_soft"], evaluation["maddpg"])
    assert rows["maddpg"][6] == "–"
    assert "2 episodes every 25 env steps and after training" in report and "at steps 100, 125, 150" in report

    # a second invocation redoes nothing: the same run folders, untouched
    before = {path: path.stat().st_mtime_ns for path in run_dirs(work)}
    results = {path: path.stat().st_mtime_ns for path in work.glob("grid_smoke/simple_spread/*/seed_*/result.json")}
    assert len(before) == 4 and len(results) == 4
    assert "4 runs: 4 already done, 0 to run" in run_grid_ok(*flags, cwd=tmp_path)
    assert {path: path.stat().st_mtime_ns for path in run_dirs(work)} == before
    assert {path: path.stat().st_mtime_ns for path in results} == results
    # nor does one on a fresh checkout (no --work-dir): the results kept beside the report are used
    fresh = ["--work-dir", str(tmp_path / "fresh_work"), "--out-dir", str(out), "--workers", "2"]
    stdout = run_grid_ok(*SMOKE, "--algorithms", "pr2_soft", "maddpg", *fresh, cwd=tmp_path)
    assert "4 runs: 4 already done, 0 to run" in stdout
    assert table_rows((out / "grid_smoke.md").read_text(), "simple_spread") == rows
    assert not (tmp_path / "fresh_work").exists()

    # an interrupted run (no result.json, a half-written log) starts again from scratch; here through a stub Ray
    interrupted = work / "grid_smoke/simple_spread/maddpg/seed_1"
    (interrupted / "result.json").unlink()
    (out / "grid_smoke_runs/simple_spread/maddpg/seed_1/result.json").unlink()  # it never finished, so never kept
    stale = next((interrupted / "runs").iterdir())
    (stale / "half_written").write_text("x")
    # reports what is finished, starts nothing; rows say how many of their seeds are in (ddpg: none)
    report_only = run_grid_ok(
        *SMOKE, "--algorithms", "pr2_soft", "maddpg", "ddpg", *where, "--report-only", cwd=tmp_path
    )
    assert "6 runs: 3 already done, 3 to run" in report_only and "3 unfinished run(s) left out" in report_only
    assert (stale / "half_written").exists() and not (interrupted / "result.json").exists()
    partial = (out / "grid_smoke.md").read_text()
    assert [cells[3] for cells in table_rows(partial, "simple_spread").values()] == ["2/2", "1/2", "0/2"]
    assert "3 of 6 runs finished" in partial and "--report-only" not in partial
    (tmp_path / "stub" / "ray").mkdir(parents=True)
    (tmp_path / "stub" / "ray" / "__init__.py").write_text(RAY_STUB)
    stub_env = dict(PYTHONPATH=str(tmp_path / "stub"), RAY_STUB_LOG=str(tmp_path / "ray.log"))
    ray_flags = [*flags, "--ray-address", "ray://head:10001"]
    assert "4 runs: 3 already done, 1 to run" in run_grid_ok(*ray_flags, cwd=tmp_path, extra_env=stub_env)
    [call] = [json.loads(line) for line in (tmp_path / "ray.log").read_text().splitlines()]
    assert call["address"] == "ray://head:10001"
    assert not stale.exists() and len(list((interrupted / "runs").iterdir())) == 1
    assert (interrupted / "result.json").exists()
    assert {path: mtime for path, mtime in before.items() if "maddpg/seed_1" not in str(path)} == {
        path: path.stat().st_mtime_ns for path in before if "maddpg/seed_1" not in str(path)
    }


# Ray on Linux takes the machine's routable address for its node even when given 127.0.0.1; in its single-machine
# mode (the macOS default) every Ray process, the grid's driver included, binds and connects on loopback only.
RAY_LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def ray_head():
    """A one-node Ray cluster with 2 CPUs, started for the test with `ray start --head --block`; yields (address,
    its temp dir). Stopped by SIGTERM to that one command, which shuts down the processes it started (`ray stop` would
    stop every Ray cluster on the machine)."""
    # not under tmp_path: Ray's socket paths under it would pass the 107-byte limit of Unix socket names
    temp_dir = tempfile.mkdtemp(prefix="ray")
    port = free_port()
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", f"--port={port}"]
    command += ["--num-cpus=2", f"--temp-dir={temp_dir}", "--include-dashboard=false", "--disable-usage-stats"]
    command += [f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}"]
    command += ["--object-store-memory=100000000"]
    log_path = Path(temp_dir, "head.log")
    with open(log_path, "w") as log:
        head = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, **RAY_LOOPBACK), start_new_session=True
        )
    try:
        deadline = time.time() + 120
        while "Ray runtime started" not in log_path.read_text():
            assert head.poll() is None and time.time() < deadline, f"ray start failed:\n{log_path.read_text()[-4000:]}"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", temp_dir
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        # its own process group (start_new_session): whatever Ray process outlived the shutdown
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs Ray (pip install ray); CI installs none")
def test_a_smoke_grid_runs_on_a_real_local_ray_cluster(tmp_path, ray_head):
    address, ray_dir = ray_head
    work, out = tmp_path / "work", tmp_path / "out"
    flags = ["--budget", "smoke", "--algorithms", "maddpg", "ddpg", "--tasks", "simple_spread", "--seeds", "0"]
    flags += ["--work-dir", str(work), "--out-dir", str(out), "--ray-address", address]
    stdout = run_grid_ok(*flags, cwd=tmp_path, extra_env=RAY_LOOPBACK)
    assert "2 runs: 0 already done, 2 to run" in stdout and "[2/2] simple_spread" in stdout, stdout
    # Ray names each task a worker runs in that worker's log: the runs went through the cluster, not local processes
    worker_logs = [path.read_text() for path in Path(ray_dir).glob("session_*/logs/worker-*.out")]
    assert any(":task_name:execute" in text for text in worker_logs), f"no Ray worker ran a task: {ray_dir}"

    runs = run_dirs(work)
    assert [run.parents[2].name for run in runs] == ["ddpg", "maddpg"], runs  # <label>/seed_0/runs/<run>
    report = (out / "grid_smoke.md").read_text()
    for run in runs:
        label = run.parents[2].name
        scalars = finite_scalars(run, ["charts/episodic_return", "charts/SPS"])
        assert scalars["charts/episodic_return"][-1][0] > 100  # logged to near the end of its 150 steps
        checkpoint = torch.load(next(run.glob("*.pt")), map_location="cpu", weights_only=True)
        assert checkpoint["args"]["total_timesteps"] == 150 and checkpoint["args"]["exp_name"] == label
        result = json.loads((run.parents[1] / "result.json").read_text())
        assert (result["task"], result["label"], result["seed"]) == ("simple_spread", label, 0)
        assert math.isfinite(result["final_return"]) and math.isfinite(result["final_eval"])
        assert result["curve"] == [list(point) for point in scalars["charts/episodic_return"]]
        assert table_rows(report, "simple_spread")[label][3:5] == ["1/1", "150"]
