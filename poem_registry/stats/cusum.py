"""CUSUM learning-curve and monitoring charts (clinical spec section 7.2).

References
----------
* Page ES. Continuous inspection schemes. Biometrika 1954;41:100-115.
* Wald A. Sequential Analysis. Wiley, 1947 (SPRT boundaries ln((1-beta)/alpha),
  ln(beta/(1-alpha))).
* Williams SM, Parry BR, Schlup MM. Quality control: an application of the cusum.
  BMJ 1992;304:1359-1361; Rogers CA et al. (and surgical/endoscopic learning-curve
  papers) for the non-resetting CUSUM with acceptable/unacceptable boundaries.
* Lovegrove J, Valencia O, Treasure T, Sherlaw-Johnson C, Gallivan S. Lancet
  1997;350:1128-1130 (VLAD / observed-minus-expected chart).
* Steiner SH, Cook RJ, Farewell VT, Treasure T. Monitoring surgical performance
  using risk-adjusted cumulative sum charts. Biostatistics 2000;1:441-452.
* cusum R package (Hubig L et al.), functions ``bernoulli_cusum``,
  ``cusum_limit_sim``, ``racusum_limit_sim`` (simulated control limits).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._common import AsDictMixin

__all__ = [
    "BernoulliCusum",
    "CusumLimit",
    "CusumLimitCurve",
    "RiskAdjustedCusum",
    "bernoulli_cusum",
    "bernoulli_cusum_limit",
    "cusum_observed_minus_mean",
    "oe_cusum",
    "risk_adjusted_cusum",
    "risk_adjusted_cusum_limit",
    "risk_adjusted_cusum_limits",
    "steiner_weights",
]


def _binary(values: Sequence[int] | np.ndarray, name: str) -> np.ndarray:
    y = np.asarray(values, dtype=float).ravel()
    if y.size and not np.all((y == 0) | (y == 1)):
        raise ValueError(f"{name} must contain only 0/1 (or False/True)")
    return y


def _probability(p: float, name: str) -> float:
    p = float(p)
    if not (0.0 < p < 1.0):
        raise ValueError(f"{name} must be strictly between 0 and 1, got {p!r}")
    return p


def cusum_observed_minus_mean(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Observed-minus-mean CUSUM of a continuous metric (e.g. procedure minutes).

    ``CUSUM(k) = sum_{i<=k} (x_i - xbar)`` with ``xbar`` the mean of *all* n values, so
    the series ends at 0; the case at the peak is conventionally read as the end of
    the learning phase (spec 7.2(a); the peak moves with n, so always report n).
    """
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        return x
    if not np.all(np.isfinite(x)):
        raise ValueError("values must be finite (drop missing procedure times first)")
    return np.cumsum(x - x.mean())


def oe_cusum(
    outcomes: Sequence[int] | np.ndarray, expected: float | Sequence[float] | np.ndarray
) -> np.ndarray:
    """Observed-minus-expected (O-E, VLAD) cumulative curve.

    ``S(k) = sum_{i<=k} (y_i - p_i)`` with ``y_i`` in {0, 1} (failure) and ``p_i`` the
    expected failure probability (a constant ``p0`` or one per case from a risk
    model). A descending curve means fewer failures than expected (Lovegrove 1997).
    """
    y = _binary(outcomes, "outcomes")
    p = np.broadcast_to(np.asarray(expected, dtype=float), y.shape)
    if np.any((p < 0) | (p > 1)):
        raise ValueError("expected probabilities must be in [0, 1]")
    return np.cumsum(y - p)


@dataclass(frozen=True)
class BernoulliCusum(AsDictMixin):
    """Result of :func:`bernoulli_cusum`.

    Non-resetting (Williams/Rogers) form, in units of failures:
    ``cusum[k] = sum (y_i - s)`` with ``s = Q/(P+Q)``, ``P = ln(p1/p0)``,
    ``Q = ln((1-p0)/(1-p1))``, boundaries ``h1 = ln((1-beta)/alpha)/(P+Q)`` (unacceptable)
    and ``h0 = -ln((1-alpha)/beta)/(P+Q)`` (acceptable). ``signals_h1``/``signals_h0`` are
    the 0-based case indices where the series first reaches the boundary after
    having been inside (a crossing).

    One-sided resetting (Page) form, in log-likelihood-ratio units (nats):
    ``resetting[k] = max(0, resetting[k-1] + W_k)`` with ``W = y P - (1 - y) Q``, signal when
    ``resetting[k] > limit`` (``limit`` defaults to ``ln((1-beta)/alpha)``, the same
    boundary as ``h1`` in nats). ``restart_after_signal`` restarts it at 0 after each
    signal.
    """

    p0: float
    p1: float
    alpha: float
    beta: float
    P: float
    Q: float
    s: float
    h0: float
    h1: float
    cusum: np.ndarray
    signals_h1: tuple[int, ...]
    signals_h0: tuple[int, ...]
    weights: np.ndarray
    resetting: np.ndarray
    limit: float
    resetting_signals: tuple[int, ...]
    restart_after_signal: bool


def _p1_from(p0: float, p1: float | None, odds_multiplier: float | None) -> float:
    if (p1 is None) == (odds_multiplier is None):
        raise ValueError("give exactly one of p1 or odds_multiplier")
    if p1 is not None:
        p1 = _probability(p1, "p1")
    else:
        if odds_multiplier is None or odds_multiplier <= 0:
            raise ValueError("odds_multiplier must be > 0")
        p1 = odds_multiplier * p0 / (1.0 - p0 + odds_multiplier * p0)
    if p1 == p0:
        raise ValueError("p1 must differ from p0")
    return p1


def _crossings(series: np.ndarray, boundary: float, upper: bool) -> tuple[int, ...]:
    hit = series >= boundary if upper else series <= boundary
    prev = np.concatenate(([False], hit[:-1]))
    return tuple(int(i) for i in np.flatnonzero(hit & ~prev))


def _page(weights: np.ndarray, limit: float, restart: bool) -> tuple[np.ndarray, tuple[int, ...]]:
    out = np.empty_like(weights)
    c = 0.0
    signals = []
    for i, w in enumerate(weights):
        c = max(0.0, c + w)
        out[i] = c
        if c > limit:
            signals.append(i)
            if restart:
                c = 0.0
    return out, tuple(signals)


def bernoulli_cusum(
    failures: Sequence[int] | np.ndarray,
    p0: float = 0.10,
    p1: float | None = None,
    odds_multiplier: float | None = None,
    alpha: float = 0.10,
    beta: float = 0.10,
    resetting: bool = False,
    limit: float | None = None,
) -> BernoulliCusum:
    """Bernoulli log-likelihood-ratio CUSUM for a binary failure (spec 7.2(c)).

    ``p0`` acceptable and ``p1`` unacceptable failure rate; give ``p1`` or
    ``odds_multiplier`` (``p1 = OR p0 / (1 - p0 + OR p0)``). If neither is given,
    ``p1 = 2 p0`` (registry default p0 = 0.10, p1 = 0.20, alpha = beta = 0.10).
    Both the non-resetting form with h0/h1 and the one-sided resetting form are
    returned (see :class:`BernoulliCusum`); ``resetting=True`` restarts the resetting
    form at 0 after each signal. ``limit`` is the resetting-form threshold in nats
    (e.g. from :func:`bernoulli_cusum_limit`).
    """
    y = _binary(failures, "failures")
    p0 = _probability(p0, "p0")
    if p1 is None and odds_multiplier is None:
        p1 = min(2.0 * p0, 0.999999)
    p1 = _p1_from(p0, p1, odds_multiplier)
    alpha = _probability(alpha, "alpha")
    beta = _probability(beta, "beta")
    big_p = math.log(p1 / p0)
    big_q = math.log((1.0 - p0) / (1.0 - p1))
    scale = big_p + big_q
    s = big_q / scale
    h1 = math.log((1.0 - beta) / alpha) / scale
    h0 = -math.log((1.0 - alpha) / beta) / scale
    series = np.cumsum(y - s)
    weights = y * big_p - (1.0 - y) * big_q
    lim = math.log((1.0 - beta) / alpha) if limit is None else float(limit)
    page, page_signals = _page(weights, lim, resetting)
    if scale > 0:
        sig_h1, sig_h0 = _crossings(series, h1, True), _crossings(series, h0, False)
    else:  # p1 < p0: monitoring improvement, boundaries swap sign
        sig_h1, sig_h0 = _crossings(series, h1, False), _crossings(series, h0, True)
    return BernoulliCusum(
        p0=p0,
        p1=p1,
        alpha=alpha,
        beta=beta,
        P=big_p,
        Q=big_q,
        s=s,
        h0=h0,
        h1=h1,
        cusum=series,
        signals_h1=sig_h1,
        signals_h0=sig_h0,
        weights=weights,
        resetting=page,
        limit=lim,
        resetting_signals=page_signals,
        restart_after_signal=resetting,
    )


@dataclass(frozen=True)
class CusumLimit(AsDictMixin):
    """A control limit ``h`` and its achieved false-signal probability."""

    h: float
    false_signal_probability: float
    target_probability: float
    n_cases: int
    method: str
    n_simulations: int | None
    seed: int | None


def _signal_probability_dp(up: int, down: int, p: float, n_cases: int, k_limit: int) -> float:
    """P(max_{t<=n} X_t > k_limit) for the integer-grid Page CUSUM (exact on the grid)."""
    dist = np.zeros(k_limit + 1)
    dist[0] = 1.0
    absorbed = 0.0
    for _ in range(n_cases):
        new = np.zeros_like(dist)
        # success: move down by `down`, floor at 0
        if down >= dist.size:
            new[0] += (1 - p) * dist.sum()
        else:
            new[0] += (1 - p) * dist[: down + 1].sum()
            new[1 : dist.size - down] += (1 - p) * dist[down + 1 :]
        # failure: move up by `up`; states beyond k_limit are absorbed (signal)
        if up < dist.size:
            new[up:] += p * dist[: dist.size - up]
            absorbed += p * dist[dist.size - up :].sum()
        else:
            absorbed += p * dist.sum()
        dist = new
    return absorbed


def bernoulli_cusum_limit(
    p0: float,
    p1: float,
    n_cases: int,
    false_signal_probability: float = 0.05,
    method: str = "exact",
    seed: int | None = None,
    n_simulations: int = 10_000,
    grid_steps: int = 400,
) -> CusumLimit:
    """Limit h (nats) for the resetting Bernoulli CUSUM of :func:`bernoulli_cusum`.

    Finds the smallest h such that, with in-control failure rate ``p0``, the chance
    of any signal (``X_t > h``) within ``n_cases`` cases is at most
    ``false_signal_probability``.

    * ``"exact"``: Markov-chain dynamic programming over a discretised state: the
      increments ``+P`` and ``-Q`` are rounded to integer multiples of
      ``delta = min(P, Q)/grid_steps`` (Brook & Evans 1972, Biometrika 59:539-549,
      approach), and the signal probability is computed exactly on that grid for
      each candidate h (bisection). Exact up to that rounding.
    * ``"simulation"``: ``n_simulations`` in-control sequences with
      ``numpy.random.default_rng(seed)``; h is the empirical
      ``1 - false_signal_probability`` quantile of the running maxima (as in
      ``cusum::cusum_limit_sim``).
    """
    p0 = _probability(p0, "p0")
    p1 = _probability(p1, "p1")
    if p1 <= p0:
        raise ValueError("limits are for detecting an increase: need p1 > p0")
    alpha = _probability(false_signal_probability, "false_signal_probability")
    n_cases = int(n_cases)
    if n_cases < 1:
        raise ValueError("n_cases must be >= 1")
    big_p = math.log(p1 / p0)
    big_q = math.log((1.0 - p0) / (1.0 - p1))
    if method == "exact":
        delta = min(big_p, big_q) / grid_steps
        up, down = round(big_p / delta), round(big_q / delta)
        # upper bound: a run of n failures
        hi = up * n_cases
        if _signal_probability_dp(up, down, p0, n_cases, 0) <= alpha:
            return CusumLimit(
                0.0,
                float(_signal_probability_dp(up, down, p0, n_cases, 0)),
                alpha,
                n_cases,
                method,
                None,
                None,
            )
        lo = 0  # prob(lo) > alpha ; prob(hi) == 0 <= alpha
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _signal_probability_dp(up, down, p0, n_cases, mid) <= alpha:
                hi = mid
            else:
                lo = mid
        prob = float(_signal_probability_dp(up, down, p0, n_cases, hi))
        return CusumLimit(hi * delta, prob, alpha, n_cases, method, None, None)
    if method == "simulation":
        rng = np.random.default_rng(seed)
        y = rng.random((n_simulations, n_cases)) < p0
        w = np.where(y, big_p, -big_q)
        maxima = _running_max_page(w)
        h = float(np.quantile(maxima, 1.0 - alpha))
        prob = float(np.mean(maxima > h))
        return CusumLimit(h, prob, alpha, n_cases, method, n_simulations, seed)
    raise ValueError(f"method must be 'exact' or 'simulation', got {method!r}")


def _running_max_page(w: np.ndarray) -> np.ndarray:
    """Row-wise maximum of the Page CUSUM ``max(0, X + W)`` over the columns."""
    c = np.zeros(w.shape[0])
    best = np.zeros(w.shape[0])
    for t in range(w.shape[1]):
        c = np.maximum(0.0, c + w[:, t])
        np.maximum(best, c, out=best)
    return best


# --------------------------------------------------------------------------- risk adjusted


def steiner_weights(
    failures: Sequence[int] | np.ndarray,
    risks: Sequence[float] | np.ndarray,
    odds_multiplier: float = 2.0,
    r0: float = 1.0,
) -> np.ndarray:
    """Steiner et al. (2000) log-likelihood-ratio scores.

    ``W_i = y_i ln(RA/R0) - ln((1 - p_i + RA p_i) / (1 - p_i + R0 p_i))``; for R0 = 1,
    ``W_i = y_i ln RA - ln(1 - p_i + RA p_i)``. This is the log-likelihood ratio of
    ``y_i`` under odds ``RA odds(p_i)`` versus ``R0 odds(p_i)`` (Steiner 2000, eq. 2).

    Note: clinical spec 7.2(d) prints the general (R0 != 1) formula with the ratio
    inside the second logarithm inverted; its R0 = 1 special case, used by the
    registry, is the same as here.
    """
    y = _binary(failures, "failures")
    p = np.asarray(risks, dtype=float).ravel()
    if p.shape != y.shape:
        raise ValueError("failures and risks differ in length")
    if np.any((p < 0) | (p > 1)):
        raise ValueError("risks must be probabilities in [0, 1]")
    if odds_multiplier <= 0 or r0 <= 0:
        raise ValueError("odds multipliers must be > 0")
    return y * math.log(odds_multiplier / r0) - np.log((1.0 - p + odds_multiplier * p) / (1.0 - p + r0 * p))


@dataclass(frozen=True)
class RiskAdjustedCusum(AsDictMixin):
    """Result of :func:`risk_adjusted_cusum` (``signals`` are 0-based case indices)."""

    weights: np.ndarray
    cusum: np.ndarray
    limit: float | None
    signals: tuple[int, ...]
    odds_multiplier: float
    r0: float


def risk_adjusted_cusum(
    failures: Sequence[int] | np.ndarray,
    risks: Sequence[float] | np.ndarray,
    odds_multiplier: float = 2.0,
    r0: float = 1.0,
    limit: float | None = None,
    restart_after_signal: bool = False,
) -> RiskAdjustedCusum:
    """Risk-adjusted CUSUM (Steiner, Cook, Farewell & Treasure 2000).

    ``X_k = max(0, X_{k-1} + W_k)`` with :func:`steiner_weights`; a signal is recorded
    when ``X_k > limit`` (no signals when ``limit`` is None). Use
    ``odds_multiplier < 1`` (e.g. 0.5) to monitor improvement. Registry default RA = 2.
    """
    w = steiner_weights(failures, risks, odds_multiplier, r0)
    lim = math.inf if limit is None else float(limit)
    series, signals = _page(w, lim, restart_after_signal)
    return RiskAdjustedCusum(w, series, limit, signals, float(odds_multiplier), float(r0))


def _in_control_risk(p: np.ndarray, r0: float) -> np.ndarray:
    """Failure probability under the null: odds ``R0 odds(p)``."""
    return r0 * p / (1.0 - p + r0 * p)


def _check_risks(risks: Sequence[float] | np.ndarray) -> np.ndarray:
    p = np.asarray(risks, dtype=float).ravel()
    if p.size == 0:
        raise ValueError("need at least one risk")
    if np.any((p < 0) | (p > 1)):
        raise ValueError("risks must be probabilities in [0, 1]")
    return p


def risk_adjusted_cusum_limit(
    risks: Sequence[float] | np.ndarray,
    odds_multiplier: float = 2.0,
    false_signal_probability: float = 0.05,
    n_simulations: int = 10_000,
    seed: int | None = None,
    r0: float = 1.0,
) -> CusumLimit:
    """Simulated limit h for :func:`risk_adjusted_cusum` over the given case sequence.

    Simulates ``y_i ~ Bernoulli(p_i)`` (in control, R0) for the supplied patient risks,
    ``n_simulations`` times with ``numpy.random.default_rng(seed)``, and returns the
    ``1 - false_signal_probability`` quantile of the maximum CUSUM value (same idea as
    ``cusum::racusum_limit_sim``; Steiner et al. 2000 section 3). Cost: ``n_simulations``
    x ``len(risks)``; for many operators use :func:`risk_adjusted_cusum_limits`.
    """
    p = _check_risks(risks)
    alpha = _probability(false_signal_probability, "false_signal_probability")
    if n_simulations < 10:
        raise ValueError("n_simulations must be >= 10")
    rng = np.random.default_rng(seed)
    y = rng.random((n_simulations, p.size)) < _in_control_risk(p, r0)
    w_fail = steiner_weights(np.ones(p.size), p, odds_multiplier, r0)
    w_ok = steiner_weights(np.zeros(p.size), p, odds_multiplier, r0)
    maxima = _running_max_page(np.where(y, w_fail, w_ok))
    h = float(np.quantile(maxima, 1.0 - alpha))
    prob = float(np.mean(maxima > h))
    return CusumLimit(h, prob, alpha, int(p.size), "simulation", int(n_simulations), seed)


@dataclass(frozen=True)
class CusumLimitCurve(AsDictMixin):
    """Limits h(n) for several horizons n from one simulation (:func:`risk_adjusted_cusum_limits`).

    ``h[i]`` and the achieved ``false_signal_probability[i]`` belong to ``horizons[i]``.
    """

    horizons: np.ndarray
    h: np.ndarray
    false_signal_probability: np.ndarray
    target_probability: float
    n_risks: int
    method: str
    n_simulations: int
    seed: int | None

    def limit(self, n_cases: int) -> float:
        """h for a horizon of ``n_cases`` (must be one of :attr:`horizons`)."""
        i = int(np.searchsorted(self.horizons, n_cases))
        if i >= self.horizons.size or self.horizons[i] != n_cases:
            raise KeyError(f"horizon {n_cases} was not simulated")
        return float(self.h[i])


#: time steps drawn per random-number call in :func:`risk_adjusted_cusum_limits` (fixed: the
#: random stream, hence every h(n), must not depend on the longest horizon requested)
_STEP_BLOCK = 64


def risk_adjusted_cusum_limits(
    risks: Sequence[float] | np.ndarray,
    horizons: Sequence[int] | np.ndarray,
    odds_multiplier: float = 2.0,
    false_signal_probability: float = 0.05,
    n_simulations: int = 10_000,
    seed: int | None = None,
    r0: float = 1.0,
) -> CusumLimitCurve:
    """Limits h(n) for :func:`risk_adjusted_cusum` at every horizon n, from one simulation.

    Each of ``n_simulations`` in-control sequences draws, at every case, a patient risk
    with replacement from ``risks`` (the case-mix distribution) and then
    ``y ~ Bernoulli`` with odds ``R0 odds(p)``; the Page CUSUM and its running maximum are
    carried forward, and at each requested horizon n the ``1 - false_signal_probability``
    quantile of the running maxima is h(n): the chance that an in-control chart with n
    cases from this case mix signals at least once is the target. This is
    ``cusum::racusum_limit_sim`` (risks resampled from the patient population; Steiner
    et al. 2000 section 3) evaluated at all horizons at once. Cost: ``n_simulations`` x
    ``max(horizons)``, independent of how many horizons (operators) are asked for.

    Deterministic for a given ``seed``; the risks are sorted first, so only their
    multiset matters, and h(n) does not depend on the other horizons requested.
    """
    p = np.sort(_check_risks(risks))
    alpha = _probability(false_signal_probability, "false_signal_probability")
    if n_simulations < 10:
        raise ValueError("n_simulations must be >= 10")
    wanted = np.unique(np.asarray(horizons, dtype=np.int64).ravel())
    if wanted.size == 0:
        raise ValueError("need at least one horizon")
    if wanted[0] < 1:
        raise ValueError("horizons must be >= 1")
    p_in = _in_control_risk(p, r0)
    w_fail = steiner_weights(np.ones(p.size), p, odds_multiplier, r0)
    w_ok = steiner_weights(np.zeros(p.size), p, odds_multiplier, r0)
    rng = np.random.default_rng(seed)
    c = np.zeros(n_simulations)
    best = np.zeros(n_simulations)
    h = np.empty(wanted.size)
    prob = np.empty(wanted.size)
    j, t = 0, 0
    while j < wanted.size:
        pick = rng.integers(0, p.size, size=(_STEP_BLOCK, n_simulations))
        fail = rng.random((_STEP_BLOCK, n_simulations)) < p_in[pick]
        w = np.where(fail, w_fail[pick], w_ok[pick])
        for row in w:
            t += 1
            c += row
            np.maximum(c, 0.0, out=c)
            np.maximum(best, c, out=best)
            if t == wanted[j]:
                h[j] = np.quantile(best, 1.0 - alpha)
                prob[j] = np.mean(best > h[j])
                j += 1
                if j == wanted.size:
                    break
    return CusumLimitCurve(
        wanted, h, prob, alpha, int(p.size), "simulation_resampled_risks", int(n_simulations), seed
    )
