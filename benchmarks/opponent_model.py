"""Benchmark: what the opponent model ρ adds over uniform opponent samples on the differential games.

python benchmarks/opponent_model.py --gaps      # from the exact reward, no training: opponent_model_gaps.md
python benchmarks/opponent_model.py --train     # 10 seeds of every configuration on every game: opponent_model.md
python benchmarks/opponent_model.py --train --report-only   # the report from the runs finished so far
"""

import argparse
import concurrent.futures
import itertools
import shlex
import sys
from collections import Counter
from math import lgamma
from pathlib import Path

import numpy as np
from scipy.special import logsumexp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402
from benchmarks.common import GLOBAL, GRID_POINTS, LOCAL, SUCCESS_RADIUS, versions  # noqa: E402
from benchmarks.grid_report import row  # noqa: E402
from utils.envs import EnvError, differential_reward, make_env  # noqa: E402

STEP = 0.5  # grid step in env units (a step of 0.1 changes no gap on paper_n3 by more than 0.01)

GAMES = {  # --env differential --scenario <game> (utils/envs.py): what it is
    "paper": "the paper's game, two agents",
    "paper_n3": "the paper's game with three agents: two partners must both hit the narrow peak",
    "paper_n4": "... four agents",
    "paper_n5": "... five agents",
    "code": "the original code's formula, f1 = 0.8·(-(a + 5)²/3 - ...): a steeper local basin",
    "code_n3": "the original code's formula with three agents",
    "code_n4": "... four agents",
    "code_n5": "... five agents",
    "paper_leader": "agent 0 (leader) alone holds the local optimum, f1 = -0.8·((a_0 + 5)/3)², f2 as in the paper",
    "paper_leader_n3": "... with two followers",
    "code_leader_n3": "... the original code's formula, f1 = -0.8·(a_0 + 5)²/3, two followers",
}


def game(scenario: str):
    """(reward of joint actions [..., n] -> [...], role of each agent) for a GAMES scenario."""
    env = make_env("differential", scenario)  # the command line's own parsing and checks
    n_agents, formula = len(env.possible_agents), env.formula

    def reward(actions):
        others = list(np.moveaxis(actions[..., 2:], -1, 0))
        return differential_reward(actions[..., 0], actions[..., 1], formula, others)

    roles = ["leader", *["follower"] * (n_agents - 1)] if formula.endswith("_leader") else ["agent"] * n_agents
    return reward, roles


def partner_grid(roles: list[str], agent: int, step: float = STEP):
    """(the other agents' joint actions on a grid of [-10, 10], [N, n] with column `agent` left 0, the log trapezoid
    weight of each [N]); the reward is symmetric within a role: sorted tuples only, weighted by their orderings."""
    nodes = np.arange(-10.0, 10.0 + step / 2, step)
    log_w = np.log(np.r_[0.5, np.ones(len(nodes) - 2), 0.5] / (len(nodes) - 1))
    groups = [[j for j, other in enumerate(roles) if other == role and j != agent] for role in dict.fromkeys(roles)]
    blocks = []
    for members in filter(None, groups):
        combos = np.array(list(itertools.combinations_with_replacement(range(len(nodes)), len(members))))
        orderings = [lgamma(len(members) + 1) - sum(lgamma(c + 1) for c in Counter(row).values()) for row in combos]
        blocks.append((members, combos, log_w[combos].sum(1) + np.array(orderings)))
    index = np.array(list(itertools.product(*(range(len(combos)) for _, combos, _ in blocks))))
    actions, log_weight = np.zeros((len(index), len(roles))), np.zeros(len(index))
    for b, (members, combos, weight) in enumerate(blocks):
        actions[:, members] = nodes[combos[index[:, b]]]
        log_weight += weight[index[:, b]]
    return actions, log_weight


def soft_values(reward, roles: list[str], agent: int, own, alphas):
    """Agent `agent`'s V_u and V_ρ [len(alphas), len(own)] and V_br [len(own)] at own actions `own` (env units)."""
    partners, log_w = partner_grid(roles, agent)
    own_column = np.arange(len(roles)) == agent
    r = np.array([reward(np.where(own_column, a, partners)) for a in own])  # [own action, partners' actions]
    v_u = np.array([alpha * logsumexp(r / alpha + log_w, axis=1) for alpha in alphas])  # α·log Σ_b w_b exp(r/α)
    v_rho = np.array([alpha * logsumexp(2 * r / alpha + log_w, axis=1) for alpha in alphas]) - v_u  # 2·V_u(α/2) - V_u
    return v_u, v_rho, r.max(1)


def crossings(alphas, gap) -> str:
    """The temperatures in the scan at which the gap changes sign, interpolated in log α, as text."""
    k = np.flatnonzero(np.sign(gap[:-1]) != np.sign(gap[1:]))
    t = gap[k] / (gap[k] - gap[k + 1])
    points = np.exp(np.log(alphas[k]) + t * np.log(alphas[k + 1] / alphas[k]))
    return ", ".join(f"{point:.1f}" for point in points) or "none"


def role_gaps(scenario: str, agent: int) -> dict:
    """Everything the report says about one role of one game."""
    reward, roles = game(scenario)
    own = np.arange(-10.0, 10.0 + STEP / 2, STEP)
    start, final = common.soft_schedule()  # the table's rows: these and the round values between
    alphas = [start, *(alpha for alpha in (20.0, 10.0, 5.0, 2.0, 1.0) if final < alpha < start), final]
    scan = np.geomspace(alphas[0], alphas[-1], 401)  # equal steps of the geometric anneal
    v_u, v_rho, v_br = soft_values(reward, roles, agent, own, alphas)
    gap_u, gap_rho = (v[:, 0] - v[:, 1] for v in soft_values(reward, roles, agent, [GLOBAL, LOCAL], scan)[:2])
    at_global, at_local = np.argmin(abs(own - GLOBAL)), np.argmin(abs(own - LOCAL))
    rows = [dict(alpha=alpha) for alpha in alphas]
    for entry, uniform, rho in zip(rows, v_u, v_rho):
        for name, v in (("u", uniform), ("rho", rho)):
            entry.update({f"{name}_best": own[v.argmax()], f"{name}_gap": v[at_global] - v[at_local]})
            # global share: the mass of π(a) ∝ exp(V(a)/α) on a > 0, trapezoid rule on the own grid
            weight = np.exp((v - v.max()) / entry["alpha"]) * np.r_[0.5, np.ones(len(own) - 2), 0.5]
            entry[f"{name}_share"] = float((weight[own > 0].sum() + 0.5 * weight[own == 0].sum()) / weight.sum())
    br_best, first = own[v_br.argmax()], rows[0]
    return dict(scenario=scenario, role=roles[agent], agent=agent, n_agents=len(roles), rows=rows, br_best=br_best,
                br_gap=v_br[at_global] - v_br[at_local], cross_u=crossings(scan, gap_u),
                cross_rho=crossings(scan, gap_rho), uniform_local=float(np.mean(gap_u < 0)),  # shares of the anneal
                disagree=float(np.mean((gap_u < 0) & (gap_rho > 0))), kept=bool(first["u_best"] < 0 < br_best),
                separates=bool(first["u_best"] < 0 < first["rho_best"]))  # fmt: skip


def write_gaps(results: list[dict], path: Path):
    a0, a1 = (f"{alpha:g}" for alpha in common.soft_schedule())
    lines = [
        "# What the opponent model adds: the games before training", "",
        f"Command: `python benchmarks/opponent_model.py {shlex.join(sys.argv[1:])}`  ",
        f"Software: {versions()}.", "",
        "From the exact reward, no training. For one agent of each role, the soft value of its own action a with the "
        "other agents' actions b:", "",
        "- **uniform**: V_u(a) = α·log E_{b~U[-10,10]} exp(r(a, b)/α), what `--soft-marginal uniform` estimates;",
        "- **ρ (Eq. 12)**: V_ρ(a) = α·log E_{b~ρ_α(·|a)} exp(r(a, b)/α) with ρ_α(b|a) ∝ exp(r(a, b)/α), what "
        "`--soft-marginal rho` estimates once ρ has learned Eq. 12 at the current α (= 2·V_u(α/2) - V_u(α));",
        "- **best response**: V_br(a) = max_b r(a, b), the α → 0 limit of both.", "",
        f"Gap: V(+5) - V(-5), the own actions of the global (10) and local (0) optimum; > 0 favours the global one. "
        f"Best a: the argmax of V over own actions (step {STEP:g}). Global share: the mass of π(a) ∝ exp(V(a)/α) on "
        f"the global side (a > 0). α anneals geometrically from {a0} to {a1} (`pr2_continuous.py`'s soft policy at "
        "its differential-game defaults); 'share of the anneal' counts 401 equal steps of that schedule. "
        f"Expectations are trapezoid sums on a grid of step {STEP:g}. Not included: the tanh squash factor "
        "Π(1 - x²) that the SVGD targets of ρ and π carry.", "",
        f"**Kept**: at the first α = {a0} the uniform value's best own action is on the local side (< 0) and the best "
        "response's on the global side (> 0), for at least one role. **ρ separates at the start**: the same for "
        "this role with V_ρ in place of V_br.", "",
        f"| game | agents | role | best a at α = {a0}: uniform / ρ / best response | uniform's gap changes sign at α "
        "| ρ's gap changes sign at α | share of the anneal with uniform favouring local / with that and ρ global "
        "| kept | ρ separates at the start |", "|---" * 9 + "|",
    ]  # fmt: skip
    for r in results:
        kept = any(other["kept"] for other in results if other["scenario"] == r["scenario"])
        best = f"{r['rows'][0]['u_best']:+g} / {r['rows'][0]['rho_best']:+g} / {r['br_best']:+g}"
        shares = f"{r['uniform_local']:.0%} / {r['disagree']:.0%}"
        lines.append(row(f"`{r['scenario']}`", r["n_agents"], r["role"], best, r["cross_u"], r["cross_rho"], shares,
                         "yes" if kept else "no", "yes" if r["separates"] else "no"))  # fmt: skip
    for r in results:
        lines += ["", f"## `{r['scenario']}`, {r['role']} (agent {r['agent']}): {GAMES[r['scenario']]}", "",
                  f"Best response: best a {r['br_best']:+g}, gap {r['br_gap']:+.2f}.", "",
                  "| α | uniform: best a | gap | global share | ρ: best a | gap | global share |",
                  "|---" * 7 + "|"]  # fmt: skip
        lines += [row(f"{x['alpha']:g}", *(f"{x[f'{v}_best']:+g} | {x[f'{v}_gap']:+.2f} | {x[f'{v}_share']:.2f}"
                                           for v in ("u", "rho"))) for x in r["rows"]]  # fmt: skip
    path.write_text("\n".join([*lines, ""]))


CONFIGS = {
    "soft_rho": ("pr2_continuous.py:", "the soft policy with ρ, α annealed (pr2_continuous.py's defaults)"),
    "soft_uniform": ("pr2_continuous.py:--soft-marginal,uniform", "the soft policy with uniform opponent samples"),
    "soft_no_anneal": ("pr2_continuous.py:--alpha,0.5,--alpha-start,0.5", "the soft policy with ρ, α constant at 0.5"),
    "pr2_ac": ("pr2_continuous.py:--policy,deterministic", "the faithful PR2-AC (deterministic actor, OU noise)"),
    "maddpg": ("baselines/maddpg.py:", "MADDPG (centralised critics, no opponent model)"),
}


def train(games: list[str], configs: list[tuple], args: argparse.Namespace, name: str = "opponent_model"):
    """Every (game, configuration, seed), resuming: ({game: {label: [result, ...]}}, [(game, label, seed) failed]).
    args.report_only: only the finished runs, and only the (game, configuration) pairs with one."""
    jobs = [(Path(args.work_dir) / name / game / label / f"seed_{seed}", label, *config, game, seed)
            for game in games for label, *config in configs for seed in args.seeds]  # fmt: skip
    done, failed = {}, []
    with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:  # threads: each run is its own process
        futures = {pool.submit(common.differential_run, *job, train=not args.report_only): job for job in jobs}
        for future in concurrent.futures.as_completed(futures):
            (_, label, _, _, game, seed), error = futures[future], future.exception()
            if error is not None:  # the others go on; rerunning resumes, finished runs are not redone
                print(f"{game} {label} seed {seed} failed: {error}", flush=True)
                failed.append((game, label, seed))
            elif (result := future.result()) is not None:  # None: not finished (--report-only)
                done[(game, label, seed)] = result
                action = ", ".join(f"{a:+.2f}" for a in result["final_action"])
                print(f"{game} {label} seed {seed}: ({action}) global optimum: {result['success']}", flush=True)
    results = {}
    for game, (label, _, _) in itertools.product(games, configs):
        rows = [done[key] for seed in sorted(args.seeds) if (key := (game, label, seed)) in done]
        if rows or not args.report_only:
            results.setdefault(game, {})[label] = rows
    return results, sorted(failed)


def write_report(results: dict, failed: list, configs: list[tuple], args, title: str, report: str, prefix: str):
    """The report `report` in args.out_dir with a section and a picture <prefix>_<game>.png per game."""
    out, shown = Path(args.out_dir), {label for by_label in results.values() for label in by_label}
    command = shlex.join(a for a in sys.argv[1:] if a != "--report-only")
    grid, alphas = ", ".join(f"{p} points per agent with {n}" for n, p in GRID_POINTS.items()), common.soft_schedule()
    lines = [
        f"# {title}", "",
        f"Command: `python benchmarks/{Path(sys.argv[0]).name} {command}`  ",
        f"Seeds: {', '.join(map(str, args.seeds))} for every game and configuration shown (a count out of fewer "
        f"seeds: the others have not run yet or failed); each run on one thread, {args.workers} at a time. Every "
        "run: `--env differential --scenario <game> --seed <seed> --save-model --eval-episodes 1 --torch-threads 1` "
        "and the configuration's flags.  ",
        f"Software: {versions()}.", "",
        "| configuration | script and flags | what it is |", "|---|---|---|",
        *(f"| {label} | `{' '.join([script, *flags])}` | {CONFIGS.get(label, ('', ''))[1]} |"
          for label, script, flags in configs if label in shown), "",
        f"**Global optimum**: the final noise-free joint action (the last logged `charts/action/*`) within "
        f"{SUCCESS_RADIUS:g} env unit of (5, …, 5), where the reward is 10; the local optimum (−5, …, −5) pays 0. "
        "**Final reward**: the reward there; **evaluation return**: `eval/episodic_return` of the one evaluation "
        "episode after training (the same noise-free policy). **CPU time**: user + system time of the run's process.",
        "",
        "Per seed and agent i, from the checkpoint at the end of training: **critic max**, where agent i's learned "
        "critic of the joint action (PR2's joint critic Q^i(s, a^i, a^-i), MADDPG's centralised Q^i) peaks on a grid "
        f"of joint actions ({grid} agents), and its value there; **Q at optimum**: its value at (5, …, 5). "
        "**ρ(·|±5)**: agent i's opponent model's mean prediction of the other agents' actions (in agent order) given "
        "its own action ±5. **Gap**: Q^i(s, +5) − Q^i(s, −5), the soft values α·log E_b exp(Q^i(s, a, b)/α) of the "
        "two optima's own actions under the learned joint critic, with b from ρ(·|s, a) or uniform on "
        "[−10, 10]^(n−1), 4,096 samples, at the first and final α of the soft policy at its differential-game "
        f"defaults ({' and '.join(f'{alpha:g}' for alpha in alphas)}). No ρ or no critic: —.", "",
    ]  # fmt: skip
    if failed:
        lines += ["**Runs that failed** (rerun the command to retry them; every other seed is reported):", ""]
        lines += [f"- {game} {label} seed {seed}" for game, label, seed in failed] + [""]
    for game, by_label in results.items():
        lines += [f"## `{game}` ({common.split_formula(game)[1]} agents): {GAMES.get(game, '')}", ""]
        lines += differential_tables(game, by_label, len(args.seeds), out / f"{prefix}_{game}.png")
    (out / report).write_text("\n".join(lines))
    print(f"wrote {out / report} and its pictures {prefix}_<game>.png")
    if failed:
        raise SystemExit(f"{len(failed)} runs failed; rerun the same command to retry them (finished runs are kept)")


def signed(values, digits: int = 1) -> str:
    return "(" + ", ".join(f"{v:+.{digits}f}" for v in values) + ")"


def differential_tables(game: str, by_label: dict, n_seeds: int, picture: Path) -> list[str]:
    """One game's report: the picture of every seed's path, a row per configuration, the mean of what the opponent
    models say, and every seed of every configuration with each agent's diagnostics (common.diagnose)."""
    n_agents = common.split_formula(game)[1]
    actions = "joint action" if n_agents == 2 else "actions"
    common.draw_paths(by_label, game, picture, f"{game}: every seed's noise-free {actions} during training")
    header = ("configuration", "global optimum", "mean final reward", "mean evaluation return", "CPU time per seed, "
              "mean / max")  # fmt: skip
    lines = [f"![{game}]({picture.name})", "", row(*header), "|---" * len(header) + "|"]
    for label, rows in by_label.items():
        missing = f" ({n_seeds - len(rows)} of {n_seeds} seeds missing)" if len(rows) < n_seeds else ""
        cpu_time, cells = [r["cpu_time"] for r in rows], ["—"] * 3
        if rows:
            cells = [f"{np.mean([r[key] for r in rows]):.2f}" for key in ("reward", "eval_return")]
            cells.append(f"{np.mean(cpu_time):.0f} s / {max(cpu_time):.0f} s")
        lines.append(row(label, f"{sum(r['success'] for r in rows)}/{len(rows)}{missing}", *cells))
    models = {label: [m for r in rows for m in r["opponent_models"]] for label, rows in by_label.items()}
    keys = next((list(ms[0]["gap"]) for ms in models.values() if ms), [])
    gaps = [f"gap, {key.replace('@', ', α = ')}" for key in keys]
    if keys:
        lines += ["", "Opponent models, mean over seeds and agents (the columns of the seed tables below).", ""]
        lines += [row("configuration", "ρ(·\\|+5)", "ρ(·\\|−5)", *gaps), "|---" * (3 + len(keys)) + "|"]
        for label, ms in ((label, ms) for label, ms in models.items() if ms):
            response = np.mean([m["response"] for m in ms], 0)
            mean_gaps = (f"{np.mean([m['gap'][key] for m in ms]):+.2f}" for key in keys)
            lines.append(row(label, signed(response[0]), signed(response[1]), *mean_gaps))
    lines.append("")
    for label, rows in by_label.items():
        lines += seed_table(label, rows, n_agents, keys, gaps)
    return lines


def seed_table(label: str, rows: list[dict], n_agents: int, keys: list[str], gaps: list[str]) -> list[str]:
    """Every seed of one configuration on one game: its outcome, then one line per agent with its diagnostics."""
    if not rows:
        return [f"### {label}: no finished run", ""]
    command = rows[0]["command"].replace(f"--seed {rows[0]['seed']} ", "--seed <seed> ")
    header = ["seed", "final joint action", "final reward", "eval return", "global optimum", "CPU time", "agent",
              "critic max at", "critic max", "Q at optimum", "ρ(·\\|+5)", *gaps]  # fmt: skip
    lines = [f"### {label}: global optimum in {sum(r['success'] for r in rows)} of {len(rows)} finished seeds", "",
             f"`{command}`", "", row(*header), "|---" * len(header) + "|"]  # fmt: skip
    for r in rows:
        run = [r["seed"], signed(r["final_action"], 2), f"{r['reward']:.2f}", f"{r['eval_return']:.2f}",
               "yes" if r["success"] else "no", f"{r['cpu_time']:.0f} s"]  # fmt: skip
        for i in range(n_agents):
            cells = ["—"] * (4 + len(keys))
            if r["critics"]:
                critic = r["critics"][i]
                cells[:3] = [signed(critic["argmax"]), f"{critic['q_max']:.2f}", f"{critic['q_optimum']:.2f}"]
            if r["opponent_models"]:
                model = r["opponent_models"][i]
                cells[3:] = [signed(model["response"][0])] + [f"{model['gap'][key]:+.2f}" for key in keys]
            lines.append(row(*(run if i == 0 else [""] * len(run)), i, *cells))
    return [*lines, ""]


def parse_training(parser: argparse.ArgumentParser, configs: list[str], note: str = "") -> tuple:
    """Add the flags of a training benchmark (this one's --train, differential_game.py's) and parse the command line,
    with every game in args.games checked: (args, [(label, script, [flag, ...]), ...])."""
    parser.add_argument("--configs", nargs="+", default=configs, help=f"{note}'label=script:flag,flag,...'")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(10)), help=f"{note}seeds of every run")
    parser.add_argument("--workers", type=int, default=2, help=f"{note}runs at the same time (one thread each)")
    parser.add_argument("--work-dir", default="benchmarks/work", help=f"{note}where the runs go (git-ignored)")
    parser.add_argument("--out-dir", default="benchmarks/results", help="where the report and pictures go")
    parser.add_argument("--report-only", action="store_true", help=f"{note}report the finished runs, start none")
    args = parser.parse_args()
    for game in args.games:
        try:
            make_env("differential", game)
        except EnvError as error:
            parser.error(str(error))
    configs = []
    for text in args.configs:
        label, _, rest = text.partition("=")
        script, _, flags = rest.partition(":")
        if not label or not script.endswith(".py") or label in [config[0] for config in configs]:
            parser.error(f"--configs: {text!r} is not 'label=script.py:flag,flag,...' with a label of its own")
        configs.append((label, script, [flag for flag in flags.split(",") if flag]))
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    return args, configs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--gaps", action="store_true", help="the soft-value gaps of the games before training")
    mode.add_argument("--train", action="store_true", help="the training benchmark: every game, configuration, seed")
    parser.add_argument("--scenarios", nargs="+", default=list(GAMES), choices=list(GAMES), help="--gaps: games")
    parser.add_argument("--games", nargs="+", default=["paper", "paper_n3", "code_n3", "paper_leader"],
                        help="--train: differential-game scenarios")  # fmt: skip
    args, configs = parse_training(parser, [f"{label}={config}" for label, (config, _) in CONFIGS.items()], "--train: ")
    if args.report_only and not args.train:
        parser.error("--report-only goes with --train")
    if args.gaps:
        roles = {scenario: game(scenario)[1] for scenario in args.scenarios}  # each distinct role's first agent
        results = [role_gaps(s, roles[s].index(role)) for s in args.scenarios for role in dict.fromkeys(roles[s])]
        write_gaps(results, Path(args.out_dir) / "opponent_model_gaps.md")
        return print(f"wrote {Path(args.out_dir) / 'opponent_model_gaps.md'}")
    title = "What the opponent model adds: training on the differential games"
    write_report(*train(args.games, configs, args), configs, args, title, "opponent_model.md", "opponent_model")


if __name__ == "__main__":
    main()
