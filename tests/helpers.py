"""Shared test helpers: run a script the way a user does, and read its TensorBoard logs back."""

import ast
import math
import os
import runpy
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from utils.logger import read_scalars

ROOT = Path(__file__).resolve().parents[1]


def run_script(
    script: str, *flags: str, cwd: Path, timeout: float = 600, extra_env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run `python <script> <flags>` from `cwd` (so its runs/ folder lands there); never raises on failure.

    A relative script path is taken from the repository root; an absolute one (e.g. a copy) is run as it is.
    """
    env = dict(os.environ, PYTHONHASHSEED="0", **(extra_env or {}))
    return subprocess.run(
        [sys.executable, str(ROOT / script), *flags],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_ok(script: str, *flags: str, cwd: Path, timeout: float = 600, extra_env=None) -> subprocess.CompletedProcess:
    """Like run_script, but fails the test with the script's stderr when it exits non-zero."""
    result = run_script(script, *flags, cwd=cwd, timeout=timeout, extra_env=extra_env)
    assert result.returncode == 0, f"{script} {' '.join(flags)} failed:\n{result.stderr[-4000:]}"
    return result


def command_line(script: str, *flags: str, cwd: Path, monkeypatch):
    """`python <script> <flags>` from `cwd`, in this process: the script's `__main__` block with sys.argv set, without
    a new interpreter's start-up (seconds per run). An error exits as the command line would: SystemExit, whose
    message is the line it prints."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [script, *flags])
    monkeypatch.setattr(sys, "path", list(sys.path))  # what a script adds to it is gone after the test
    runpy.run_path(str(ROOT / script), run_name="__main__")


def command_line_error(script: str, *flags: str, cwd: Path, monkeypatch) -> str:
    """The one-line error `python <script> <flags>` stops with (by `command_line`)."""
    try:
        command_line(script, *flags, cwd=cwd, monkeypatch=monkeypatch)
    except SystemExit as stop:
        message = str(stop.code)
        assert stop.code not in (0, None) and "\n" not in message, message
        return message
    raise AssertionError(f"{script} {' '.join(flags)} did not stop")


class SharedRuns:
    """Command-line runs that several tests of a module read (the `shared_run` fixture): each distinct command is
    trained once, in this process, when a test first asks for it. Tests read its run folder and must not change it."""

    def __init__(self, tmp_path_factory):
        self.tmp_path_factory, self.run_dirs = tmp_path_factory, {}

    def __call__(self, script: str, *flags: str) -> Path:
        if (script, flags) not in self.run_dirs:
            folder = self.tmp_path_factory.mktemp("shared_run")
            with pytest.MonkeyPatch.context() as monkeypatch:
                command_line(script, *flags, cwd=folder, monkeypatch=monkeypatch)
            self.run_dirs[script, flags] = the_run_dir(folder)
        return self.run_dirs[script, flags]


def run_in_process(module, folder: Path, monkeypatch, **flags) -> Path:
    """main() as `python <script> <flags>` run from `folder` calls it; returns the run folder."""
    folder.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(folder)
    module.main(module.Args(**flags))
    return the_run_dir(folder)


def the_run_dir(cwd: Path) -> Path:
    """The one run folder under cwd/runs (each test run writes exactly one)."""
    runs = [path for path in (cwd / "runs").iterdir() if path.is_dir()]
    assert len(runs) == 1, f"expected one run folder, found {runs}"
    return runs[0]


def finite_scalars(run_dir: Path, required_tags) -> dict:
    """Read a run's scalars and check each required tag is present with only finite values."""
    scalars = read_scalars(str(run_dir))
    for tag in required_tags:
        assert tag in scalars, f"tag {tag!r} missing; logged tags: {sorted(scalars)}"
        assert all(math.isfinite(value) for _, value in scalars[tag]), f"non-finite value in {tag!r}"
    return scalars


def logged_values(run_dir) -> dict:
    """A run's scalars without the wall-clock ones (charts/SPS): what two runs with the same seed must share."""
    return {tag: values for tag, values in read_scalars(str(run_dir)).items() if tag != "charts/SPS"}


def hyperparameters(run_dir: Path) -> dict[str, str]:
    """A run's hyperparameter table (TensorBoard's text tab) as {flag: value as written}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    accumulator.Reload()
    table = accumulator.Tensors("hyperparameters/text_summary")[0].tensor_proto.string_val[0].decode()
    return dict(row.strip("|").split("|", 1) for row in table.splitlines()[2:])  # after the header rows


def checkpoint_of(cwd: Path) -> Path:
    """The checkpoint (*.pt) in the one run folder under cwd/runs."""
    return next(the_run_dir(cwd).glob("*.pt"))


def undocumented_args(script: str, class_name: str = "Args") -> list[str]:
    """The fields of a script's `Args` dataclass not followed by a docstring (tyro shows it in --help)."""
    tree = ast.parse((ROOT / script).read_text())
    body = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == class_name).body
    fields = [(i, node.target.id) for i, node in enumerate(body) if isinstance(node, ast.AnnAssign)]
    assert fields, f"{script}: no Args fields found"
    missing = []
    for i, name in fields:
        following = body[i + 1] if i + 1 < len(body) else None
        if not (isinstance(following, ast.Expr) and isinstance(getattr(following, "value", None), ast.Constant)):
            missing.append(name)
    return missing


def interrupt_when_training(script: str, *flags: str, cwd: Path, timeout: float = 120) -> tuple[int, str, str]:
    """Start `python <script> <flags>`, send Ctrl-C (SIGINT) once its first progress line is out, and wait.

    Returns (exit code, stdout, stderr)."""
    command = [sys.executable, str(ROOT / script), *flags]
    env = dict(os.environ, PYTHONHASHSEED="0")
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in process.stdout:  # progress lines are flushed; the first comes after the SIGINT handler is set
        seen.append(line)
        if line.startswith("step "):
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, "".join(seen) + out, err


def final_evaluation(run_dir: Path, step: int, agents: list[str]) -> float:
    """The run's one evaluation after training, logged at its last training step: eval/episodic_return (mean over
    episodes and agents) and eval/episodic_return/<agent>, whose mean it is."""
    scalars = finite_scalars(run_dir, ["eval/episodic_return"] + [f"eval/episodic_return/{a}" for a in agents])
    assert [s for s, _ in scalars["eval/episodic_return"]] == [step], scalars["eval/episodic_return"]
    per_agent = [scalars[f"eval/episodic_return/{a}"][0][1] for a in agents]
    assert math.isclose(scalars["eval/episodic_return"][0][1], sum(per_agent) / len(agents), rel_tol=1e-5)
    return scalars["eval/episodic_return"][0][1]
