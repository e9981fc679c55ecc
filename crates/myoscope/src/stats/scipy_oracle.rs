//! Our t distribution and paired t-test against SciPy 1.17 (and mpmath at 50 digits) on the
//! cases in tests/fixtures/scipy_ttest.json. Regenerate the file with
//! `.venv-ref/bin/python scripts/ttest_oracle.py`. Run with `--nocapture` to see the largest
//! deviations measured.
use super::{paired_t_test, StudentT, TTestError};
use serde_json::Value;

/// Distribution values: relative. We measure ≤ 3e-14; the fixture's own two references
/// differ by up to 2.3e-14 (SciPy's t.cdf at ν = 1, t = ±0.001, against mpmath), so a
/// tolerance much below 1e-13 would be testing SciPy's rounding rather than ours.
const DISTRIBUTION_RTOL: f64 = 1e-13;
/// The test's statistic and interval: absolute, as the brief for the reader study asks.
const TEST_ATOL: f64 = 1e-10;
/// p-values: relative, so the tiny one (1.5e-32) is held to the same standard.
const P_RTOL: f64 = 1e-10;

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/scipy_ttest.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture present"))
        .expect("fixture is JSON")
}

/// Numbers, with the script's "nan" / "inf" / "-inf" strings for what JSON cannot hold.
fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) if s == "nan" => f64::NAN,
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        _ => v.as_f64().unwrap_or_else(|| panic!("{v} is not a number")),
    }
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(num).collect()
}

fn rel_err(ours: f64, theirs: f64) -> f64 {
    if ours == theirs {
        0.0
    } else {
        (ours - theirs).abs() / theirs.abs()
    }
}

/// Largest relative deviation over a grid, against SciPy and against mpmath.
fn grid_deviation(rows: &Value, input: &str, ours: impl Fn(f64, f64) -> f64) -> (f64, f64) {
    let mut worst = (0.0f64, 0.0f64);
    for row in rows.as_array().expect("grid") {
        let (df, x) = (num(&row["df"]), num(&row[input]));
        let value = ours(df, x);
        let (scipy, exact) = (num(&row["scipy"]), num(&row["mpmath"]));
        let e = rel_err(value, scipy);
        assert!(
            e <= DISTRIBUTION_RTOL,
            "df {df}, {input} {x}: ours {value:e}, SciPy {scipy:e} (relative {e:.1e})"
        );
        worst = (worst.0.max(e), worst.1.max(rel_err(value, exact)));
    }
    worst
}

#[test]
fn cdf_grid_equals_scipy() {
    let (scipy, exact) = grid_deviation(&fixture()["cdf"], "t", |df, t| {
        StudentT::new(df).unwrap().cdf(t)
    });
    eprintln!("t.cdf: max relative deviation {scipy:.2e} from SciPy, {exact:.2e} from mpmath");
}

#[test]
fn quantile_grid_equals_scipy() {
    let (scipy, exact) = grid_deviation(&fixture()["ppf"], "p", |df, p| {
        StudentT::new(df).unwrap().quantile(p)
    });
    eprintln!("t.ppf: max relative deviation {scipy:.2e} from SciPy, {exact:.2e} from mpmath");
}

#[test]
fn paired_tests_equal_scipy_ttest_rel() {
    let f = fixture();
    let (mut worst_abs, mut worst_p) = (0.0f64, 0.0f64);
    for case in f["paired"].as_array().expect("paired cases") {
        let name = case["name"].as_str().unwrap_or("?");
        let (a, b) = (nums(&case["a"]), nums(&case["b"]));
        let r = paired_t_test(&a, &b, 0.95).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.df, num(&case["df"]), "{name}: df");
        let ci = nums(&case["ci95"]);
        for (what, ours, theirs) in [
            ("t", r.t, num(&case["statistic"])),
            ("CI low", r.ci_low, ci[0]),
            ("CI high", r.ci_high, ci[1]),
        ] {
            let e = (ours - theirs).abs();
            assert!(e <= TEST_ATOL, "{name}: {what} {ours} vs SciPy {theirs}");
            worst_abs = worst_abs.max(e);
        }
        let p = num(&case["pvalue"]);
        let e = rel_err(r.p_value, p);
        assert!(e <= P_RTOL, "{name}: p {:e} vs SciPy {p:e}", r.p_value);
        worst_p = worst_p.max(e);
        if let Some(ci99) = case.get("ci99") {
            let r99 = paired_t_test(&a, &b, 0.99).unwrap();
            let ci99 = nums(ci99);
            for (ours, theirs) in [(r99.ci_low, ci99[0]), (r99.ci_high, ci99[1])] {
                assert!((ours - theirs).abs() <= TEST_ATOL, "{name}: 99% CI");
                worst_abs = worst_abs.max((ours - theirs).abs());
            }
        }
    }
    eprintln!(
        "ttest_rel: max absolute deviation {worst_abs:.2e} (t, CI), max relative {worst_p:.2e} (p)"
    );
}

/// Where SciPy answers nan, ±inf or a rounding-noise t, we refuse: the fixture records what
/// SciPy said, so this test documents the difference.
#[test]
fn degenerate_samples_are_refused_where_scipy_returns_nan_inf_or_noise() {
    let f = fixture();
    for case in f["degenerate"].as_array().expect("degenerate cases") {
        let name = case["name"].as_str().unwrap_or("?");
        let scipy_t = num(&case["statistic"]);
        assert!(
            !scipy_t.is_finite() || scipy_t.abs() > 1e12,
            "{name}: SciPy's t {scipy_t} is no longer degenerate; revisit"
        );
        let err = paired_t_test(&nums(&case["a"]), &nums(&case["b"]), 0.95).unwrap_err();
        assert!(
            matches!(err, TTestError::ZeroVariance { .. }),
            "{name}: {err}"
        );
    }
}
