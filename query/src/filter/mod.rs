//! The X-Ray filter-expression language (SPEC 3, with the decisions of SPEC 7): lexer,
//! recursive-descent parser, AST with source spans, and a printer.
//!
//! ```
//! use tracelake_query::filter::parse;
//! let e = parse(r#"service("api") { fault } AND annotation.tenant = "acme""#).unwrap();
//! assert_eq!(e.to_string(), r#"service("api") { fault } AND annotation["tenant"] = "acme""#);
//! let err = parse("responstime > 5").unwrap_err();
//! assert_eq!(err.hint.as_deref(), Some("did you mean `responsetime`?"));
//! ```
//!
//! Evaluation (lowering to DataFusion plans) arrives with the rest of the filter issue.

pub mod ast;
pub mod error;
mod lexer;
mod parser;

pub use ast::{Expr, ExprKind, Pred, Span};
pub use error::ParseError;
pub use parser::{FilterLimits, MAX_DEPTH, parse, parse_with};

/// The tree without spans, for comparing parses in tests.
#[cfg(test)]
fn strip_spans(e: &Expr) -> String {
    let dbg = format!("{:?}", e.kind);
    let mut out = String::new();
    let mut rest = dbg.as_str();
    while let Some(i) = rest.find("span: Span {") {
        out.push_str(&rest[..i]);
        let close = rest[i..].find('}').map_or(rest.len(), |c| i + c + 1);
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::ast::*;
    use super::*;

    fn canon(text: &str) -> String {
        parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .to_string()
    }

    #[test]
    fn doc_examples_parse() {
        for (text, want) in [
            ("responsetime > 5", "responsetime > 5"),
            (
                "duration >= 5 AND duration <= 8",
                "duration >= 5 AND duration <= 8",
            ),
            ("ok", "ok"),
            ("!ok", "!ok"),
            ("ok = false", "ok = false"),
            ("http.status != 200", "http.status != 200"),
            (
                "ok !partial duration <3",
                "ok AND !partial AND duration < 3",
            ),
            (
                r#"http.url CONTAINS "/api/game/""#,
                r#"http.url CONTAINS "/api/game/""#,
            ),
            ("a OR b", ""),
            (r#"service("api") { fault }"#, r#"service("api") { fault }"#),
            (r#"edge("a", "b") { error }"#, r#"edge("a", "b") { error }"#),
            (
                r#"service(id(type: "AWS::Lambda::Function")) { error }"#,
                r#"service(id(type: "AWS::Lambda::Function")) { error }"#,
            ),
            (
                r#"service(id(name: "x", type: "AWS::EC2::Instance", account.id: "123"))"#,
                r#"service(id(name: "x", type: "AWS::EC2::Instance", account.id: "123"))"#,
            ),
            (
                "annotation.premium = true",
                r#"annotation["premium"] = true"#,
            ),
            (
                r#"annotation["DDB.Table.Annotation"] = "anno""#,
                r#"annotation["DDB.Table.Annotation"] = "anno""#,
            ),
            ("annotation.k", r#"annotation["k"]"#),
            (
                r#"group.name = "high-latency""#,
                r#"group.name = "high-latency""#,
            ),
            (
                r#"rootcause.fault.service { name = "api" AND inferred }"#,
                r#"rootcause.fault.service { name = "api" AND inferred }"#,
            ),
            (
                r#"rootcause.responsetime.entity { coverage > 0.5 AND remote }"#,
                r#"rootcause.responsetime.entity { coverage > 0.5 AND remote }"#,
            ),
            (
                r#"rootcause.json = #[{"Services": [{"Name": "x"}]}]"#,
                r#"rootcause.json = #[{"Services": [{"Name": "x"}]}]"#,
            ),
            ("name = traces", r#"name = "traces""#),
            ("OK && Fault || NOT throttle", "ok AND fault OR !throttle"),
            (r#"user CONTAINS """#, r#"user CONTAINS """#),
            ("service()", "service()"),
            (r#"service("")"#, "service()"),
            ("(ok OR error) fault", "(ok OR error) AND fault"),
            ("ok OR (error OR fault)", "ok OR error OR fault"),
            ("(ok AND error) fault", "ok AND error AND fault"),
            ("http.clientip = 10.0.0.1", r#"http.clientip = "10.0.0.1""#),
            ("name = 404", r#"name = "404""#),
            (
                r#"service(id(account.id: 123456789012))"#,
                r#"service(id(account.id: "123456789012"))"#,
            ),
            ("service(id(name:api))", r#"service(id(name: "api"))"#),
        ] {
            if want.is_empty() {
                assert!(
                    parse(text).is_err(),
                    "{text} should not parse (a and b are not keywords)"
                );
                continue;
            }
            assert_eq!(canon(text), want, "{text}");
            assert_eq!(
                super::strip_spans(&parse(&canon(text)).unwrap()),
                super::strip_spans(&parse(text).unwrap()),
                "{text}"
            );
        }
    }

    #[test]
    fn precedence() {
        let e = parse("ok OR error AND fault").unwrap();
        let ExprKind::Or(items) = e.kind else {
            panic!("or at the top")
        };
        assert!(matches!(items[1].kind, ExprKind::And(_)));
        let e = parse("!ok AND fault").unwrap();
        let ExprKind::And(items) = e.kind else {
            panic!("and at the top")
        };
        assert!(matches!(items[0].kind, ExprKind::Not(_)));
    }

    #[test]
    fn errors_point_at_the_problem() {
        for (text, pos, needle) in [
            ("responstime > 5", 0, "did you mean `responsetime`"),
            ("http.url = 'x'", 11, "double quotes"),
            (
                r#"service("a") { annotation.x = 1 }"#,
                15,
                "not allowed inside",
            ),
            ("root", 0, "only valid inside"),
            ("(ok", 3, "missing `)`"),
            ("ok)", 2, "unbalanced"),
            ("responsetime >", 14, "expected a value"),
            ("responsetime > \"x\"", 15, "compares with a number"),
            ("ok = 5", 5, "true or false"),
            (r#"edge("a") { ok }"#, 8, "`,`"),
            ("", 0, "empty"),
            ("duration", 8, "needs a comparison"),
            (r#"service(id(foo: "x"))"#, 11, "no field"),
            ("ok AND", 6, "ends where a condition"),
            ("\"x\"", 0, "cannot stand alone"),
            ("5", 0, "cannot stand alone"),
            ("http.url = \"abc", 11, "unterminated"),
            ("ok $ fault", 3, "unexpected character"),
            ("index > 1", 0, "only valid inside rootcause"),
            ("rootcause.fault.service ok", 24, "`{`"),
            ("rootcause.fault.service { remote", 32, "`}`"),
            ("rootcause.fault.nowhere { ok }", 0, "unknown keyword"),
            ("rootcause.json = {}", 17, "#["),
            ("rootcause.json = #[{\"a\": 1}", 17, "unterminated"),
            (
                r#"service("a") { rootcause.fault.service { ok } }"#,
                15,
                "cannot be nested",
            ),
            ("group.name \"x\"", 11, "`=`"),
            ("message = \"x\"", 0, "only valid inside rootcause"),
            (
                "service(\"a\") { service(\"b\") }",
                15,
                "not valid inside service or edge braces",
            ),
            (
                "edge(\"a\", \"b\") { group.name = \"g\" }",
                17,
                "not valid inside service or edge braces",
            ),
            ("group.name =", 12, "needs a string"),
            ("group.name = (", 13, "takes a string"),
            ("annotation[", 11, "needs a string"),
            ("annotation[\"k\"", 14, "`]`"),
            ("annotation. = 1", 0, "key is empty"),
            ("annotation.k >", 14, "expected a value"),
            ("annotation.k CONTAINS )", 22, "takes a string"),
            ("service", 7, "`(`"),
            (r#"service("a""#, 11, "`)`"),
            (r#"service("a") { ok"#, 17, "`}`"),
            (r#"edge("a", "b""#, 13, "`)`"),
            (r#"edge(, "b")"#, 5, "takes a string"),
            (r#"service(id(name "x"))"#, 16, "`:`"),
            (r#"service(id(name: "x" type: "y"))"#, 21, "`,` or `)`"),
            ("ok OR OR fault", 6, "expected a condition"),
            ("responsetime = 1e999", 15, "not a number"),
            ("http.status >= ok", 15, "compares with a number"),
            ("fault != 1", 9, "true or false"),
            ("!", 1, "ends where a condition"),
            ("()", 1, "expected a condition"),
            ("first", 0, "only valid inside rootcause"),
            (r#"http.url = "a\qb""#, 13, "unknown escape"),
            ("faultt", 0, "did you mean `fault`"),
            ("htp.url = \"x\"", 0, "did you mean `http.url`"),
            (
                "rootcause.fault.service { responsetime > 5 }",
                26,
                "not valid inside rootcause",
            ),
            (
                "rootcause.fault.entity { coverage > 0.5 }",
                25,
                "response-time root causes only",
            ),
            (
                r#"service("a") { rootcause.json = #[{}] }"#,
                15,
                "cannot be nested",
            ),
            ("rootcause.json = #[not json]", 17, "JSON object"),
            ("annotation.a-b = 1", 0, "letters, digits and _"),
        ] {
            let err = parse(text).expect_err(text);
            assert_eq!(err.position(), pos, "{text}: {err}");
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn hostile_expressions_are_refused_not_crashing() {
        let deep = format!("{}ok{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(
            parse(&deep).unwrap_err().message.contains("nested deeper") || parse(&deep).is_err()
        );
        let nots = format!("{}ok", "!".repeat(10_000));
        assert!(parse(&nots).is_err());
        let long = "ok OR ".repeat(20_000) + "ok";
        assert!(parse(&long).unwrap_err().message.contains("over the limit"));
        let accented = "a".repeat(65_535) + "\u{e9}\u{e9}";
        let _ = parse(&accented).unwrap_err().to_string();
        let wide = "ok OR ".repeat(5_000) + "ok";
        assert!(parse(&wide).is_ok());
    }

    #[test]
    fn caret_rendering() {
        let err = parse("ok AND responstime > 5").unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.contains("  ok AND responstime > 5\n         ^^^^^^^^^^^"),
            "{shown}"
        );
        assert!(
            shown.contains("hint: did you mean `responsetime`?"),
            "{shown}"
        );
    }
}

#[cfg(test)]
mod printer_roundtrip {
    use super::ast::*;
    use super::parse;
    use proptest::prelude::*;

    fn e(kind: ExprKind) -> Expr {
        Expr {
            kind,
            span: Span::default(),
        }
    }

    fn word() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_ .\"\\\\/:-]{0,12}"
    }

    fn leaf(scope: u8) -> BoxedStrategy<Expr> {
        let bools: Vec<BoolKw> = match scope {
            0 => vec![
                BoolKw::Ok,
                BoolKw::Error,
                BoolKw::Throttle,
                BoolKw::Fault,
                BoolKw::Partial,
                BoolKw::Inferred,
            ],
            1 => vec![BoolKw::Ok, BoolKw::Error, BoolKw::Fault, BoolKw::Root],
            _ => vec![
                BoolKw::First,
                BoolKw::Last,
                BoolKw::Remote,
                BoolKw::Inferred,
            ],
        };
        let nums: Vec<NumKw> = if scope == 2 {
            vec![NumKw::Index, NumKw::Coverage]
        } else {
            vec![NumKw::ResponseTime, NumKw::Duration, NumKw::HttpStatus]
        };
        let strs = if scope == 2 {
            vec![StrKw::Name, StrKw::Type, StrKw::Message]
        } else {
            vec![
                StrKw::HttpUrl,
                StrKw::User,
                StrKw::Name,
                StrKw::Type,
                StrKw::ResourceArn,
            ]
        };
        let cmp = prop::sample::select(vec![
            CmpOp::Eq,
            CmpOp::Ne,
            CmpOp::Lt,
            CmpOp::Le,
            CmpOp::Gt,
            CmpOp::Ge,
        ]);
        let sop = prop::sample::select(vec![
            StrOp::Eq,
            StrOp::Ne,
            StrOp::Contains,
            StrOp::BeginsWith,
            StrOp::EndsWith,
        ]);
        let mut options: Vec<BoxedStrategy<Expr>> = vec![
            (prop::sample::select(bools), any::<bool>())
                .prop_map(|(kw, value)| e(ExprKind::Pred(Pred::Bool { kw, value })))
                .boxed(),
            (prop::sample::select(nums), cmp.clone(), -1000i32..1000)
                .prop_map(|(kw, op, v)| {
                    e(ExprKind::Pred(Pred::Num {
                        kw,
                        op,
                        value: f64::from(v) / 4.0,
                    }))
                })
                .boxed(),
            (prop::sample::select(strs.clone()), sop, word())
                .prop_map(|(kw, op, value)| e(ExprKind::Pred(Pred::Str { kw, op, value })))
                .boxed(),
            prop::sample::select(strs)
                .prop_map(|kw| e(ExprKind::Pred(Pred::StrSet { kw })))
                .boxed(),
        ];
        if scope == 0 {
            options.push(
                ("[a-zA-Z0-9_.]{1,8}", prop::option::of((cmp, -50i32..50)))
                    .prop_map(|(key, c)| {
                        e(ExprKind::Pred(Pred::Annotation {
                            key,
                            cmp: c.map(|(op, v)| (op, Value::Num(f64::from(v)))),
                            str_op: None,
                        }))
                    })
                    .boxed(),
            );
            options.push(
                (word(), any::<bool>())
                    .prop_map(|(name, by_id)| {
                        let svc = ServiceRef {
                            name: Some(format!("s{name}")),
                            by_id,
                            ..Default::default()
                        };
                        e(ExprKind::Pred(Pred::Service {
                            svc: Some(svc),
                            body: None,
                        }))
                    })
                    .boxed(),
            );
        }
        prop::strategy::Union::new(options).boxed()
    }

    fn tree(scope: u8) -> impl Strategy<Value = Expr> {
        leaf(scope).prop_recursive(4, 24, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 2..4).prop_map(|v| e(ExprKind::And(v))),
                prop::collection::vec(inner.clone(), 2..4).prop_map(|v| e(ExprKind::Or(v))),
                inner.prop_map(|x| e(ExprKind::Not(Box::new(x)))),
            ]
        })
    }

    fn with_braces() -> impl Strategy<Value = Expr> {
        prop_oneof![
            tree(0),
            (tree(1), word()).prop_map(|(b, n)| e(ExprKind::Pred(Pred::Service {
                svc: Some(ServiceRef {
                    name: Some(format!("n{n}")),
                    ..Default::default()
                }),
                body: Some(Box::new(b)),
            }))),
            tree(2).prop_map(|b| e(ExprKind::Pred(Pred::RootCause {
                kind: RootCauseKind::ResponseTime,
                level: RootCauseLevel::Entity,
                body: Box::new(b),
            }))),
        ]
    }

    proptest! {
        /// print(parse(print(e))) == print(e): the printer writes what the parser reads.
        #[test]
        fn printed_expressions_parse_back(x in with_braces()) {
            let text = x.to_string();
            let back = parse(&text).map_err(|err| TestCaseError::fail(format!("{text}\n{err}")))?;
            prop_assert_eq!(back.to_string(), text);
            prop_assert_eq!(super::strip_spans(&back), super::strip_spans(&parse(&back.to_string()).unwrap()));
        }
    }
}
