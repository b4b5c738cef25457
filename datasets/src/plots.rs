//! SVG charts of a [`Profile`]: volume by month, volume by product, resolution rate by
//! product and by state.
//!
//! ```no_run
//! use complaintflow_datasets::{plots, quality::Profile, read_path, Format, LabelPolicy, ValidationOptions};
//! let p: Profile = read_path("complaints.json", Format::Auto, &ValidationOptions::default())?.collect();
//! let files = plots::write_all(&p, std::path::Path::new("report"), LabelPolicy::Relief)?;
//! assert_eq!(files.len(), 4);
//! # Ok::<(), complaintflow_datasets::DatasetError>(())
//! ```

use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use crate::error::DatasetError;
use crate::label::LabelPolicy;
use crate::quality::{LabelBalance, Profile};

/// Bars shown at most in a bar chart (the largest categories).
pub const MAX_BARS: usize = 25;

fn plot_err(path: &Path, e: impl std::fmt::Display) -> DatasetError {
    DatasetError::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn short(s: &str) -> String {
    if s.chars().count() > 48 {
        let mut t: String = s.chars().take(46).collect();
        t.push('…');
        t
    } else {
        s.to_string()
    }
}

/// A line chart of complaints per month (`by_month`).
pub fn volume_by_month(p: &Profile, path: &Path) -> Result<(), DatasetError> {
    let points: Vec<(usize, u64)> = p.by_month.values().copied().enumerate().collect();
    let months: Vec<&String> = p.by_month.keys().collect();
    let max = points.iter().map(|x| x.1).max().unwrap_or(1).max(1);
    let root = SVGBackend::new(path, (1000, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let n = points.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption("Complaints received per month", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(60)
        .y_label_area_size(60)
        .build_cartesian_2d(0..n, 0..max + max / 10 + 1)
        .map_err(|e| plot_err(path, e))?;
    chart
        .configure_mesh()
        .x_labels(12.min(n))
        .x_label_formatter(&|i| months.get(*i).map(|m| m.to_string()).unwrap_or_default())
        .y_desc("complaints")
        .draw()
        .map_err(|e| plot_err(path, e))?;
    chart
        .draw_series(LineSeries::new(
            points.iter().copied(),
            BLUE.stroke_width(2),
        ))
        .map_err(|e| plot_err(path, e))?;
    root.present().map_err(|e| plot_err(path, e))
}

/// A horizontal bar chart of `(label, value)` with values in `0..=max`.
fn bars(
    path: &Path,
    title: &str,
    x_desc: &str,
    rows: &[(String, f64)],
    max: f64,
) -> Result<(), DatasetError> {
    let n = rows.len().max(1);
    let height = 120 + 26 * n as u32;
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let labels: Vec<String> = rows.iter().map(|r| short(&r.0)).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(340)
        .build_cartesian_2d(0.0..max.max(f64::MIN_POSITIVE), (0..n).into_segmented())
        .map_err(|e| plot_err(path, e))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => (n - 1)
                .checked_sub(*i)
                .and_then(|j| labels.get(j))
                .cloned()
                .unwrap_or_default(),
            SegmentValue::Last => String::new(),
        })
        .x_desc(x_desc)
        .draw()
        .map_err(|e| plot_err(path, e))?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, (_, v))| {
            let y = n - 1 - i;
            let mut r = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(y)),
                    (*v, SegmentValue::Exact(y + 1)),
                ],
                BLUE.mix(0.7).filled(),
            );
            r.set_margin(3, 3, 0, 0);
            r
        }))
        .map_err(|e| plot_err(path, e))?;
    root.present().map_err(|e| plot_err(path, e))
}

/// Complaints per product (largest [`MAX_BARS`]).
pub fn volume_by_product(p: &Profile, path: &Path) -> Result<(), DatasetError> {
    let mut rows: Vec<(String, f64)> = p
        .by_product
        .iter()
        .map(|(k, v)| (k.clone(), *v as f64))
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    rows.truncate(MAX_BARS);
    let max = rows.iter().map(|r| r.1).fold(1.0, f64::max) * 1.05;
    bars(path, "Complaints by product", "complaints", &rows, max)
}

fn rate_rows(
    m: Option<&std::collections::BTreeMap<String, LabelBalance>>,
    min_labelled: u64,
) -> Vec<(String, f64)> {
    let mut rows: Vec<(String, f64, u64)> = m
        .into_iter()
        .flatten()
        .filter(|(_, b)| b.labelled >= min_labelled)
        .map(|(k, b)| {
            (
                format!("{k} (n={})", b.labelled),
                100.0 * b.positive_rate(),
                b.labelled,
            )
        })
        .collect();
    rows.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    rows.truncate(MAX_BARS);
    rows.into_iter().map(|(k, r, _)| (k, r)).collect()
}

/// Resolution rate (% positive under `policy`) per product with at least 10 labelled records.
pub fn resolution_by_product(
    p: &Profile,
    policy: LabelPolicy,
    path: &Path,
) -> Result<(), DatasetError> {
    let rows = rate_rows(p.resolution_by_product.get(policy.name()), 10);
    bars(
        path,
        &format!("Resolution rate by product (policy {policy})"),
        "% successful",
        &rows,
        100.0,
    )
}

/// Resolution rate per state (the [`MAX_BARS`] states with most labelled records, at least 10).
pub fn resolution_by_state(
    p: &Profile,
    policy: LabelPolicy,
    path: &Path,
) -> Result<(), DatasetError> {
    let rows = rate_rows(p.resolution_by_state.get(policy.name()), 10);
    bars(
        path,
        &format!("Resolution rate by state (policy {policy})"),
        "% successful",
        &rows,
        100.0,
    )
}

/// Writes the four charts into `dir` (created if needed): `volume_by_month.svg`,
/// `volume_by_product.svg`, `resolution_by_product.svg`, `resolution_by_state.svg`.
pub fn write_all(
    p: &Profile,
    dir: &Path,
    policy: LabelPolicy,
) -> Result<Vec<PathBuf>, DatasetError> {
    std::fs::create_dir_all(dir).map_err(|e| DatasetError::io(dir, e))?;
    let files = [
        "volume_by_month.svg",
        "volume_by_product.svg",
        "resolution_by_product.svg",
        "resolution_by_state.svg",
    ]
    .map(|f| dir.join(f));
    let [month, product, res_product, res_state] = &files;
    volume_by_month(p, month)?;
    volume_by_product(p, product)?;
    resolution_by_product(p, policy, res_product)?;
    resolution_by_state(p, policy, res_state)?;
    Ok(files.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{CompanyResponse, Complaint, UsState, YesNo};
    use chrono::NaiveDate;

    #[test]
    fn writes_four_svgs_naming_the_categories() {
        let mut results = Vec::new();
        for i in 0..40u64 {
            let d = NaiveDate::from_ymd_opt(2019, 1 + (i % 12) as u32, 1).unwrap();
            let mut c = Complaint::minimal(i, d);
            c.product = Some(
                if i % 2 == 0 {
                    "Mortgage"
                } else {
                    "Debt collection"
                }
                .into(),
            );
            c.state = UsState::parse(if i % 3 == 0 { "TX" } else { "CA" });
            c.company_response = Some(if i % 4 == 0 {
                CompanyResponse::ClosedWithMonetaryRelief
            } else {
                CompanyResponse::ClosedWithExplanation
            });
            c.timely = Some(YesNo::Yes);
            results.push(Ok(c));
        }
        let p: Profile = results.into_iter().collect();
        let dir = tempfile::tempdir().unwrap();
        let files = write_all(&p, dir.path(), LabelPolicy::Relief).unwrap();
        assert_eq!(files.len(), 4);
        for f in &files {
            let svg = std::fs::read_to_string(f).unwrap();
            assert!(svg.starts_with("<svg"), "{}", f.display());
        }
        let product = std::fs::read_to_string(&files[1]).unwrap();
        assert!(product.contains("Mortgage") && product.contains("Debt collection"));
        let month = std::fs::read_to_string(&files[0]).unwrap();
        assert!(month.contains("2019-01"));
        let state = std::fs::read_to_string(&files[3]).unwrap();
        assert!(
            state.contains("CA (n=26)"),
            "26 of 40 ids are not multiples of 3"
        );
    }
}
