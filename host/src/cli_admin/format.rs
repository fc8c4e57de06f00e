//! How the admin commands print: aligned tables and plain-text cells.

use serde_json::Value;

/// Left-aligned columns two spaces apart, with a header row.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A JSON value as plain text: strings unquoted, null empty.
pub(super) fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) fn cut(s: &str, max: usize) -> String {
    let one_line = s.replace('\n', " ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    one_line.chars().take(max - 1).collect::<String>() + "…"
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SSZ` (UTC).
pub(super) fn time(value: &Value) -> String {
    let Some(ms) = value.as_i64() else {
        return String::new();
    };
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(at)
        .to_string()
        .replacen('T', " ", 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_columns() {
        let out = table(
            &["ID", "NAME"],
            vec![
                vec!["a".into(), "payments".into()],
                vec!["abcdef".into(), "x".into()],
            ],
        );
        assert_eq!(out, "ID      NAME\na       payments\nabcdef  x\n");
    }

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time(&json!(0)), "1970-01-01 00:00:00Z");
        assert_eq!(time(&json!(1_764_089_101_000_i64)), "2025-11-25 16:45:01Z");
        assert_eq!(time(&json!(951_782_400_000_i64)), "2000-02-29 00:00:00Z");
        assert_eq!(time(&Value::Null), "");
    }

    #[test]
    fn text_and_cut() {
        assert_eq!(text(&json!("a")), "a");
        assert_eq!(text(&json!(3)), "3");
        assert_eq!(text(&Value::Null), "");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("ab\ncd", 10), "ab cd");
    }
}
