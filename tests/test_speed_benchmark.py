"""benchmarks/speed.py: it times the configuration its flags name, and writes one table row per configuration."""

import pytest

from benchmarks import speed
from tests.helpers import run_ok

SIDES = "particle:soft:--scenario,simple_adversary,--critic-target,rho,--opponent-model,sides"


@pytest.mark.parametrize("config, sides", [(SIDES, True), (SIDES.replace("sides", "helpers"), False)])
def test_the_timed_update_gets_the_flags_and_opponent_model_of_the_config(monkeypatch, config, sides):
    seen = []

    def record(agents, optimizer, batch, n_updates, args):
        seen.append((args.scenario, args.critic_target, tuple(agent.opponent_signs is not None for agent in agents)))

    monkeypatch.setattr(speed.pr2, "update", record)
    rate, _, batch_size = speed.gradient_steps_per_second(config, 3, "cpu")
    assert len(seen) == 10 + 3 and rate > 0 and batch_size == 128  # warm-up, then the timed steps
    # simple_adversary: adversary_0 against agent_0 and agent_1, so every agent has an opponent on the other side
    assert set(seen) == {("simple_adversary", "rho", (sides,) * 3)}


def test_speed_table_has_a_row_per_configuration(tmp_path):
    out = tmp_path / "speed.md"
    configs = ["differential:soft", "differential:deterministic:--critic-input,own"]
    run_ok(
        "benchmarks/speed.py", "--configs", *configs, "--steps", "2", "--repeats", "1", "--out", str(out), cwd=tmp_path
    )
    rows = [line for line in out.read_text().splitlines() if line.startswith("| differential")]
    cells = [row.split(" | ") for row in rows]
    assert [cell[1:3] for cell in cells] == [["soft", ""], ["deterministic", "--critic-input own"]]
    assert all(float(cell[5]) > 0 for cell in cells)  # gradient steps per CPU second
