"""baselines/masql.py: the soft value against a closed form, the SVGD sampler against known densities, own-slice
acting, the α schedule, end-to-end runs from the command line, bad input, and checkpoints (load, resume)."""

import sys

import numpy as np
import pytest
import torch
from scipy import integrate

import pr2_continuous as pr2
from baselines import common, masql
from tests.helpers import checkpoint_of, finite_scalars, logged_values, run_ok, run_script, the_run_dir
from utils import run

QUICK = ["--total-timesteps", "300", "--learning-starts", "100", "--batch-size", "16", "--log-every", "50"]
LOSSES = ["critic_loss", "actor_loss", "q_values"]


# ---------------------------------------------------------------- correctness of the pieces
def test_soft_value_is_the_log_integral_of_a_linear_q():
    """Q(v, b) = ⟨c, b⟩ on [-1, 1]^D: ∫ exp(Q/α) db = Π_d 2·sinh(c_d/α)/(c_d/α), so relative to the uniform measure
    V = α·Σ_d log(sinh(c_d/α)/(c_d/α)), and --log-volume adds α·D·log 2. 400,000 samples: within 0.01."""
    torch.manual_seed(0)
    c, alpha = torch.tensor([1.0, -0.5, 0.25]), 0.5
    critic = lambda view, b: (b * c).sum(-1, keepdim=True) + 0 * view.sum(-1, keepdim=True)  # noqa: E731
    closed_form = alpha * sum(np.log(np.sinh(x / alpha) / (x / alpha)) for x in c.tolist())
    for log_volume, shift in [(False, 0.0), (True, alpha * 3 * np.log(2))]:
        value = masql.soft_value(critic, torch.zeros(1, 4), 3, 400_000, alpha, log_volume).item()
        assert abs(value - (closed_form + shift)) < 0.01, (log_volume, value, closed_form + shift)


@pytest.mark.parametrize("space", ["action", "raw"])
def test_svgd_moves_the_sampler_to_its_target_density(space):
    """A fixed Q/α = -‖x - m‖²/(2σ²) over a 2-D joint action: 'raw' samples follow exp(Q/α) on [-1, 1]², 'action'
    ones (the original's) exp(Q/α)·Π(1 - x²). Their means (by quadrature) differ by ~0.1 in the first coordinate;
    after 400 SVGD steps the sampler's mean over 4,000 draws is within 0.05 of its own target's, per coordinate."""
    m, sigma, alpha = torch.tensor([0.6, -0.3]), 0.3, 0.5

    class GaussianLogDensity(torch.nn.Module):  # Q(v, x) = -α‖x - m‖²/(2σ²)
        def forward(self, view, x):
            return -alpha * (x - m).pow(2).sum(-1, keepdim=True) / (2 * sigma**2)

    torch.manual_seed(0)
    agent = masql.build_agents([1, 1], [1, 1], 16)[0]
    agent.critic = GaussianLogDensity()
    args = masql.check_args(masql.Args(env="differential", svgd_space=space))
    optimizer = torch.optim.Adam(agent.sampler.parameters(), lr=3e-3)
    obs = torch.zeros(4, 1)
    for _ in range(400):
        loss, _ = masql.sampler_loss(agent, obs, obs, alpha, args)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        mean = agent.sample(torch.zeros(1, 1), 4000)[0].mean(0).numpy()
    weight = (lambda x: 1 - x * x) if space == "action" else (lambda x: 1.0)
    density = lambda x, mu: np.exp(-((x - mu) ** 2) / (2 * sigma**2)) * weight(x)  # noqa: E731
    first_moment = lambda x, mu: x * density(x, mu)  # noqa: E731
    target = [integrate.quad(first_moment, -1, 1, (mu,))[0] / integrate.quad(density, -1, 1, (mu,))[0]
              for mu in m.tolist()]  # fmt: skip
    assert np.abs(mean - target).max() < 0.05, (space, mean, target)


def test_each_agent_plays_its_own_slice_of_its_own_joint_sample():
    """With a constant sampler (last layer zero but its bias b^i), agent i's joint sample is tanh(b^i): it must play
    the first a^i entries of its own b^i, in exploration and noise-free play alike."""
    obs_dims, act_dims = [3, 4, 5], [2, 1, 2]
    agents = masql.build_agents(obs_dims, act_dims, 16)
    biases = [torch.linspace(-0.9, 0.9, 5) * (i + 1) / 3 + 0.1 * i for i in range(3)]
    with torch.no_grad():
        for agent, bias in zip(agents, biases):
            agent.sampler.body[-1].weight.zero_()
            agent.sampler.body[-1].bias.copy_(bias)
    names = ["a", "b", "c"]
    obs = {name: np.random.randn(d).astype(np.float32) for name, d in zip(names, obs_dims)}
    played = masql.explore(agents, names, obs, "cpu")
    for agent, bias, action, name, dim in zip(agents, biases, played, names, act_dims):
        own = torch.tanh(bias[:dim]).numpy()
        assert action.shape == (dim,) and np.allclose(action, own, atol=1e-6), (name, action, own)
        assert np.allclose(agent.actor(torch.as_tensor(obs[name])).detach().numpy(), own, atol=1e-6)


def test_alpha_schedule_is_the_soft_pr2s():
    """--alpha-start anneals geometrically to --alpha as pr2_continuous.py's does (its step n is MASQL's update
    n + 1: common.train counts updates from 1); without --alpha-start, α is fixed."""
    ours = masql.check_args(masql.Args(env="differential", alpha=0.5, alpha_start=50.0, anneal_steps=300))
    theirs = pr2.resolve_args(pr2.Args(env="differential", alpha=0.5, alpha_start=50.0, anneal_steps=300))
    for n in [0, 1, 150, 299, 300, 5000]:
        assert masql.temperature(ours, n + 1) == pytest.approx(pr2.temperature(theirs, n), rel=1e-12)
    fixed = masql.check_args(masql.Args(env="particle"))
    assert (fixed.alpha, fixed.alpha_start) == (0.01, 0.01) and masql.temperature(fixed, 1000) == 0.01


# ---------------------------------------------------------------- end to end, from the command line
@pytest.mark.parametrize(
    "flags,agents",
    [
        (["--env", "differential", "--alpha-start", "4", "--anneal-steps", "100"], ["agent_0", "agent_1"]),
        (["--env", "particle", "--scenario", "simple_adversary", "--critic-input", "state"],
         ["adversary_0", "agent_0", "agent_1"]),
    ],
    ids=["differential", "simple_adversary"],
)  # fmt: skip
def test_command_line_run_logs_finite_losses(tmp_path, flags, agents):
    run_ok("baselines/masql.py", *flags, *QUICK, "--eval-episodes", "2", cwd=tmp_path)
    run_dir = the_run_dir(tmp_path)
    assert run_dir.name.split("__")[1] == "masql"
    tags = [f"losses/{loss}/{agent}" for loss in LOSSES for agent in agents] + ["charts/alpha", "eval/episodic_return"]
    scalars = finite_scalars(run_dir, tags)
    assert "charts/noise_scale" not in scalars  # MASQL adds no OU noise
    if flags[1] == "differential":  # α from 4 at update 1 (step 100) to 0.5 from update 101 on
        assert dict(scalars["charts/alpha"])[50] == 4.0 and dict(scalars["charts/alpha"])[300] == pytest.approx(0.5)
        assert all(-1 <= value <= 1 for _, value in scalars["charts/action/agent_0"])


@pytest.mark.parametrize(
    "flags,message",
    [
        (dict(env="partcle"), "unknown --env 'partcle': did you mean 'particle'?"),
        (dict(env="differential", alpha=-1.0), "--alpha must be positive, got -1.0"),
        (dict(env="differential", kernel_particles=2), "must leave >= 2 fixed and >= 1 moved particles"),
        (dict(env="particle", scenario="simple"), "MASQL needs at least two agents; particle has 1"),
    ],
)
def test_bad_input_stops_before_training_with_one_line(tmp_path, monkeypatch, flags, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        masql.main(masql.Args(**flags))
    assert str(stop.value).startswith("masql.py: error: ") and message in str(stop.value)
    assert "\n" not in str(stop.value) and not (tmp_path / "runs").exists()


def test_non_finite_alpha_on_the_command_line_prints_one_line(tmp_path):
    result = run_script("baselines/masql.py", "--env", "differential", "--alpha", "nan", cwd=tmp_path)
    assert result.returncode != 0 and not (tmp_path / "runs").exists()
    assert result.stderr.strip().splitlines()[-1] == "masql.py: error: --alpha must be a finite number, got nan"


# ---------------------------------------------------------------- checkpoints
def in_process(folder, monkeypatch, *argv):
    """`python baselines/masql.py <argv>` from `folder`, in this process (no start-up cost); returns its run folder."""
    folder.mkdir(exist_ok=True)
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "argv", ["masql.py", *argv])
    masql.main(*run.parse_args(masql.Args, masql.SCRIPT, common.CHECKPOINT_KEYS))
    return the_run_dir(folder)


def test_checkpoint_loads_its_policies_and_resumes_as_if_never_stopped(tmp_path, monkeypatch):
    """Stopped at step 150 (simple_push: heterogeneous agents, multi-step episodes) and resumed to 300, the run logs
    what an uninterrupted one does; load_policies gives each agent's noise-free action; a resume with another
    --critic-input stops with one line."""
    flags = ["--env", "particle", "--scenario", "simple_push", *QUICK[2:], "--eval-episodes", "0", "--seed", "3"]
    whole = in_process(tmp_path / "whole", monkeypatch, *flags, "--total-timesteps", "300")
    part = in_process(tmp_path / "part", monkeypatch, *flags, "--total-timesteps", "150", "--save-model")
    checkpoint = checkpoint_of(tmp_path / "part")
    policies = masql.load_policies(str(checkpoint))
    saved = torch.load(checkpoint, weights_only=True)
    agents = masql.build_agents(saved["obs_dims"], saved["act_dims"], 100)
    agents.load_state_dict(saved["agents"])
    assert sorted(policies) == ["adversary_0", "agent_0"]
    for name, agent, obs_dim, act_dim in zip(saved["agent_names"], agents, saved["obs_dims"], saved["act_dims"]):
        observation = np.linspace(-1, 1, obs_dim).astype(np.float32)
        action = policies[name](observation)
        assert np.allclose(action, agent.actor(torch.as_tensor(observation)).detach().numpy())
        assert action.shape == (act_dim,) and np.abs(action).max() <= 1
    with pytest.raises(SystemExit, match="trained with --critic-input own, not state; drop that flag"):
        in_process(tmp_path / "part", monkeypatch, "--resume", str(checkpoint), "--critic-input", "state")
    in_process(tmp_path / "part", monkeypatch, "--resume", str(checkpoint), "--total-timesteps", "300")
    assert logged_values(part) == logged_values(whole)
    assert torch.load(checkpoint, weights_only=True)["step"] == 300
