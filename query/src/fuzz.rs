//! The filter-expression fuzz target's body.
//!
//! Arbitrary text is parsed and lowered; whatever parses must print as an expression
//! that parses back to the same print (the printer is a fixpoint), and lowering must
//! answer with a filter or an error, never a panic or a stack overflow. `fuzz/` runs it
//! under libFuzzer; the tests replay `fuzz/corpus/filter/`.

use crate::filter::{FilterLimits, MAX_DEPTH, parse_with};
use crate::lower::{NoGroups, compile};

/// What the body found wrong.
pub type Outcome = std::result::Result<(), String>;

/// Parses, prints, re-parses and lowers `data` (as UTF-8; other bytes are skipped).
pub fn filter(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let limits = FilterLimits::default();
    let Ok(ast) = parse_with(text, limits) else {
        return Ok(());
    };
    let printed = ast.to_string();
    // The print may be longer than the text (`annotation.k` prints as `annotation["k"]`).
    let relaxed = FilterLimits {
        max_length: usize::MAX,
        max_depth: MAX_DEPTH,
    };
    let again = parse_with(&printed, relaxed)
        .map_err(|e| format!("{text:?} printed as {printed:?}, which does not parse: {e}"))?;
    if again.to_string() != printed {
        return Err(format!(
            "{text:?} printed as {printed:?}, which prints as {:?}",
            again.to_string()
        ));
    }
    let _ = compile(text, &limits, &NoGroups);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn filter_corpus() {
        tracelake_storage::fuzz::replay("filter", super::filter).unwrap();
    }
}
