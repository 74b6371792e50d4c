"""Shared RA-CUSUM limits h(n) (one simulation for every horizon) against the per-sequence definition.

``risk_adjusted_cusum_limits`` resamples risks from the case mix (cusum::racusum_limit_sim;
Steiner et al. 2000 section 3). With constant risk it is the Bernoulli CUSUM limit (exact
dynamic programming); for a sequence drawn from the case mix, the per-sequence simulated
false-signal probability at h(n) is the target within Monte Carlo error.
"""

import math

import numpy as np
import pytest

from poem_registry.stats import (
    bernoulli_cusum_limit,
    risk_adjusted_cusum_limit,
    risk_adjusted_cusum_limits,
    steiner_weights,
)
from poem_registry.stats.cusum import _running_max_page


def _signal_probability(risks: np.ndarray, h: float, n_simulations: int, seed: int) -> float:
    """Per-sequence simulation (the exact definition): P(max_t X_t > h) over this risk sequence."""
    rng = np.random.default_rng(seed)
    y = rng.random((n_simulations, risks.size)) < risks
    ones, zeros = np.ones(risks.size), np.zeros(risks.size)
    w = np.where(y, steiner_weights(ones, risks), steiner_weights(zeros, risks))
    return float(np.mean(_running_max_page(w) > h))


def test_shared_limits_constant_risk_equal_bernoulli_limits():
    p0 = 0.1
    curve = risk_adjusted_cusum_limits(np.full(50, p0), [30, 150, 400], 2.0, 0.05, n_simulations=4000, seed=5)
    for n in (30, 150, 400):
        exact = bernoulli_cusum_limit(p0, 2 * p0 / (1 + p0), n, 0.05)
        assert curve.limit(n) == pytest.approx(exact.h, abs=0.25)
    assert curve.n_risks == 50 and curve.method == "simulation_resampled_risks"


def test_shared_limit_matches_per_sequence_simulation_within_monte_carlo_error():
    # an operator whose cases are a sample of the registry case mix: at the shared h(n) the
    # exact per-sequence false-signal probability is the target, within Monte Carlo error
    rng = np.random.default_rng(2024)
    registry = rng.beta(2, 14, 5000)
    n_sim = 20_000
    curve = risk_adjusted_cusum_limits(registry, [100, 300], 2.0, 0.05, n_simulations=n_sim, seed=7)
    mc_se = math.sqrt(2 * 0.05 * 0.95 / n_sim)  # two independent simulations
    for n, seed in ((100, 1), (300, 2)):
        sequence = rng.choice(registry, n)
        achieved = _signal_probability(sequence, curve.limit(n), n_sim, seed)
        assert achieved == pytest.approx(0.05, abs=4 * mc_se + 0.005)  # + the sequence's own sampling
        per_sequence = risk_adjusted_cusum_limit(sequence, 2.0, 0.05, n_simulations=n_sim, seed=seed)
        assert curve.limit(n) == pytest.approx(per_sequence.h, rel=0.05)


def test_shared_limits_are_deterministic_monotone_and_independent_of_other_horizons():
    risks = np.random.default_rng(3).uniform(0.02, 0.4, 300)
    a = risk_adjusted_cusum_limits(risks, [5, 40, 90], n_simulations=500, seed=11)
    b = risk_adjusted_cusum_limits(risks[::-1], [90, 40, 5, 200], n_simulations=500, seed=11)
    assert [a.limit(n) for n in (5, 40, 90)] == [b.limit(n) for n in (5, 40, 90)]
    assert np.all(np.diff(b.h) >= 0)  # the running maximum never decreases
    with pytest.raises(KeyError):
        a.limit(41)
    with pytest.raises(ValueError):
        risk_adjusted_cusum_limits(risks, [0])
