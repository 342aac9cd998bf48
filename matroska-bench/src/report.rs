//! Results: one [`Row`] per measured operation, printed as a table or as JSON lines.

use std::io::{self, Write};

use serde::Serialize;

/// One operation of one store, measured against its raw baseline in the same run.
///
/// Serialised as one JSON object per line:
/// `{"store":"memory","op":"get_hit","ours_ns":..,"baseline":"moka","baseline_ns":..,"ratio":..,"ops_per_sec":..}`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    /// The store under test: `"memory"`, later `"redis"`, `"postgres"`.
    pub(crate) store: &'static str,
    /// The operation, e.g. `"get_hit"`.
    pub(crate) op: &'static str,
    /// The store's median time per operation, in nanoseconds.
    pub(crate) ours_ns: f64,
    /// What the store is compared with, e.g. `"moka"`.
    pub(crate) baseline: &'static str,
    /// The baseline's median time per operation, in nanoseconds.
    pub(crate) baseline_ns: f64,
    /// `ours_ns / baseline_ns`: below 1 the store is faster than its baseline.
    pub(crate) ratio: f64,
    /// The store's throughput implied by `ours_ns` (one thread).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ops_per_sec: Option<f64>,
    /// The ratio the store should stay at or below, if the operation has a target.
    #[serde(skip)]
    pub(crate) target: Option<f64>,
    /// More fields of the row (a JSON object), for operations that measure more than a time.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub(crate) extra: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Row {
    /// A row from the two medians; computes the ratio and the throughput, rounded for output
    /// (0.1 ns, three decimals of ratio, whole operations per second).
    pub(crate) fn new(
        store: &'static str,
        op: &'static str,
        baseline: &'static str,
        ours_ns: f64,
        baseline_ns: f64,
    ) -> Self {
        let ratio = if baseline_ns > 0.0 {
            ours_ns / baseline_ns
        } else {
            f64::NAN
        };
        Self {
            store,
            op,
            ours_ns: round_to(ours_ns, 10.0),
            baseline,
            baseline_ns: round_to(baseline_ns, 10.0),
            ratio: round_to(ratio, 1000.0),
            ops_per_sec: (ours_ns > 0.0).then(|| (1e9 / ours_ns).round()),
            target: None,
            extra: None,
        }
    }

    /// Adds fields to the row (a JSON object; anything else is ignored).
    #[must_use]
    pub(crate) fn extra(mut self, fields: serde_json::Value) -> Self {
        if let serde_json::Value::Object(fields) = fields {
            self.extra = Some(fields);
        }
        self
    }

    /// Sets the ratio this operation should stay at or below.
    #[must_use]
    pub(crate) fn target(mut self, max_ratio: f64) -> Self {
        self.target = Some(max_ratio);
        self
    }

    /// Whether the row meets its target (`None` without one).
    fn verdict(&self) -> Option<bool> {
        self.target.map(|max| self.ratio <= max)
    }
}

fn round_to(value: f64, scale: f64) -> f64 {
    (value * scale).round() / scale
}

/// The median of `values` (the mean of the two middle ones for an even count); `None` if empty.
pub(crate) fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[mid]),
        _ => Some(f64::midpoint(values[mid - 1], values[mid])),
    }
}

/// Writes the rows as an aligned, human-readable table.
pub(crate) fn write_table(out: &mut impl Write, rows: &[Row]) -> io::Result<()> {
    writeln!(
        out,
        "{:<9} {:<27} {:>12} {:<9} {:>12} {:>7} {:>13}  target",
        "store", "op", "ours ns/op", "baseline", "base ns/op", "ratio", "ours ops/s"
    )?;
    for row in rows {
        let target = match (row.target, row.verdict()) {
            (Some(max), Some(true)) => format!("<= {max:.2}x met"),
            (Some(max), _) => format!("<= {max:.2}x MISSED"),
            (None, _) => "-".to_owned(),
        };
        let ops = row
            .ops_per_sec
            .map_or_else(|| "-".to_owned(), |ops| format!("{ops:.0}"));
        writeln!(
            out,
            "{:<9} {:<27} {:>12.1} {:<9} {:>12.1} {:>7.3} {:>13}  {target}",
            row.store, row.op, row.ours_ns, row.baseline, row.baseline_ns, row.ratio, ops
        )?;
        if let Some(extra) = &row.extra {
            writeln!(
                out,
                "          {}",
                serde_json::Value::Object(extra.clone())
            )?;
        }
    }
    Ok(())
}

/// Writes the rows as JSON, one object per line.
pub(crate) fn write_json_lines(out: &mut impl Write, rows: &[Row]) -> io::Result<()> {
    for row in rows {
        serde_json::to_writer(&mut *out, row)?;
        writeln!(out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn json_line_has_the_documented_fields() {
        let row = Row::new("memory", "get_hit", "moka", 60.04, 30.0).target(2.0);
        let mut out = Vec::new();
        write_json_lines(&mut out, &[row]).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert_eq!(
            line,
            "{\"store\":\"memory\",\"op\":\"get_hit\",\"ours_ns\":60.0,\"baseline\":\"moka\",\
             \"baseline_ns\":30.0,\"ratio\":2.001,\"ops_per_sec\":16655563.0}\n"
        );
    }

    #[test]
    fn table_shows_the_verdict() {
        let rows = [
            Row::new("memory", "get_hit", "moka", 50.0, 30.0).target(2.0),
            Row::new("memory", "put_3_tags", "moka", 400.0, 100.0).target(3.0),
        ];
        let mut out = Vec::new();
        write_table(&mut out, &rows).unwrap();
        let table = String::from_utf8(out).unwrap();
        assert!(table.contains("met"), "{table}");
        assert!(table.contains("MISSED"), "{table}");
    }
}
