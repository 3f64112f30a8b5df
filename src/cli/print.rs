//! Output shapes shared by the verbs: kubectl's aligned columns (a small `text/tabwriter`),
//! server-side `Table`s rendered as those columns, and `-o yaml|json|name`.
//!
//! Pure functions of their inputs, so every shape is unit-tested; nothing here can panic on
//! what the server sends (a malformed table degrades to empty cells).

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

/// kubectl get's column layout (`printers.GetNewTabWriter`): cells padded by 3, at least 6.
pub const GET_MIN_WIDTH: usize = 6;
/// See [`GET_MIN_WIDTH`].
pub const GET_PADDING: usize = 3;
/// kubectl describe's layout: padding 2, no minimum.
pub const DESCRIBE_PADDING: usize = 2;

/// Aligns lines of cells like Go's `text/tabwriter` (which kubectl prints through): every
/// cell but a line's last is padded to the widest cell of its column among the adjacent
/// lines that have a cell there, plus `padding`, and to at least `min_width`. A line with a
/// single cell ends the alignment block, as a line without tabs does in Go.
pub fn tabwrite(lines: &[Vec<String>], min_width: usize, padding: usize) -> String {
    let n_cols = lines
        .iter()
        .map(|l| l.len().saturating_sub(1))
        .max()
        .unwrap_or(0);
    let mut widths = vec![vec![0usize; n_cols]; lines.len()];
    for col in 0..n_cols {
        let has_cell = |line_idx: usize| lines[line_idx].len() > col + 1;
        let mut start = 0;
        while start < lines.len() {
            if !has_cell(start) {
                start += 1;
                continue;
            }
            let mut end = start;
            let mut widest = 0;
            while end < lines.len() && has_cell(end) {
                widest = widest.max(text_width(&lines[end][col]));
                end += 1;
            }
            let width = (widest + padding).max(min_width);
            for row in widths.iter_mut().take(end).skip(start) {
                row[col] = width;
            }
            start = end;
        }
    }
    let mut out = String::new();
    for (line, line_widths) in lines.iter().zip(&widths) {
        let Some((last, cells)) = line.split_last() else {
            out.push('\n');
            continue;
        };
        for (cell, width) in cells.iter().zip(line_widths) {
            out.push_str(cell);
            let pad = width.saturating_sub(text_width(cell));
            out.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(last);
        out.push('\n');
    }
    out
}

fn text_width(s: &str) -> usize {
    s.chars().count()
}

/// How a server-side `Table` becomes columns.
#[derive(Debug, Clone, Default)]
pub struct TableLayout {
    /// Show the `priority > 0` columns too (`-o wide`).
    pub wide: bool,
    /// Prepend a NAMESPACE column (`-A`).
    pub namespace_column: bool,
    /// Prefix for the name column's cells (`pod/`), when several kinds print together.
    pub name_prefix: Option<String>,
}

/// The header (upper-cased column names) and rows of a `meta.k8s.io/v1` `Table`.
pub fn table_cells(table: &Value, layout: &TableLayout) -> (Vec<String>, Vec<Vec<String>>) {
    let empty = Vec::new();
    let columns = table
        .get("columnDefinitions")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    // Indices of the columns shown, in order.
    let shown: Vec<usize> = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| layout.wide || c.get("priority").and_then(Value::as_i64).unwrap_or(0) == 0)
        .map(|(i, _)| i)
        .collect();
    let name_idx = columns
        .iter()
        .position(|c| c.get("format").and_then(Value::as_str) == Some("name"))
        .unwrap_or(0);
    let mut header: Vec<String> = shown
        .iter()
        .map(|&i| {
            columns[i]
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_uppercase()
        })
        .collect();
    if layout.namespace_column {
        header.insert(0, "NAMESPACE".into());
    }
    let rows = table
        .get("rows")
        .and_then(Value::as_array)
        .unwrap_or(&empty)
        .iter()
        .map(|row| {
            let cells = row.get("cells").and_then(Value::as_array);
            let mut out: Vec<String> = shown
                .iter()
                .map(|&i| {
                    let text = cells
                        .and_then(|c| c.get(i))
                        .map(cell_text)
                        .unwrap_or_default();
                    match &layout.name_prefix {
                        Some(prefix) if i == name_idx => format!("{prefix}{text}"),
                        _ => text,
                    }
                })
                .collect();
            if layout.namespace_column {
                let ns = row
                    .pointer("/object/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                out.insert(0, ns.to_string());
            }
            out
        })
        .collect();
    (header, rows)
}

/// One table cell as kubectl prints it.
pub fn cell_text(cell: &Value) -> String {
    match cell {
        Value::String(s) => s.clone(),
        Value::Null => "<none>".into(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// Objects as `kubectl get -o json` prints them: 4-space indent.
pub fn to_json(value: &Value) -> Result<String> {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    value.serialize(&mut ser).context("encoding JSON")?;
    let mut text = String::from_utf8(buf).context("encoding JSON")?;
    text.push('\n');
    Ok(text)
}

/// Objects as YAML (keys sorted, as kubectl's are).
pub fn to_yaml(value: &Value) -> Result<String> {
    let mut text = serde_saphyr::to_string(value).context("encoding YAML")?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// What `-o yaml|json` prints for several objects: a `v1` `List`.
pub fn list_of(items: Vec<Value>) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": items,
        "metadata": {"resourceVersion": ""},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(rows: &[&[&str]]) -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| r.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn tabwrite_pads_like_kubectl_get() {
        let out = tabwrite(
            &lines(&[
                &["NAME", "READY", "STATUS", "AGE"],
                &["web-1", "0/1", "Pending", "5s"],
                &["a-much-longer-name", "1/1", "Running", "10m"],
            ]),
            GET_MIN_WIDTH,
            GET_PADDING,
        );
        assert_eq!(
            out,
            "NAME                 READY   STATUS    AGE\n\
             web-1                0/1     Pending   5s\n\
             a-much-longer-name   1/1     Running   10m\n"
        );
    }

    #[test]
    fn tabwrite_blocks_end_at_lines_without_cells() {
        let out = tabwrite(
            &lines(&[
                &["Name:", "web"],
                &["Service Account:", "default"],
                &["Containers:"],
                &["  c:", ""],
                &["    Image:", "nginx"],
            ]),
            0,
            DESCRIBE_PADDING,
        );
        assert_eq!(
            out,
            "Name:             web\n\
             Service Account:  default\n\
             Containers:\n  \
             c:        \n    \
             Image:  nginx\n"
        );
    }

    #[test]
    fn table_cells_hide_wide_columns_and_add_namespaces() {
        let table = json!({
            "kind": "Table",
            "columnDefinitions": [
                {"name": "Name", "format": "name", "priority": 0},
                {"name": "Ready", "priority": 0},
                {"name": "IP", "priority": 1},
                {"name": "Restarts", "type": "integer", "priority": 0},
            ],
            "rows": [
                {"cells": ["web", "1/1", "10.0.0.1", 3], "object": {"metadata": {"namespace": "ns1"}}},
                {"cells": ["short"]},
                {"cells": "garbage"},
            ]
        });
        let (header, rows) = table_cells(&table, &TableLayout::default());
        assert_eq!(header, ["NAME", "READY", "RESTARTS"]);
        assert_eq!(rows[0], ["web", "1/1", "3"]);
        assert_eq!(rows[1], ["short", "", ""]);
        assert_eq!(rows[2], ["", "", ""]);
        let layout = TableLayout {
            wide: true,
            namespace_column: true,
            name_prefix: Some("pod/".into()),
        };
        let (header, rows) = table_cells(&table, &layout);
        assert_eq!(header, ["NAMESPACE", "NAME", "READY", "IP", "RESTARTS"]);
        assert_eq!(rows[0], ["ns1", "pod/web", "1/1", "10.0.0.1", "3"]);
        assert_eq!(table_cells(&json!(null), &layout).1.len(), 0);
    }

    #[test]
    fn json_and_yaml_shapes() {
        let v = json!({"b": {"c": [1, "two"]}, "a": true});
        assert_eq!(
            to_json(&v).unwrap(),
            "{\n    \"a\": true,\n    \"b\": {\n        \"c\": [\n            1,\n            \"two\"\n        ]\n    }\n}\n"
        );
        let yaml = to_yaml(&v).unwrap();
        let back: Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(back, v, "{yaml}");
        assert!(yaml.starts_with("a: true\n"), "{yaml}");
    }
}
