//! Filter expressions: the engine's answers against a brute-force oracle (tests/oracle),
//! on random datasets and random expressions, plus hand-checked cases.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod oracle;

use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value as Json, json};
use tracelake::{Engine, EngineOptions};
use tracelake_query::filter::ast::{
    BoolKw, CmpOp, Expr, ExprKind, NumKw, Pred, RootCauseKind, RootCauseLevel, ServiceRef, Span,
    StrKw, StrOp, Value,
};
use tracelake_query::filter::parse;

// ---------------------------------------------------------------------------------------
// Vocabulary shared by the documents and the expressions
// ---------------------------------------------------------------------------------------

const SERVICES: &[&str] = &["api", "orders", "billing", "auth"];
const ORIGINS: &[&str] = &[
    "AWS::EC2::Instance",
    "AWS::ECS::Container",
    "AWS::Lambda::Function",
];
const ACCOUNTS: &[&str] = &["111111111111", "222222222222"];
const LOCAL_SUBS: &[&str] = &["handler", "compute", "cache"];
const REMOTE_SUBS: &[&str] = &["backend.example.com", "payments.example.com"];
const AWS_SUBS: &[&str] = &["DynamoDB", "SNS", "S3"];
const SQL_SUBS: &[&str] = &["mysql", "orders_db"];
const TABLES: &[&str] = &["users", "orders"];
const METHODS: &[&str] = &["GET", "POST", "DELETE"];
const URLS: &[&str] = &[
    "https://api.example.com/v1/orders",
    "https://api.example.com/v2/users/7",
    "http://backend.local/health",
];
const AGENTS: &[&str] = &["curl/8.0", "Mozilla/5.0"];
const IPS: &[&str] = &["10.0.0.1", "192.168.1.20"];
const STATUSES: &[i64] = &[200, 201, 404, 429, 500, 503];
const USERS: &[&str] = &["alice", "bob", "", "carol.smith"];
const ARNS: &[&str] = &[
    "arn:aws:ecs:us-east-1:111111111111:task/x",
    "arn:aws:lambda:us-east-1:222222222222:function:f",
];
const INSTANCES: &[&str] = &["i-0abc", "i-0def"];
const ZONES: &[&str] = &["us-east-1a", "us-east-1b"];
const ANN_KEYS: &[&str] = &["tenant", "n", "flag", "Key_2"];
const ANN_STRS: &[&str] = &["acme", "globex", "", "10", "a.b"];
const ANN_NUMS: &[f64] = &[0.0, 1.0, 2.5, 10.0, -3.0, 100.0];
const EXC_TYPES: &[&str] = &["ValueError", "Timeout", "AccessDenied"];
const EXC_MSGS: &[&str] = &[
    "boom",
    "Access Denied for account_id: 1234567890",
    "timed out",
];

/// Times are multiples of 1/16 s, so every difference and ratio is exact in f64 and in
/// nanoseconds alike.
const TICKS_PER_SEC: i64 = 16;
const BASE_TICK: i64 = 1_600_000_000 * TICKS_PER_SEC;

fn secs(tick: i64) -> f64 {
    tick as f64 / TICKS_PER_SEC as f64
}

// ---------------------------------------------------------------------------------------
// Random documents (a seeded generator per trace: proptest shrinks by dropping traces)
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn u64(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.u64() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

#[derive(Debug, Clone, Copy)]
struct Knobs {
    /// Traces whose segments all name a row of the trace as parent (root stand-in).
    cycles: bool,
    /// Traces without segments, orphaned rows, in-progress copies missing subsegments.
    orphans: bool,
}

const FULL: Knobs = Knobs {
    cycles: true,
    orphans: true,
};
/// Root causes stay away from cycles and orphans (see the notes in the summary).
const TIDY: Knobs = Knobs {
    cycles: false,
    orphans: false,
};

#[derive(Debug)]
struct TraceGen {
    rng: Rng,
    knobs: Knobs,
    trace_id: String,
    docs: Vec<Json>,
    row_ids: Vec<String>,
    /// Segments and local subsegments (parents for independent subsegments in TIDY).
    plain_ids: Vec<String>,
    sub_ids: Vec<String>,
    segments_left: u32,
}

impl TraceGen {
    fn new(index: usize, seed: u64, knobs: Knobs) -> Self {
        let mut rng = Rng(seed);
        let trace_id = format!("1-5f5e1000-{:08x}{:016x}", index, rng.u64());
        let segments_left = 1 + rng.below(4) as u32;
        TraceGen {
            rng,
            knobs,
            trace_id,
            docs: Vec::new(),
            row_ids: Vec::new(),
            plain_ids: Vec::new(),
            sub_ids: Vec::new(),
            segments_left,
        }
    }

    fn new_id(&mut self) -> String {
        format!("{:016x}", self.rng.u64())
    }

    fn http(&mut self, v: &mut Json) {
        let mut req = serde_json::Map::new();
        if self.rng.chance(85) {
            req.insert("method".into(), json!(self.rng.pick(METHODS)));
        }
        if self.rng.chance(80) {
            req.insert("url".into(), json!(self.rng.pick(URLS)));
        }
        if self.rng.chance(30) {
            req.insert("user_agent".into(), json!(self.rng.pick(AGENTS)));
        }
        if self.rng.chance(30) {
            req.insert("client_ip".into(), json!(self.rng.pick(IPS)));
        }
        let mut h = json!({ "request": req });
        if self.rng.chance(80) {
            h["response"] = json!({ "status": self.rng.pick(STATUSES) });
        }
        v["http"] = h;
    }

    /// Flags, annotations, a cause and sometimes a user: for segments and subsegments.
    fn common(&mut self, v: &mut Json) {
        for f in ["error", "fault", "throttle"] {
            let r = self.rng.below(100);
            if r < 18 {
                v[f] = json!(true);
            } else if r < 25 {
                v[f] = json!(false);
            }
        }
        if self.rng.chance(45) {
            let mut m = serde_json::Map::new();
            for _ in 0..1 + self.rng.below(3) {
                let k = self.rng.pick(ANN_KEYS);
                let val = match self.rng.below(3) {
                    0 => json!(self.rng.pick(ANN_STRS)),
                    1 => json!(self.rng.pick(ANN_NUMS)),
                    _ => json!(self.rng.chance(50)),
                };
                m.insert(k.to_owned(), val);
            }
            v["annotations"] = Json::Object(m);
        }
        let failed = v.get("fault") == Some(&json!(true)) || v.get("error") == Some(&json!(true));
        if failed && self.rng.chance(60) {
            let n = 1 + self.rng.below(2);
            let mut exs = Vec::new();
            for _ in 0..n {
                let mut x = json!({ "id": self.new_id(), "type": self.rng.pick(EXC_TYPES) });
                if self.rng.chance(80) {
                    x["message"] = json!(self.rng.pick(EXC_MSGS));
                }
                exs.push(x);
            }
            v["cause"] = json!({ "working_directory": "/app", "exceptions": exs });
        }
        if self.rng.chance(8) {
            v["user"] = json!(self.rng.pick(USERS));
        }
    }

    /// A segment document (emitted, possibly with in-progress copies); returns its id.
    fn segment(&mut self, parent: Option<&str>, start: i64) -> String {
        self.segments_left = self.segments_left.saturating_sub(1);
        let id = self.new_id();
        self.row_ids.push(id.clone());
        self.plain_ids.push(id.clone());
        let dur = 1 + self.rng.below(48) as i64;
        let mut v = json!({
            "name": self.rng.pick(SERVICES),
            "id": id,
            "trace_id": self.trace_id,
            "start_time": secs(start),
            "end_time": secs(start + dur),
        });
        if let Some(p) = parent {
            v["parent_id"] = json!(p);
        }
        if self.rng.chance(75) {
            v["origin"] = json!(self.rng.pick(ORIGINS));
        }
        let mut aws = serde_json::Map::new();
        if self.rng.chance(60) {
            aws.insert("account_id".into(), json!(self.rng.pick(ACCOUNTS)));
        }
        if self.rng.chance(35) {
            let mut ec2 = serde_json::Map::new();
            if self.rng.chance(80) {
                ec2.insert("instance_id".into(), json!(self.rng.pick(INSTANCES)));
            }
            if self.rng.chance(80) {
                ec2.insert("availability_zone".into(), json!(self.rng.pick(ZONES)));
            }
            aws.insert("ec2".into(), Json::Object(ec2));
        }
        if !aws.is_empty() {
            v["aws"] = Json::Object(aws);
        }
        if self.rng.chance(30) {
            v["user"] = json!(self.rng.pick(USERS));
        }
        if self.rng.chance(20) {
            v["resource_arn"] = json!(self.rng.pick(ARNS));
        }
        if self.rng.chance(75) {
            self.http(&mut v);
        }
        self.common(&mut v);
        let mut subs = Vec::new();
        for _ in 0..self.rng.below(4) {
            let s = start + self.rng.below(dur as u64) as i64;
            subs.push(self.subsegment(s, 0));
        }
        if !subs.is_empty() {
            v["subsegments"] = Json::Array(subs);
        }
        self.emit(v);
        id
    }

    /// A subsegment (returned, not emitted). Calls may spawn downstream segments.
    fn subsegment(&mut self, start: i64, depth: u32) -> Json {
        let id = self.new_id();
        let dur = 1 + self.rng.below(24) as i64;
        let kind = self.rng.below(10);
        self.row_ids.push(id.clone());
        self.sub_ids.push(id.clone());
        if kind <= 3 {
            self.plain_ids.push(id.clone());
        }
        let name = match kind {
            0..=3 => self.rng.pick(LOCAL_SUBS),
            4 | 5 => self.rng.pick(REMOTE_SUBS),
            6..=8 => self.rng.pick(AWS_SUBS),
            _ => self.rng.pick(SQL_SUBS),
        };
        let mut v = json!({
            "name": name,
            "id": id,
            "start_time": secs(start),
            "end_time": secs(start + dur),
        });
        match kind {
            0..=3 => {
                if self.rng.chance(50) {
                    v["namespace"] = json!("local");
                }
            }
            4 | 5 => {
                v["namespace"] = json!("remote");
                self.http(&mut v);
            }
            6..=8 => {
                v["namespace"] = json!("aws");
                let mut aws = json!({ "operation": "GetItem" });
                if self.rng.chance(50) {
                    aws["table_name"] = json!(self.rng.pick(TABLES));
                }
                if self.rng.chance(30) {
                    aws["account_id"] = json!(self.rng.pick(ACCOUNTS));
                }
                v["aws"] = aws;
            }
            _ => {
                v["namespace"] = json!(if self.rng.chance(80) { "remote" } else { "aws" });
                v["sql"] = json!({
                    "url": "jdbc:mysql://db.local/orders",
                    "sanitized_query": "SELECT * FROM orders WHERE id = ?",
                });
            }
        }
        self.common(&mut v);
        if self.rng.chance(8) {
            if let Some(o) = v.as_object_mut() {
                o.remove("end_time");
            }
            v["in_progress"] = json!(true);
        }
        if kind <= 3 && depth < 2 {
            let mut subs = Vec::new();
            for _ in 0..self.rng.below(3) {
                let s = start + self.rng.below(dur as u64) as i64;
                subs.push(self.subsegment(s, depth + 1));
            }
            if !subs.is_empty() {
                v["subsegments"] = Json::Array(subs);
            }
        }
        if kind >= 4 && self.segments_left > 0 && self.rng.chance(40) {
            // the callee sends its own segment: no inferred node for this call
            let s = start + self.rng.below(dur as u64) as i64;
            self.segment(Some(id.as_str()), s);
        }
        v
    }

    fn independent(&mut self, parent: &str, start: i64) {
        let mut v = self.subsegment(start, 1);
        v["type"] = json!("subsegment");
        v["trace_id"] = json!(self.trace_id);
        v["parent_id"] = json!(parent);
        self.emit(v);
    }

    /// Sends a document as a real SDK might: once, in progress first, complete and then a
    /// stale in-progress copy, in progress only, or complete twice (later one changed).
    fn emit(&mut self, v: Json) {
        let nsubs = v
            .get("subsegments")
            .and_then(Json::as_array)
            .map_or(0, Vec::len);
        let keep = if self.knobs.orphans {
            self.rng.below(nsubs as u64 + 1) as usize
        } else {
            nsubs
        };
        let in_progress = |v: &Json| {
            let mut p = v.clone();
            if let Some(o) = p.as_object_mut() {
                o.remove("end_time");
                o.insert("in_progress".into(), json!(true));
                if let Some(Json::Array(subs)) = o.get_mut("subsegments") {
                    subs.truncate(keep);
                    if subs.is_empty() {
                        o.remove("subsegments");
                    }
                }
            }
            p
        };
        match self.rng.below(100) {
            0..=61 => self.docs.push(v),
            62..=73 => {
                self.docs.push(in_progress(&v));
                self.docs.push(v);
            }
            74..=81 => {
                let stale = in_progress(&v);
                self.docs.push(v);
                self.docs.push(stale);
            }
            82..=89 => self.docs.push(in_progress(&v)),
            _ => {
                let mut w = v.clone();
                w["user"] = json!(self.rng.pick(USERS));
                w["fault"] = json!(self.rng.chance(50));
                self.docs.push(v);
                self.docs.push(w);
            }
        }
    }
}

fn trace_docs(index: usize, seed: u64, knobs: Knobs) -> Vec<Json> {
    let mut g = TraceGen::new(index, seed, knobs);
    let start = BASE_TICK + g.rng.below(64) as i64;
    if knobs.orphans && g.rng.chance(5) {
        // no segment has arrived: an independent subsegment whose parent never does
        let p = g.new_id();
        g.independent(&p, start);
        return g.docs;
    }
    let external = (knobs.orphans && g.rng.chance(10)).then(|| g.new_id());
    let root_id = g.segment(external.as_deref(), start);
    if g.rng.chance(12) {
        // a second entry point (root ties are broken by start, then id)
        g.segments_left += 1;
        let s = if g.rng.chance(50) {
            start
        } else {
            start + g.rng.below(8) as i64
        };
        g.segment(None, s);
    }
    if g.rng.chance(10) {
        // a segment whose parent is the root segment itself (the calling row is a segment)
        g.segments_left += 1;
        let s = start + g.rng.below(8) as i64;
        g.segment(Some(root_id.as_str()), s);
    }
    for _ in 0..g.rng.below(3) {
        // in TIDY, never under an aws/remote call (root-cause ties with inferred entities)
        let parents = if knobs.orphans {
            g.row_ids.clone()
        } else {
            g.plain_ids.clone()
        };
        if g.rng.chance(50) && !parents.is_empty() {
            let i = g.rng.below(parents.len() as u64) as usize;
            let p = parents[i].clone();
            let s = start + g.rng.below(32) as i64;
            g.independent(&p, s);
        }
    }
    if knobs.cycles && g.rng.chance(6) && !g.sub_ids.is_empty() {
        // the root names a subsegment of the trace as its parent
        let i = g.rng.below(g.sub_ids.len() as u64) as usize;
        let p = g.sub_ids[i].clone();
        for d in &mut g.docs {
            if d["id"] == json!(root_id) && d.get("type").is_none() {
                d["parent_id"] = json!(p);
            }
        }
    }
    g.docs
}

/// All traces' documents, interleaved (documents with the same id keep their order).
fn dataset(seeds: &[u64], shuffle: u64, knobs: Knobs) -> Vec<Json> {
    let mut docs = Vec::new();
    for (i, &s) in seeds.iter().enumerate() {
        docs.extend(trace_docs(i, s, knobs));
    }
    if shuffle.is_multiple_of(4) {
        return docs;
    }
    let mut rng = Rng(shuffle);
    let mut keys: HashMap<(String, String), u64> = HashMap::new();
    let mut tagged: Vec<(u64, Json)> = docs
        .into_iter()
        .map(|d| {
            let k = (
                d["trace_id"].as_str().unwrap_or_default().to_owned(),
                d["id"].as_str().unwrap_or_default().to_owned(),
            );
            let key = *keys.entry(k).or_insert_with(|| rng.u64());
            (key, d)
        })
        .collect();
    tagged.sort_by_key(|(k, _)| *k);
    tagged.into_iter().map(|(_, d)| d).collect()
}

// ---------------------------------------------------------------------------------------
// Random expressions (built as ASTs, printed, parsed back)
// ---------------------------------------------------------------------------------------

fn e(kind: ExprKind) -> Expr {
    Expr {
        kind,
        span: Span::default(),
    }
}

fn pred(p: Pred) -> Expr {
    e(ExprKind::Pred(p))
}

const CMP_OPS: &[CmpOp] = &[
    CmpOp::Eq,
    CmpOp::Ne,
    CmpOp::Lt,
    CmpOp::Le,
    CmpOp::Gt,
    CmpOp::Ge,
];
const STR_OPS: &[StrOp] = &[
    StrOp::Eq,
    StrOp::Ne,
    StrOp::Contains,
    StrOp::BeginsWith,
    StrOp::EndsWith,
];
const STR_KWS: &[StrKw] = &[
    StrKw::HttpUrl,
    StrKw::HttpMethod,
    StrKw::HttpUserAgent,
    StrKw::HttpClientIp,
    StrKw::User,
    StrKw::Name,
    StrKw::Type,
    StrKw::AvailabilityZone,
    StrKw::InstanceId,
    StrKw::ResourceArn,
];
const STATUS_LITS: &[f64] = &[0.0, 200.0, 201.0, 250.0, 404.0, 429.0, 499.0, 500.0, 503.0];
const NAME_LITS: &[&str] = &[
    "api",
    "orders",
    "billing",
    "auth",
    "handler",
    "compute",
    "backend.example.com",
    "DynamoDB",
    "SNS",
    "S3",
    "mysql",
    "orders_db",
    "ap",
    "example.com",
];
const TYPE_LITS: &[&str] = &[
    "AWS::EC2::Instance",
    "AWS::ECS::Container",
    "AWS::Lambda::Function",
    "",
    "remote",
    "Database::SQL",
    "AWS::DynamoDB",
    "AWS::DynamoDB::Table",
    "AWS::SNS",
    "AWS::S3",
    "AWS::S3::Table",
];
const TYPE_PARTS: &[&str] = &["AWS::", "Table", "Lambda", "remote", "Database::SQL", ""];

fn str_values(kw: StrKw) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = match kw {
        StrKw::HttpUrl => URLS.to_vec(),
        StrKw::HttpMethod => METHODS.to_vec(),
        StrKw::HttpUserAgent => AGENTS.to_vec(),
        StrKw::HttpClientIp => IPS.to_vec(),
        StrKw::User => USERS.to_vec(),
        StrKw::Name => NAME_LITS.to_vec(),
        StrKw::Type => TYPE_LITS.to_vec(),
        StrKw::AvailabilityZone => ZONES.to_vec(),
        StrKw::InstanceId => INSTANCES.to_vec(),
        StrKw::ResourceArn => ARNS.to_vec(),
        StrKw::Message => EXC_MSGS.to_vec(),
    };
    let extra: &[&'static str] = match kw {
        StrKw::HttpUrl => &[
            "https://api.example.com",
            "/v2/",
            "orders",
            "health",
            "http://",
            "",
        ],
        StrKw::HttpMethod => &["get", "P", ""],
        StrKw::HttpUserAgent => &["curl", ""],
        StrKw::HttpClientIp => &["10.", ""],
        StrKw::User => &["carol", "a"],
        StrKw::Name => &["Dynamo", ""],
        StrKw::Type => TYPE_PARTS,
        StrKw::AvailabilityZone => &["us-east-1", "1b", ""],
        StrKw::InstanceId => &["i-", ""],
        StrKw::ResourceArn => &["arn:aws:", "function:f", ""],
        StrKw::Message => &["Denied", ""],
    };
    v.extend_from_slice(extra);
    v
}

fn bool_leaf(kws: Vec<BoolKw>) -> BoxedStrategy<Expr> {
    (select(kws), any::<bool>())
        .prop_map(|(kw, value)| pred(Pred::Bool { kw, value }))
        .boxed()
}

fn num_leaf() -> BoxedStrategy<Expr> {
    prop_oneof![
        (
            select(vec![NumKw::ResponseTime, NumKw::Duration]),
            select(CMP_OPS),
            0u32..72
        )
            .prop_map(|(kw, op, k)| pred(Pred::Num {
                kw,
                op,
                value: f64::from(k) / TICKS_PER_SEC as f64,
            })),
        (select(CMP_OPS), select(STATUS_LITS)).prop_map(|(op, value)| pred(Pred::Num {
            kw: NumKw::HttpStatus,
            op,
            value,
        })),
    ]
    .boxed()
}

fn str_leaf(kws: &'static [StrKw]) -> BoxedStrategy<Expr> {
    (select(kws), select(STR_OPS), any::<prop::sample::Index>())
        .prop_map(|(kw, op, ix)| {
            let vals = str_values(kw);
            pred(Pred::Str {
                kw,
                op,
                value: (*ix.get(&vals)).to_owned(),
            })
        })
        .boxed()
}

fn strset_leaf(kws: &'static [StrKw]) -> BoxedStrategy<Expr> {
    select(kws).prop_map(|kw| pred(Pred::StrSet { kw })).boxed()
}

fn ann_value() -> BoxedStrategy<Value> {
    prop_oneof![
        select(vec!["acme", "globex", "", "10", "a.b", "ac", "b"])
            .prop_map(|s| Value::Str(s.to_owned())),
        select(vec![0.0, 1.0, 2.5, 10.0, -3.0, 100.0, 5.0, 2.0]).prop_map(Value::Num),
        any::<bool>().prop_map(Value::Bool),
    ]
    .boxed()
}

fn ann_leaf() -> BoxedStrategy<Expr> {
    let key = select(vec!["tenant", "n", "flag", "Key_2", "missing"]);
    prop_oneof![
        key.clone().prop_map(|k| pred(Pred::Annotation {
            key: k.to_owned(),
            cmp: None,
            str_op: None,
        })),
        (key.clone(), select(CMP_OPS), ann_value()).prop_map(|(k, op, v)| pred(Pred::Annotation {
            key: k.to_owned(),
            cmp: Some((op, v)),
            str_op: None,
        })),
        (
            key,
            select(vec![StrOp::Contains, StrOp::BeginsWith, StrOp::EndsWith]),
            select(vec!["acme", "ac", "me", "", "a.b", "1", "."])
        )
            .prop_map(|(k, op, s)| pred(Pred::Annotation {
                key: k.to_owned(),
                cmp: None,
                str_op: Some((op, s.to_owned())),
            })),
    ]
    .boxed()
}

fn svc_ref() -> BoxedStrategy<ServiceRef> {
    prop_oneof![
        3 => select(NAME_LITS).prop_map(|n| ServiceRef {
            name: Some(n.to_owned()),
            kind: None,
            account_id: None,
            by_id: false,
        }),
        2 => (
            prop::option::of(select(NAME_LITS)),
            prop::option::of(select(TYPE_LITS)),
            prop::option::weighted(0.3, select(ACCOUNTS)),
        )
            .prop_map(|(n, k, a)| {
                let n = if n.is_none() && k.is_none() && a.is_none() {
                    Some("api")
                } else {
                    n
                };
                ServiceRef {
                    name: n.map(str::to_owned),
                    kind: k.map(str::to_owned),
                    account_id: a.map(str::to_owned),
                    by_id: true,
                }
            }),
    ]
    .boxed()
}

fn tree(leaf: BoxedStrategy<Expr>, depth: u32) -> BoxedStrategy<Expr> {
    leaf.prop_recursive(depth, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(|v| e(ExprKind::And(v))),
            prop::collection::vec(inner.clone(), 2..4).prop_map(|v| e(ExprKind::Or(v))),
            inner.prop_map(|x| e(ExprKind::Not(Box::new(x)))),
        ]
    })
    .boxed()
}

/// Keywords inside `service(...) { }` (`edge` bodies leave out `inferred`: see summary).
fn node_leaf(edge: bool) -> BoxedStrategy<Expr> {
    let mut bools = vec![
        BoolKw::Ok,
        BoolKw::Error,
        BoolKw::Fault,
        BoolKw::Throttle,
        BoolKw::Partial,
        BoolKw::Root,
    ];
    if !edge {
        bools.push(BoolKw::Inferred);
    }
    prop_oneof![
        3 => bool_leaf(bools),
        1 => num_leaf(),
        2 => str_leaf(STR_KWS),
        1 => strset_leaf(STR_KWS),
    ]
    .boxed()
}

fn service_leaf() -> BoxedStrategy<Expr> {
    (
        prop::option::weighted(0.8, svc_ref()),
        prop::option::of(tree(node_leaf(false), 2)),
    )
        .prop_map(|(svc, body)| {
            pred(Pred::Service {
                svc,
                body: body.map(Box::new),
            })
        })
        .boxed()
}

fn edge_leaf() -> BoxedStrategy<Expr> {
    (
        svc_ref(),
        svc_ref(),
        prop::option::of(tree(node_leaf(true), 2)),
    )
        .prop_map(|(from, to, body)| {
            pred(Pred::Edge {
                from,
                to,
                body: body.map(Box::new),
            })
        })
        .boxed()
}

/// Keywords inside `rootcause.K.L { }`; booleans only where the view has them.
fn rc_leaf(kind: RootCauseKind, level: RootCauseLevel) -> BoxedStrategy<Expr> {
    let mut bools = vec![BoolKw::First, BoolKw::Last];
    if level != RootCauseLevel::Exception {
        bools.push(BoolKw::Inferred);
    }
    if level == RootCauseLevel::Entity {
        bools.push(BoolKw::Remote);
    }
    let mut options: Vec<(u32, BoxedStrategy<Expr>)> = vec![
        (3, bool_leaf(bools)),
        (
            1,
            (select(CMP_OPS), 0u32..4)
                .prop_map(|(op, i)| {
                    pred(Pred::Num {
                        kw: NumKw::Index,
                        op,
                        value: f64::from(i),
                    })
                })
                .boxed(),
        ),
        (3, str_leaf(&[StrKw::Name, StrKw::Type, StrKw::Message])),
        (1, strset_leaf(&[StrKw::Name, StrKw::Type, StrKw::Message])),
    ];
    if kind == RootCauseKind::ResponseTime {
        options.push((
            2,
            (select(CMP_OPS), 0u32..=16)
                .prop_map(|(op, k)| {
                    pred(Pred::Num {
                        kw: NumKw::Coverage,
                        op,
                        value: f64::from(k) / 16.0,
                    })
                })
                .boxed(),
        ));
    }
    prop::strategy::Union::new_weighted(options).boxed()
}

fn rootcause_leaf() -> BoxedStrategy<Expr> {
    (
        select(vec![
            RootCauseKind::Fault,
            RootCauseKind::Error,
            RootCauseKind::ResponseTime,
        ]),
        select(vec![
            RootCauseLevel::Service,
            RootCauseLevel::Entity,
            RootCauseLevel::Exception,
        ]),
    )
        .prop_flat_map(|(kind, level)| {
            tree(rc_leaf(kind, level), 2).prop_map(move |body| {
                pred(Pred::RootCause {
                    kind,
                    level,
                    body: Box::new(body),
                })
            })
        })
        .boxed()
}

fn rootcause_json_leaf() -> BoxedStrategy<Expr> {
    let service = (
        select(NAME_LITS),
        prop::option::of(any::<bool>()),
        prop::option::weighted(0.3, select(TYPE_LITS)),
        prop::option::weighted(0.3, (select(NAME_LITS), prop::option::of(any::<bool>()))),
    )
        .prop_map(|(name, inferred, kind, entity)| {
            let mut s = json!({ "Name": name });
            if let Some(i) = inferred {
                s["Inferred"] = json!(i);
            }
            if let Some(k) = kind {
                s["Type"] = json!(k);
            }
            if let Some((n, remote)) = entity {
                let mut ent = json!({ "Name": n });
                if let Some(r) = remote {
                    ent["Remote"] = json!(r);
                }
                s["EntityPath"] = json!([ent]);
            }
            s
        });
    prop_oneof![
        1 => Just(json!({})),
        6 => prop::collection::vec(service, 1..3).prop_map(|ss| json!({ "Services": ss })),
    ]
    .prop_map(|j| {
        pred(Pred::RootCauseJson {
            json: j.to_string(),
        })
    })
    .boxed()
}

fn top_expr(with_rootcause: bool) -> BoxedStrategy<Expr> {
    let mut options: Vec<(u32, BoxedStrategy<Expr>)> = vec![
        (
            3,
            bool_leaf(vec![
                BoolKw::Ok,
                BoolKw::Error,
                BoolKw::Throttle,
                BoolKw::Fault,
                BoolKw::Partial,
                BoolKw::Inferred,
            ]),
        ),
        (2, num_leaf()),
        (3, str_leaf(STR_KWS)),
        (1, strset_leaf(STR_KWS)),
        (3, ann_leaf()),
        (3, service_leaf()),
        (2, edge_leaf()),
    ];
    if with_rootcause {
        options.push((6, rootcause_leaf()));
        options.push((2, rootcause_json_leaf()));
    }
    tree(prop::strategy::Union::new_weighted(options).boxed(), 3)
}

// ---------------------------------------------------------------------------------------
// Comparing the engine with the oracle
// ---------------------------------------------------------------------------------------

fn dump(docs: &[Json]) -> String {
    let lines: String = docs.iter().map(|d| d.to_string() + "\n").collect();
    format!(
        "documents (in ingest order):\n{lines}oracle's model:\n{}",
        oracle::describe(docs)
    )
}

fn ingest(engine: &Engine, docs: &[Json]) -> Result<(), TestCaseError> {
    if docs.is_empty() {
        return Ok(());
    }
    let body: String = docs.iter().map(|d| d.to_string() + "\n").collect();
    let report = engine.ingest(body.as_bytes()).unwrap();
    if !report.rejected.is_empty() || report.accepted != docs.len() {
        return Err(TestCaseError::fail(format!(
            "valid documents were rejected: {report:?}\n{}",
            dump(docs)
        )));
    }
    Ok(())
}

/// Ingests `docs` (flushing after the first `flush_at` of them) and compares the engine's
/// answer for every expression with the oracle's.
fn check_case(docs: &[Json], exprs: &[Expr], flush_at: Option<usize>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), EngineOptions::default()).unwrap();
    let split = flush_at.unwrap_or(docs.len()).min(docs.len());
    ingest(&engine, &docs[..split])?;
    if flush_at.is_some() {
        engine.flush().unwrap();
    }
    ingest(&engine, &docs[split..])?;
    let groups = HashMap::new();
    for x in exprs {
        let text = x.to_string();
        let parsed = parse(&text).map_err(|err| {
            TestCaseError::fail(format!(
                "a generated expression does not parse: {text}\n{err}"
            ))
        })?;
        let want = oracle::matching_ids(docs, &parsed, &groups);
        let got_list: Vec<String> = engine.find_trace_ids(&text).map_err(|err| {
            TestCaseError::fail(format!(
                "expression: {text}\nengine error: {err}\n{}",
                dump(docs)
            ))
        })?;
        let got: BTreeSet<String> = got_list.iter().cloned().collect();
        if got_list.len() != got.len() {
            return Err(TestCaseError::fail(format!(
                "expression: {text}\nthe engine returned duplicate trace ids: {got_list:?}"
            )));
        }
        if got != want {
            return Err(TestCaseError::fail(format!(
                "expression: {text}\nengine only: {:?}\noracle only: {:?}\n{}",
                got.difference(&want).collect::<Vec<_>>(),
                want.difference(&got).collect::<Vec<_>>(),
                dump(docs)
            )));
        }
    }
    Ok(())
}

/// Cases per property (`TRACELAKE_ORACLE_CASES` for longer runs).
fn cases() -> u32 {
    std::env::var("TRACELAKE_ORACLE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn engine_matches_oracle(
        seeds in prop::collection::vec(any::<u64>(), 1..12),
        shuffle in any::<u64>(),
        exprs in prop::collection::vec(top_expr(false), 1..6),
    ) {
        let docs = dataset(&seeds, shuffle, FULL);
        check_case(&docs, &exprs, None)?;
    }

    #[test]
    fn engine_matches_oracle_across_a_flush(
        seeds in prop::collection::vec(any::<u64>(), 1..12),
        shuffle in any::<u64>(),
        exprs in prop::collection::vec(top_expr(false), 1..6),
    ) {
        let docs = dataset(&seeds, shuffle, FULL);
        let half = docs.len() / 2;
        check_case(&docs, &exprs, Some(half))?;
    }

    /// Root causes (`rootcause.*.*`, `rootcause.json`) mixed with everything else.
    #[test]
    fn root_causes_match_oracle(
        seeds in prop::collection::vec(any::<u64>(), 1..10),
        shuffle in any::<u64>(),
        exprs in prop::collection::vec(top_expr(true), 1..6),
    ) {
        let docs = dataset(&seeds, shuffle, TIDY);
        check_case(&docs, &exprs, None)?;
    }
}

// ---------------------------------------------------------------------------------------
// Hand-checked cases (oracle and engine against answers worked out by hand)
// ---------------------------------------------------------------------------------------

const T1: &str = "1-5f5e1000-000000000000000000000001";
const T2: &str = "1-5f5e1000-000000000000000000000002";
const T3: &str = "1-5f5e1000-000000000000000000000003";
const T4: &str = "1-5f5e1000-000000000000000000000004";

fn seg(trace: &str, id: &str, name: &str, start: f64, end: f64) -> Json {
    json!({
        "name": name,
        "id": id,
        "trace_id": trace,
        "start_time": 1_600_000_000.0 + start,
        "end_time": 1_600_000_000.0 + end,
    })
}

fn sub(id: &str, name: &str, start: f64, end: f64) -> Json {
    json!({
        "name": name,
        "id": id,
        "start_time": 1_600_000_000.0 + start,
        "end_time": 1_600_000_000.0 + end,
    })
}

fn in_progress(mut v: Json) -> Json {
    v.as_object_mut().unwrap().remove("end_time");
    v["in_progress"] = json!(true);
    v
}

fn check_all(docs: &[Json], cases: &[(&str, &[&str])]) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), EngineOptions::default()).unwrap();
    let body: String = docs.iter().map(|d| d.to_string() + "\n").collect();
    let report = engine.ingest(body.as_bytes()).unwrap();
    assert!(report.rejected.is_empty(), "{report:?}");
    for (text, want) in cases {
        let want: BTreeSet<String> = want.iter().map(|s| (*s).to_owned()).collect();
        let expr = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let oracle = oracle::matching_ids(docs, &expr, &HashMap::new());
        assert_eq!(oracle, want, "oracle: {text}\n{}", oracle::describe(docs));
        let got: BTreeSet<String> = engine.find_trace_ids(text).unwrap().into_iter().collect();
        assert_eq!(got, want, "engine: {text}\n{}", oracle::describe(docs));
    }
}

#[test]
fn missing_values_and_negation() {
    let mut docs = vec![seg(T1, "0000000000000001", "api", 0.0, 1.0)];
    let mut t2 = seg(T2, "0000000000000002", "api", 0.0, 1.0);
    t2["user"] = json!("x");
    let mut t3 = seg(T3, "0000000000000003", "api", 0.0, 1.0);
    t3["subsegments"] = json!([{
        "name": "handler", "id": "0000000000000033",
        "start_time": 1_600_000_000.25, "end_time": 1_600_000_000.5, "user": "y"
    }]);
    let mut t4 = seg(T4, "0000000000000004", "api", 0.0, 1.0);
    t4["user"] = json!("");
    t4["http"] = json!({ "response": { "status": 200 } });
    docs.extend([t2, t3, t4]);
    check_all(
        &docs,
        &[
            (r#"user != "x""#, &[T3, T4]),
            (r#"!(user = "x")"#, &[T1, T3, T4]),
            ("user", &[T2, T3, T4]),
            (r#"user CONTAINS """#, &[T2, T3, T4]),
            (r#"user = """#, &[T4]),
            ("!user", &[T1]),
            ("http.status != 200", &[]),
            ("http.status = 200", &[T4]),
            ("!(http.status = 200)", &[T1, T2, T3]),
            (r#"http.url CONTAINS """#, &[]),
            (r#"name = "api" AND type"#, &[]),
            (r#"type = "" OR !type"#, &[T1, T2, T3, T4]),
        ],
    );
}

#[test]
fn root_flags_services_edges_and_inferred_nodes() {
    // T1: api (fault) calls orders (error) through a remote subsegment; orders sends its
    // own segment, so there is no inferred node.
    let mut api = seg(T1, "00000000000000a1", "api", 0.0, 2.0);
    api["fault"] = json!(true);
    api["origin"] = json!("AWS::EC2::Instance");
    let mut call = sub("00000000000000a2", "orders-call", 0.5, 1.5);
    call["namespace"] = json!("remote");
    api["subsegments"] = json!([call]);
    let mut orders = seg(T1, "00000000000000a3", "orders", 0.75, 1.25);
    orders["parent_id"] = json!("00000000000000a2");
    orders["error"] = json!(true);
    // T2: api calls DynamoDB (table known, faulted): an inferred AWS::DynamoDB::Table node.
    let mut api2 = seg(T2, "00000000000000b1", "api", 0.0, 3.0);
    let mut ddb = sub("00000000000000b2", "DynamoDB", 1.0, 2.0);
    ddb["namespace"] = json!("aws");
    ddb["aws"] = json!({ "operation": "GetItem", "table_name": "users" });
    ddb["fault"] = json!(true);
    api2["subsegments"] = json!([ddb]);
    let docs = vec![api, orders, api2];
    check_all(
        &docs,
        &[
            ("fault", &[T1]),
            ("error", &[]),
            ("ok", &[T2]),
            ("!ok", &[T1]),
            (r#"service("orders") { error }"#, &[T1]),
            (r#"service("orders") { root }"#, &[]),
            (r#"service("api") { root AND fault }"#, &[T1]),
            ("service() { error }", &[T1]),
            ("service() { fault }", &[T1, T2]),
            (r#"edge("api", "orders")"#, &[T1]),
            (r#"edge("orders", "api")"#, &[]),
            (r#"edge("api", "orders") { name = "orders-call" }"#, &[T1]),
            (r#"edge("api", "orders") { error }"#, &[]),
            ("inferred", &[T2]),
            (
                r#"service(id(name: "DynamoDB", type: "AWS::DynamoDB::Table"))"#,
                &[T2],
            ),
            (r#"service(id(type: "AWS::DynamoDB"))"#, &[]),
            (r#"service(id(type: "AWS::EC2::Instance"))"#, &[T1]),
            (r#"service(id(name: "api", type: ""))"#, &[T2]),
            (r#"service("DynamoDB") { inferred AND fault }"#, &[T2]),
            (r#"service("DynamoDB") { responsetime = 1 }"#, &[T2]),
            (
                r#"edge("api", "DynamoDB") { fault AND name = "DynamoDB" }"#,
                &[T2],
            ),
            ("responsetime >= 2 AND responsetime < 3", &[T1]),
            ("duration = 3", &[T2]),
            (r#"type = "AWS::EC2::Instance""#, &[T1]),
        ],
    );
}

#[test]
fn upserts_and_partial_traces() {
    let s1 = seg(T1, "0000000000000011", "api", 0.0, 2.0);
    let s2 = seg(T2, "0000000000000022", "api", 0.0, 2.0);
    let s3 = seg(T3, "0000000000000033", "api", 0.0, 2.0);
    let docs = vec![
        in_progress(s1.clone()),
        s1, // T1: in progress, then complete
        s2.clone(),
        in_progress(s2), // T2: complete, then a stale in-progress copy
        in_progress(s3), // T3: never completed
    ];
    check_all(
        &docs,
        &[
            ("partial", &[T3]),
            ("!partial", &[T1, T2]),
            ("duration = 2", &[T1, T2]),
            ("duration >= 0", &[T1, T2]),
            ("!(duration >= 0)", &[T3]),
            ("responsetime > 0", &[T1, T2]),
            ("service() { partial }", &[T3]),
        ],
    );
}

#[test]
fn annotations_are_typed() {
    let mut t1 = seg(T1, "0000000000000001", "api", 0.0, 1.0);
    t1["annotations"] = json!({ "n": 5, "s": "5", "b": true });
    let t2 = seg(T2, "0000000000000002", "api", 0.0, 1.0);
    check_all(
        &[t1, t2],
        &[
            ("annotation.n = 5", &[T1]),
            ("annotation.n = 5.0", &[T1]),
            (r#"annotation.n = "5""#, &[]),
            (r#"annotation.s = "5""#, &[T1]),
            ("annotation.s = 5", &[]),
            (r#"annotation.s > "4""#, &[T1]),
            ("annotation.b = true", &[T1]),
            ("annotation.b != false", &[T1]),
            ("annotation.b > false", &[]),
            (r#"annotation.n CONTAINS "5""#, &[]),
            (r#"annotation.s CONTAINS """#, &[T1]),
            ("annotation.n != 5", &[]),
            ("annotation.n != 6", &[T1]),
            ("annotation.n", &[T1]),
            ("!annotation.n", &[T2]),
            ("!annotation.missing", &[T1, T2]),
            ("!(annotation.n = 5)", &[T2]),
        ],
    );
}

#[test]
fn choosing_the_root() {
    // T1: two entry points; the earlier one is the root.
    let t1a = seg(T1, "0000000000000012", "late", 1.0, 2.0);
    let t1b = seg(T1, "0000000000000011", "early", 0.5, 2.0);
    // T2: the downstream segment starts first, but its parent is in the trace.
    let mut parent = seg(T2, "0000000000000021", "parent", 0.5, 3.0);
    let mut call = sub("0000000000000022", "call", 0.5, 2.5);
    call["namespace"] = json!("remote");
    parent["subsegments"] = json!([call]);
    let mut child = seg(T2, "0000000000000023", "child", 0.25, 2.0);
    child["parent_id"] = json!("0000000000000022");
    // T3: only an independent subsegment: no root at all.
    let orphan = json!({
        "type": "subsegment", "trace_id": T3, "parent_id": "00000000000000ff",
        "name": "work", "id": "0000000000000031",
        "start_time": 1_600_000_000.0, "end_time": 1_600_000_001.0, "error": true
    });
    // T4: each segment names a subsegment of the other: the earliest stands in.
    let mut a = seg(T4, "0000000000000041", "alpha", 1.0, 2.0);
    a["parent_id"] = json!("0000000000000044");
    a["subsegments"] = json!([sub("0000000000000042", "x", 1.0, 1.5)]);
    let mut b = seg(T4, "0000000000000043", "beta", 1.25, 2.5);
    b["parent_id"] = json!("0000000000000042");
    b["subsegments"] = json!([sub("0000000000000044", "y", 1.25, 1.5)]);
    let docs = vec![t1a, t1b, parent, child, orphan, a, b];
    check_all(
        &docs,
        &[
            (r#"name = "early""#, &[T1]),
            (r#"name = "parent""#, &[T2]),
            (r#"name = "alpha""#, &[T4]),
            ("ok", &[T1, T2, T4]),
            ("!ok", &[T3]),
            ("error", &[]),
            ("error = false", &[T1, T2, T3, T4]),
            ("name", &[T1, T2, T4]),
            ("responsetime >= 0", &[T1, T2, T4]),
            ("duration = 1", &[T3]),
            ("service()", &[T1, T2, T4]),
            (r#"edge("alpha", "beta")"#, &[T4]),
            (r#"edge("beta", "alpha")"#, &[T4]),
            (r#"service("alpha") { root }"#, &[T4]),
            (r#"service("beta") { root }"#, &[]),
        ],
    );
}

/// api -> DynamoDB (aws, faulted, with an exception) -> inferred DynamoDB table.
#[test]
fn root_causes_hand_checked() {
    let mut api = seg(T1, "00000000000000a1", "api", 0.0, 2.0);
    api["fault"] = json!(true);
    let mut ddb = sub("00000000000000a2", "DynamoDB", 0.5, 1.5);
    ddb["namespace"] = json!("aws");
    ddb["aws"] = json!({ "operation": "GetItem", "table_name": "users" });
    ddb["fault"] = json!(true);
    ddb["cause"] = json!({ "exceptions": [
        { "id": "00000000000000e1", "type": "ProvisionedThroughputExceeded", "message": "boom" }
    ]});
    api["subsegments"] = json!([ddb, sub("00000000000000a3", "handler", 0.0, 0.25)]);
    // T2: nothing failed; the root's longest child is local.
    let mut quiet = seg(T2, "00000000000000b1", "api", 0.0, 1.0);
    quiet["subsegments"] = json!([sub("00000000000000b2", "handler", 0.0, 0.25)]);
    let docs = vec![api, quiet];
    check_all(
        &docs,
        &[
            (
                r#"rootcause.fault.service { inferred AND name = "DynamoDB" }"#,
                &[T1],
            ),
            (
                r#"rootcause.fault.service { first AND name = "api" }"#,
                &[T1],
            ),
            (
                r#"rootcause.fault.service { index = 1 AND type = "AWS::DynamoDB::Table" }"#,
                &[T1],
            ),
            ("rootcause.fault.entity { last AND remote }", &[T1]),
            (
                r#"rootcause.fault.entity { index = 1 AND name = "DynamoDB" AND !inferred }"#,
                &[T1],
            ),
            (
                r#"rootcause.fault.exception { message = "boom" AND first AND last }"#,
                &[T1],
            ),
            (r#"rootcause.error.service { name }"#, &[]),
            (
                "rootcause.responsetime.entity { last AND coverage = 0.5 AND remote }",
                &[T1],
            ),
            (
                r#"rootcause.responsetime.entity { last AND name = "handler" AND coverage = 0.25 }"#,
                &[T2],
            ),
            (
                r#"rootcause.responsetime.service { last AND type = "AWS::DynamoDB::Table" }"#,
                &[T1],
            ),
            (
                r#"rootcause.json = #[{"Services": [{"Name": "api", "Inferred": false}, {"Name": "DynamoDB", "Type": "AWS::DynamoDB::Table", "Inferred": true}]}]"#,
                &[T1],
            ),
            (
                r#"rootcause.json = #[{"Services": [{"Name": "api"}]}]"#,
                &[T2],
            ),
            (r#"rootcause.json = #[{}]"#, &[T1, T2]),
        ],
    );
}

/// Groups are evaluated by the oracle only (the engine learns groups elsewhere).
#[test]
fn oracle_groups() {
    let mut t1 = seg(T1, "0000000000000001", "api", 0.0, 1.0);
    t1["fault"] = json!(true);
    let t2 = seg(T2, "0000000000000002", "api", 0.0, 9.0);
    let docs = vec![t1, t2];
    let groups: HashMap<String, String> = [
        ("faults", "fault"),
        ("slow", "responsetime > 5"),
        (
            "either",
            r#"group.name = "faults" OR group.arn = "arn:aws:xray:local:000000000000:group/slow""#,
        ),
        ("loop", r#"group.name = "loop2""#),
        ("loop2", r#"ok AND group.name = "loop""#),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let ids = |text: &str| {
        oracle::try_matching_ids(&docs, &parse(text).unwrap(), &groups)
            .map(|s| s.into_iter().collect::<Vec<_>>())
    };
    assert_eq!(
        ids(r#"group.name = "faults""#).unwrap(),
        vec![T1.to_owned()]
    );
    assert_eq!(
        ids(r#"group.name = "either""#).unwrap(),
        vec![T1.to_owned(), T2.to_owned()]
    );
    assert_eq!(ids(r#"!group.name = "slow""#).unwrap(), vec![T1.to_owned()]);
    assert!(ids(r#"group.name = "nope""#).is_err());
    assert!(ids(r#"fault OR group.name = "loop""#).is_err());
}
