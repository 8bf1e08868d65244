"""IGA, Infinitesimal Gradient Ascent (Singh, Kearns & Mansour 2000), the baseline of PR2's matrix game (Sec. 5.1):
each player of a two-player, two-action game holds p = pi(a = 0) and steps along the gradient of its own expected
payoff, both at once, clipped to [0, 1]. `python benchmarks/iga.py`: the paper's game from (0, 0.9), step 0.01."""

import numpy as np


def payoff_gradients(r1, r2, p: float, q: float) -> tuple[float, float]:
    """dV1/dp and dV2/dq at (p, q), where V_k = [p, 1-p] R_k [q, 1-q]^T (rows: player 1)."""
    difference = np.array([1.0, -1.0])
    return float(difference @ np.asarray(r1) @ [q, 1 - q]), float(np.array([p, 1 - p]) @ np.asarray(r2) @ difference)


def iga(r1, r2, start=(0.0, 0.9), lr: float = 0.01, iterations: int = 1000) -> np.ndarray:
    """The IGA path `[iterations + 1, 2]` of (pi^1(a=0), pi^2(a=0)) from `start`, both players stepping at once."""
    path = np.empty((iterations + 1, 2))
    path[0] = start
    for t in range(iterations):
        path[t + 1] = np.clip(path[t] + lr * np.array(payoff_gradients(r1, r2, *path[t])), 0.0, 1.0)
    return path


if __name__ == "__main__":
    path = iga([[0, 3], [1, 2]], [[3, 2], [0, 1]])
    last = path[-200:]
    print(f"IGA after {len(path) - 1} iterations: (pi1, pi2) = {path[-1].round(3)}")
    print(f"last 200 iterations: pi1 in [{last[:, 0].min():.2f}, {last[:, 0].max():.2f}], "
          f"pi2 in [{last[:, 1].min():.2f}, {last[:, 1].max():.2f}]")  # fmt: skip
