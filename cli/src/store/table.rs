//! Plain-text tables for the `list` commands: columns padded to their widest cell, no
//! borders, so that `grep`, `awk` and `column` work on them.

use crate::outcome::{Failure, print};

/// Prints `rows` under `headers`, each column as wide as its widest cell (in characters), two
/// spaces apart; the last column is not padded. Empty cells are shown as `-`, so that every
/// row has as many words as columns.
pub(crate) fn print_table(headers: &[&str], rows: &[Vec<String>]) -> Result<(), Failure> {
    for line in render(headers, rows) {
        print(&line)?;
    }
    Ok(())
}

fn render(headers: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let cell = |text: &str| -> String {
        if text.is_empty() {
            "-".to_owned()
        } else {
            text.to_owned()
        }
    };
    let all: Vec<Vec<String>> = std::iter::once(headers.iter().map(|h| cell(h)).collect())
        .chain(rows.iter().map(|row| row.iter().map(|c| cell(c)).collect()))
        .collect();
    let mut widths = vec![0; headers.len()];
    for row in &all {
        for (width, text) in widths.iter_mut().zip(row) {
            *width = (*width).max(text.chars().count());
        }
    }
    all.iter()
        .map(|row| {
            let mut line = String::new();
            for (index, text) in row.iter().enumerate() {
                if index + 1 == row.len() {
                    line.push_str(text);
                } else {
                    let pad = widths[index] - text.chars().count();
                    line.push_str(text);
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_and_empty_cells_marked() {
        let lines = render(
            &["NAME", "ROLE", "SCOPES"],
            &[
                vec!["alice".into(), "admin".into(), "*".into()],
                vec![
                    "b\u{e9}".into(),
                    String::new(),
                    "data:read data:write".into(),
                ],
            ],
        );
        assert_eq!(
            lines,
            [
                "NAME   ROLE   SCOPES",
                "alice  admin  *",
                "b\u{e9}     -      data:read data:write",
            ]
        );
    }
}
