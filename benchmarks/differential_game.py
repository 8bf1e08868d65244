"""Benchmark: PR2 on the differential game "max of two quadratic", many seeds per configuration.

Each (configuration, seed) is one run of the real script in its own process, at most `--workers` at a time, with
`--torch-threads 1`, resumable (benchmarks/common.py, differential_run). The outputs are a markdown report and a
picture of the reward landscape with every seed's learning path (the noise-free joint action over training):

    python benchmarks/differential_game.py                      # faithful PR2-AC, 10 seeds, paper formula
    python benchmarks/differential_game.py --formula code       # the original code's /3 formula
    python benchmarks/differential_game.py --configs soft=pr2_continuous.py: \\
        no_rho=pr2_continuous.py:--soft-marginal,uniform

A configuration is `label=script:flag,flag,...` (flags comma-separated, as the script takes them).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common, opponent_model  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formula", default="paper", help="--scenario of the game: 'paper' or 'code' (the original's)")
    parser.add_argument("--name", default="differential", help="prefix of the output files in --out-dir")
    args = opponent_model.training_flags(parser, ["faithful=pr2_continuous.py:--policy,deterministic"]).parse_args()
    opponent_model.check_games([args.formula], parser)
    configs = common.parse_configs(args.configs, parser)
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    results, failed = opponent_model.train([args.formula], configs, args, args.name)
    title = f"Differential game (--scenario {args.formula}): {len(args.seeds)} seeds per configuration"
    opponent_model.write_report(results, failed, configs, args, title, f"{args.name}_{args.formula}.md", args.name)


if __name__ == "__main__":
    main()
