//! Statistics for the reader study: Student's t distribution and the paired t-test, checked
//! against SciPy (tests/fixtures/scipy_ttest.json, from scripts/ttest_oracle.py).
pub mod paired_t;
pub mod student_t;

pub use paired_t::{paired_t_test, PairedTTest, TTestError};
pub use student_t::StudentT;

#[cfg(test)]
mod scipy_oracle;
