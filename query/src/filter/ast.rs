//! The filter-expression AST (no schema knowledge) and its printer.

use std::fmt;

/// A byte range of the expression text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }
    pub(crate) fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// A node with its source span.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Pred(Pred),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BoolKw {
    Ok,
    Error,
    Throttle,
    Fault,
    Partial,
    Inferred,
    First,
    Last,
    Remote,
    Root,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NumKw {
    ResponseTime,
    Duration,
    HttpStatus,
    Index,
    Coverage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrKw {
    HttpUrl,
    HttpMethod,
    HttpUserAgent,
    HttpClientIp,
    User,
    Name,
    Type,
    Message,
    AvailabilityZone,
    InstanceId,
    ResourceArn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrOp {
    Eq,
    Ne,
    Contains,
    BeginsWith,
    EndsWith,
}

/// A literal on the right of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Num(f64),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RootCauseKind {
    Fault,
    Error,
    ResponseTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RootCauseLevel {
    Service,
    Entity,
    Exception,
}

/// `"name"` or `id(name: ..., type: ..., account.id: ...)`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceRef {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub account_id: Option<String>,
    /// Written with `id(...)`.
    pub by_id: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Pred {
    /// `ok`, `error = true`, `fault != false`, ... (`value` false for `kw = false`).
    Bool {
        kw: BoolKw,
        value: bool,
    },
    Num {
        kw: NumKw,
        op: CmpOp,
        value: f64,
    },
    Str {
        kw: StrKw,
        op: StrOp,
        value: String,
    },
    /// A bare string keyword: the field is set.
    StrSet {
        kw: StrKw,
    },
    /// `annotation.KEY` / `annotation[KEY]`: present, or compared.
    Annotation {
        key: String,
        cmp: Option<(CmpOp, Value)>,
        str_op: Option<(StrOp, String)>,
    },
    Group {
        arn: bool,
        value: String,
    },
    Service {
        svc: Option<ServiceRef>,
        body: Option<Box<Expr>>,
    },
    Edge {
        from: ServiceRef,
        to: ServiceRef,
        body: Option<Box<Expr>>,
    },
    RootCause {
        kind: RootCauseKind,
        level: RootCauseLevel,
        body: Box<Expr>,
    },
    RootCauseJson {
        json: String,
    },
}

impl BoolKw {
    pub const ALL: &[BoolKw] = &[
        BoolKw::Ok,
        BoolKw::Error,
        BoolKw::Throttle,
        BoolKw::Fault,
        BoolKw::Partial,
        BoolKw::Inferred,
        BoolKw::First,
        BoolKw::Last,
        BoolKw::Remote,
        BoolKw::Root,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BoolKw::Ok => "ok",
            BoolKw::Error => "error",
            BoolKw::Throttle => "throttle",
            BoolKw::Fault => "fault",
            BoolKw::Partial => "partial",
            BoolKw::Inferred => "inferred",
            BoolKw::First => "first",
            BoolKw::Last => "last",
            BoolKw::Remote => "remote",
            BoolKw::Root => "root",
        }
    }
}

impl NumKw {
    pub const ALL: &[NumKw] = &[
        NumKw::ResponseTime,
        NumKw::Duration,
        NumKw::HttpStatus,
        NumKw::Index,
        NumKw::Coverage,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NumKw::ResponseTime => "responsetime",
            NumKw::Duration => "duration",
            NumKw::HttpStatus => "http.status",
            NumKw::Index => "index",
            NumKw::Coverage => "coverage",
        }
    }
}

impl StrKw {
    pub const ALL: &[StrKw] = &[
        StrKw::HttpUrl,
        StrKw::HttpMethod,
        StrKw::HttpUserAgent,
        StrKw::HttpClientIp,
        StrKw::User,
        StrKw::Name,
        StrKw::Type,
        StrKw::Message,
        StrKw::AvailabilityZone,
        StrKw::InstanceId,
        StrKw::ResourceArn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StrKw::HttpUrl => "http.url",
            StrKw::HttpMethod => "http.method",
            StrKw::HttpUserAgent => "http.useragent",
            StrKw::HttpClientIp => "http.clientip",
            StrKw::User => "user",
            StrKw::Name => "name",
            StrKw::Type => "type",
            StrKw::Message => "message",
            StrKw::AvailabilityZone => "availabilityzone",
            StrKw::InstanceId => "instance.id",
            StrKw::ResourceArn => "resource.arn",
        }
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        })
    }
}

impl fmt::Display for StrOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StrOp::Eq => "=",
            StrOp::Ne => "!=",
            StrOp::Contains => "CONTAINS",
            StrOp::BeginsWith => "BEGINSWITH",
            StrOp::EndsWith => "ENDSWITH",
        })
    }
}

fn quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

fn num(f: &mut fmt::Formatter<'_>, v: f64) -> fmt::Result {
    write!(f, "{v}")
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => quoted(f, s),
            Value::Num(v) => num(f, *v),
            Value::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.by_id {
            return quoted(f, self.name.as_deref().unwrap_or_default());
        }
        f.write_str("id(")?;
        let mut first = true;
        for (k, v) in [
            ("name", &self.name),
            ("type", &self.kind),
            ("account.id", &self.account_id),
        ] {
            if let Some(v) = v {
                if !first {
                    f.write_str(", ")?;
                }
                first = false;
                write!(f, "{k}: ")?;
                quoted(f, v)?;
            }
        }
        f.write_str(")")
    }
}

/// Prints the canonical form: parenthesised where precedence needs it, keywords lower
/// case, operators upper case. `parse(print(e))` gives `e` back (spans aside).
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ExprKind::Or(items) => {
                for (i, e) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" OR ")?;
                    }
                    write!(f, "{e}")?;
                }
                Ok(())
            }
            ExprKind::And(items) => {
                for (i, e) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" AND ")?;
                    }
                    if matches!(e.kind, ExprKind::Or(_)) {
                        write!(f, "({e})")?;
                    } else {
                        write!(f, "{e}")?;
                    }
                }
                Ok(())
            }
            ExprKind::Not(e) => match e.kind {
                ExprKind::Pred(_) | ExprKind::Not(_) => write!(f, "!{e}"),
                _ => write!(f, "!({e})"),
            },
            ExprKind::Pred(p) => write!(f, "{p}"),
        }
    }
}

impl fmt::Display for Pred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = |f: &mut fmt::Formatter<'_>, b: &Option<Box<Expr>>| match b {
            Some(b) => write!(f, " {{ {b} }}"),
            None => Ok(()),
        };
        match self {
            Pred::Bool { kw, value: true } => f.write_str(kw.name()),
            Pred::Bool { kw, value: false } => write!(f, "{} = false", kw.name()),
            Pred::Num { kw, op, value } => {
                write!(f, "{} {op} ", kw.name())?;
                num(f, *value)
            }
            Pred::Str { kw, op, value } => {
                write!(f, "{} {op} ", kw.name())?;
                quoted(f, value)
            }
            Pred::StrSet { kw } => f.write_str(kw.name()),
            Pred::Annotation { key, cmp, str_op } => {
                f.write_str("annotation[")?;
                quoted(f, key)?;
                f.write_str("]")?;
                if let Some((op, v)) = cmp {
                    write!(f, " {op} {v}")?;
                }
                if let Some((op, v)) = str_op {
                    write!(f, " {op} ")?;
                    quoted(f, v)?;
                }
                Ok(())
            }
            Pred::Group { arn, value } => {
                f.write_str(if *arn {
                    "group.arn = "
                } else {
                    "group.name = "
                })?;
                quoted(f, value)
            }
            Pred::Service { svc, body: b } => {
                f.write_str("service(")?;
                if let Some(s) = svc {
                    write!(f, "{s}")?;
                }
                f.write_str(")")?;
                body(f, b)
            }
            Pred::Edge { from, to, body: b } => {
                write!(f, "edge({from}, {to})")?;
                body(f, b)
            }
            Pred::RootCause { kind, level, body } => {
                let k = match kind {
                    RootCauseKind::Fault => "fault",
                    RootCauseKind::Error => "error",
                    RootCauseKind::ResponseTime => "responsetime",
                };
                let l = match level {
                    RootCauseLevel::Service => "service",
                    RootCauseLevel::Entity => "entity",
                    RootCauseLevel::Exception => "exception",
                };
                write!(f, "rootcause.{k}.{l} {{ {body} }}")
            }
            Pred::RootCauseJson { json } => write!(f, "rootcause.json = #[{json}]"),
        }
    }
}
