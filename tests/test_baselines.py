"""baselines/: MADDPG, independent DDPG and DDPG-OM. Conventions shared with pr2_continuous.py, end-to-end runs,
determinism, bad input, and one correctness check per algorithm."""

import dataclasses

import numpy as np
import pytest
import torch

import pr2_continuous as pr2
from baselines import common, ddpg, ddpg_om, maddpg
from tests.helpers import final_evaluation, finite_scalars, run_in_process, run_ok, run_script, the_run_dir
from utils.logger import read_scalars

MODULES = {"maddpg": maddpg, "ddpg": ddpg, "ddpg_om": ddpg_om}
SMOKE = dict(total_timesteps=300, learning_starts=100, batch_size=16, log_every=50, eval_episodes=2)


def losses_of(name):
    return ["critic_loss", "actor_loss", "q_values"] + (["opponent_model_loss"] if name == "ddpg_om" else [])


# ---------------------------------------------------------------- conventions shared with pr2_continuous.py
@pytest.mark.parametrize("name", MODULES)
def test_flags_are_pr2s(name):
    """A user swaps scripts without relearning flags: every baseline flag exists in pr2_continuous.py with the same
    default."""
    pr2_defaults = {f.name: f.default for f in dataclasses.fields(pr2.Args)}
    for field in dataclasses.fields(MODULES[name].Args):
        assert field.name in pr2_defaults, f"{name} has a flag --{field.name} that pr2_continuous.py lacks"
        if field.name != "exp_name":
            assert field.default == pr2_defaults[field.name], field.name
    assert MODULES[name].Args().exp_name == name  # the run folder and checkpoint are named after the script


def test_per_env_defaults_networks_exploration_and_action_mapping_are_pr2s():
    """What baselines/common.py gives every baseline: PR2-AC's per-env defaults (steps, batch, schedule), network and
    OU noise."""
    for env, defaults in common.ENV_DEFAULTS.items():  # per-policy PR2 defaults: PR2-AC's (a deterministic actor)
        pr2_ac = {k: v["deterministic"] if isinstance(v, dict) else v for k, v in pr2.ENV_DEFAULTS[env].items()}
        assert defaults == {key: pr2_ac[key] for key in defaults}, f"baselines' {env} defaults drifted from PR2-AC's"
    torch.manual_seed(0)
    theirs = pr2.MLP([3, 2], 4, 16, squash=True)
    torch.manual_seed(0)
    ours = common.MLP([3, 2], 4, 16, squash=True)
    x, y = torch.randn(5, 3), torch.randn(5, 2)
    assert torch.equal(theirs(x, y), ours(x, y))  # same layers, initialisation and first-layer sum
    np.random.seed(0)
    theirs = [pr2.OUNoise(2, 0.15, 0.3).sample().copy() for _ in range(3)]
    np.random.seed(0)
    assert np.array_equal(theirs, [common.OUNoise(2, 0.15, 0.3).sample().copy() for _ in range(3)])
    # the [-1, 1] -> Box mapping and the schedule parser are the shared ones of utils/, not copies
    assert common.to_env_action is pr2.to_env_action and common.run.parse_schedule is pr2.run.parse_schedule


# ---------------------------------------------------------------- end to end
def smoke_run(module, folder, monkeypatch, **flags):
    """run_in_process with the short run's flags (SMOKE) as defaults."""
    return run_in_process(module, folder, monkeypatch, **{**SMOKE, **flags})


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize(
    "flags,agents",
    [
        (dict(env="differential", save_model=True), ["agent_0", "agent_1"]),
        (dict(env="particle", scenario="simple_adversary"), ["adversary_0", "agent_0", "agent_1"]),
    ],
    ids=["differential", "simple_adversary"],
)
def test_run_logs_pr2s_metric_names_and_saves_loadable_policies(tmp_path, monkeypatch, name, flags, agents):
    run_dir = smoke_run(MODULES[name], tmp_path / "run", monkeypatch, **flags)
    assert run_dir.name.split("__")[1] == name
    per_agent = ["charts/episodic_return"] + [f"losses/{loss}" for loss in losses_of(name)]
    tags = ["charts/episodic_return", "charts/episodic_length", "charts/SPS"]
    scalars = finite_scalars(run_dir, tags + [f"{prefix}/{agent}" for prefix in per_agent for agent in agents])
    final_evaluation(run_dir, SMOKE["total_timesteps"], agents)  # once, the mean of 2 episodes, at the last step
    if flags["env"] == "differential":
        actions = scalars["charts/action/agent_0"]
        assert len(actions) == 6 and all(-1 <= value <= 1 for _, value in actions)
        checkpoint = torch.load(run_dir / f"{name}.pt", weights_only=True)
        assert {"agents", "args", "agent_names", "obs_dims", "act_dims", "optimizer", "step"} <= set(checkpoint)
        policies = MODULES[name].load_policies(str(run_dir / f"{name}.pt"))
        assert sorted(policies) == agents
        action = policies["agent_1"](np.zeros(1, np.float32))
        assert action.shape == (1,) and -1 <= action[0] <= 1


@pytest.mark.parametrize("name", MODULES)
def test_command_line_run(tmp_path, name):
    """`python baselines/<name>.py ...` from any folder: 4 agents of two kinds (simple_tag), logs read back."""
    flags = ["--total-timesteps=110", "--learning-starts=100", "--batch-size=16", "--log-every=10", "--eval-episodes=0"]
    run_ok(f"baselines/{name}.py", "--env", "particle", "--scenario", "simple_tag", *flags, cwd=tmp_path)
    agents = ["adversary_0", "adversary_1", "adversary_2", "agent_0"]
    finite_scalars(the_run_dir(tmp_path), [f"losses/critic_loss/{agent}" for agent in agents])


@pytest.mark.parametrize("name", MODULES)
def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path, monkeypatch, name):
    logs = []
    for k, seed in enumerate([3, 3, 4]):  # simple_push: multi-step episodes, heterogeneous agents
        run_dir = smoke_run(MODULES[name], tmp_path / str(k), monkeypatch, seed=seed, scenario="simple_push")
        logs.append({tag: values for tag, values in read_scalars(str(run_dir)).items() if tag != "charts/SPS"})
    assert logs[0] == logs[1]
    assert logs[0]["losses/critic_loss/agent_0"] != logs[2]["losses/critic_loss/agent_0"]


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize(
    "flags,message",
    [
        (dict(env="partcle"), "unknown --env 'partcle': did you mean 'particle'?"),
        (dict(batch_size=64, buffer_size=32), "--batch-size 64 exceeds --buffer-size 32"),
        (dict(noise_schedule="0:1,abc"), "--noise-schedule '0:1,abc' is not 'step:scale,...'"),
        (dict(target_update_interval=0), "--target-update-interval must be positive"),
        (dict(gamma=1.5), "need --learning-rate > 0, --gamma in [0, 1], --tau in (0, 1]"),
        (dict(save_every=-1), "--save-every must be >= 0"),
    ],
)
def test_bad_input_stops_before_training_with_one_line(tmp_path, monkeypatch, name, flags, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        MODULES[name].main(MODULES[name].Args(**flags))
    assert str(stop.value).startswith(f"{name}.py: error: ") and message in str(stop.value)
    assert "\n" not in str(stop.value) and not (tmp_path / "runs").exists()


def test_bad_input_on_the_command_line_prints_one_line(tmp_path):
    result = run_script("baselines/ddpg_om.py", "--env", "particle", "--scenario", "simple", cwd=tmp_path)
    assert result.returncode != 0 and not (tmp_path / "runs").exists()
    assert result.stderr.strip().splitlines()[-1] == (
        "ddpg_om.py: error: DDPG-OM needs at least two agents; particle has 1"
    )


def test_the_shared_loop_calls_what_an_algorithm_plugs_in(tmp_path, monkeypatch):
    """common.train knows no algorithm: it fills the algorithm's buffer class, calls its update once every
    --train-frequency steps from --learning-starts on, logs what update returns, and stops on its check_env."""
    calls = []

    class Buffer(common.ReplayBuffer):
        pass

    def update(agents, optimizer, buffer, n_updates, args):
        calls.append((type(buffer), buffer.size, n_updates))
        return {i: dict(stub_loss=float(n_updates)) for i in range(len(agents))}

    def refuse(names, args):
        raise ValueError(f"the stub plays no {len(names)}-agent game")

    stub = common.Algorithm("stub.py", ddpg.build_agents, update, buffer=Buffer)
    args = ddpg.Args(env="differential", total_timesteps=20, learning_starts=10, train_frequency=3, eval_episodes=0)
    monkeypatch.chdir(tmp_path)
    common.train(stub, dataclasses.replace(args, log_every=10))
    assert calls == [(Buffer, 13, 1), (Buffer, 16, 2), (Buffer, 19, 3)]  # at steps 12, 15, 18, after their add
    assert read_scalars(str(the_run_dir(tmp_path)))["losses/stub_loss/agent_1"] == [(20, 3.0)]
    with pytest.raises(SystemExit, match="^stub.py: error: the stub plays no 2-agent game$"):
        common.train(dataclasses.replace(stub, check_env=refuse), args)
    assert len(calls) == 3


# ---------------------------------------------------------------- correctness, one check per algorithm
OBS_DIMS, ACT_DIMS = [3, 4, 5], [2, 1, 2]


def random_batch(n=32, seed=0):
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=generator) * 2 - 1

    return dict(
        obs=[rand(n, d) for d in OBS_DIMS],
        actions=[rand(n, d) for d in ACT_DIMS],
        rewards=rand(n, 3),
        next_obs=[rand(n, d) for d in OBS_DIMS],
        dones=torch.zeros(n, 3),
    )


def test_maddpg_critic_sees_every_agents_observation_and_action_and_ddpgs_does_not():
    torch.manual_seed(0)
    args = common.resolve_args(maddpg.Args())
    batch = random_batch()
    agents = maddpg.build_agents(OBS_DIMS, ACT_DIMS, 16)
    independent = ddpg.build_agents(OBS_DIMS, ACT_DIMS, 16)

    def next_actions(agents):
        return torch.cat([agent.target_actor(o) for agent, o in zip(agents, batch["next_obs"])], -1)

    def q_of_agent_0(batch):
        return (
            maddpg.critic_loss(agents[0], 0, batch, next_actions(agents), args)[1].item(),
            ddpg.critic_loss(independent[0], 0, batch, args)[1].item(),
        )

    q_maddpg, q_ddpg = q_of_agent_0(batch)
    for key in ("actions", "obs"):  # another agent's action, then its observation
        changed = dict(batch, **{key: [*batch[key][:2], -batch[key][2]]})
        assert q_of_agent_0(changed)[0] != q_maddpg, f"MADDPG's critic ignores agent 2's {key}"
        assert q_of_agent_0(changed)[1] == q_ddpg, f"independent DDPG's critic sees agent 2's {key}"
    # the target bootstraps with every agent's target actor at s': changing agent 2's changes agent 0's loss
    loss = maddpg.critic_loss(agents[0], 0, batch, next_actions(agents), args)[0].item()
    with torch.no_grad():
        agents[2].target_actor.body[-1].bias.add_(0.5)
    assert maddpg.critic_loss(agents[0], 0, batch, next_actions(agents), args)[0].item() != loss


@pytest.mark.parametrize("name", MODULES)
def test_actor_surrogate_has_the_policy_gradient_and_leaves_the_critic_alone(name):
    torch.manual_seed(0)
    module, batch = MODULES[name], random_batch()
    agents = module.build_agents(OBS_DIMS, ACT_DIMS, 16)
    agent = agents[1]
    loss = maddpg.actor_loss(agent, 1, batch)[0] if name == "maddpg" else module.actor_loss(agent, batch["obs"][1])[0]
    loss.backward()
    surrogate = [p.grad.clone() for p in agent.actor.parameters()]
    assert all(p.grad is None for name_, p in agent.named_parameters() if not name_.startswith("actor."))
    agent.zero_grad()
    action = agent.actor(batch["obs"][1])
    if name == "maddpg":
        joint = torch.cat([batch["actions"][0], action, batch["actions"][2]], -1)
        q = agent.critic(torch.cat(batch["obs"], -1), joint)
    elif name == "ddpg":
        q = agent.critic(batch["obs"][1], action)
    else:
        q = agent.critic(batch["obs"][1], action, agent.opponent_model(batch["obs"][1]).detach())
    (-q.mean()).backward()
    for got, want in zip(surrogate, (p.grad for p in agent.actor.parameters())):
        assert torch.allclose(got, want, atol=1e-6)


def test_ddpg_om_opponent_model_regresses_to_the_observed_actions():
    """On a fixed batch where the others play a^-i = tanh(W o^i), ρ's MSE falls far below predicting their mean."""
    torch.manual_seed(0)
    agent = ddpg_om.build_agents(OBS_DIMS, ACT_DIMS, 32)[0]
    batch = random_batch(n=64)
    weights = torch.randn(OBS_DIMS[0], sum(ACT_DIMS[1:]))
    played = torch.tanh(batch["obs"][0] @ weights)
    batch["actions"] = [batch["actions"][0], played[:, :1], played[:, 1:]]
    optimizer = torch.optim.Adam(agent.opponent_model.parameters(), lr=3e-3)
    for _ in range(300):
        loss = ddpg_om.opponent_model_loss(agent, 0, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    baseline = 0.5 * (played - played.mean(0)).pow(2).mean().item()
    assert ddpg_om.opponent_model_loss(agent, 0, batch).item() < 0.05 * baseline


def test_ddpg_om_opponent_model_trains_on_the_newest_transitions():
    buffer = ddpg_om.ReplayBuffer(5, obs_dims=[1, 1], act_dims=[1, 1], device="cpu")
    for t in range(7):  # wraps around: rows hold 5, 6, 2, 3, 4
        buffer.add([[t], [t]], [[t], [t]], [t, t], [[t], [t]], [0, 0])
    assert sorted(buffer.recent(3)["actions"][1][:, 0].tolist()) == [4.0, 5.0, 6.0]
    assert sorted(buffer.recent(99)["obs"][0][:, 0].tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0]
