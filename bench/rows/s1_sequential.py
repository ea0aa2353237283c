"""S1 sequential test: the mSPRT's false positive rate under A/A with a look after every
observation, against the naive fixed-horizon z-test peeked at the same looks, and its power
and samples-to-decision under known effects (simulated streams, :mod:`bench.ab_simulation`).

Not a timing row: "ours" is the mSPRT's A/A false positive rate per stream design, the
baseline the naive peeked z-test's on the same streams; the goal is ours <= alpha on every
design. The effect table reports, per design, the mSPRT's power within the horizon, the
median and 90th percentile of the observations (both arms) it needed to decide, and the
power of the z-test looked at once at the horizon (what always-validity costs).
"""

import numpy as np
from scipy import stats

from bench.ab_simulation import EFFECT_STREAMS, NULL_STREAMS, fixed_horizon_power, simulate
from bench.harness import Check, RowArgs, result, row_main, step
from bench.stats import summary

FULL = {"null_experiments": 10000, "null_observations": 2000, "effect_experiments": 2000, "effect_observations": 4000}
QUICK = {"null_experiments": 200, "null_observations": 1000, "effect_experiments": 100, "effect_observations": 2000}
ALPHA = 0.05
MIN_SAMPLES = 100
SEED = 15


def _upper_bound(successes: int, trials: int) -> float:
    """One-sided 95 % Clopper-Pearson upper bound of a rate (the simulation's own error)."""
    return 1.0 if successes == trials else float(stats.beta.ppf(0.95, successes + 1, trials - successes))


def _observations(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def run(args: RowArgs) -> list[dict]:
    sizes = args.pick(FULL, QUICK) | {"alpha": ALPHA, "min_samples_per_arm": MIN_SAMPLES, "seed": SEED}
    rng = np.random.default_rng(SEED)
    null_rows: dict[str, dict[str, float]] = {}
    effect_rows: dict[str, dict[str, float | None]] = {}
    lines: list[str] = []
    for stream in NULL_STREAMS:
        step("S1", f"A/A {stream.name}: {sizes['null_experiments']} x {sizes['null_observations']} observations")
        decisions = simulate(
            stream,
            experiments=sizes["null_experiments"],
            observations=sizes["null_observations"],
            rng=rng,
            alpha=ALPHA,
            min_samples=MIN_SAMPLES,
        )
        msprt, naive = decisions["msprt"], decisions["naive"]
        upper = _upper_bound(int(msprt.rejected.sum()), msprt.rejected.size)
        null_rows[stream.name] = {
            "msprt_fpr": msprt.rate,
            "msprt_fpr_upper_95": upper,
            "naive_peeked_fpr": naive.rate,
            "msprt_coverage": float(msprt.covered.mean()),
        }
        lines.append(
            f"A/A {stream.name:<26} FPR mSPRT {msprt.rate:.4f} (95 % upper bound {upper:.4f})  "
            f"naive peeked z {naive.rate:.4f}  "
            f"CS coverage {msprt.covered.mean():.4f}"
        )
    for stream in EFFECT_STREAMS:
        step("S1", f"A/B {stream.name}: {sizes['effect_experiments']} x {sizes['effect_observations']} observations")
        msprt = simulate(
            stream,
            experiments=sizes["effect_experiments"],
            observations=sizes["effect_observations"],
            rng=rng,
            alpha=ALPHA,
            min_samples=MIN_SAMPLES,
        )["msprt"]
        median, p90 = msprt.stopping_percentile(50), msprt.stopping_percentile(90)
        fixed = fixed_horizon_power(stream, sizes["effect_observations"], ALPHA)
        effect_rows[stream.name] = {
            "msprt_power": msprt.rate,
            "samples_to_decision_median": median,
            "samples_to_decision_p90": p90,
            "fixed_horizon_power": fixed,
        }
        lines.append(
            f"A/B {stream.name:<26} power mSPRT {msprt.rate:.3f}  samples to decision median "
            f"{_observations(median)} p90 {_observations(p90)}  (z-test at the horizon: power {fixed:.3f})"
        )
    ours = [row["msprt_fpr"] for row in null_rows.values()]
    baseline = [row["naive_peeked_fpr"] for row in null_rows.values()]
    checks = [
        Check(f"A/A {name}: mSPRT FPR {row['msprt_fpr']:.4f} <= {ALPHA}", row["msprt_fpr"] <= ALPHA)
        for name, row in null_rows.items()
    ]
    checks.append(
        Check(
            f"the naive peeked z-test exceeds alpha on every A/A design (min {min(baseline):.4f})",
            min(baseline) > ALPHA,
        )
    )
    return [
        result(
            "S1",
            "sequential test",
            unit="A/A false positive rate",
            better="lower",
            goal=f"mSPRT FPR <= alpha = {ALPHA} with a look after every observation",
            ours=summary(ours, "mSPRT (always-valid p-value), one look per observation"),
            baseline=summary(baseline, "fixed-horizon z-test peeked at the same looks"),
            ratio=None,
            checks=checks,
            sizes=sizes,
            highlights=lines,
            metrics={"a_a": null_rows, "effects": effect_rows},
        )
    ]


if __name__ == "__main__":
    row_main(run)
