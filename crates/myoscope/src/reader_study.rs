//! Kabeya et al.'s "Visualization test": pathologists classify the same cases twice, once
//! from AI-focused images (pixels above the Grad-CAM median) and once from AI-unfocused ones.
//! From their answers (ANSWERS.csv) we compute every reader's accuracy in both conditions,
//! a paired t-test over readers (focused − unfocused, so a positive mean difference means the
//! focused images were classified better), and pooled confusion matrices per condition
//! (the paper's Figure 3e–j).
//!
//! ANSWERS.csv has the columns `reader, case, condition, answer, truth` (in any order; other
//! columns are ignored), one row per reader, case and condition. Condition is `focused` or
//! `unfocused` in any letter case; answers and truths are class names compared exactly, after
//! trimming surrounding spaces.

use crate::evaluation::metrics::ConfusionMatrix;
use crate::stats::{paired_t_test, PairedTTest, TTestError};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// The columns ANSWERS.csv must have.
const COLUMNS: [&str; 5] = ["reader", "case", "condition", "answer", "truth"];
/// At most this many problems are listed in one error; the rest are counted.
const MAX_LISTED: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    Focused,
    Unfocused,
}

impl Condition {
    pub const BOTH: [Condition; 2] = [Condition::Focused, Condition::Unfocused];

    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "focused" => Some(Self::Focused),
            "unfocused" => Some(Self::Unfocused),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Focused => "focused",
            Self::Unfocused => "unfocused",
        }
    }
}

/// One row of ANSWERS.csv, with the file line it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerRow {
    pub line: u64,
    pub reader: String,
    pub case: String,
    pub condition: Condition,
    pub answer: String,
    pub truth: String,
}

/// A validated study: every reader answered every case in both conditions exactly once, and
/// each case has one truth.
#[derive(Debug, Clone)]
pub struct ReaderStudy {
    /// Readers and cases in order of first appearance in the file.
    pub readers: Vec<String>,
    pub cases: Vec<String>,
    /// Truth per case, aligned with `cases`.
    pub truth: Vec<String>,
    /// answers[condition][reader][case], indices as in `readers` and `cases`.
    answers: [Vec<Vec<String>>; 2],
}

/// A list of problems as one error: numbered lines, the first MAX_LISTED of them.
fn problems_error(what: &str, problems: &[String]) -> anyhow::Error {
    let mut msg = format!("{what}:");
    for p in problems.iter().take(MAX_LISTED) {
        msg.push_str("\n  ");
        msg.push_str(p);
    }
    if problems.len() > MAX_LISTED {
        msg.push_str(&format!("\n  … and {} more", problems.len() - MAX_LISTED));
    }
    anyhow::anyhow!(msg)
}

/// Where each required column is, by exact header name.
fn column_indices(headers: &csv::StringRecord, file: &Path) -> Result<[usize; 5]> {
    let names: Vec<&str> = headers
        .iter()
        // A spreadsheet's UTF-8 byte-order mark would otherwise hide the first name.
        .map(|h| h.trim_start_matches('\u{feff}'))
        .collect();
    let mut found = [0; 5];
    for (slot, wanted) in found.iter_mut().zip(COLUMNS) {
        let hits: Vec<usize> = (0..names.len()).filter(|&i| names[i] == wanted).collect();
        match hits.as_slice() {
            [i] => *slot = *i,
            [] => bail!(
                "{} has no column '{wanted}' (it needs {}; its columns are: {})",
                file.display(),
                COLUMNS.join(", "),
                names.join(", ")
            ),
            _ => bail!(
                "{} has {} columns named '{wanted}'; which one holds the {wanted} is ambiguous",
                file.display(),
                hits.len()
            ),
        }
    }
    Ok(found)
}

/// One record → an AnswerRow, or a message naming the line.
fn parse_row(
    record: &csv::StringRecord,
    cols: &[usize; 5],
    line: u64,
) -> Result<AnswerRow, String> {
    let mut fields = [""; 5];
    for (k, &c) in cols.iter().enumerate() {
        let value = record.get(c).unwrap_or("");
        if value.is_empty() {
            return Err(format!("line {line}: empty '{}'", COLUMNS[k]));
        }
        fields[k] = value;
    }
    let [reader, case, condition, answer, truth] = fields;
    let condition = Condition::parse(condition).ok_or_else(|| {
        format!("line {line}: unknown condition '{condition}' (expected 'focused' or 'unfocused')")
    })?;
    Ok(AnswerRow {
        line,
        reader: reader.to_string(),
        case: case.to_string(),
        condition,
        answer: answer.to_string(),
        truth: truth.to_string(),
    })
}

/// Reads ANSWERS.csv into rows, reporting every malformed row at once.
pub fn read_rows(file: &Path) -> Result<Vec<AnswerRow>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        // Short rows are reported as empty fields with their line, not as a CSV error.
        .flexible(true)
        .from_path(file)
        .with_context(|| format!("cannot open {}", file.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("cannot read the header row of {}", file.display()))?
        .clone();
    let cols = column_indices(&headers, file)?;
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("{} is not valid CSV", file.display()))?;
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(str::is_empty) {
            continue; // a blank line, e.g. at the end
        }
        match parse_row(&record, &cols, line) {
            Ok(row) => rows.push(row),
            Err(p) => problems.push(p),
        }
    }
    if !problems.is_empty() {
        return Err(problems_error(
            &format!("{} has bad rows", file.display()),
            &problems,
        ));
    }
    if rows.is_empty() {
        bail!("{} has a header but no answers", file.display());
    }
    Ok(rows)
}

/// Position of `name` in `list`, appending it if new: first-appearance order.
fn index_of(list: &mut Vec<String>, lookup: &mut HashMap<String, usize>, name: &str) -> usize {
    *lookup.entry(name.to_string()).or_insert_with(|| {
        list.push(name.to_string());
        list.len() - 1
    })
}

/// Duplicate answers and contradictory truths, each naming both lines.
fn conflicts(rows: &[AnswerRow]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen: HashMap<(&str, &str, Condition), u64> = HashMap::new();
    let mut truths: HashMap<&str, (&str, u64)> = HashMap::new();
    for r in rows {
        if let Some(first) = seen.insert((&r.reader, &r.case, r.condition), r.line) {
            problems.push(format!(
                "line {}: reader '{}' answered case '{}' ({}) again; the first answer is on line {first}",
                r.line,
                r.reader,
                r.case,
                r.condition.name()
            ));
            // Keep pointing at the first answer for any third one.
            seen.insert((&r.reader, &r.case, r.condition), first);
        }
        let (truth, line) = *truths.entry(&r.case).or_insert((&r.truth, r.line));
        if truth != r.truth {
            problems.push(format!(
                "line {}: case '{}' has truth '{}', but line {line} says '{truth}'",
                r.line, r.case, r.truth
            ));
        }
    }
    problems
}

/// Every (reader, case, condition) without an answer, grouped by reader.
fn missing_answers(study: &ReaderStudy, answered: &[Vec<Vec<bool>>; 2]) -> Vec<String> {
    let mut problems = Vec::new();
    for (ri, reader) in study.readers.iter().enumerate() {
        let lacks: Vec<String> = study
            .cases
            .iter()
            .enumerate()
            .flat_map(|(ci, case)| {
                Condition::BOTH
                    .into_iter()
                    .filter(move |&c| !answered[c as usize][ri][ci])
                    .map(move |c| format!("case '{case}' ({})", c.name()))
            })
            .collect();
        if !lacks.is_empty() {
            problems.push(format!("reader '{reader}' lacks {}", lacks.join(", ")));
        }
    }
    problems
}

impl ReaderStudy {
    /// Checks the rows and arranges them by condition, reader and case.
    pub fn from_rows(rows: &[AnswerRow], file: &Path) -> Result<Self> {
        let clashes = conflicts(rows);
        if !clashes.is_empty() {
            return Err(problems_error(
                &format!("{} contradicts itself", file.display()),
                &clashes,
            ));
        }
        let (mut readers, mut reader_ix) = (Vec::new(), HashMap::new());
        let (mut cases, mut case_ix) = (Vec::new(), HashMap::new());
        let mut truth: Vec<String> = Vec::new();
        for r in rows {
            index_of(&mut readers, &mut reader_ix, &r.reader);
            if index_of(&mut cases, &mut case_ix, &r.case) == truth.len() {
                truth.push(r.truth.clone());
            }
        }
        let empty = || vec![vec![String::new(); cases.len()]; readers.len()];
        let mut study = Self {
            answers: [empty(), empty()],
            readers,
            cases,
            truth,
        };
        let mut answered = [
            vec![vec![false; study.cases.len()]; study.readers.len()],
            vec![vec![false; study.cases.len()]; study.readers.len()],
        ];
        for r in rows {
            let (ri, ci, k) = (reader_ix[&r.reader], case_ix[&r.case], r.condition as usize);
            study.answers[k][ri][ci] = r.answer.clone();
            answered[k][ri][ci] = true;
        }
        let missing = missing_answers(&study, &answered);
        if !missing.is_empty() {
            return Err(problems_error(
                &format!(
                    "{}: every reader must answer every case in both conditions",
                    file.display()
                ),
                &missing,
            ));
        }
        Ok(study)
    }

    /// Reads and validates ANSWERS.csv.
    pub fn read(file: &Path) -> Result<Self> {
        Self::from_rows(&read_rows(file)?, file)
    }

    /// The answers of one reader in one condition, aligned with `cases`.
    pub fn answers(&self, condition: Condition, reader: usize) -> &[String] {
        &self.answers[condition as usize][reader]
    }

    /// Sorted union of every truth and every answer.
    pub fn classes(&self) -> Vec<String> {
        let mut all: BTreeSet<&String> = self.truth.iter().collect();
        for per_condition in &self.answers {
            all.extend(per_condition.iter().flatten());
        }
        all.into_iter().cloned().collect()
    }

    /// How many of one reader's answers in one condition equal the truth.
    pub fn correct(&self, condition: Condition, reader: usize) -> usize {
        self.answers(condition, reader)
            .iter()
            .zip(&self.truth)
            .filter(|(a, t)| a == t)
            .count()
    }

    /// All readers' answers in one condition, pooled, against the truth.
    pub fn confusion(&self, condition: Condition, classes: &[String]) -> ConfusionMatrix {
        let index: HashMap<&str, usize> = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();
        let (mut truth, mut predicted) = (Vec::new(), Vec::new());
        for reader in 0..self.readers.len() {
            for (answer, t) in self.answers(condition, reader).iter().zip(&self.truth) {
                truth.push(index[t.as_str()]);
                predicted.push(index[answer.as_str()]);
            }
        }
        ConfusionMatrix::new(classes, &truth, &predicted)
    }
}

/// One reader's row of the results table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReaderAccuracy {
    pub reader: String,
    pub cases: usize,
    pub focused_correct: usize,
    pub unfocused_correct: usize,
    pub focused_accuracy: f64,
    pub unfocused_accuracy: f64,
    /// focused_accuracy − unfocused_accuracy.
    pub difference: f64,
}

/// A value per condition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerCondition<T> {
    pub focused: T,
    pub unfocused: T,
}

/// Everything reader_study.json holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReaderStudyReport {
    pub answers_file: String,
    pub readers: Vec<ReaderAccuracy>,
    pub cases: usize,
    pub classes: Vec<String>,
    pub mean_accuracy: PerCondition<f64>,
    /// What the test compares, in words.
    pub test: String,
    /// None when the test is undefined; `test_unavailable` then says why.
    pub paired_t_test: Option<PairedTTest>,
    pub test_unavailable: Option<String>,
    /// Pooled over readers; rows are the truth, columns the answer.
    pub confusion_matrices: PerCondition<ConfusionMatrix>,
}

fn reader_table(study: &ReaderStudy) -> Vec<ReaderAccuracy> {
    let n = study.cases.len();
    (0..study.readers.len())
        .map(|r| {
            let f = study.correct(Condition::Focused, r);
            let u = study.correct(Condition::Unfocused, r);
            let (fa, ua) = (f as f64 / n as f64, u as f64 / n as f64);
            ReaderAccuracy {
                reader: study.readers[r].clone(),
                cases: n,
                focused_correct: f,
                unfocused_correct: u,
                focused_accuracy: fa,
                unfocused_accuracy: ua,
                difference: fa - ua,
            }
        })
        .collect()
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n.max(1) as f64
}

/// The reader study's wording of why the paired t-test could not be computed.
fn why_no_test(err: &TTestError) -> String {
    match err {
        TTestError::TooFewPairs(n) => {
            format!("the paired t-test needs at least 2 readers; the file has {n}")
        }
        TTestError::ZeroVariance { difference } => format!(
            "every reader's accuracy changed by the same amount ({difference:+.4}, focused − \
             unfocused), so the differences have zero variance and the t statistic is undefined"
        ),
        other => other.to_string(),
    }
}

/// Accuracy per reader and condition, the paired t-test over readers and the pooled confusion
/// matrices. A test that is undefined (one reader, or every reader changing by the same
/// amount) is reported as unavailable rather than failing the whole analysis.
pub fn analyse(study: &ReaderStudy, confidence: f64, file: &Path) -> Result<ReaderStudyReport> {
    if !(confidence > 0.0 && confidence < 1.0) {
        bail!("the confidence level must lie strictly between 0 and 1, got {confidence}");
    }
    let readers = reader_table(study);
    let focused: Vec<f64> = readers.iter().map(|r| r.focused_accuracy).collect();
    let unfocused: Vec<f64> = readers.iter().map(|r| r.unfocused_accuracy).collect();
    let (paired_t_test, test_unavailable) = match paired_t_test(&focused, &unfocused, confidence) {
        Ok(t) => (Some(t), None),
        Err(e) => (None, Some(why_no_test(&e))),
    };
    let classes = study.classes();
    Ok(ReaderStudyReport {
        answers_file: file.display().to_string(),
        cases: study.cases.len(),
        mean_accuracy: PerCondition {
            focused: mean(focused.iter().copied()),
            unfocused: mean(unfocused.iter().copied()),
        },
        test: "paired t-test over readers of accuracy on AI-focused minus AI-unfocused images"
            .into(),
        paired_t_test,
        test_unavailable,
        confusion_matrices: PerCondition {
            focused: study.confusion(Condition::Focused, &classes),
            unfocused: study.confusion(Condition::Unfocused, &classes),
        },
        classes,
        readers,
    })
}

/// p-values as people read them: four decimals, or scientific notation when that would
/// round to zero.
fn format_p(p: f64) -> String {
    if p >= 1e-4 {
        format!("{p:.4}")
    } else {
        format!("{p:.2e}")
    }
}

impl ReaderStudyReport {
    /// The test in one line: t, df, p and the interval, or why there is none.
    pub fn test_line(&self) -> String {
        match (&self.paired_t_test, &self.test_unavailable) {
            (Some(t), _) => format!(
                "paired t-test (focused − unfocused): mean difference {:+.4}, t = {:.4}, df = {}, p = {}, {:.0}% CI [{:+.4}, {:+.4}]",
                t.mean_difference,
                t.t,
                t.df,
                format_p(t.p_value),
                100.0 * t.confidence,
                t.ci_low,
                t.ci_high
            ),
            (None, Some(why)) => format!("paired t-test not computed: {why}"),
            (None, None) => "paired t-test not computed".into(),
        }
    }
}

/// Writes reader_study.json, confusion_focused / confusion_unfocused and reader_accuracy
/// (each as SVG and PNG) into `out`.
pub fn write_outputs(report: &ReaderStudyReport, out: &Path) -> Result<()> {
    use crate::evaluation::{png::write_picture, reader_plot, svg};
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    crate::training::checkpoint::write_json_atomic(&out.join("reader_study.json"), report)?;
    for (condition, cm) in [
        (Condition::Focused, &report.confusion_matrices.focused),
        (Condition::Unfocused, &report.confusion_matrices.unfocused),
    ] {
        let title = format!(
            "Readers on AI-{} images ({} readers pooled)",
            condition.name(),
            report.readers.len()
        );
        write_picture(
            &out.join(format!("confusion_{}", condition.name())),
            &svg::confusion_matrix(cm, &title),
        )?;
    }
    let rows: Vec<(String, f64, f64)> = report
        .readers
        .iter()
        .map(|r| (r.reader.clone(), r.focused_accuracy, r.unfocused_accuracy))
        .collect();
    write_picture(
        &out.join("reader_accuracy"),
        &reader_plot::paired_accuracy(
            &rows,
            "Reader accuracy: AI-focused vs AI-unfocused",
            &report.test_line(),
        ),
    )
}

/// Reads ANSWERS.csv, analyses it and writes the results into `out`.
pub fn run(file: &Path, out: &Path, confidence: f64) -> Result<ReaderStudyReport> {
    let study = ReaderStudy::read(file)?;
    let report = analyse(&study, confidence, file)?;
    write_outputs(&report, out)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const TRUTH: [(&str, &str); 4] = [("C1", "dm"), ("C2", "ibm"), ("C3", "normal"), ("C4", "dm")];

    /// Answers per reader for cases C1..C4: (focused, unfocused). Worked by hand:
    /// A 4/4 → 3/4, B 3/4 → 1/4, C 3/4 → 3/4, so the differences are 0.25, 0.5, 0.
    const ANSWERS: [(&str, [&str; 4], [&str; 4]); 3] = [
        (
            "A",
            ["dm", "ibm", "normal", "dm"],
            ["ibm", "ibm", "normal", "dm"],
        ),
        ("B", ["dm", "dm", "normal", "dm"], ["ibm", "dm", "dm", "dm"]),
        (
            "C",
            ["dm", "ibm", "normal", "normal"],
            ["dm", "ibm", "normal", "normal"],
        ),
    ];

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "myoscope-reader-study-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// The hand-worked study as CSV lines, columns shuffled, an extra column, and the
    /// condition in mixed case with stray spaces; the header is line 1.
    fn good_lines() -> Vec<String> {
        let mut lines = vec!["truth,condition,case,reader,notes,answer".to_string()];
        for (reader, focused, unfocused) in ANSWERS {
            for (condition, answers) in [(" FOCUSED", focused), ("Unfocused ", unfocused)] {
                for ((case, truth), answer) in TRUTH.iter().zip(answers) {
                    lines.push(format!(
                        "{truth},{condition},{case},{reader},seen twice,{answer}"
                    ));
                }
            }
        }
        lines
    }

    fn write(dir: &Path, lines: &[String]) -> PathBuf {
        let p = dir.join("answers.csv");
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        p
    }

    fn error_of(lines: &[String], name: &str) -> String {
        let dir = scratch(name);
        format!("{:#}", ReaderStudy::read(&write(&dir, lines)).unwrap_err())
    }

    #[test]
    fn hand_worked_study() {
        let dir = scratch("good");
        let file = write(&dir, &good_lines());
        let study = ReaderStudy::read(&file).unwrap();
        assert_eq!(study.readers, ["A", "B", "C"]);
        assert_eq!(study.cases, ["C1", "C2", "C3", "C4"]);
        let r = analyse(&study, 0.95, &file).unwrap();
        let acc: Vec<(f64, f64)> = r
            .readers
            .iter()
            .map(|x| (x.focused_accuracy, x.unfocused_accuracy))
            .collect();
        assert_eq!(acc, [(1.0, 0.75), (0.75, 0.25), (0.75, 0.75)]);
        assert_eq!(r.readers[1].focused_correct, 3);
        assert_eq!(r.readers[1].unfocused_correct, 1);
        assert_eq!(r.classes, ["dm", "ibm", "normal"]);
        assert!((r.mean_accuracy.focused - 10.0 / 12.0).abs() < 1e-15);
        assert!((r.mean_accuracy.unfocused - 7.0 / 12.0).abs() < 1e-15);
        // Pooled over readers; rows truth, columns answer (dm, ibm, normal).
        let cm = &r.confusion_matrices;
        assert_eq!(cm.focused.counts, [[5, 0, 1], [1, 2, 0], [0, 0, 3]]);
        assert_eq!(cm.unfocused.counts, [[3, 2, 1], [1, 2, 0], [1, 0, 2]]);
        // d = (0.25, 0.5, 0): mean 0.25, sd 0.25, t = √3 on 2 df, where P(|T| > t) is
        // 1 − t/√(2 + t²) and t_{0.975} = 0.95·√(2/(1 − 0.95²)).
        let t = r.paired_t_test.as_ref().unwrap();
        assert!((t.mean_difference - 0.25).abs() < 1e-15);
        assert!((t.sd_difference - 0.25).abs() < 1e-15);
        assert!((t.t - 3f64.sqrt()).abs() < 1e-14);
        assert_eq!((t.n, t.df), (3, 2.0));
        assert!((t.p_value - (1.0 - (3.0f64 / 5.0).sqrt())).abs() < 1e-14);
        let half = 0.95 * (2.0f64 / (1.0 - 0.95 * 0.95)).sqrt() * 0.25 / 3f64.sqrt();
        assert!((t.ci_low - (0.25 - half)).abs() < 1e-14);
        assert!((t.ci_high - (0.25 + half)).abs() < 1e-14);
        assert!(r.test_unavailable.is_none());
        assert!(r.test_line().contains("t = 1.7321, df = 2, p = 0.2254"));
    }

    #[test]
    fn outputs_are_written() {
        let dir = scratch("outputs");
        let file = write(&dir, &good_lines());
        let out = dir.join("out");
        let report = run(&file, &out, 0.9).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("reader_study.json")).unwrap())
                .unwrap();
        assert_eq!(json["paired_t_test"]["confidence"], 0.9);
        assert_eq!(json["readers"][0]["reader"], "A");
        assert_eq!(
            json["confusion_matrices"]["unfocused"]["counts"][0],
            serde_json::json!([3, 2, 1])
        );
        assert_eq!(report.cases, 4);
        for stem in [
            "confusion_focused",
            "confusion_unfocused",
            "reader_accuracy",
        ] {
            for ext in ["svg", "png"] {
                assert!(out.join(format!("{stem}.{ext}")).is_file(), "{stem}.{ext}");
            }
        }
    }

    #[test]
    fn bad_rows_are_named_by_line() {
        let mut lines = good_lines();
        lines[2] = lines[2].replace("FOCUSED", "blurred");
        lines[5] = lines[5].replace(",seen twice,ibm", ",seen twice,");
        lines[7] = "dm,focused,C1".to_string(); // a short row
        let e = error_of(&lines, "bad-rows");
        assert!(e.contains("line 3: unknown condition 'blurred'"), "{e}");
        assert!(e.contains("line 6: empty 'answer'"), "{e}");
        assert!(e.contains("line 8: empty 'reader'"), "{e}");
    }

    #[test]
    fn missing_columns_and_empty_files() {
        let mut lines = good_lines();
        lines[0] = lines[0].replace("truth", "diagnosis");
        let e = error_of(&lines, "no-truth");
        assert!(
            e.contains("has no column 'truth'") && e.contains("diagnosis"),
            "{e}"
        );
        let e = error_of(&good_lines()[..1], "empty");
        assert!(e.contains("no answers"), "{e}");
        lines[0] = "reader,case,condition,answer,truth,case".to_string();
        let e = error_of(&lines, "twice");
        assert!(e.contains("2 columns named 'case'"), "{e}");
    }

    #[test]
    fn every_missing_answer_is_listed() {
        // Drop B's C3 (unfocused) and all of C's focused answers but C2's.
        let lines: Vec<String> = good_lines()
            .into_iter()
            .filter(|l| !(l.contains("Unfocused ,C3,B,")))
            .filter(|l| !(l.contains("FOCUSED,") && l.contains(",C,") && !l.contains(",C2,")))
            .collect();
        let e = error_of(&lines, "missing");
        assert!(
            e.contains("every reader must answer every case in both conditions"),
            "{e}"
        );
        assert!(e.contains("reader 'B' lacks case 'C3' (unfocused)"), "{e}");
        assert!(
            e.contains(
                "reader 'C' lacks case 'C1' (focused), case 'C3' (focused), case 'C4' (focused)"
            ),
            "{e}"
        );
        assert!(!e.contains("reader 'A'"), "{e}");
    }

    #[test]
    fn duplicates_and_contradictory_truths_are_refused() {
        let mut lines = good_lines();
        lines.push(lines[1].clone()); // A, C1, focused again → line 26
        lines[10] = lines[10].replacen("ibm,", "dm,", 1); // B's C2 (focused) truth on line 11
        let e = error_of(&lines, "dupes");
        assert!(
            e.contains("line 26: reader 'A' answered case 'C1' (focused) again; the first answer is on line 2"),
            "{e}"
        );
        assert!(
            e.contains("line 11: case 'C2' has truth 'dm', but line 3 says 'ibm'"),
            "{e}"
        );
    }

    #[test]
    fn undefined_tests_are_reported_not_fatal() {
        // Every reader one case better with focused images: the differences have no spread.
        let mut lines = vec!["reader,case,condition,answer,truth".to_string()];
        for reader in ["A", "B", "C"] {
            for (case, truth) in TRUTH {
                lines.push(format!("{reader},{case},focused,{truth},{truth}"));
                let answer = if case == "C1" { "wrong" } else { truth };
                lines.push(format!("{reader},{case},unfocused,{answer},{truth}"));
            }
        }
        let dir = scratch("same-change");
        let file = write(&dir, &lines);
        let r = analyse(&ReaderStudy::read(&file).unwrap(), 0.95, &file).unwrap();
        assert!(r.paired_t_test.is_none());
        let why = r.test_unavailable.clone().unwrap();
        assert!(why.contains("changed by the same amount (+0.2500"), "{why}");
        assert!(r.test_line().contains("not computed"));
        assert!(r.classes.contains(&"wrong".to_string()));

        let one: Vec<String> = lines
            .iter()
            .filter(|l| !l.starts_with(['B', 'C']))
            .cloned()
            .collect();
        let file = write(&dir, &one);
        let r = analyse(&ReaderStudy::read(&file).unwrap(), 0.95, &file).unwrap();
        assert!(r
            .test_unavailable
            .unwrap()
            .contains("at least 2 readers; the file has 1"));

        let e = analyse(&ReaderStudy::read(&file).unwrap(), 1.0, &file).unwrap_err();
        assert!(e.to_string().contains("strictly between 0 and 1"));
    }
}
