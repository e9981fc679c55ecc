"""Reference values for myoscope's Student's t distribution and paired t-test, from SciPy.

    .venv-ref/bin/python scripts/ttest_oracle.py      # after scripts/setup-reference.sh

Writes crates/myoscope/tests/fixtures/scipy_ttest.json:
  * "paired": samples (sizes 2..30) with scipy.stats.ttest_rel(a, b)'s statistic, p-value, df
    and confidence_interval(0.95) (and 0.99 where "ci99" is present);
  * "degenerate": samples whose differences have no spread, with what SciPy returns for them
    (nan, ±inf, or a huge t from rounding noise) -- myoscope refuses these instead;
  * "cdf" / "ppf": a grid of scipy.stats.t.cdf and t.ppf values, each next to the same
    quantity computed with mpmath at 50 significant digits, so a disagreement can be pinned
    on one side or the other.
"""
import json
import pathlib
import warnings

import mpmath as mp
import numpy as np
import scipy
from scipy import stats

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "crates/myoscope/tests/fixtures"
mp.mp.dps = 50

DFS = [1.0, 2.0, 3.5, 10.0, 100.0, 1e6]
TS = [-1e3, -50.0, -10.0, -3.0, -1.5, -0.5, -1e-3, 0.0, 1e-3, 0.5, 1.5, 3.0, 10.0, 50.0]
PS = [1e-12, 1e-6, 1e-3, 0.025, 0.1, 0.3, 0.5, 0.7, 0.9, 0.975, 0.995, 0.999999]


def accuracies(correct, cases):
    """Reader-study accuracies as a program computes them: correct / cases in doubles."""
    return [c / cases for c in correct]


def paired_cases():
    rng = np.random.default_rng(20240607)
    cases = [
        ("two readers", [0.8, 0.65], [0.6, 0.55]),
        ("four readers, 20 cases, focused better",
         accuracies([15, 17, 12, 16], 20), accuracies([13, 14, 12, 11], 20)),
        ("five readers, focused worse",
         accuracies([30, 28, 33, 25, 31], 40), accuracies([32, 31, 33, 29, 34], 40)),
        ("eight readers, 50 cases",
         accuracies([41, 38, 44, 35, 40, 39, 45, 37], 50),
         accuracies([36, 37, 40, 36, 33, 38, 41, 30], 50)),
        ("three readers, wide interval", [0.9, 0.55, 0.7], [0.6, 0.6, 0.5]),
        ("ten readers, almost no difference",
         accuracies([70, 72, 68, 75, 71, 69, 73, 70, 74, 72], 100),
         accuracies([71, 71, 69, 74, 70, 70, 72, 71, 73, 73], 100)),
        ("twelve normal pairs", list(rng.normal(5.0, 2.0, 12)), list(rng.normal(4.0, 2.0, 12))),
    ]
    # A tiny p: thirty pairs whose differences are 1 plus small noise (t ~ 70).
    b = rng.normal(0.0, 1.0, 30)
    cases.append(("thirty pairs, tiny p", list(b + 1.0 + rng.normal(0.0, 0.08, 30)), list(b)))
    # Negative values and a mean difference far from the data's own scale.
    cases.append(("six pairs around -1000",
                  [-1000.25, -999.5, -1001.0, -1000.75, -999.0, -1000.5],
                  [-1000.0, -1000.0, -1000.5, -1001.0, -999.75, -1000.0]))
    out = []
    for name, a, b in cases:
        r = stats.ttest_rel(a, b)
        ci = r.confidence_interval(0.95)
        item = {
            "name": name,
            "a": [float(x) for x in a],
            "b": [float(x) for x in b],
            "statistic": float(r.statistic),
            "pvalue": float(r.pvalue),
            "df": float(r.df),
            "ci95": [float(ci.low), float(ci.high)],
        }
        if name.startswith("three readers"):
            ci = r.confidence_interval(0.99)
            item["ci99"] = [float(ci.low), float(ci.high)]
        out.append(item)
    return out


def json_float(x):
    """JSON has no nan or infinity: write them as strings the Rust test understands."""
    x = float(x)
    if np.isnan(x):
        return "nan"
    if np.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def degenerate_cases():
    cases = [
        ("no reader changed", [0.5, 0.75, 0.6], [0.5, 0.75, 0.6]),
        ("every difference exactly 1", [3.0, 5.0, 4.0], [2.0, 4.0, 3.0]),
        ("every reader one case better of 10 (rounding noise only)",
         accuracies([8, 9, 7], 10), accuracies([7, 8, 6], 10)),
    ]
    out = []
    for name, a, b in cases:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = stats.ttest_rel(a, b)
        out.append({
            "name": name,
            "a": a,
            "b": b,
            "statistic": json_float(r.statistic),
            "pvalue": json_float(r.pvalue),
            "scipy_warnings": sorted({str(w.message).split(".")[0] for w in caught}),
        })
    return out


def mp_cdf(t, df):
    t, df = mp.mpf(t), mp.mpf(df)
    if t == 0:
        return mp.mpf(1) / 2
    tail = mp.betainc(df / 2, mp.mpf(1) / 2, 0, df / (df + t * t), regularized=True) / 2
    return tail if t < 0 else 1 - tail


def mp_pdf(t, df):
    t, df = mp.mpf(t), mp.mpf(df)
    return (1 + t * t / df) ** (-(df + 1) / 2) / (mp.sqrt(df) * mp.beta(df / 2, mp.mpf(1) / 2))


def mp_ppf(p, df, start):
    """Newton from SciPy's answer, at 50 digits: converges in a few steps."""
    t = mp.mpf(start)
    for _ in range(30):
        step = (mp_cdf(t, df) - mp.mpf(p)) / mp_pdf(t, df)
        t -= step
        if abs(step) <= abs(t) * mp.mpf(10) ** -40:
            break
    return t


def grid():
    cdf = [
        {"df": df, "t": t, "scipy": float(stats.t.cdf(t, df)), "mpmath": float(mp_cdf(t, df))}
        for df in DFS for t in TS
    ]
    ppf = []
    for df in DFS:
        for p in PS:
            s = float(stats.t.ppf(p, df))
            ppf.append({"df": df, "p": p, "scipy": s, "mpmath": float(mp_ppf(p, df, s))})
    return cdf, ppf


def main():
    cdf, ppf = grid()
    doc = {
        "generator": f"scripts/ttest_oracle.py, scipy {scipy.__version__}, mpmath {mp.__version__}",
        "paired": paired_cases(),
        "degenerate": degenerate_cases(),
        "cdf": cdf,
        "ppf": ppf,
    }
    path = FIXTURES / "scipy_ttest.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    worst_cdf = max(abs(c["scipy"] - c["mpmath"]) / max(abs(c["mpmath"]), 1e-300) for c in cdf)
    worst_ppf = max(abs(c["scipy"] - c["mpmath"]) / max(abs(c["mpmath"]), 1e-300) for c in ppf
                    if c["mpmath"] != 0)
    print(f"wrote {path}: {len(doc['paired'])} paired samples, {len(cdf)} cdf and {len(ppf)} ppf "
          f"values; scipy vs mpmath: cdf {worst_cdf:.1e}, ppf {worst_ppf:.1e} relative")


if __name__ == "__main__":
    main()
