//! Printing an answer: its human rendering by default, pretty JSON with
//! `--json`.

use std::fmt::Display;

use serde::Serialize;

/// Prints `value` as JSON (`json`) or as text.
pub fn emit<T: Serialize + Display>(json: bool, value: &T) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        println!("{}", value.to_string().trim_end());
    }
    Ok(())
}

/// Prints a list: one JSON array, or each item's `line`.
pub fn emit_list<T: Serialize>(
    json: bool,
    items: &[T],
    line: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(items)?);
    } else if items.is_empty() {
        println!("(none)");
    } else {
        for item in items {
            println!("{}", line(item));
        }
    }
    Ok(())
}
