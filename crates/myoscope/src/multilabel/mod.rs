//! DEDL's multi-label cell-type classification (Singh & Cirrone §3.2, §4.3): an image may show
//! several cell types at once, so each class is its own yes/no decision.
pub mod augment;
pub mod chart;
pub mod config;
pub mod cv;
pub mod dataset;
pub mod folds;
pub mod images;
pub mod loss;
pub mod markers;
pub mod metrics;
pub mod predict;
pub mod swa;
pub mod train;

/// A per-test folder under the system temp dir, removed when dropped.
#[cfg(test)]
mod test_dir {
    pub struct Scratch(pub std::path::PathBuf);

    impl Scratch {
        pub fn new(tag: &str, line: u32) -> Self {
            let d =
                std::env::temp_dir().join(format!("myoscope-{tag}-{}-{line}", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            Self(d)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
