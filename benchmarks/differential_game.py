"""Benchmark: PR2 on the differential game "max of two quadratic", many seeds per configuration, each one resumable
run of the script as in `benchmarks/opponent_model.py --train`: a report and every seed's learning path.

    python benchmarks/differential_game.py                      # faithful PR2-AC, 10 seeds, paper formula
    python benchmarks/differential_game.py --formula code --configs soft=pr2_continuous.py: \\
        no_rho=pr2_continuous.py:--soft-marginal,uniform        # label=script:flag,flag,... (the script's flags)
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import opponent_model  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formula", dest="games", type=lambda formula: [formula], default=["paper"],
                        help="--scenario of the game: 'paper' or 'code' (the original's)")  # fmt: skip
    parser.add_argument("--name", default="differential", help="prefix of the output files in --out-dir")
    args, configs = opponent_model.parse_training(parser, ["faithful=pr2_continuous.py:--policy,deterministic"])
    results, failed = opponent_model.train(args.games, configs, args, args.name)
    title = f"Differential game (--scenario {args.games[0]}): {len(args.seeds)} seeds per configuration"
    opponent_model.write_report(results, failed, configs, args, title, f"{args.name}_{args.games[0]}.md", args.name)


if __name__ == "__main__":
    main()
