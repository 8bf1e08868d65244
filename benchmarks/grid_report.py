"""The benchmark grid's report that benchmarks/run_grid.py writes: the markdown tables (final evaluation return,
ablations, cross-play, speed) with Student-t and Welch intervals over seeds (scipy.stats), and the curves."""

import collections
import itertools
import math
import re
import warnings
from pathlib import Path

import numpy as np
from scipy import stats

from benchmarks import grid
from benchmarks.common import panels, versions

CONFIDENCE = 0.95
SIDES = ("good", "adversary")
TITLES = {"critic_tuning": "Tuning the soft policy's critic target and opponent model"}
# scipy warns where all seeds give the same value; the interval is then that value, as it should be
warnings.filterwarnings("ignore", "Precision loss occurred in moment calculation", RuntimeWarning)


def mean_ci(values) -> tuple:
    """Mean over axis 0 (seeds) and the half-width of its Student-t confidence interval (NaN with a single value)."""
    values = np.asarray(values, dtype=float)
    if values.shape[0] < 2:
        return values.mean(0), np.full(values.shape[1:], math.nan) if values.ndim > 1 else math.nan
    low, high = stats.ttest_1samp(values, 0.0, axis=0).confidence_interval(CONFIDENCE)
    return values.mean(0), (high - low) / 2


def welch(a, b) -> tuple[float, float]:
    """mean(a) - mean(b) of two sets of per-seed numbers and the half-width of its Welch t interval (or NaN)."""
    gap = float(np.mean(a) - np.mean(b))
    if len(a) < 2 or len(b) < 2:
        return gap, math.nan
    low, high = stats.ttest_ind(a, b, equal_var=False).confidence_interval(CONFIDENCE)
    return gap, float(high - low) / 2


def difference(a, b) -> str:
    """'mean(a) - mean(b) ± half-width' (Welch's t interval)."""
    gap, half = welch(a, b)
    return f"{gap:+.2f}" if math.isnan(half) else f"{gap:+.2f} ± {half:.2f}"


def fmt(values, digits: int = 2) -> str:
    """'mean ± half-width' of a list of per-seed numbers (Student t)."""
    mean, half = mean_ci(values)
    return f"{mean:.{digits}f}" if math.isnan(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"


def smooth(values: list[float], window: int) -> np.ndarray:
    """Trailing moving average over `window` points (fewer at the start)."""
    counts = np.minimum(np.arange(1, len(values) + 1), window)  # the points each average covers
    return np.convolve(values, np.ones(window))[: len(values)] / counts


def band(ax, curves: list, label: str, smoothing: float):
    """Mean ± 95% CI over seeds of curves on the steps all logged, each smoothed over `smoothing` of its points."""
    steps = sorted(set.intersection(*(set(step for step, _ in curve) for curve in curves)))
    window = max(1, int(smoothing * len(steps)))
    mean, half = mean_ci([smooth([dict(curve)[step] for step in steps], window) for curve in curves])
    ax.plot(steps, mean, "--" if label in grid.ABLATIONS else "-", label=f"{label} ({len(curves)} seeds)")
    if len(curves) > 1:
        ax.fill_between(steps, mean - half, mean + half, alpha=0.2)


def draw_curves(rows: dict, task: str, path: Path, smoothing: float = 0.05):
    """One task's curves, {label: [result, ...]}, mean ± 95% CI over seeds: the evaluations as logged, and beside them
    the training episodes smoothed over `smoothing` of their points (each averages the few episodes since the last)."""
    plt, fig, ((main, training),) = panels(2, (6, 4.2), gridspec_kw=dict(width_ratios=(3, 2)))
    for label, results in rows.items():
        band(main, [r["eval_curve"] for r in results], label, 0.0)
        band(training, [r["curve"] for r in results], label, smoothing)
    episodes = sorted({r["evaluation"]["episodes"] for results in rows.values() for r in results})
    main.set(title=f"{task}: noise-free policy, {'/'.join(map(str, episodes))} episodes per evaluation")
    main.set(xlabel="environment steps", ylabel="evaluation return (mean over episodes and agents)")
    training.set(title=f"training episodes (moving average over {smoothing:.0%})", xlabel="environment steps")
    training.set(ylabel="episodic return (mean over agents)")
    main.legend()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def by_label(results: dict, task: str) -> dict:
    """{label: the task's results sorted by seed}, labels in grid.ALGORITHMS order (not in the order runs ended)."""
    runs = {label: runs for (t, label), runs in results.items() if t == task}
    return {label: [runs[label][seed] for seed in sorted(runs[label])] for label in grid.LABELS if label in runs}


def write_report(results: dict, crossed: dict, not_crossed: list, failed: list, args, argv, timing, planned: dict):
    """Write <out-dir>/<name>.md and a <name>_<task>.png per task. planned: {(task, label): seeds asked for}."""
    tasks = [task for task in grid.TASKS if any(key[0] == task for key in planned)]
    finished = [r for runs in results.values() for r in runs.values()]
    cpus = collections.Counter(result.get("cpu", "not recorded") for result in finished)
    # --report-only changes no result: the command that reproduces the grid is the one without it
    command = " ".join(["python benchmarks/run_grid.py", *(flag for flag in argv if flag != "--report-only")])
    where = f"dispatched to Ray at `{args.ray_address}`" if args.ray_address else f"{args.workers} at a time"
    lines = [
        f"# {TITLES.get(args.budget, 'PR2 against MADDPG, DDPG, DDPG-OM and MASQL')} ({args.budget} budget)", "",
        f"Command: `{command}`  ",
        f"Extra flags (else each script's defaults): `{' '.join(grid.BUDGETS[args.budget].flags)}` on every run  ",
        f"Seeds asked for: {planned_seeds(planned, tasks)}; {len(finished)} of {sum(map(len, planned.values()))} "
        "runs finished  ",
        f"Evaluation: {evaluation_protocol(finished)}  ",
        f"Software: {versions()}  ",
        f"CPUs the runs trained on: {'; '.join(f'{name} ({n} runs)' for name, n in sorted(cpus.items())) or '–'} "
        "(a seeded run is bit-identical on one CPU, not across them)  ",
        f"Wall time: {timing['wall'] / 3600:.2f} h for this invocation ({timing['ran']} runs trained, "
        f"{timing['reused']} reused from earlier invocations); the runs' own wall times add up to "
        f"{sum(r['wall_time'] for r in finished) / 3600:.2f} h. Each run on one thread, {where}.", "",
        f"**Final evaluation return** (the headline): `eval/episodic_return` (the noise-free policy's episode return, "
        f"averaged over the evaluation episodes and the agents) averaged over the run's last {grid.LAST_EVALUATIONS} "
        f"evaluations, then mean ± 95% confidence interval (Student t) over seeds. **vs {grid.BASELINE}**: its "
        f"difference from {grid.BASELINE}'s on the same task (Welch's 95% interval). **Training return**: "
        "`charts/episodic_return` (the exploring policy's episodes) averaged over the last 10% of training. **Good "
        "agents / adversaries**: the final evaluation return of each side's agents. **Critic sees**: what the "
        "algorithm's critics (and PR2's opponent model ρ) are given; every actor sees its own observation only. "
        "**Seeds**: finished / asked for. **Training SPS**: environment steps per second after `learning_starts`, "
        "from the wall-clock times of the logged SPS events (warm-up excluded).", "",
        f"| task | algorithm | critic sees | seeds | env steps | final evaluation return | vs {grid.BASELINE} "
        "| training return | good agents | adversaries | training SPS |", "|---" * 11 + "|",
    ]  # fmt: skip
    critics = {algorithm.label: algorithm.critic for algorithm in grid.ALGORITHMS}
    for task in tasks:
        rows = by_label(results, task)
        for label in (label for label in grid.LABELS if (task, label) in planned):
            runs, asked = rows.get(label, []), len(planned[(task, label)])
            if not runs:
                lines.append(row(task, label, critics[label], f"0/{asked}", *["–"] * 7))
                continue
            evaluation = [r["final_eval"] for r in runs]
            baseline = [r["final_eval"] for r in rows.get(grid.BASELINE, [])] if label != grid.BASELINE else []
            per_side = [grid.sides(r["eval_by_agent"]) for r in runs] if task in grid.ADVERSARIAL else []
            side = {key: fmt([s[key] for s in per_side]) if per_side else "–" for key in SIDES}
            cells = [f"{len(runs)}/{asked}", f"{runs[0]['schedule']['total_timesteps']:,}", f"**{fmt(evaluation)}**"]
            cells += [difference(evaluation, baseline) if baseline else "–", fmt([r["final_return"] for r in runs])]
            cells += [side["good"], side["adversary"], fmt([r["train_sps"] for r in runs], 0)]
            lines.append(row(task, label, critics[label], *cells))
    (out := Path(args.out_dir)).mkdir(parents=True, exist_ok=True)
    for task in (task for task in tasks if by_label(results, task)):
        draw_curves(by_label(results, task), task, out / f"{args.name}_{task}.png")
        lines += ["", f"![{task}]({args.name}_{task}.png)"]
    lines += ablation_section(results) + cross_play_section(crossed, not_crossed, args) + speed_section(results)
    lines += tuning_section(results, crossed) + default_section(results, crossed)
    commands = {re.sub(r"--seed \d+", "--seed <seed>", r["command"]) for r in finished}
    lines += ["", "## Commands", ""] + sorted(f"- `{command}`" for command in commands)
    if failed:
        lines += ["", "## Failed runs", ""] + [f"- {error.splitlines()[0]}" for error in failed]
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    return out / f"{args.name}.md"


def planned_seeds(planned: dict, tasks: list[str]) -> str:
    """'task, task: label, label [seeds]; label [seeds] | task: ...', tasks with the same groups together."""
    by_task = {}
    for task in tasks:
        groups = {}
        for label in (label for label in grid.LABELS if (task, label) in planned):
            groups.setdefault(tuple(planned[(task, label)]), []).append(label)
        text = "; ".join(f"{', '.join(labels)} {list(seeds)}" for seeds, labels in groups.items())
        by_task.setdefault(text, []).append(task)
    return " | ".join(f"{', '.join(names)}: {text}" for text, names in by_task.items())


def evaluation_protocol(finished: list) -> str:
    """How the finished runs were evaluated, from their own arguments (several lines if they differ)."""
    protocols = sorted({(r["evaluation"]["episodes"], r["evaluation"]["every"]) for r in finished})
    last = sorted({tuple(step for step, _ in r["eval_curve"][-grid.LAST_EVALUATIONS :]) for r in finished})
    if not protocols:
        return "no run has finished yet"
    every = "; ".join(f"{n} episodes every {steps:,} env steps and after training" for n, steps in protocols)
    return (
        f"the noise-free policy, {every}, on the same env seeds in every run and algorithm, none of which a training "
        "episode starts from (`utils/run.py`: episode k from `episode_seed(EVAL_SEED, k)`); the headline averages "
        f"the evaluations at steps {' / '.join(', '.join(f'{step:,}' for step in steps) for steps in last)}"
    )


def ablation_section(results: dict) -> list[str]:
    lines = []
    for task, (label, (whole, removed)) in itertools.product(grid.TASKS, grid.ABLATIONS.items()):
        full, ablated = results.get((task, whole), {}), results.get((task, label), {})
        if seeds := sorted(set(full) & set(ablated)):
            a, b = ([runs[seed]["final_eval"] for seed in seeds] for runs in (full, ablated))
            lines.append(row(task, removed, whole, label, seeds, fmt(a), fmt(b), difference(a, b)))
    prose = (
        "Each ablation changes one thing of the label it ablates (full): `*_own` gives the critics and ρ the agent's "
        "own observation instead of the state (`--critic-input own`); `*_uniform` draws the opponent actions of the "
        "soft marginal uniformly instead of from ρ (`--soft-marginal uniform`). Final evaluation returns on the seeds "
        "both have; the difference full − ablation (Welch's 95% interval)."
    )
    columns = ("task", "taken away", "full", "ablation", "seeds", "full", "ablation", "full − ablation")
    return section("What the state and ρ do: ablations", prose, columns, lines)


def section(title: str, prose: str, columns: tuple, rows: list[str]) -> list[str]:
    """A report section: its title, what its table shows, the table; nothing where the table has no row."""
    return ["", f"## {title}", "", prose, "", row(*columns), "|" + "---|" * len(columns), *rows] if rows else []


def row(*cells) -> str:
    return f"| {' | '.join(map(str, cells))} |"


def cross_play_section(crossed: dict, not_crossed: list, args) -> list[str]:
    rows = [row(*key, len(runs), *(fmt([r[side] for r in runs]) for side in SIDES)) for key, runs in crossed.items()]
    prose = (
        "No training: the noise-free policies of the saved checkpoints (each script's `load_policies`) play against "
        "each other, good agents from one algorithm's run, adversaries (`adversary_*`) from another's run with the "
        f"same seed, {args.cross_play_episodes} episodes with fixed env seeds per pairing and seed. Each cell: the "
        "side's mean episode return, mean ± 95% CI over seeds."
    )
    columns = ("task", "good agents", "adversaries", "seeds", "good agents' return", "adversaries' return")
    lines = section("Cross-play on the adversarial tasks", prose, columns, rows)
    if not_crossed:
        missing = "a run's checkpoint is not in --work-dir, the next invocation without --report-only trains it again"
        lines += ["", f"Not computed ({len(not_crossed)}; {missing}): {', '.join(not_crossed)}."]
    wins = []
    for task, pr2, baseline, side, _, mine, reference in verdicts(crossed):
        gain = [a - b for a, b in zip(mine, reference)]
        better = pr2 if np.mean(gain) > 0 else baseline if np.mean(gain) < 0 else "tie"
        cells = f"{pr2}: {fmt(mine)}", f"{baseline}: {fmt(reference)}", fmt(gain), difference(mine, reference)
        wins.append(row(task, side, *cells, better))
    prose = (
        "A PR2 side against the baseline's opponents, compared with the baseline's own side against the "
        "same opponents, on the seeds both have: the difference paired by seed (mean ± 95% CI), Welch's 95% "
        "interval, and the side with the higher mean."
    )
    columns = ("task", "side", "PR2 side vs baseline", "baseline side vs baseline", "paired difference", "Welch")
    return lines + section("Who wins in cross-play", prose, (*columns, "better"), wins)


def verdicts(crossed: dict) -> list[tuple]:
    """(task, pr2, baseline, side, seeds, the PR2 side's and the baseline side's returns against the baseline)."""
    found = []
    for task, (pr2, baseline), side in itertools.product(grid.ADVERSARIAL, grid.PAIRS, SIDES):
        mine = (task, pr2, baseline) if side == "good" else (task, baseline, pr2)
        by_seed = [{r["seed"]: r[side] for r in crossed.get(key, [])} for key in (mine, (task, baseline, baseline))]
        if seeds := sorted(set(by_seed[0]) & set(by_seed[1])):
            found.append((task, pr2, baseline, side, seeds, *([s[seed] for seed in seeds] for s in by_seed)))
    return found


def speed_section(results: dict) -> list[str]:
    lines = []
    for (pr2, baseline), task in itertools.product(grid.PAIRS, grid.TASKS):
        if (task, pr2) in results and (task, baseline) in results:
            runs = [*results[(task, pr2)].values(), *results[(task, baseline)].values()]
            a, b = ([r["train_sps"] for r in results[(task, label)].values()] for label in (pr2, baseline))
            same = "yes" if all(r["schedule"] == runs[0]["schedule"] for r in runs) else "NO"
            lines.append(row(task, f"{pr2} / {baseline}", fmt(a, 0), fmt(b, 0), f"{np.mean(a) / np.mean(b):.2f}", same))
    prose = (
        "Both algorithms' runs ran in this grid, interleaved seed by seed; ratio = mean training SPS of the PR2 "
        "variant / the baseline's. Same schedule: identical total steps, learning starts, train frequency and batch "
        "size."
    )
    columns = ("task", "ratio of", "PR2 training SPS", "baseline training SPS", "ratio", "same schedule")
    return section("Speed: training SPS side by side", prose, columns, lines)


def measures(results: dict, crossed: dict, labels) -> dict:
    """{label: {task: {seed: measure}}} of docs/results.md's tuning rule: simple_spread's final evaluation return; on
    the adversarial tasks the cross-play gain against the baseline ("Who wins in cross-play"), mean of the two sides."""
    spread = {label: results.get((grid.TASKS[0], label), {}) for label in labels}
    found = {label: {grid.TASKS[0]: {s: r["final_eval"] for s, r in runs.items()}} for label, runs in spread.items()}
    for task, label, baseline, _, seeds, mine, reference in verdicts(crossed):
        if label in found and baseline == grid.BASELINE:
            gains = found[label].setdefault(task, {})
            for seed, gain in zip(seeds, np.subtract(mine, reference)):
                gains[seed] = gains.get(seed, 0.0) + gain / len(SIDES)
    return found


def scored(found: dict, seeds: list, tasks=grid.TASKS[:3]) -> list[tuple]:
    """(score, label, per-task means, per-task per-seed measures), best first, of the labels measured on every task
    and seed: each task's mean over the seeds standardised across the labels (scipy.stats.zscore), then summed."""
    ranked = [label for label, m in found.items() if all(set(seeds) <= set(m.get(task, ())) for task in tasks)]
    per_seed = {label: [[found[label][task][s] for s in seeds] for task in tasks] for label in ranked}
    table = np.array([np.mean(per_seed[label], axis=1) for label in ranked]).reshape(len(ranked), len(tasks))
    # a task on which every label has the same mean adds 0 to each score: (x - mean) is 0 there, and so is its sd
    scores = np.nan_to_num(stats.zscore(table, axis=0)).sum(1) if len(ranked) > 1 else []
    return sorted(zip(scores, ranked, table, per_seed.values()), key=lambda item: -item[0])


def tuning_section(results: dict, crossed: dict) -> list[str]:
    """docs/results.md's tuning rule over the critic-target candidates. Screen: seed 100, every candidate. Confirm:
    seeds 100-102, the candidates that have them, and Welch's interval of each task's difference of the first two."""
    found, lines, tasks, verdict = measures(results, crossed, grid.CANDIDATES), [], grid.TASKS[:3], ""
    for stage, seeds in (("screen", [100]), ("confirm", [100, 101, 102])):
        order, sps = scored(found, seeds), {}
        for score, label, values, _ in order:
            measured = (f"{value:+.2f}" for value in values)
            sps[label] = np.mean([results[(task, label)][s]["train_sps"] for task in tasks for s in seeds])
            lines.append(row(stage, label, seeds, *measured, f"{score:+.2f}", f"{sps[label]:.1f}"))
        if stage == "confirm" and len(order) > 1:
            first, second = order[0][3], order[1][3]
            gaps = [welch(a, b) for a, b in zip(first, second)]
            pair = f"{order[0][1]} − {order[1][1]} (Welch)"
            lines.append(row(stage, pair, seeds, *map(difference, first, second), "", ""))
            tied = all(abs(gap) <= half for gap, half in gaps)  # no interval excludes 0
            winner = max(list(sps)[:2], key=sps.get) if tied else order[0][1]
            why = "no task's difference is significant: the higher training SPS" if tied else "the higher score"
            verdict = f" Confirmation: {winner} wins ({why})."
    prose = (
        "The rule written before the runs (docs/results.md, which defines the measures): each task's measure "
        "standardised across the stage's candidates (a task where all are equal adds 0); the score, their sum, sorts "
        "the table and the highest wins; in the confirmation, if no task's difference between the two is significant, "
        "the higher training SPS wins. Training SPS: the runs' own, two at a time; each candidate's cost per gradient "
        f"step, timed side by side, is in speed.md.{verdict}"
    )
    columns = ("stage", "candidate", "seeds", *tasks, "score", "training SPS")
    return section("Tuning the critic target and the opponent model", prose, columns, lines)


def default_section(results: dict, crossed: dict) -> list[str]:
    """docs/results.md's default rule on the grid's seeds: the challenger against today's default (pr2_soft), their
    scores by the tuning rule and challenger − pr2_soft (Welch's interval) on simple_spread's return and each side's
    cross-play return against the baseline. It becomes the default with the higher score and no interval below 0."""
    labels, seeds = ("pr2_soft", grid.CHALLENGER), list(range(5))
    measured = measures(results, crossed, labels)
    found = {f"{grid.TASKS[0]} return": [measured[label][grid.TASKS[0]] for label in labels]}
    for task, side in itertools.product(grid.ADVERSARIAL, SIDES):  # each side's return against the baseline
        keys = [(task, label, grid.BASELINE) if side == "good" else (task, grid.BASELINE, label) for label in labels]
        found[f"{task} {side} vs {grid.BASELINE}"] = [{r["seed"]: r[side] for r in crossed.get(k, [])} for k in keys]
    if not all(set(seeds) <= set(by_seed) for pair in found.values() for by_seed in pair):
        return []  # until every measure has every seed
    lines, worse = [], []
    for name, pair in found.items():
        default, challenger = ([by_seed[s] for s in seeds] for by_seed in pair)
        gap, half = welch(challenger, default)
        worse += [name] if gap + half < 0 else []
        lines.append(row(name, fmt(default), fmt(challenger), difference(challenger, default)))
    order = scored(measured, seeds)
    verdict = "becomes the default" if order[0][1] == grid.CHALLENGER and not worse else "does not become the default"
    prose = (
        f"Seeds {seeds}. Scores by the tuning rule: {', '.join(f'{name} {score:+.2f}' for score, name, *_ in order)}. "
        f"Significantly worse (Welch's 95% interval below zero): {', '.join(worse) or 'none'}. By the rule written "
        f"before the runs (docs/results.md), {grid.CHALLENGER} {verdict}."
    )
    columns = ("measure", "pr2_soft", grid.CHALLENGER, f"{grid.CHALLENGER} − pr2_soft")
    return section("The default: today's pr2_soft against the tuning's winner", prose, columns, lines)
