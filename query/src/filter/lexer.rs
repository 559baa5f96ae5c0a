//! Tokens of the X-Ray filter language, with byte spans.

use super::ast::Span;
use super::error::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A word: letters, digits, `_ - . :` (keywords, dotted keywords, bare values).
    Word(String),
    Str(String),
    Num(f64),
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Not,
    AndAnd,
    OrOr,
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Comma,
    Colon,
    /// `#[ ... ]`: the raw JSON text between the brackets (rootcause.json).
    JsonLiteral(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) span: Span,
}

fn is_word_start(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')
}

/// Splits `text` into tokens.
pub(crate) fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let end_of = |i: usize| chars.get(i).map_or(text.len(), |c| c.0);
    let mut i = 0;
    while i < chars.len() {
        let (start, c) = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let single = |tok: Tok, n: usize| Token {
            tok,
            span: Span::new(start, end_of(i + n)),
        };
        let (token, next) = match c {
            '=' => (single(Tok::Eq, 1), i + 1),
            '!' if chars.get(i + 1).map(|c| c.1) == Some('=') => (single(Tok::Ne, 2), i + 2),
            '!' => (single(Tok::Not, 1), i + 1),
            '<' if chars.get(i + 1).map(|c| c.1) == Some('=') => (single(Tok::Le, 2), i + 2),
            '<' => (single(Tok::Lt, 1), i + 1),
            '>' if chars.get(i + 1).map(|c| c.1) == Some('=') => (single(Tok::Ge, 2), i + 2),
            '>' => (single(Tok::Gt, 1), i + 1),
            '&' if chars.get(i + 1).map(|c| c.1) == Some('&') => (single(Tok::AndAnd, 2), i + 2),
            '|' if chars.get(i + 1).map(|c| c.1) == Some('|') => (single(Tok::OrOr, 2), i + 2),
            '(' => (single(Tok::LParen, 1), i + 1),
            ')' => (single(Tok::RParen, 1), i + 1),
            '{' => (single(Tok::LBrace, 1), i + 1),
            '}' => (single(Tok::RBrace, 1), i + 1),
            '[' => (single(Tok::LBracket, 1), i + 1),
            ']' => (single(Tok::RBracket, 1), i + 1),
            ',' => (single(Tok::Comma, 1), i + 1),
            ':' => (single(Tok::Colon, 1), i + 1),
            '\'' => {
                return Err(ParseError::new(
                    text,
                    Span::new(start, end_of(i + 1)),
                    "single quotes do not delimit strings",
                )
                .with_hint("use double quotes: \"value\""));
            }
            '"' => {
                let mut s = String::new();
                let mut j = i + 1;
                loop {
                    match chars.get(j).map(|c| c.1) {
                        None => {
                            return Err(ParseError::new(
                                text,
                                Span::new(start, text.len()),
                                "unterminated string",
                            )
                            .with_hint("close the string with a double quote"));
                        }
                        Some('"') => break,
                        Some('\\') => match chars.get(j + 1).map(|c| c.1) {
                            Some(e @ ('"' | '\\')) => {
                                s.push(e);
                                j += 2;
                            }
                            _ => {
                                return Err(ParseError::new(
                                    text,
                                    Span::new(chars[j].0, end_of(j + 2)),
                                    "unknown escape in a string",
                                )
                                .with_hint("only \\\" and \\\\ are escapes"));
                            }
                        },
                        Some(ch) => {
                            s.push(ch);
                            j += 1;
                        }
                    }
                }
                (
                    Token {
                        tok: Tok::Str(s),
                        span: Span::new(start, end_of(j + 1)),
                    },
                    j + 1,
                )
            }
            '#' if chars.get(i + 1).map(|c| c.1) == Some('[') => {
                // raw JSON up to the matching `]`, honouring strings
                let mut depth = 0i32;
                let mut j = i + 1;
                let mut in_str = false;
                loop {
                    let Some(&(_, ch)) = chars.get(j) else {
                        return Err(ParseError::new(
                            text,
                            Span::new(start, text.len()),
                            "unterminated #[ ... ]",
                        )
                        .with_hint("close the JSON literal with ]"));
                    };
                    if in_str {
                        if ch == '\\' {
                            j += 1;
                        } else if ch == '"' {
                            in_str = false;
                        }
                    } else if ch == '"' {
                        in_str = true;
                    } else if ch == '[' {
                        depth += 1;
                    } else if ch == ']' {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    j += 1;
                }
                let inner = &text[end_of(i + 2)..chars[j].0];
                (
                    Token {
                        tok: Tok::JsonLiteral(inner.to_owned()),
                        span: Span::new(start, end_of(j + 1)),
                    },
                    j + 1,
                )
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+' || c == '.')
                    && chars
                        .get(i + 1)
                        .is_some_and(|n| n.1.is_ascii_digit() || n.1 == '.')) =>
            {
                let mut j = i + 1;
                while let Some(&(_, ch)) = chars.get(j) {
                    let prev = chars[j - 1].1;
                    if ch.is_ascii_digit()
                        || ch == '.'
                        || ch == 'e'
                        || ch == 'E'
                        || ((ch == '-' || ch == '+') && (prev == 'e' || prev == 'E'))
                    {
                        j += 1;
                    } else {
                        break;
                    }
                }
                let lit = &text[start..end_of(j)];
                // a number directly followed by word characters is a bare word (`5xx`)
                if chars.get(j).is_some_and(|c| is_word_char(c.1)) {
                    let mut k = j;
                    while chars.get(k).is_some_and(|c| is_word_char(c.1)) {
                        k += 1;
                    }
                    (
                        Token {
                            tok: Tok::Word(text[start..end_of(k)].to_owned()),
                            span: Span::new(start, end_of(k)),
                        },
                        k,
                    )
                } else {
                    match lit.parse::<f64>() {
                        Ok(v) if v.is_finite() => (
                            Token {
                                tok: Tok::Num(v),
                                span: Span::new(start, end_of(j)),
                            },
                            j,
                        ),
                        // `10.0.0.1`: digits and dots that are no number are a bare word
                        Err(_) if c.is_ascii_digit() && !lit.contains(['e', 'E']) => (
                            Token {
                                tok: Tok::Word(lit.to_owned()),
                                span: Span::new(start, end_of(j)),
                            },
                            j,
                        ),
                        _ => {
                            return Err(ParseError::new(
                                text,
                                Span::new(start, end_of(j)),
                                "not a number",
                            ));
                        }
                    }
                }
            }
            c if is_word_start(c) => {
                let mut j = i + 1;
                while chars.get(j).is_some_and(|c| is_word_char(c.1)) {
                    j += 1;
                }
                (
                    Token {
                        tok: Tok::Word(text[start..end_of(j)].to_owned()),
                        span: Span::new(start, end_of(j)),
                    },
                    j,
                )
            }
            other => {
                return Err(ParseError::new(
                    text,
                    Span::new(start, end_of(i + 1)),
                    format!("unexpected character {other:?}"),
                ));
            }
        };
        out.push(token);
        i = next;
    }
    Ok(out)
}
