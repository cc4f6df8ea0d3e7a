"""Latency-constrained search: NSGA-II (pymoo) over a space's genes, then verification on the device.

The search maximises an accuracy score and minimises predicted latency, under the hard
constraint ``latency <= budget``; it returns the Pareto front of the feasible architectures
it evaluated. :func:`search_and_verify` then measures the top picks on the device: a pick whose
measured latency disagrees with the prediction is handed to ``refit`` (in edgelat, its kernels
are profiled and the predictor retrained) and the search runs again, for a few rounds, until a
pick's *measured* latency meets the budget.

Everything here takes its latency oracle, accuracy score, measure and refit functions as
arguments; nothing imports the profiler or the predictors.

Example:
    >>> space = get_space("nb201")
    >>> result = search(space, TableOracle(latency, space), TableOracle(accuracy, space).predict, budget_ms=5.0)  # doctest: +SKIP
    >>> result.best.arch, result.best.predicted_ms
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from edgelat.errors import UsageError
from edgelat.nas.oracle import LatencyOracle
from edgelat.nas.spaces import SearchSpace

__all__ = [
    "Candidate",
    "Limits",
    "Measured",
    "SearchResult",
    "Verified",
    "VerifiedSearch",
    "min_latency",
    "random_search",
    "search",
    "search_and_verify",
]

# architectures -> accuracy score (higher is better)
Scorer = Callable[[Sequence[str]], np.ndarray]
# architectures -> predicted (peak memory MB, deployable size MB), one row each
Lightness = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class Limits:
    """Hard limits next to the latency budget: peak memory and deployable size, in MB (None: no limit)."""

    memory_mb: float | None = None
    size_mb: float | None = None

    def __post_init__(self) -> None:
        for name, value in (("--memory-mb", self.memory_mb), ("--size-mb", self.size_mb)):
            if value is not None and not value > 0:
                raise UsageError(f"{name} must be positive, got {value}")

    @property
    def any(self) -> bool:
        return self.memory_mb is not None or self.size_mb is not None

    def excess(self, memory_mb: float | None, size_mb: float | None) -> list[float]:
        """How far over each set limit (<= 0: within); an unknown value is within (not judged)."""
        return [(value or 0.0) - limit for value, limit in ((memory_mb, self.memory_mb), (size_mb, self.size_mb)) if limit is not None]

    def met(self, memory_mb: float | None, size_mb: float | None) -> bool:
        return all(e <= 0 for e in self.excess(memory_mb, size_mb))


@dataclass(frozen=True)
class Candidate:
    arch: str
    predicted_ms: float
    score: float
    # Predicted peak memory and deployable size (only when a search has limits on them).
    memory_mb: float | None = None
    size_mb: float | None = None


@dataclass
class SearchResult:
    space: str
    budget_ms: float
    # Feasible non-dominated candidates (higher score, lower latency), by latency.
    front: list[Candidate]
    evaluations: int
    generations: int
    seconds: float
    # Every architecture evaluated, in order.
    history: list[Candidate] = field(default_factory=list)

    @property
    def best(self) -> Candidate:
        return max(self.front, key=lambda c: (c.score, -c.predicted_ms))


def _pareto(cands: Sequence[Candidate]) -> list[Candidate]:
    front: list[Candidate] = []
    best_score = -np.inf
    for c in sorted(cands, key=lambda c: (c.predicted_ms, -c.score)):
        if c.score > best_score:
            front.append(c)
            best_score = c.score
    return front


class _Evaluator:
    """Scores architectures once each and keeps the history."""

    def __init__(self, oracle: LatencyOracle, scorer: Scorer, lightness: Lightness | None = None) -> None:
        self.oracle, self.scorer, self.lightness = oracle, scorer, lightness
        self.seen: dict[str, Candidate] = {}
        self.history: list[Candidate] = []

    def __call__(self, archs: Sequence[str]) -> list[Candidate]:
        new = [a for a in dict.fromkeys(archs) if a not in self.seen]
        if new:
            ms, scores = self.oracle.predict(new), np.asarray(self.scorer(new), dtype=float)
            light = np.asarray(self.lightness(new), dtype=float) if self.lightness is not None else np.full((len(new), 2), np.nan)
            for arch, m, s, (mem, size) in zip(new, ms, scores, light, strict=True):
                self.seen[arch] = Candidate(arch, float(m), float(s), _known(mem), _known(size))
                self.history.append(self.seen[arch])
        return [self.seen[a] for a in archs]


def _known(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _feasible(c: Candidate, budget_ms: float, limits: Limits) -> bool:
    return c.predicted_ms <= budget_ms and limits.met(c.memory_mb, c.size_mb)


def min_latency(space: SearchSpace, oracle: LatencyOracle, seed: int = 0, starts: int = 3) -> Candidate:
    """The fastest architecture coordinate descent finds: each gene set to its fastest value in turn.

    Exact when latency is a sum over genes' blocks (as for every space here), close otherwise.
    """
    rng = np.random.default_rng(seed)
    best: tuple[float, str] | None = None
    for _ in range(starts):
        genes = space.encode(space.sample(rng))
        current = float(oracle.predict([space.decode(genes)])[0])
        improved = True
        while improved:
            improved = False
            for i, n in enumerate(space.choices):
                trials = [genes.copy() for _ in range(n)]
                for v, t in enumerate(trials):
                    t[i] = v
                ms = oracle.predict([space.decode(t) for t in trials])
                j = int(np.argmin(ms))
                if ms[j] < current - 1e-12:
                    genes, current, improved = trials[j], float(ms[j]), True
        if best is None or current < best[0]:
            best = (current, space.decode(genes))
    assert best is not None
    return Candidate(best[1], best[0], float("nan"))


def _check_budget(space: SearchSpace, oracle: LatencyOracle, budget_ms: float, seed: int, fastest: Candidate | None = None) -> Candidate:
    _check_positive(budget_ms)
    fastest = fastest or min_latency(space, oracle, seed)
    if fastest.predicted_ms > budget_ms:
        raise UsageError(
            f"no architecture of {space.name} meets {budget_ms:g} ms: the smallest reachable predicted latency is "
            f"{fastest.predicted_ms:.3f} ms ({fastest.arch})"
        )
    return fastest


def _check_positive(budget_ms: float) -> None:
    if not budget_ms > 0:
        raise UsageError(f"the latency budget must be positive, got {budget_ms} ms")


def search(
    space: SearchSpace,
    oracle: LatencyOracle,
    scorer: Scorer,
    budget_ms: float,
    *,
    population: int = 32,
    generations: int = 20,
    max_evaluations: int | None = None,
    time_limit_s: float | None = None,
    seed: int = 0,
    on_generation: Callable[[int, int], None] | None = None,
    limits: Limits = Limits(),
    lightness: Lightness | None = None,
    fastest: Candidate | None = None,
) -> SearchResult:
    """NSGA-II over ``space``: maximise ``scorer``, minimise ``oracle`` latency, latency <= ``budget_ms``;
    with ``limits``, also predicted peak memory and size (``lightness``) within them: hard constraints
    (pymoo's inequality constraints), not penalties.

    Stops after ``generations`` generations, ``max_evaluations`` distinct architectures or
    ``time_limit_s`` seconds, whichever comes first. The fastest architecture (see
    :func:`min_latency`, or ``fastest`` where the caller found it with this oracle) seeds the population, so a
    feasible one is always known.

    Raises:
        UsageError: the budget is not positive, or no architecture of the space meets it
            (the message gives the smallest reachable latency).
    """
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.crossover import Crossover
    from pymoo.core.duplicate import ElementwiseDuplicateElimination
    from pymoo.core.mutation import Mutation
    from pymoo.core.problem import Problem
    from pymoo.core.sampling import Sampling
    from pymoo.optimize import minimize
    from pymoo.termination.collection import TerminationCollection
    from pymoo.termination.max_eval import MaximumFunctionCallTermination
    from pymoo.termination.max_gen import MaximumGenerationTermination
    from pymoo.termination.max_time import TimeBasedTermination

    start = time.time()
    if limits.any and lightness is None:
        raise UsageError("memory or size limits need a way to predict them (lightness)")
    known_fastest = _check_budget(space, oracle, budget_ms, seed, fastest)
    evaluate = _Evaluator(oracle, scorer, lightness if limits.any else None)
    rng = np.random.default_rng(seed)
    decode = space.decode
    generation = [0]

    class _Problem(Problem):
        def __init__(self) -> None:
            upper = np.asarray(space.choices) - 1
            constraints = 1 + len(limits.excess(None, None))
            super().__init__(n_var=len(space.choices), n_obj=2, n_ieq_constr=constraints, xl=np.zeros_like(upper), xu=upper, vtype=int)

        def _evaluate(self, x: np.ndarray, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            cands = evaluate([decode(row) for row in x.astype(int)])
            ms = np.array([c.predicted_ms for c in cands])
            out["F"] = np.column_stack([-np.array([c.score for c in cands]), ms])
            out["G"] = np.array([[c.predicted_ms - budget_ms, *limits.excess(c.memory_mb, c.size_mb)] for c in cands])
            generation[0] += 1
            if on_generation is not None:
                on_generation(generation[0], len(evaluate.seen))

    class _Sampling(Sampling):
        def _do(self, problem: Any, n_samples: int, **kwargs: Any) -> np.ndarray:
            archs = [known_fastest.arch] + [space.sample(rng) for _ in range(n_samples - 1)]
            return np.array([space.encode(a) for a in archs])

    class _Crossover(Crossover):
        def __init__(self) -> None:
            super().__init__(n_parents=2, n_offsprings=1)

        def _do(self, problem: Any, x: np.ndarray, **kwargs: Any) -> np.ndarray:
            kids = [
                space.encode(space.crossover(decode(a), decode(b), rng)) for a, b in zip(x[0].astype(int), x[1].astype(int), strict=True)
            ]
            return np.array(kids)[None, :, :]

    class _Mutation(Mutation):
        def _do(self, problem: Any, x: np.ndarray, **kwargs: Any) -> np.ndarray:
            return np.array([space.encode(space.mutate(decode(row), rng)) for row in x.astype(int)])

    algorithm = NSGA2(
        pop_size=population,
        sampling=_Sampling(),
        crossover=_Crossover(),
        mutation=_Mutation(),
        eliminate_duplicates=ElementwiseDuplicateElimination(cmp_func=lambda a, b: decode(a.X.astype(int)) == decode(b.X.astype(int))),
    )
    stops: list[Any] = [MaximumGenerationTermination(generations)]
    if max_evaluations is not None:
        stops.append(MaximumFunctionCallTermination(max_evaluations))
    if time_limit_s is not None:
        stops.append(TimeBasedTermination(time_limit_s))
    minimize(_Problem(), algorithm, TerminationCollection(*stops), seed=seed, verbose=False)
    feasible = [c for c in evaluate.history if _feasible(c, budget_ms, limits)]
    return SearchResult(
        space.name, budget_ms, _pareto(feasible), len(evaluate.history), generation[0], time.time() - start, evaluate.history
    )


def random_search(
    space: SearchSpace, oracle: LatencyOracle, scorer: Scorer, budget_ms: float, evaluations: int, seed: int = 0
) -> SearchResult:
    """The baseline: ``evaluations`` distinct architectures drawn uniformly; the same result type as :func:`search`."""
    start = time.time()
    rng = np.random.default_rng(seed)
    archs: dict[str, None] = {}
    for _ in range(evaluations * 20):
        archs.setdefault(space.sample(rng))
        if len(archs) >= evaluations:
            break
    evaluate = _Evaluator(oracle, scorer)
    evaluate(list(archs))
    feasible = [c for c in evaluate.history if c.predicted_ms <= budget_ms]
    return SearchResult(space.name, budget_ms, _pareto(feasible), len(evaluate.history), 1, time.time() - start, evaluate.history)


def _picks(front: Sequence[Candidate], budget_ms: float, k: int, done: set[str], margin: float) -> list[Candidate]:
    picks: list[Candidate] = []
    for step in range(len(front)):
        if len(picks) == k:
            break
        limit = budget_ms * (1 - margin * step)
        under = [c for c in front if c.predicted_ms <= limit and c.arch not in done and c not in picks]
        if under:
            picks.append(max(under, key=lambda c: (c.score, -c.predicted_ms)))
    return picks


@dataclass(frozen=True)
class Measured:
    """What the device showed for one network: latency, and where measured, peak memory and size."""

    ms: float
    memory_mb: float | None = None
    size_mb: float | None = None


@dataclass(frozen=True)
class Verified:
    """A pick measured on the device."""

    arch: str
    score: float
    predicted_ms: float
    measured_ms: float
    round: int
    predicted_memory_mb: float | None = None
    measured_memory_mb: float | None = None
    predicted_size_mb: float | None = None
    measured_size_mb: float | None = None

    @property
    def error(self) -> float:
        """(predicted - measured) / measured."""
        return (self.predicted_ms - self.measured_ms) / self.measured_ms


@dataclass
class VerifiedSearch:
    budget_ms: float
    limits: Limits
    # The best-scoring verified pick whose measured latency meets the budget (None if none did).
    chosen: Verified | None
    verified: list[Verified]
    rounds: int
    refits: int
    last: SearchResult
    # Where the oracle put every architecture over the budget but the fastest one measured within it, the last
    # round's predictions were scaled by measured / predicted of that one (None: never).
    scaled_by: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "budget_ms": self.budget_ms,
            "oracle_scaled_by": self.scaled_by,
            "memory_limit_mb": self.limits.memory_mb,
            "size_limit_mb": self.limits.size_mb,
            "chosen": asdict(self.chosen) if self.chosen else None,
            "verified": [asdict(v) | {"error": v.error} for v in self.verified],
            "rounds": self.rounds,
            "refits": self.refits,
            "evaluations": self.last.evaluations,
            "search_seconds": self.last.seconds,
        }


def search_and_verify(
    space: SearchSpace,
    make_oracle: Callable[[], LatencyOracle],
    scorer: Scorer,
    budget_ms: float,
    measure: Callable[[str], float | Measured],
    refit: Callable[[list[str]], object] | None = None,  # what it returns is not used
    *,
    rounds: int = 3,
    top_k: int = 3,
    tolerance: float = 0.1,
    margin: float = 0.1,
    on_verified: Callable[[Verified], None] | None = None,
    limits: Limits = Limits(),
    make_lightness: Callable[[], Lightness] | None = None,
    **search_kwargs: Any,
) -> VerifiedSearch:
    """Search, measure ``top_k`` picks, refit on disagreements, repeat.

    The picks are the best-scoring architectures of the front predicted under the budget, under
    ``1 - margin`` times it, under ``1 - 2 * margin`` times it, ...: a ladder of safety margins,
    so one predictor error does not sink every pick. A round ends the loop when one of its picks measures within the budget. Otherwise the
    picks whose prediction is off by more than ``tolerance`` go to ``refit`` and
    ``make_oracle`` is asked for a fresh oracle for the next round. With ``limits`` (peak memory, size),
    ``make_lightness`` predicts them each round and a pick meets its constraints only if its measured
    memory and size (``measure`` returning :class:`Measured`) are within them too.

    The device, not the oracle, says when nothing fits: where the oracle puts even the fastest
    architecture (:func:`min_latency`) over the budget, that one is measured first. Over the budget
    there too, the search stops with a :class:`UsageError` giving both; within it, the round's
    predictions are scaled by its measured / predicted latency, so the search runs on an oracle the
    device has corrected, and the measured architecture counts as a verified pick.
    """
    verified: list[Verified] = []
    refits = 0
    result: SearchResult | None = None
    scaled_by: float | None = None

    def verify(cand: Candidate, round_: int) -> Verified:
        got = measure(cand.arch)
        m = got if isinstance(got, Measured) else Measured(float(got))
        v = Verified(cand.arch, cand.score, cand.predicted_ms, m.ms, round_, cand.memory_mb, m.memory_mb, cand.size_mb, m.size_mb)
        if on_verified is not None:
            on_verified(v)
        return v

    _check_positive(budget_ms)
    for round_ in range(1, rounds + 1):
        lightness = make_lightness() if make_lightness is not None and limits.any else None
        oracle, this_round = make_oracle(), []
        scaled_by = None
        fastest = min_latency(space, oracle, search_kwargs.get("seed", 0))
        if fastest.predicted_ms > budget_ms:
            known = next((v for v in verified if v.arch == fastest.arch), None)
            if known is None:
                score = float(np.asarray(scorer([fastest.arch]), dtype=float)[0])
                light = np.asarray(lightness([fastest.arch]), dtype=float)[0] if lightness is not None else (np.nan, np.nan)
                known = verify(Candidate(fastest.arch, fastest.predicted_ms, score, _known(light[0]), _known(light[1])), round_)
                this_round.append(known)
            if known.measured_ms > budget_ms:
                raise UsageError(
                    f"no architecture of {space.name} meets {budget_ms:g} ms: the fastest one is predicted at "
                    f"{fastest.predicted_ms:.3f} ms and measured at {known.measured_ms:.3f} ms on the device ({fastest.arch})"
                )
            scaled_by = known.measured_ms / fastest.predicted_ms
            oracle = _Scaled(oracle, scaled_by)
            fastest = replace(fastest, predicted_ms=known.measured_ms)  # what the scaled oracle predicts for it
        result = search(space, oracle, scorer, budget_ms, limits=limits, lightness=lightness, fastest=fastest, **search_kwargs)
        picks = _picks(result.front, budget_ms, top_k, {v.arch for v in verified + this_round}, margin)
        this_round += [verify(cand, round_) for cand in picks]
        verified += this_round
        if any(_meets(v, budget_ms, limits) for v in this_round) or round_ == rounds:
            break
        off = [v.arch for v in this_round if abs(v.error) > tolerance]
        if refit is not None and off:
            refit(off)
            refits += 1
    meeting = [v for v in verified if _meets(v, budget_ms, limits)]
    chosen = max(meeting, key=lambda v: (v.score, -v.measured_ms)) if meeting else None
    assert result is not None
    return VerifiedSearch(budget_ms, limits, chosen, verified, round_, refits, result, scaled_by)


class _Scaled:
    """An oracle's predictions times a factor the device measured."""

    def __init__(self, oracle: LatencyOracle, factor: float) -> None:
        self.oracle, self.factor = oracle, factor

    def predict(self, archs: Sequence[str]) -> np.ndarray:
        return np.asarray(self.oracle.predict(archs), dtype=float) * self.factor


def _meets(v: Verified, budget_ms: float, limits: Limits) -> bool:
    """Measured within the budget and the limits (a limit whose value was not measured is not met)."""
    if (limits.memory_mb is not None and v.measured_memory_mb is None) or (limits.size_mb is not None and v.measured_size_mb is None):
        return False
    return v.measured_ms <= budget_ms and limits.met(v.measured_memory_mb, v.measured_size_mb)
