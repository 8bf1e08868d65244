"""Speed benchmark: gradient steps per second of pr2_continuous.py's update, one process, one thread.

python benchmarks/speed.py                     # differential game and simple_spread, both policies, on the CPU
python benchmarks/speed.py --device cuda       # the same on the GPU (table: benchmarks/results/speed_cuda.md)
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pr2_continuous as pr2  # noqa: E402
from benchmarks.common import versions  # noqa: E402
from benchmarks.grid_report import row  # noqa: E402
from utils.envs import global_state_dim, make_env  # noqa: E402


def gradient_steps_per_second(config: str, steps: int, device: str) -> tuple[float, float, int]:
    """(steps per CPU second, steps per wall-clock second, batch size) of one 'env:policy[:flag,value,...]'."""
    torch.manual_seed(0)
    np.random.seed(0)
    env_name, policy, *flags = config.split(":", 2)
    flags = ["--env", env_name, "--policy", policy, *(flags[0].split(",") if flags else [])]
    args = pr2.resolve_args(tyro.cli(pr2.Args, args=flags))
    env = make_env(args.env, args.scenario, "continuous")
    names = env.possible_agents
    obs_dims, act_dims = ([space(n).shape[0] for n in names] for space in (env.observation_space, env.action_space))
    state_dim = global_state_dim(env) if args.critic_input == "state" else 0
    agents = pr2.build_agents(obs_dims, act_dims, state_dim, args).to(device)
    for agent, sign in zip(agents, pr2.opponent_signs(names, act_dims, args)):
        agent.opponent_signs = sign if sign is None else sign.to(device)
    optimizer = torch.optim.Adam([p for p in agents.parameters() if p.requires_grad], lr=3e-4, fused=True)
    buffer = pr2.ReplayBuffer(10_000, obs_dims, act_dims, device, state_dim)
    done = [float(env_name == "differential")] * len(obs_dims)
    for _ in range(2_000):
        obs, next_obs = ([np.random.randn(d) for d in obs_dims] for _ in range(2))
        actions = [np.random.uniform(-1, 1, d) for d in act_dims]
        buffer.add(obs, actions, [0.0] * len(obs_dims), next_obs, done, *np.random.randn(2, state_dim))
    # n_updates as in training: α's anneal and the Polyak update every --target-update-interval steps are timed too
    for n_updates in range(10):  # warm-up
        pr2.update(agents, optimizer, buffer.sample(args.batch_size), n_updates, args)
    synchronise = torch.cuda.synchronize if device == "cuda" else lambda: None
    synchronise()
    start, start_cpu = time.perf_counter(), time.process_time()  # the process's CPU time: others do not inflate it
    for n_updates in range(10, 10 + steps):
        pr2.update(agents, optimizer, buffer.sample(args.batch_size), n_updates, args)
    synchronise()  # CUDA runs asynchronously: the clock stops when the GPU has finished
    return steps / (time.process_time() - start_cpu), steps / (time.perf_counter() - start), args.batch_size


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    configs = [f"{env}:{policy}" for env in ("differential", "particle") for policy in ("deterministic", "soft")]
    parser.add_argument("--configs", nargs="+", default=configs, help="e.g. particle:soft:--critic-target,rho")
    parser.add_argument("--steps", type=int, default=200, help="timed gradient steps per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per configuration; the median is reported")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="'cuda' times the update on the GPU")
    parser.add_argument("--out", help="the table (default: benchmarks/results/speed.md, speed_cuda.md on cuda)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"speed.py: error: --device cuda, but torch {torch.__version__} finds no CUDA device")
    torch.set_num_threads(1)
    # Round-robin: each repeat times every configuration once, so that a change of load hits them all alike
    results = {config: [] for config in args.configs}
    for _ in range(args.repeats):
        for config in args.configs:
            results[config].append(gradient_steps_per_second(config, args.steps, args.device))
            print(config, results[config][-1], flush=True)
    rows = []
    for config, measured in results.items():
        rate, wall_rate = statistics.median(r[0] for r in measured), statistics.median(r[1] for r in measured)
        env_name, policy, *flags = config.split(":", 2)
        rows.append(row(env_name, policy, " ".join(flags[0].split(",")) if flags else "", args.device, measured[0][2],
                        f"{rate:.0f}", f"{1000 / rate:.1f} ms", f"{wall_rate:.0f}"))  # fmt: skip
    gpu = f", {torch.cuda.get_device_name()} (CUDA {torch.version.cuda})" if args.device == "cuda" else ""
    lines = ["# Gradient steps per second of `pr2_continuous.py` (one process, one CPU thread)", "",
             f"Command: `python benchmarks/speed.py {' '.join(sys.argv[1:])}`  ",
             f"Software: {versions()}{gpu}; median of {args.repeats} × {args.steps} steps, the configurations "
             "timed in turn. One gradient step updates every agent's four networks.", "",
             row("env", "policy", "flags", "device", "batch", "gradient steps per CPU second", "CPU time per step",
                 "per wall-clock second"), "|---" * 8 + "|", *rows, ""]  # fmt: skip
    out = Path(args.out or f"benchmarks/results/speed{'_cuda' * (args.device == 'cuda')}.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
