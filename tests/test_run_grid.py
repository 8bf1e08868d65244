"""benchmarks/run_grid.py: the statistics on known numbers, the like-for-like budget's runs, the issue's targets,
cross-play kept across checkouts, and a tiny grid end to end: the evaluation headline read back from the logs, a
partial report, resuming without redoing runs (also from the kept results alone), restarting an interrupted run
cleanly, dispatching through a stub Ray and a real local Ray cluster."""

import contextlib
import importlib.util
import json
import math
import os
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
from torch.utils.tensorboard import SummaryWriter

from benchmarks import run_grid
from benchmarks.common import cpu
from tests.helpers import ROOT, finite_scalars
from utils.logger import read_scalars

GRID = ["--budget", "smoke", "--tasks", "simple_spread", "--seeds", "0", "1"]
SEES_STATE = (
    "state s (all agents' observations) + all actions"  # the report's "critic sees" for PR2 with --critic-input state
)


# ---------------------------------------------------------------- statistics
def test_mean_ci_is_the_student_t_interval():
    mean, half = run_grid.mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert mean == 3.0
    assert half == pytest.approx(2.776445 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)  # t(0.975, 4) · s / √n
    means, halves = run_grid.mean_ci([[0.0, 10.0], [2.0, 10.0]])  # per column: over seeds, along axis 0
    assert means.tolist() == [1.0, 10.0]
    assert halves[0] == pytest.approx(12.706205 * math.sqrt(2) / math.sqrt(2), rel=1e-6) and halves[1] == 0.0
    assert math.isnan(run_grid.mean_ci([4.0])[1]) and run_grid.fmt([4.0]) == "4.00"
    assert run_grid.fmt([1.0, 2.0, 3.0, 4.0, 5.0]) == "3.00 ± 1.96"


def test_difference_is_welchs_t_interval():
    from scipy import stats

    a, b = [-21.3, -20.6, -21.4, -20.2], [-21.1, -20.2, -19.5]
    low, high = stats.ttest_ind(a, b, equal_var=False).confidence_interval()
    assert run_grid.difference(a, b) == f"{(low + high) / 2:+.2f} ± {(high - low) / 2:.2f}"
    assert run_grid.difference([1.0], [2.0, 3.0]) == "-1.50"  # one seed: no interval
    assert run_grid.welch(a, b) == pytest.approx(((low + high) / 2, (high - low) / 2))
    assert [
        run_grid.significance(*interval) for interval in [(1.0, 0.5), (-1.0, 0.5), (0.3, 0.5), (2.0, math.nan)]
    ] == [
        1,
        -1,
        0,
        0,
    ]


def test_the_headline_averages_the_last_three_evaluations():
    assert run_grid.last_evaluations([(25, 1.0), (50, 2.0), (75, 3.0), (100, 10.0)]) == 5.0
    assert run_grid.last_evaluations([(100, 4.0)]) == 4.0  # fewer evaluations: all of them


def test_final_value_averages_the_last_tenth_of_training():
    curve = [(step, float(step)) for step in range(100, 1001, 100)]
    assert run_grid.final_value(curve, 1000) == 1000.0  # only step 1000 is past 900
    assert run_grid.final_value(curve, 2000) == 1000.0  # nothing logged in the last tenth: the last point
    assert run_grid.final_value([(s, v) for s, v in curve if s > 800] + [(950, 0.0)], 1000) == 500.0


def test_training_sps_leaves_out_the_warm_up(tmp_path):
    writer = SummaryWriter(str(tmp_path))
    for step in range(100, 2001, 100):  # 1000 steps of warm-up in 1 s, then 10 steps per second
        wall = step / 1000 if step <= 1000 else 1.0 + (step - 1000) / 10
        writer.add_scalar("charts/SPS", 0, step, walltime=1e9 + wall)
    writer.close()
    assert run_grid.training_sps(tmp_path, learning_starts=1000) == pytest.approx(10.0)


# ---------------------------------------------------------------- a tiny grid, end to end
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
    """`python benchmarks/run_grid.py <flags>` from cwd; its stdout, or the test fails with its stderr."""
    env = dict(os.environ, PYTHONHASHSEED="0", **(extra_env or {}))
    command = [sys.executable, str(ROOT / "benchmarks/run_grid.py"), *flags]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def run_dirs(work):
    return sorted(work.glob("grid_smoke/simple_spread/*/seed_*/runs/*"))


def table_rows(table: str, task: str) -> dict:
    """{label: the row's cells} of a task in the report's results table (12 columns; the other tables have fewer)."""
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith(f"| {task} | ")]
    return {cells[1]: cells for cells in rows if len(cells) == 12}


def test_tiny_grid_reports_the_evaluation_headline_resumes_and_restarts_an_interrupted_run(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    where = ["--work-dir", str(work), "--out-dir", str(out), "--workers", "2"]
    flags = [*GRID, "--algorithms", "pr2_soft", "maddpg", *where]
    assert "4 runs: 0 already done, 4 to run" in run_grid_ok(*flags, cwd=tmp_path)
    table = (out / "grid_smoke.md").read_text()
    rows = table_rows(table, "simple_spread")
    assert list(rows) == ["pr2_soft", "maddpg"], rows
    assert "--budget smoke --tasks simple_spread" in table and "torch " in table and "mpe2 1." in table
    assert f"CPUs the runs trained on: {cpu()} (4 runs)" in table
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
        assert run_grid.fmt(every) != run_grid.fmt(evaluation[label])  # so that the next lines tell them apart
    critics = {"pr2_soft": SEES_STATE, "maddpg": "all observations + all actions"}
    for label, cells in rows.items():
        assert cells[2:6] == [critics[label], "2/2", "150", f"**{run_grid.fmt(evaluation[label])}**"], cells
        assert cells[7] == run_grid.fmt(training[label]), cells
    assert rows["pr2_soft"][6] == run_grid.difference(evaluation["pr2_soft"], evaluation["maddpg"])
    assert rows["maddpg"][6] == "–"
    assert "2 episodes every 25 env steps and after training" in table and "at steps 100, 125, 150" in table
    assert "The better PR2 variant is not chosen yet" in table
    assert f"| **missed** ({rows['pr2_soft'][6]}) |" in table or f"| met ({rows['pr2_soft'][6]}) |" in table

    # a second invocation redoes nothing: the same run folders, untouched
    before = {path: path.stat().st_mtime_ns for path in run_dirs(work)}
    results = {path: path.stat().st_mtime_ns for path in work.glob("grid_smoke/simple_spread/*/seed_*/result.json")}
    assert len(before) == 4 and len(results) == 4
    assert "4 runs: 4 already done, 0 to run" in run_grid_ok(*flags, cwd=tmp_path)
    assert {path: path.stat().st_mtime_ns for path in run_dirs(work)} == before
    assert {path: path.stat().st_mtime_ns for path in results} == results
    # nor does one on a fresh checkout (no --work-dir): the results kept beside the report are used
    fresh = ["--work-dir", str(tmp_path / "fresh_work"), "--out-dir", str(out), "--workers", "2"]
    assert "4 runs: 4 already done, 0 to run" in run_grid_ok(
        *GRID, "--algorithms", "pr2_soft", "maddpg", *fresh, cwd=tmp_path
    )
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
        *GRID, "--algorithms", "pr2_soft", "maddpg", "ddpg", *where, "--report-only", cwd=tmp_path
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
    table = (out / "grid_smoke.md").read_text()
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
        assert table_rows(table, "simple_spread")[label][3:5] == ["1/1", "150"]


def test_cross_play_is_kept_per_pair_of_runs_and_a_run_it_still_needs_is_trained_again(tmp_path, monkeypatch):
    played = []
    monkeypatch.setattr(run_grid, "policies_of", lambda run, folder: {"adversary_0": run, "agent_0": run})
    monkeypatch.setattr(
        run_grid, "play", lambda policies, *_: played.append(policies) or {"adversary_0": -1.0, "agent_0": 1.0}
    )
    where = dict(work_dir=str(tmp_path / "work"), keep_dir=str(tmp_path / "kept"))
    args = run_grid.Args(**where, name="grid", cross_play_episodes=2)

    def finished(label, curve, checkpoint=True):
        run = dict(task="simple_tag", label=label, seed=0, command=f"python {label}.py --seed 0", eval_curve=curve)
        run |= dict(checkpoint=f"runs/simple_tag__{label}__0/{label}.pt", max_cycles=25)
        path = run_grid.job_folder(args, "simple_tag", label, 0) / run["checkpoint"]
        if checkpoint:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
        return run

    def job(label):
        algorithm = next(a for a in run_grid.ALGORITHMS if a.label == label)
        folders = (folder(args, "simple_tag", label, 0) for folder in (run_grid.job_folder, run_grid.kept_folder))
        return run_grid.Job("simple_tag", algorithm, 0, next(folders), (), next(folders))

    results = {("simple_tag", "pr2_ac"): {0: finished("pr2_ac", [[5, 1.0]])}}
    results[("simple_tag", "maddpg")] = {0: finished("maddpg", [[5, 2.0]])}
    table, missing = run_grid.cross_play(results, args)
    assert len(played) == 4 and not missing and table[("simple_tag", "pr2_ac", "maddpg")][0]["good"] == 1.0
    assert run_grid.cross_play(results, args) == (table, []) and len(played) == 4  # kept
    shutil.rmtree(tmp_path / "work")  # a fresh checkout: no checkpoints, the kept results only
    assert run_grid.cross_play(results, args) == (table, []) and len(played) == 4
    assert run_grid.trained_again(results, [], args) == []
    # maddpg trained again from the same command, the same evaluations (seeded): nothing is played again
    results[("simple_tag", "maddpg")][0] = finished("maddpg", [[5, 2.0]])
    assert run_grid.cross_play(results, args) == (table, []) and len(played) == 4
    # a different maddpg run: its pairings with pr2_ac, whose checkpoint is gone, wait for pr2_ac to be trained again
    results[("simple_tag", "maddpg")][0] = finished("maddpg", [[5, 3.0]])
    table, missing = run_grid.cross_play(results, args)
    assert missing == ["simple_tag pr2_ac vs maddpg seed 0", "simple_tag maddpg vs pr2_ac seed 0"]
    assert len(played) == 5 and list(table) == [("simple_tag", "maddpg", "maddpg"), ("simple_tag", "pr2_ac", "pr2_ac")]
    assert run_grid.trained_again(results, [], args) == [("simple_tag", "pr2_ac", 0)]
    # a kept run without its checkpoint, whose partner is about to run, is trained again; without one, it is not
    del results[("simple_tag", "maddpg")]
    assert run_grid.trained_again(results, [job("maddpg")], args) == [("simple_tag", "pr2_ac", 0)]
    assert run_grid.trained_again(results, [], args) == []


def test_a_baseline_checkpoint_waiting_for_its_pairings_is_kept_until_they_are_played(tmp_path, monkeypatch):
    loaded = []
    monkeypatch.setattr(
        run_grid, "policies_of", lambda run, path: loaded.append(path) or {"adversary_0": 0, "agent_0": 0}
    )
    monkeypatch.setattr(run_grid, "play", lambda *_: {"adversary_0": -1.0, "agent_0": 1.0})
    args = run_grid.Args(work_dir=str(tmp_path / "work"), keep_dir=str(tmp_path / "kept"), name="grid")

    def finished(label):
        run = dict(task="simple_push", label=label, seed=2, command=label, eval_curve=[[5, 1.0]])
        run |= dict(checkpoint=f"runs/simple_push__{label}__2/{label}.pt", max_cycles=25)
        path = run_grid.job_folder(args, "simple_push", label, 2) / run["checkpoint"]
        path.parent.mkdir(parents=True)
        path.write_bytes(label.encode())
        return run

    results = {("simple_push", "maddpg"): {2: finished("maddpg")}}
    kept = run_grid.kept_folder(args, "simple_push", "maddpg", 2) / results[("simple_push", "maddpg")][2]["checkpoint"]
    run_grid.keep_checkpoints(results, {("simple_push", "pr2_soft", 2)}, args)
    assert kept.read_bytes() == b"maddpg"  # pr2_soft has not run yet
    shutil.rmtree(tmp_path / "work")  # the session ends; the next one trains pr2_soft on a fresh checkout
    results[("simple_push", "pr2_soft")] = {2: finished("pr2_soft")}
    table, missing = run_grid.cross_play(results, args)
    assert not missing and len(table) == 4 and kept in loaded and run_grid.trained_again(results, [], args) == []
    run_grid.keep_checkpoints(results, set(), args)
    assert not kept.exists() and not (kept.parents[1]).exists()  # no pairing needs it any more


def test_the_baseline_runs_first_within_each_task_and_seed():
    jobs = run_grid.make_jobs(run_grid.Args(name="grid"), run_grid.BUDGETS["like_for_like"])
    groups = {}
    for job in jobs:
        groups.setdefault((job.seed, job.task), []).append(job.algorithm.label)
    assert all(labels[0] == "maddpg" for labels in groups.values()) and len(groups) == 20
    assert list(groups)[:4] == [(0, task) for task in run_grid.PARTICLE]


def test_unknown_names_and_a_missing_ray_stop_before_anything_runs(tmp_path):
    with pytest.raises(SystemExit, match="unknown algorithm 'maddgp'; known: pr2_soft, pr2_ac, maddpg"):
        run_grid.main(run_grid.Args(algorithms=["maddgp"], work_dir=str(tmp_path)), [])
    if importlib.util.find_spec("ray") is None:
        with pytest.raises(SystemExit, match="--ray-address needs Ray: pip install"):
            run_grid.main(run_grid.Args(ray_address="auto", work_dir=str(tmp_path)), [])
    assert not list(tmp_path.iterdir())


def test_the_like_for_like_budget_is_the_default_and_runs_what_the_issue_asks():
    args = run_grid.Args(name="grid")
    assert args.budget == "like_for_like"
    jobs = run_grid.make_jobs(args, run_grid.BUDGETS[args.budget])
    seeds = {}
    for job in jobs:
        seeds.setdefault((job.task, job.algorithm.label), []).append(job.seed)
    five, three = [0, 1, 2, 3, 4], [0, 1, 2]
    expected = {(task, label): five for task in run_grid.PARTICLE for label in ("pr2_soft", "pr2_ac", "maddpg")}
    expected |= {("simple_spread", "ddpg"): five, ("simple_spread", "ddpg_om"): five}
    expected |= {(task, label): three for task in run_grid.PARTICLE for label in ("pr2_soft_own", "pr2_soft_uniform")}
    assert seeds == expected and len(jobs) == 94
    # seed by seed over every task: a grid stopped half way has every task's first seeds
    assert [job.seed for job in jobs] == sorted(job.seed for job in jobs)
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
            assert flag("--soft-marginal") == ("uniform" if label == "pr2_soft_uniform" else None), words


def test_tuning_runs_only_on_seeds_that_no_other_budget_uses_and_its_candidates_nowhere_else():
    tuning = run_grid.make_jobs(run_grid.Args(budget="tuning", name="t"), run_grid.BUDGETS["tuning"])
    assert {job.seed for job in tuning} == {100}
    assert {job.algorithm.label for job in tuning} == {run_grid.FORMER_DEFAULT, *run_grid.CANDIDATES, "maddpg"}
    for budget in set(run_grid.BUDGETS) - {"tuning"}:
        jobs = run_grid.make_jobs(run_grid.Args(budget=budget, name=budget), run_grid.BUDGETS[budget])
        labels = {job.algorithm.label for job in jobs}
        assert max(job.seed for job in jobs) < 100 and not labels & {run_grid.FORMER_DEFAULT, *run_grid.CANDIDATES}
    for label, alpha in (("pr2_soft_alpha0.1", "0.1"), ("pr2_soft_alpha0.03", "0.03")):
        command = next(job for job in tuning if job.algorithm.label == label).command
        assert command[command.index("--alpha") + 1] == alpha and "state" in command  # else the defaults' flags


def test_a_report_with_no_finished_run_lists_every_row_it_waits_for(tmp_path):
    run_grid.main(run_grid.Args(report_only=True, work_dir=str(tmp_path), out_dir=str(tmp_path / "out")), [])
    report = (tmp_path / "out" / "grid_like_for_like.md").read_text()
    assert "0 of 94 runs finished" in report and "Evaluation: no run has finished yet" in report
    tag = table_rows(report, "simple_tag")
    assert list(tag) == ["pr2_soft", "pr2_ac", "maddpg", "pr2_soft_own", "pr2_soft_uniform"]
    assert [cells[2:4] for cells in tag.values()] == [
        [SEES_STATE, "0/5"],
        [SEES_STATE, "0/5"],
        ["all observations + all actions", "0/5"],
        ["own observation + all actions", "0/3"],
        [SEES_STATE, "0/3"],
    ]
    assert "own observation + own action" in table_rows(report, "simple_spread")["ddpg"][2]


def test_speed_ablations_and_targets_are_judged_from_the_runs():
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
    speed = "\n".join(run_grid.speed_section(results))
    assert "| simple_spread | pr2_ac / maddpg | 50 ± 127 | 100 ± 0 | 0.50 | yes |" in speed
    ablations = "\n".join(run_grid.ablation_section(results))
    assert "| simple_spread | the state | pr2_soft_own | [1] | -23.50 | -30.00 | +6.50 |" in ablations

    # cross-play: pr2_soft's good agents score 10 more than maddpg's against maddpg's adversaries on every task,
    # its adversaries as much as maddpg's; pr2_ac's good agents score 10 less, on simple_tag only
    reference = [dict(seed=seed, good=-5.0 + seed, adversary=5.0 - seed) for seed in range(3)]
    shifted = lambda by: [dict(r, good=r["good"] + by) for r in reference]  # noqa: E731
    crossed = {}
    for task in run_grid.ADVERSARIAL:
        crossed |= {(task, "maddpg", "maddpg"): reference, (task, "pr2_soft", "maddpg"): shifted(10.0)}
        crossed |= {(task, "maddpg", "pr2_soft"): reference}
    crossed[("simple_tag", "pr2_ac", "maddpg")] = shifted(-10.0)
    targets = "\n".join(run_grid.targets_section(results, crossed))
    assert "**The better PR2 variant is pr2_ac**" in targets and "(pr2_soft -24.00 vs pr2_ac -21.00)" in targets
    plus, zero, minus = (run_grid.difference([-5 + s + by for s in range(3)], [-5, -4, -3]) for by in (10, 0, -10))
    goal = run_grid.GOALS
    soft = run_grid.difference([-24.5, -23.5], [-25, -23])
    assert f"| {goal['simple_spread']} | met ({soft}) | met (+3.00 ± 6.08) |" in targets, targets
    assert f"| {goal['its aim']} | **missed** | **missed** |" in targets
    negative = "**missed** (1 significantly negative, 1 of 6 measured)"
    assert f"| {goal['adversarial']} | met (0 significantly negative) | {negative} |" in targets
    assert f"| {goal['their aim']} | met (3 significantly positive) | **missed** (0 significantly" in targets
    tag = f"| {plus} (significantly positive) | {minus} (significantly negative) |"
    assert f"| cross-play simple_tag, good agents {tag}" in targets
    assert f"| cross-play simple_push, adversaries | {zero} (not significant) | not measured |" in targets
    assert "Its targets: simple_spread met (+3.00 ± 6.08); its aim **missed**; adversarial **missed**" in targets
    assert targets.endswith(run_grid.TRIED)  # a missed target says what was tried

    # cross-play pairs seeds by seed, not by position: pr2_ac has only seed 1 here
    partial = {
        ("simple_tag", "pr2_ac", "maddpg"): [dict(seed=1, good=-4.0, adversary=4.0)],
        ("simple_tag", "maddpg", "maddpg"): [
            dict(seed=0, good=-5.0, adversary=5.0),
            dict(seed=1, good=-3.0, adversary=3.0),
        ],
    }
    assert run_grid.verdicts(partial) == [("simple_tag", "pr2_ac", "maddpg", "good", [-4.0], [-3.0])]
    assert "| cross-play simple_tag, good agents | not measured | -1.00 (one seed, no interval) |" in "\n".join(
        run_grid.targets_section({}, partial)
    )


def test_smoothing_is_a_trailing_moving_average():
    assert run_grid.smooth([1.0, 3.0, 5.0, 7.0], 2).tolist() == [1.0, 2.0, 4.0, 6.0]
    assert run_grid.smooth([2.0, 4.0], 1).tolist() == [2.0, 4.0]
