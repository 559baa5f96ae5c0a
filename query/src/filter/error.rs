//! Parse errors that show the expression, a caret under the position and a hint.

use std::fmt;

use super::ast::Span;

/// A filter expression that does not parse.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub message: String,
    pub span: Span,
    pub hint: Option<String>,
    /// The expression, for rendering.
    pub text: String,
}

impl ParseError {
    pub(crate) fn new(text: &str, span: Span, message: impl Into<String>) -> Self {
        ParseError {
            message: message.into(),
            span,
            hint: None,
            text: text.to_owned(),
        }
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Byte offset where the problem starts.
    pub fn position(&self) -> usize {
        self.span.start
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} at position {}", self.message, self.span.start)?;
        // Show the expression on one line with a caret under the span.
        let line: String = self
            .text
            .chars()
            .map(|c| if c == '\n' || c == '\t' { ' ' } else { c })
            .collect();
        writeln!(f, "  {line}")?;
        let pad = self.text[..self.span.start.min(self.text.len())]
            .chars()
            .count();
        let width = self.text
            [self.span.start.min(self.text.len())..self.span.end.min(self.text.len())]
            .chars()
            .count();
        write!(f, "  {}{}", " ".repeat(pad), "^".repeat(width.max(1)))?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}
