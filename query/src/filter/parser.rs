//! Recursive-descent parser for SPEC 3 with the decisions of SPEC 7.

use super::ast::*;
use super::error::ParseError;
use super::lexer::{Tok, Token, lex};

/// Guards against hostile expressions (SPEC 7.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterLimits {
    pub max_length: usize,
    /// Deepest nesting of parentheses, negations and braces; at most [`MAX_DEPTH`]
    /// whatever is set here (parsing, lowering and evaluation recurse on it).
    pub max_depth: usize,
}

/// Runs a step of the recursive descent on a fresh stack segment when little of the
/// current one is left (test threads have 2 MiB, debug frames are large).
fn grow<T>(f: impl FnOnce() -> T) -> T {
    stacker::maybe_grow(128 * 1024, 4 << 20, f)
}

/// The nesting the parser accepts at most, whatever [`FilterLimits::max_depth`] says:
/// deeper expressions would overflow the stack of the threads that walk them.
pub const MAX_DEPTH: usize = 256;

#[cfg(test)]
mod depth_tests {
    #[test]
    fn nesting_is_capped_whatever_the_limit_says() {
        let limits = super::FilterLimits {
            max_length: 1 << 24,
            max_depth: usize::MAX,
        };
        let deep = format!("{}fault{}", "(".repeat(100_000), ")".repeat(100_000));
        let err = super::parse_with(&deep, limits).unwrap_err();
        assert!(err.to_string().contains("256"), "{err}");
        let ok = format!("{}fault{}", "(".repeat(200), ")".repeat(200));
        assert!(super::parse_with(&ok, limits).is_ok());
    }
}

impl Default for FilterLimits {
    fn default() -> Self {
        FilterLimits {
            max_length: 64 * 1024,
            max_depth: 64,
        }
    }
}

/// Where a predicate stands: some keywords are only valid inside braces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Top,
    /// Inside `service(...) { }` or `edge(...) { }`.
    Node,
    /// Inside `rootcause.*.* { }`.
    RootCause(RootCauseKind),
}

/// Keywords SPEC 3.4 allows inside `rootcause.*.* { }`.
const ROOTCAUSE_KEYWORDS: &[&str] = &[
    "name", "type", "message", "inferred", "remote", "first", "last", "index", "coverage",
];

struct Parser<'a> {
    text: &'a str,
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
    limits: FilterLimits,
}

/// Parses a filter expression.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    parse_with(text, FilterLimits::default())
}

pub fn parse_with(text: &str, limits: FilterLimits) -> Result<Expr, ParseError> {
    if text.len() > limits.max_length {
        return Err(ParseError::new(
            text,
            Span::new(floor_char_boundary(text, limits.max_length), text.len()),
            format!(
                "the expression is {} bytes, over the limit of {}",
                text.len(),
                limits.max_length
            ),
        ));
    }
    let toks = lex(text)?;
    if toks.is_empty() {
        return Err(
            ParseError::new(text, Span::new(0, text.len()), "empty filter expression")
                .with_hint("for example: responsetime > 5 AND service(\"api\")"),
        );
    }
    let mut p = Parser {
        text,
        toks,
        pos: 0,
        depth: 0,
        limits,
    };
    let e = p.or_expr(Scope::Top)?;
    if let Some(t) = p.peek() {
        let span = t.span;
        let msg = match &t.tok {
            Tok::RParen => "unbalanced `)`",
            Tok::RBrace => "unbalanced `}`",
            _ => "unexpected text after the expression",
        };
        return Err(ParseError::new(text, span, msg));
    }
    Ok(e)
}

const OTHER_KWS: &[&str] = &[
    "annotation",
    "service",
    "edge",
    "id",
    "group.name",
    "group.arn",
    "rootcause.json",
    "rootcause.fault.service",
    "rootcause.fault.entity",
    "rootcause.fault.exception",
    "rootcause.error.service",
    "rootcause.error.entity",
    "rootcause.error.exception",
    "rootcause.responsetime.service",
    "rootcause.responsetime.entity",
    "rootcause.responsetime.exception",
];

fn is_not(tok: &Tok) -> bool {
    match tok {
        Tok::Not => true,
        Tok::Word(w) => w.eq_ignore_ascii_case("not"),
        _ => false,
    }
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Adds `e` to an OR (or AND) list, splicing in a child of the same kind: `a OR (b OR c)`
/// is `Or[a, b, c]`, so the printed form parses back to the same tree.
fn push_flat(items: &mut Vec<Expr>, e: Expr, or: bool) {
    match e.kind {
        ExprKind::Or(v) if or => items.extend(v),
        ExprKind::And(v) if !or => items.extend(v),
        kind => items.push(Expr { kind, span: e.span }),
    }
}

fn lookup<T: Copy>(all: &[T], name: fn(T) -> &'static str, word: &str) -> Option<T> {
    all.iter()
        .copied()
        .find(|k| name(*k).eq_ignore_ascii_case(word))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The known keyword nearest to `word`, if it is close.
fn nearest_keyword(word: &str) -> Option<&'static str> {
    let w = word.to_ascii_lowercase();
    let all = BoolKw::ALL
        .iter()
        .map(|k| k.name())
        .chain(NumKw::ALL.iter().map(|k| k.name()))
        .chain(StrKw::ALL.iter().map(|k| k.name()))
        .chain(OTHER_KWS.iter().copied());
    let (best, d) = all.map(|k| (k, edit_distance(&w, k))).min_by_key(|x| x.1)?;
    (d <= 2 + w.len() / 6).then_some(best)
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    fn peek_tok(&self) -> Option<&Tok> {
        self.peek().map(|t| &t.tok)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn end_span(&self) -> Span {
        Span::new(self.text.len(), self.text.len())
    }

    fn err_here(&self, msg: impl Into<String>) -> ParseError {
        let span = self.peek().map_or(self.end_span(), |t| t.span);
        ParseError::new(self.text, span, msg)
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<Token, ParseError> {
        match self.peek() {
            Some(t) if t.tok == want => {
                let t = t.clone();
                self.pos += 1;
                Ok(t)
            }
            Some(_) => Err(self.err_here(format!("expected {what}"))),
            None => Err(self.err_here(format!("expected {what}, found the end of the expression"))),
        }
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek_tok(), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
    }

    fn enter(&mut self, span: Span) -> Result<(), ParseError> {
        self.depth += 1;
        let limit = self.limits.max_depth.min(MAX_DEPTH);
        if self.depth > limit {
            return Err(ParseError::new(
                self.text,
                span,
                format!("the expression is nested deeper than the limit of {limit}"),
            ));
        }
        Ok(())
    }

    fn or_expr(&mut self, scope: Scope) -> Result<Expr, ParseError> {
        let mut items = Vec::new();
        push_flat(&mut items, self.and_expr(scope)?, true);
        while self.is_word("or") || self.peek_tok() == Some(&Tok::OrOr) {
            self.next();
            push_flat(&mut items, self.and_expr(scope)?, true);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            let span = items[0].span.to(items[items.len() - 1].span);
            Expr {
                kind: ExprKind::Or(items),
                span,
            }
        })
    }

    fn starts_unary(&self) -> bool {
        match self.peek_tok() {
            None | Some(Tok::RParen | Tok::RBrace) => false,
            Some(Tok::Word(w)) => !w.eq_ignore_ascii_case("or") && !w.eq_ignore_ascii_case("and"),
            Some(Tok::OrOr | Tok::AndAnd) => false,
            Some(_) => true,
        }
    }

    fn and_expr(&mut self, scope: Scope) -> Result<Expr, ParseError> {
        let mut items = Vec::new();
        push_flat(&mut items, self.unary(scope)?, false);
        loop {
            if self.is_word("and") || self.peek_tok() == Some(&Tok::AndAnd) {
                self.next();
                push_flat(&mut items, self.unary(scope)?, false);
            } else if self.starts_unary() {
                // juxtaposition means AND (SPEC 7.2)
                push_flat(&mut items, self.unary(scope)?, false);
            } else {
                break;
            }
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            let span = items[0].span.to(items[items.len() - 1].span);
            Expr {
                kind: ExprKind::And(items),
                span,
            }
        })
    }

    fn unary(&mut self, scope: Scope) -> Result<Expr, ParseError> {
        let Some(t) = self.peek().cloned() else {
            return Err(self.err_here("the expression ends where a condition is expected"));
        };
        match &t.tok {
            // `!` and its synonym `NOT` (SPEC 7.2)
            tok if is_not(tok) => {
                self.next();
                self.enter(t.span)?;
                let inner = grow(|| self.unary(scope))?;
                self.depth -= 1;
                let span = t.span.to(inner.span);
                Ok(Expr {
                    kind: ExprKind::Not(Box::new(inner)),
                    span,
                })
            }
            Tok::LParen => {
                self.next();
                self.enter(t.span)?;
                let inner = grow(|| self.or_expr(scope))?;
                self.depth -= 1;
                let close = match self.peek_tok() {
                    Some(Tok::RParen) => self.next().map_or(t.span, |c| c.span),
                    _ => {
                        return Err(self.err_here("missing `)`").with_hint(format!(
                            "the `(` at position {} is not closed",
                            t.span.start
                        )));
                    }
                };
                Ok(Expr {
                    kind: inner.kind,
                    span: t.span.to(close),
                })
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("or") || w.eq_ignore_ascii_case("and") => {
                Err(ParseError::new(
                    self.text,
                    t.span,
                    format!("expected a condition, found the operator `{w}`"),
                ))
            }
            Tok::OrOr | Tok::AndAnd => Err(ParseError::new(
                self.text,
                t.span,
                "expected a condition, found an operator",
            )),
            Tok::Word(_) => self.predicate(scope),
            Tok::Str(_) => Err(
                ParseError::new(self.text, t.span, "a string cannot stand alone")
                    .with_hint("compare a keyword with it, e.g. http.url CONTAINS \"...\""),
            ),
            Tok::Num(_) => Err(
                ParseError::new(self.text, t.span, "a number cannot stand alone")
                    .with_hint("compare a keyword with it, e.g. responsetime > 5"),
            ),
            _ => Err(ParseError::new(self.text, t.span, "expected a condition")),
        }
    }

    fn value(&mut self) -> Result<(Value, Span), ParseError> {
        match self.next() {
            Some(Token {
                tok: Tok::Str(s),
                span,
            }) => Ok((Value::Str(s), span)),
            Some(Token {
                tok: Tok::Num(n),
                span,
            }) => Ok((Value::Num(n), span)),
            Some(Token {
                tok: Tok::Word(w),
                span,
            }) => {
                if w.eq_ignore_ascii_case("true") {
                    Ok((Value::Bool(true), span))
                } else if w.eq_ignore_ascii_case("false") {
                    Ok((Value::Bool(false), span))
                } else {
                    // a bare word where a value is expected (SPEC 7.3)
                    Ok((Value::Str(w), span))
                }
            }
            Some(t) => Err(ParseError::new(self.text, t.span, "expected a value")),
            None => Err(ParseError::new(
                self.text,
                self.end_span(),
                "expected a value, found the end of the expression",
            )),
        }
    }

    fn string_value(&mut self, what: &str) -> Result<(String, Span), ParseError> {
        match self.next() {
            Some(Token {
                tok: Tok::Str(s),
                span,
            }) => Ok((s, span)),
            Some(Token {
                tok: Tok::Word(w),
                span,
            }) => Ok((w, span)),
            // a bare word of digits (`name = 404`, `account.id: 123456789012`), as written
            Some(Token {
                tok: Tok::Num(_),
                span,
            }) => Ok((self.text[span.start..span.end].to_owned(), span)),
            Some(t) => Err(
                ParseError::new(self.text, t.span, format!("{what} takes a string"))
                    .with_hint("put the value in double quotes"),
            ),
            None => Err(ParseError::new(
                self.text,
                self.end_span(),
                format!("{what} needs a string value"),
            )),
        }
    }

    fn cmp_op(&mut self) -> Option<CmpOp> {
        let op = match self.peek_tok()? {
            Tok::Eq => CmpOp::Eq,
            Tok::Ne => CmpOp::Ne,
            Tok::Lt => CmpOp::Lt,
            Tok::Le => CmpOp::Le,
            Tok::Gt => CmpOp::Gt,
            Tok::Ge => CmpOp::Ge,
            _ => return None,
        };
        self.next();
        Some(op)
    }

    fn str_op(&mut self) -> Option<StrOp> {
        let op = match self.peek_tok()? {
            Tok::Eq => StrOp::Eq,
            Tok::Ne => StrOp::Ne,
            Tok::Word(w) if w.eq_ignore_ascii_case("contains") => StrOp::Contains,
            Tok::Word(w) if w.eq_ignore_ascii_case("beginswith") => StrOp::BeginsWith,
            Tok::Word(w) if w.eq_ignore_ascii_case("endswith") => StrOp::EndsWith,
            _ => return None,
        };
        self.next();
        Some(op)
    }

    fn predicate(&mut self, scope: Scope) -> Result<Expr, ParseError> {
        let Some(Token {
            tok: Tok::Word(word),
            span,
        }) = self.next()
        else {
            return Err(self.err_here("expected a keyword"));
        };
        let lower = word.to_ascii_lowercase();
        if matches!(scope, Scope::RootCause(_)) && !ROOTCAUSE_KEYWORDS.contains(&lower.as_str()) {
            return Err(ParseError::new(
                self.text,
                span,
                format!("`{word}` is not valid inside rootcause braces"),
            )
            .with_hint(format!("use {}", ROOTCAUSE_KEYWORDS.join(", "))));
        }
        let pred = |p: Pred, end: Span| Expr {
            kind: ExprKind::Pred(p),
            span: span.to(end),
        };

        if let Some(kw) = lookup(BoolKw::ALL, BoolKw::name, &lower) {
            match kw {
                BoolKw::Root if scope != Scope::Node => {
                    return Err(ParseError::new(
                        self.text,
                        span,
                        "`root` is only valid inside service(...) { } or edge(...) { }",
                    ));
                }
                BoolKw::First | BoolKw::Last | BoolKw::Remote
                    if !matches!(scope, Scope::RootCause(_)) =>
                {
                    return Err(ParseError::new(
                        self.text,
                        span,
                        format!("`{lower}` is only valid inside rootcause.*.* {{ }}"),
                    ));
                }
                _ => {}
            }
            let negate = match self.peek_tok() {
                Some(Tok::Eq) => false,
                Some(Tok::Ne) => true,
                _ => return Ok(pred(Pred::Bool { kw, value: true }, span)),
            };
            self.next();
            let (v, vspan) = self.value()?;
            let Value::Bool(b) = v else {
                return Err(ParseError::new(
                    self.text,
                    vspan,
                    format!("`{lower}` compares with true or false"),
                ));
            };
            return Ok(pred(
                Pred::Bool {
                    kw,
                    value: b != negate,
                },
                vspan,
            ));
        }
        if let Some(kw) = lookup(NumKw::ALL, NumKw::name, &lower) {
            if kw == NumKw::Coverage
                && matches!(scope, Scope::RootCause(k) if k != RootCauseKind::ResponseTime)
            {
                return Err(ParseError::new(
                    self.text,
                    span,
                    "`coverage` applies to response-time root causes only (rootcause.responsetime.*)",
                ));
            }
            if matches!(kw, NumKw::Index | NumKw::Coverage) && !matches!(scope, Scope::RootCause(_))
            {
                return Err(ParseError::new(
                    self.text,
                    span,
                    format!("`{lower}` is only valid inside rootcause.*.* {{ }}"),
                ));
            }
            let Some(op) = self.cmp_op() else {
                return Err(
                    self.err_here(format!("`{lower}` needs a comparison, e.g. {lower} > 5"))
                );
            };
            let (v, vspan) = self.value()?;
            let Value::Num(n) = v else {
                return Err(ParseError::new(
                    self.text,
                    vspan,
                    format!("`{lower}` compares with a number"),
                ));
            };
            return Ok(pred(Pred::Num { kw, op, value: n }, vspan));
        }
        if let Some(kw) = lookup(StrKw::ALL, StrKw::name, &lower) {
            if kw == StrKw::Message && !matches!(scope, Scope::RootCause(_)) {
                return Err(ParseError::new(
                    self.text,
                    span,
                    "`message` is only valid inside rootcause.*.* { }",
                ));
            }
            let Some(op) = self.str_op() else {
                return Ok(pred(Pred::StrSet { kw }, span));
            };
            let (v, vspan) = self.string_value(&format!("`{lower}`"))?;
            return Ok(pred(Pred::Str { kw, op, value: v }, vspan));
        }
        if lower == "annotation" || lower.starts_with("annotation.") {
            if scope == Scope::Node {
                return Err(ParseError::new(
                    self.text,
                    span,
                    "annotations are not allowed inside service or edge braces",
                )
                .with_hint("move the annotation condition outside the braces"));
            }
            let (key, kspan) = if lower == "annotation" {
                self.expect(
                    Tok::LBracket,
                    "`[` after annotation (annotation[KEY] or annotation.KEY)",
                )?;
                let k = self.string_value("annotation[...]")?;
                let close = self.expect(Tok::RBracket, "`]`")?;
                (k.0, close.span)
            } else {
                let key = &word["annotation.".len()..];
                if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(ParseError::new(
                        self.text,
                        span,
                        format!("annotation.KEY takes letters, digits and _ only, not {key:?}"),
                    )
                    .with_hint(format!("write annotation[\"{key}\"]")));
                }
                (key.to_owned(), span)
            };
            if key.is_empty() {
                return Err(ParseError::new(self.text, span, "annotation key is empty"));
            }
            if let Some(op) = self.str_op() {
                if matches!(op, StrOp::Contains | StrOp::BeginsWith | StrOp::EndsWith) {
                    let (v, vspan) = self.string_value("a string operator")?;
                    return Ok(pred(
                        Pred::Annotation {
                            key,
                            cmp: None,
                            str_op: Some((op, v)),
                        },
                        vspan,
                    ));
                }
                let cmp = if op == StrOp::Eq {
                    CmpOp::Eq
                } else {
                    CmpOp::Ne
                };
                let (v, vspan) = self.value()?;
                return Ok(pred(
                    Pred::Annotation {
                        key,
                        cmp: Some((cmp, v)),
                        str_op: None,
                    },
                    vspan,
                ));
            }
            if let Some(op) = self.cmp_op() {
                let (v, vspan) = self.value()?;
                return Ok(pred(
                    Pred::Annotation {
                        key,
                        cmp: Some((op, v)),
                        str_op: None,
                    },
                    vspan,
                ));
            }
            return Ok(pred(
                Pred::Annotation {
                    key,
                    cmp: None,
                    str_op: None,
                },
                kspan,
            ));
        }
        if scope == Scope::Node
            && matches!(
                lower.as_str(),
                "group.name" | "group.arn" | "service" | "edge"
            )
        {
            return Err(ParseError::new(
                self.text,
                span,
                format!("`{lower}` is not valid inside service or edge braces"),
            )
            .with_hint("move it outside the braces"));
        }
        if lower == "group.name" || lower == "group.arn" {
            self.expect(Tok::Eq, &format!("`=` after {lower}"))?;
            let (v, vspan) = self.string_value(&lower)?;
            return Ok(pred(
                Pred::Group {
                    arn: lower == "group.arn",
                    value: v,
                },
                vspan,
            ));
        }
        if lower == "service" {
            self.expect(Tok::LParen, "`(` after service")?;
            let svc = if self.peek_tok() == Some(&Tok::RParen) {
                None
            } else {
                Some(self.service_ref()?)
            };
            let close = self.expect(Tok::RParen, "`)` closing service(...)")?;
            let svc = svc.filter(|s| s.by_id || s.name.as_deref().is_some_and(|n| !n.is_empty()));
            let (body, end) = self.braces(Scope::Node, close.span)?;
            return Ok(pred(Pred::Service { svc, body }, end));
        }
        if lower == "edge" {
            self.expect(Tok::LParen, "`(` after edge")?;
            let from = self.service_ref()?;
            self.expect(Tok::Comma, "`,` between the two services of edge(a, b)")?;
            let to = self.service_ref()?;
            let close = self.expect(Tok::RParen, "`)` closing edge(...)")?;
            let (body, end) = self.braces(Scope::Node, close.span)?;
            return Ok(pred(Pred::Edge { from, to, body }, end));
        }
        if lower == "rootcause.json" || lower == "json" {
            if scope != Scope::Top {
                return Err(ParseError::new(
                    self.text,
                    span,
                    "rootcause keywords cannot be nested in braces",
                ));
            }
            self.expect(Tok::Eq, "`=` after rootcause.json")?;
            return match self.next() {
                Some(Token {
                    tok: Tok::JsonLiteral(j),
                    span: js,
                }) => {
                    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&j) {
                        Ok(_) => Ok(pred(
                            Pred::RootCauseJson {
                                json: j.trim().to_owned(),
                            },
                            js,
                        )),
                        Err(e) => Err(ParseError::new(
                            self.text,
                            js,
                            format!("rootcause.json takes a JSON object: {e}"),
                        )),
                    }
                }
                Some(t) => Err(ParseError::new(
                    self.text,
                    t.span,
                    "rootcause.json takes a #[ {...} ] literal",
                )),
                None => Err(ParseError::new(
                    self.text,
                    self.end_span(),
                    "rootcause.json takes a #[ {...} ] literal",
                )),
            };
        }
        if let Some(rest) = lower.strip_prefix("rootcause.") {
            let mut parts = rest.split('.');
            let kind = match parts.next() {
                Some("fault") => Some(RootCauseKind::Fault),
                Some("error") => Some(RootCauseKind::Error),
                Some("responsetime") => Some(RootCauseKind::ResponseTime),
                _ => None,
            };
            let level = match parts.next() {
                Some("service") => Some(RootCauseLevel::Service),
                Some("entity") => Some(RootCauseLevel::Entity),
                Some("exception") => Some(RootCauseLevel::Exception),
                _ => None,
            };
            if let (Some(kind), Some(level), None) = (kind, level, parts.next()) {
                if scope != Scope::Top {
                    return Err(ParseError::new(
                        self.text,
                        span,
                        "rootcause keywords cannot be nested in braces",
                    ));
                }
                let open = self.expect(Tok::LBrace, &format!("`{{` after {lower}"))?;
                let (body, end) = self.braces(Scope::RootCause(kind), open.span)?;
                let body =
                    body.ok_or_else(|| ParseError::new(self.text, open.span, "empty braces"))?;
                return Ok(pred(Pred::RootCause { kind, level, body }, end));
            }
        }
        let mut e = ParseError::new(self.text, span, format!("unknown keyword `{word}`"));
        if let Some(n) = nearest_keyword(&word) {
            e = e.with_hint(format!("did you mean `{n}`?"));
        }
        Err(e)
    }

    /// Optional `{ expr }` after service/edge (or mandatory after rootcause, whose `{`
    /// the caller consumed: then `open` is that brace).
    fn braces(
        &mut self,
        scope: Scope,
        after: Span,
    ) -> Result<(Option<Box<Expr>>, Span), ParseError> {
        if scope == Scope::Node {
            if self.peek_tok() != Some(&Tok::LBrace) {
                return Ok((None, after));
            }
            self.next();
        }
        self.enter(after)?;
        let inner = grow(|| self.or_expr(scope))?;
        self.depth -= 1;
        let close = self.expect(Tok::RBrace, "`}`")?;
        Ok((Some(Box::new(inner)), close.span))
    }

    fn service_ref(&mut self) -> Result<ServiceRef, ParseError> {
        if self.is_word("id") && self.toks.get(self.pos + 1).map(|t| &t.tok) == Some(&Tok::LParen) {
            self.next();
            self.next();
            let mut r = ServiceRef {
                by_id: true,
                ..Default::default()
            };
            loop {
                let Some(Token {
                    tok: Tok::Word(k),
                    span,
                }) = self.next()
                else {
                    return Err(self.err_here("id(...) takes name:, type: or account.id:"));
                };
                // `name:` and `name:api` lex as one word (`:` is a word character)
                let (key, inline) = match k.split_once(':') {
                    Some((key, rest)) => (key.to_ascii_lowercase(), Some(rest.to_owned())),
                    None => (k.to_ascii_lowercase(), None),
                };
                let v = match inline {
                    Some(rest) if !rest.is_empty() => rest,
                    Some(_) => self.string_value(&format!("id({key}: ...)"))?.0,
                    None => {
                        self.expect(Tok::Colon, "`:` after the id(...) field name")?;
                        self.string_value(&format!("id({key}: ...)"))?.0
                    }
                };
                match key.as_str() {
                    "name" => r.name = Some(v),
                    "type" => r.kind = Some(v),
                    "account.id" => r.account_id = Some(v),
                    _ => {
                        return Err(ParseError::new(
                            self.text,
                            span,
                            format!("id(...) has no field `{key}`"),
                        )
                        .with_hint("use name:, type: or account.id:"));
                    }
                }
                match self.next() {
                    Some(Token {
                        tok: Tok::Comma, ..
                    }) => continue,
                    Some(Token {
                        tok: Tok::RParen, ..
                    }) => break,
                    Some(t) => {
                        return Err(ParseError::new(
                            self.text,
                            t.span,
                            "expected `,` or `)` in id(...)",
                        ));
                    }
                    None => {
                        return Err(ParseError::new(
                            self.text,
                            self.end_span(),
                            "id(...) is not closed",
                        ));
                    }
                }
            }
            return Ok(r);
        }
        let (name, _) = self.string_value("a service")?;
        Ok(ServiceRef {
            name: Some(name),
            ..Default::default()
        })
    }
}
