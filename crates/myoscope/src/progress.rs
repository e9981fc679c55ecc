//! Progress bars for long work (epochs, tiles, photos), one look across the tool. They draw on
//! stderr and stay silent when stderr is not a terminal, so logs of batch jobs stay readable.
use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` items called `unit` (squares, tiles, photos), headed by `heading` (for
/// example `epoch 3/20`); hidden when `show` is false.
pub fn bar(show: bool, len: u64, heading: &str, unit: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let heading = heading.replace('{', "{{").replace('}', "}}");
    let template = format!("{heading} [{{bar:30}}] {{pos}}/{{len}} {unit} {{msg}} ({{eta}})");
    bar.set_style(
        ProgressStyle::with_template(template.trim_start())
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// `epoch 3/20`, or nothing outside a training loop (`epochs` = 0).
pub fn epoch_heading(epoch: usize, epochs: usize) -> String {
    if epochs == 0 {
        String::new()
    } else {
        format!("epoch {epoch}/{epochs}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_in_a_heading_do_not_break_the_template() {
        let b = bar(true, 3, "photo {weird}", "tiles");
        b.inc(1);
        assert_eq!(b.position(), 1);
        assert!(bar(false, 3, "", "tiles").is_hidden());
        assert_eq!(epoch_heading(2, 5), "epoch 2/5");
        assert_eq!(epoch_heading(0, 0), "");
    }
}
