"""Benchmark: what the opponent model ρ adds over uniform opponent samples (issue 14).

`--gaps`, before any training: for each candidate differential game, from the exact reward, agent i's soft value of
its own action a at the soft policy's temperatures, three ways (b: the other agents' actions, env units [-10, 10]):

    uniform        V_u(a)  = α·log E_{b~U} exp(r(a, b)/α)          (--soft-marginal uniform)
    ρ (Eq. 12)     V_ρ(a)  = α·log E_{b~ρ_α(·|a)} exp(r(a, b)/α)   (--soft-marginal rho, with ρ at its target)
                   ρ_α(b|a) ∝ exp(r(a, b)/α), so V_ρ(α) = 2·V_u(α/2) - V_u(α) exactly
    best response  V_br(a) = max_b r(a, b)                          (the α → 0 limit of both)

The expectations are sums over a grid of the other agents' actions (trapezoid rule, 0.5 env units; the reward's
symmetry among agents of one role makes 5 agents cheap), so the tables are deterministic and take seconds:

    python benchmarks/opponent_model.py --gaps      # writes benchmarks/results/opponent_model_gaps.md

The training part (10 seeds of the soft policy with ρ, with uniform samples, without annealing, the faithful PR2-AC
and MADDPG on the games kept here) is still to be added to this file.
"""

import argparse
import itertools
import sys
from collections import Counter
from math import lgamma
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import versions  # noqa: E402
from utils.envs import differential_reward, make_env  # noqa: E402

ALPHA_START, ALPHA_FINAL = 20.0, 0.5  # pr2_continuous.py's soft policy on the differential game: 40·α → α = 0.5
TABLE_ALPHAS = (20.0, 10.0, 5.0, 2.0, 1.0, 0.5)
GLOBAL, LOCAL = 5.0, -5.0  # every agent's own action at the global and at the local optimum, in all games below
STEP = 0.5  # grid step in env units (a step of 0.1 changes no gap on paper_n3 by more than 0.01)


def consensus_reward(actions):
    """Candidate 'consensus' (not in utils/envs.py): the paper's local branch, and a global branch 10 - Σ(a_i - ā)²
    - n·((ā - 5)/3)², narrow (width 1) in the agents' disagreement and wide (width 3) along their common action."""
    mean = actions.mean(-1, keepdims=True)
    f1 = 0.8 * -(((actions + 5) / 3) ** 2).sum(-1)
    f2 = 10 - ((actions - mean) ** 2).sum(-1) - actions.shape[-1] * ((mean[..., 0] - 5) / 3) ** 2
    return np.maximum(f1, f2)


# scenario: what it tests. All but 'consensus_n3' are --env differential scenarios (utils/envs.py).
GAMES = {
    "paper": "the paper's game, two agents (reference)",
    "paper_n3": "the paper's game with three agents: two partners must both hit the narrow peak",
    "paper_n4": "... four agents",
    "paper_n5": "... five agents",
    "code": "the original code's formula, f1 = 0.8·(-(a + 5)²/3 - ...): a steeper local basin (reference)",
    "code_n3": "the original code's formula with three agents",
    "code_n4": "... four agents",
    "code_n5": "... five agents",
    "paper_leader": "roles: agent 0 (leader) alone holds the local optimum: f1 = -0.8·((a_0 + 5)/3)², f2 as in the "
    "paper; the leader secures 0 at a_0 = -5 whatever the follower plays, the 10 at (5, 5) needs both",
    "paper_leader_n3": "... with two followers",
    "code_leader_n3": "... the original code's formula, f1 = -0.8·(a_0 + 5)²/3, two followers",
    "consensus_n3": "coordinated responses (candidate, not in utils/envs.py): the global branch pays when the agents "
    "agree, 10 - Σ(a_i - ā)² - 3·((ā - 5)/3)², local branch as in the paper; both optima as in the paper, but the "
    "start (0, 0, 0) lies in the global basin (r = 1.7 there)",
}


def game(scenario: str):
    """(reward of joint actions [..., n] -> [...], role of each agent) for a GAMES scenario."""
    if scenario.startswith("consensus_n"):
        n_agents = int(scenario.rpartition("_n")[2])
        return consensus_reward, ["agent"] * n_agents
    env = make_env("differential", scenario)  # the command line's own parsing and checks
    n_agents, formula = len(env.possible_agents), env.formula

    def reward(actions):
        others = list(np.moveaxis(actions[..., 2:], -1, 0))
        return differential_reward(actions[..., 0], actions[..., 1], formula, others)

    roles = ["leader", *["follower"] * (n_agents - 1)] if formula.endswith("_leader") else ["agent"] * n_agents
    return reward, roles


def partner_grid(roles: list[str], agent: int, step: float = STEP):
    """The other agents' joint actions on a grid of [-10, 10] and the log trapezoid weight of each (summing to 1).

    The reward is symmetric among agents of one role, so within a role only sorted tuples are kept, each weighted by
    its number of orderings. Returns (actions [N, n] with column `agent` left 0, log weights [N])."""
    nodes = np.arange(-10.0, 10.0 + step / 2, step)
    log_w = np.log(np.r_[0.5, np.ones(len(nodes) - 2), 0.5] / (len(nodes) - 1))
    groups = {}
    for j, role in enumerate(roles):
        if j != agent:
            groups.setdefault(role, []).append(j)
    blocks = []
    for members in groups.values():
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
    r = np.empty((len(own), len(partners)))  # [own action, partners' actions]
    for k, a in enumerate(own):
        partners[:, agent] = a
        r[k] = reward(partners)

    def uniform(alpha):  # α·log Σ_b w_b exp(r/α), a log-sum-exp over the grid
        x = r / alpha + log_w
        top = x.max(1, keepdims=True)
        return alpha * (top[:, 0] + np.log(np.exp(x - top).sum(1)))

    v_u = np.array([uniform(alpha) for alpha in alphas])
    v_rho = np.array([2 * uniform(alpha / 2) for alpha in alphas]) - v_u
    return v_u, v_rho, r.max(1)


def global_share(own, values, alpha: float) -> float:
    """Mass of π(a) ∝ exp(V(a)/α) on the global optimum's side (own action > 0), trapezoid rule on the own grid."""
    weight = np.exp((values - values.max()) / alpha) * np.r_[0.5, np.ones(len(own) - 2), 0.5]
    return float((weight[own > 0].sum() + 0.5 * weight[own == 0].sum()) / weight.sum())


def crossings(alphas, gap) -> str:
    """The temperatures in the scan at which the gap changes sign, interpolated in log α, as text."""
    points = []
    for k in np.flatnonzero(np.sign(gap[:-1]) != np.sign(gap[1:])):
        t = gap[k] / (gap[k] - gap[k + 1])
        points.append(f"{np.exp(np.log(alphas[k]) + t * np.log(alphas[k + 1] / alphas[k])):.1f}")
    return ", ".join(points) or "none"


def role_gaps(scenario: str, agent: int) -> dict:
    """Everything the report says about one role of one game."""
    reward, roles = game(scenario)
    own = np.arange(-10.0, 10.0 + STEP / 2, STEP)
    scan = np.geomspace(ALPHA_START, ALPHA_FINAL, 401)  # equal steps of the geometric anneal
    v_u, v_rho, v_br = soft_values(reward, roles, agent, own, TABLE_ALPHAS)
    s_u, s_rho, _ = soft_values(reward, roles, agent, [GLOBAL, LOCAL], scan)
    gap_u, gap_rho = s_u[:, 0] - s_u[:, 1], s_rho[:, 0] - s_rho[:, 1]
    at_global, at_local = np.argmin(abs(own - GLOBAL)), np.argmin(abs(own - LOCAL))
    rows = []
    for k, alpha in enumerate(TABLE_ALPHAS):
        row = dict(alpha=alpha)
        for name, v in (("u", v_u[k]), ("rho", v_rho[k])):
            row.update({f"{name}_best": own[v.argmax()], f"{name}_gap": v[at_global] - v[at_local]})
            row[f"{name}_share"] = global_share(own, v, alpha)
        rows.append(row)
    return dict(
        scenario=scenario,
        role=roles[agent],
        agent=agent,
        n_agents=len(roles),
        rows=rows,
        br_best=own[v_br.argmax()],
        br_gap=v_br[at_global] - v_br[at_local],
        cross_u=crossings(scan, gap_u),
        cross_rho=crossings(scan, gap_rho),
        uniform_local=float(np.mean(gap_u < 0)),  # share of the anneal in which uniform prefers the local side
        disagree=float(np.mean((gap_u < 0) & (gap_rho > 0))),  # ... uniform local while ρ prefers the global side
        separates=bool(rows[0]["u_best"] < 0 < rows[0]["rho_best"]),
        kept=bool(rows[0]["u_best"] < 0 < own[v_br.argmax()]),  # the test, for this role
    )


def gaps(scenarios=tuple(GAMES)) -> list[dict]:
    """role_gaps for every distinct role (the first agent of each) of every scenario."""
    results = []
    for scenario in scenarios:
        roles = game(scenario)[1]
        results += [role_gaps(scenario, roles.index(role)) for role in dict.fromkeys(roles)]
    return results


def write_gaps(results: list[dict], path: Path):
    a0, a1 = f"{ALPHA_START:g}", f"{ALPHA_FINAL:g}"
    lines = [
        "# What the opponent model adds: the games before training (issue 14, item 1)",
        "",
        f"Command: `python benchmarks/opponent_model.py {' '.join(sys.argv[1:])}`  ",
        f"Software: {versions()}.",
        "",
        "From the exact reward, no training. For one agent of each role, the soft value of its own action a with the "
        "other agents' actions b:",
        "",
        "- **uniform**: V_u(a) = α·log E_{b~U[-10,10]} exp(r(a, b)/α), what `--soft-marginal uniform` estimates;",
        "- **ρ (Eq. 12)**: V_ρ(a) = α·log E_{b~ρ_α(·|a)} exp(r(a, b)/α) with ρ_α(b|a) ∝ exp(r(a, b)/α), what "
        "`--soft-marginal rho` estimates once ρ has learned Eq. 12 at the current α (= 2·V_u(α/2) - V_u(α));",
        "- **best response**: V_br(a) = max_b r(a, b), the α → 0 limit of both.",
        "",
        f"Gap: V(+5) - V(-5), the own actions of the global (10) and local (0) optimum; > 0 favours the global one. "
        f"Best a: the argmax of V over own actions (step {STEP:g}). Global share: the mass of the soft policy's target "
        "π(a) ∝ exp(V(a)/α) on the global side (a > 0). α is annealed geometrically from "
        f"{a0} to {a1} (the soft policy's defaults on this game); 'share of the anneal' counts equal steps of that "
        "schedule. Expectations are trapezoid sums on a grid of step "
        f"{STEP:g}. Not included: the tanh squash factor Π(1 - x²) that the SVGD targets of ρ and π carry.",
        "",
        f"**Kept** (the issue's test): at the starting α = {a0} the uniform value's best own action is on the local "
        "side while the best response's is on the global side, for at least one role. **ρ separates at the start**: "
        "the same for this role with V_ρ in place of V_br.",
        "",
        "Reading the tables: V_ρ is Eq. 12 at the current α, so at α = 20 ρ is itself broad and V_ρ often agrees "
        "with V_u; the two disagree over a band of the anneal, whose share the summary gives. At α = 0.5 every value "
        "favours the global side in every game: on the exact reward, uniform samples mislead the policy only during "
        "the anneal. Whether a training run recovers from that depends on its policy and its learned critic, which "
        "these tables do not model.",
        "",
        f"| game | agents | role | best a at α = {a0}: uniform / ρ / best response | uniform's gap changes sign at α "
        "| ρ's gap changes sign at α | share of the anneal with uniform favouring local / with that and ρ global "
        "| kept | ρ separates at the start |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    kept = {r["scenario"]: any(s["kept"] for s in results if s["scenario"] == r["scenario"]) for r in results}
    for r in results:
        first = r["rows"][0]
        lines.append(
            f"| `{r['scenario']}` | {r['n_agents']} | {r['role']} | {first['u_best']:+g} / {first['rho_best']:+g} / "
            f"{r['br_best']:+g} | {r['cross_u']} | {r['cross_rho']} | {r['uniform_local']:.0%} / {r['disagree']:.0%} "
            f"| {'yes' if kept[r['scenario']] else 'no'} | {'yes' if r['separates'] else 'no'} |"
        )
    lines.append("")
    for r in results:
        lines += [
            f"## `{r['scenario']}`, {r['role']} (agent {r['agent']}): {GAMES[r['scenario']]}",
            "",
            f"Best response: best a {r['br_best']:+g}, gap {r['br_gap']:+.2f}.",
            "",
            "| α | uniform: best a | gap | global share | ρ: best a | gap | global share |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in r["rows"]:
            lines.append(
                f"| {row['alpha']:g} | {row['u_best']:+g} | {row['u_gap']:+.2f} | {row['u_share']:.2f} "
                f"| {row['rho_best']:+g} | {row['rho_gap']:+.2f} | {row['rho_share']:.2f} |"
            )
        lines.append("")
    path.write_text("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gaps", action="store_true", help="the soft-value gaps of the games before training")
    parser.add_argument("--scenarios", nargs="+", default=list(GAMES), choices=list(GAMES), help="games to tabulate")
    parser.add_argument("--out-dir", default="benchmarks/results", help="where the tables go")
    args = parser.parse_args()
    if not args.gaps:
        parser.error("choose a mode: --gaps (the training benchmark is not written yet)")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_gaps(gaps(args.scenarios), out / "opponent_model_gaps.md")
    print(f"wrote {out / 'opponent_model_gaps.md'}")


if __name__ == "__main__":
    main()
