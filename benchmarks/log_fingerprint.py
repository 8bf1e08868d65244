"""Same commands, same logs: a guard for refactors that must not change behaviour.

Runs every command of COMMANDS (fixed seeds, CPU, one thread each) and compares every logged scalar but `charts/SPS`
bit for bit (as float hex) with benchmarks/results/log_fingerprint.json, recorded on the same software versions and CPU.

    python benchmarks/log_fingerprint.py --record     # before a refactor: write the fingerprint
    python benchmarks/log_fingerprint.py              # after it: exit 1 and list every difference
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, cpu  # noqa: E402
from utils.logger import read_scalars  # noqa: E402

FINGERPRINT = ROOT / "benchmarks" / "results" / "log_fingerprint.json"
PARTICLE = "--env particle --total-timesteps 1200 --learning-starts 400 --eval-episodes 2 --save-model"
COMMANDS = {name: command.split() for name, command in {  # name -> the command's words
    "continuous_soft": f"pr2_continuous.py {PARTICLE} --log-every 200 --seed 3",
    "continuous_deterministic": f"pr2_continuous.py {PARTICLE} --log-every 200 --seed 3 --policy deterministic",
    "continuous_sides_rho": f"pr2_continuous.py {PARTICLE} --log-every 200 --seed 3 --scenario simple_adversary "
    "--critic-target rho --opponent-model sides",
    "continuous_differential": "pr2_continuous.py --env differential --total-timesteps 500 --learning-starts 200 "
    "--save-model",
    "discrete_pr2q": "pr2_discrete.py --env matrix --total-timesteps 300 --save-model --seed 2",
    "discrete_deep": "pr2_discrete.py --env particle --total-timesteps 1200 --learning-starts 400 --save-model "
    "--eval-episodes 2 --seed 2",
    "maddpg": f"baselines/maddpg.py {PARTICLE} --log-every 200 --seed 4",
    "ddpg": f"baselines/ddpg.py {PARTICLE} --log-every 200 --seed 4",
    "ddpg_om": f"baselines/ddpg_om.py {PARTICLE} --log-every 200 --seed 4",
    "masql": f"baselines/masql.py {PARTICLE} --log-every 200 --seed 4",
}.items()}  # fmt: skip


def fingerprint_of(name: str) -> dict:
    """Run COMMANDS[name] in an empty folder; {tag: [[step, hex value], ...]} of everything but charts/SPS."""
    with tempfile.TemporaryDirectory() as cwd:
        command = [sys.executable, str(ROOT / COMMANDS[name][0]), *COMMANDS[name][1:]]
        env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=str(ROOT))
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"{name} failed:\n{result.stderr[-3000:]}")
        (run_dir,) = (path for path in (Path(cwd) / "runs").iterdir() if path.is_dir())
        scalars = read_scalars(str(run_dir))
    scalars.pop("charts/SPS", None)  # wall-clock speed: never the same twice
    return {tag: [[s, float(v).hex()] for s, v in values] for tag, values in sorted(scalars.items())}


def differences(expected: dict, actual: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """Each tag not starting with `ignore` whose values differ, and its first differing [step, value] (None: absent)."""
    found = []
    for tag in sorted(tag for tag in set(expected) | set(actual) if not tag.startswith(ignore)):
        pairs = zip([*expected.get(tag, []), None], [*actual.get(tag, []), None])
        if first := next(((e, a) for e, a in pairs if e != a), None):
            found.append(f"{tag}: first difference {first[0]} (fingerprint) vs {first[1]} (now)")
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="write the fingerprint instead of checking it")
    parser.add_argument("--only", nargs="*", default=list(COMMANDS), choices=list(COMMANDS), help="commands to run")
    parser.add_argument("--workers", type=int, default=2, help="runs at a time (one CPU thread each)")
    parser.add_argument("--ignore", nargs="*", default=[], help="tag prefixes left out of the comparison")
    options = parser.parse_args()
    saved = json.loads(FINGERPRINT.read_text()) if FINGERPRINT.exists() else {"runs": {}}
    here = {"versions": {name: version(name) for name in ("torch", "numpy", "pettingzoo", "mpe2")}, "cpu": cpu()}
    for key, value in here.items():  # float results differ across them
        if not options.record and saved.get(key) != value:
            raise SystemExit(f"the fingerprint was recorded with {key} {saved.get(key)}, this is {value}: --record on "
                             "this machine before the change and compare after it")  # fmt: skip
    with ThreadPoolExecutor(options.workers) as pool:
        now = dict(zip(options.only, pool.map(fingerprint_of, options.only)))
    if options.record:
        saved = {**here, "commands": COMMANDS, "runs": {**saved["runs"], **now}}
        FINGERPRINT.write_text(json.dumps(saved, indent=0) + "\n")
        print(f"recorded {', '.join(now)} in {FINGERPRINT.relative_to(ROOT)}")
        return
    failed = False
    for name, actual in now.items():
        if saved["commands"].get(name) != COMMANDS[name]:
            print(f"{name}: the command changed since the fingerprint; --record --only {name} anew")
            failed = True
            continue
        found = differences(saved["runs"][name], actual, tuple(options.ignore))
        print(f"{name}: {'identical' if not found else 'DIFFERENT'} ({sum(map(len, actual.values()))} values)")
        print("".join(f"  {line}\n" for line in found), end="")
        failed = failed or bool(found)
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
