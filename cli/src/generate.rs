//! Deterministic synthetic X-Ray traffic, shaped like the Python SDK corpus in
//! `shared/fixtures/sdk-python/`: entry services calling an instrumented downstream
//! service, SQL, an uninstrumented HTTP dependency and DynamoDB; typed annotations of low,
//! medium and high cardinality; errors, faults and throttles with exceptions; streamed
//! independent subsegments; and in-progress fragments later completed.
//!
//! The same seed always gives the same documents (our own PRNG, so no dependency
//! version can change the output).

use std::fmt::Write as _;

/// splitmix64: small, fast, and stable forever.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Log-normal-ish latency in seconds with the given median.
    pub(crate) fn latency(&mut self, median: f64) -> f64 {
        // sum of uniforms approximates a normal; exp gives a long right tail
        let n: f64 = (0..4).map(|_| self.f64()).sum::<f64>() - 2.0;
        median * (n * 0.9).exp()
    }
}

/// Settings of a generated stream.
#[derive(Debug, Clone)]
pub(crate) struct GenOptions {
    pub(crate) seed: u64,
    /// Epoch seconds of the first trace.
    pub(crate) start: f64,
    /// Traces per second of simulated time.
    pub(crate) rate: f64,
}

impl Default for GenOptions {
    fn default() -> Self {
        // 2026-11-01T00:00:00Z
        GenOptions {
            seed: 1,
            start: 1_793_491_200.0,
            rate: 200.0,
        }
    }
}

const ENTRY: &[(&str, &str, &str)] = &[
    ("checkout-api", "POST", "https://shop.example.com/checkout"),
    ("cart-api", "GET", "https://shop.example.com/cart"),
    ("search-api", "GET", "https://shop.example.com/search"),
    ("orders-api", "GET", "https://shop.example.com/orders"),
];
const TENANTS: &[&str] = &[
    "acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka",
];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5)",
    "curl/8.5.0",
    "okhttp/4.12.0",
];
const WAREHOUSES: &[&str] = &["us-1", "us-2", "eu-1", "ap-1"];
const ORIGINS: &[&str] = &[
    "AWS::EC2::Instance",
    "AWS::ECS::Container",
    "AWS::EKS::Container",
];

/// Produces documents, one JSON text per document, in sending order.
#[derive(Debug)]
pub(crate) struct Generator {
    rng: Rng,
    opts: GenOptions,
    trace_no: u64,
    /// Completions of in-progress fragments, sent a few traces later.
    pending: Vec<(u64, String)>,
    queue: std::collections::VecDeque<String>,
}

impl Generator {
    pub(crate) fn new(opts: GenOptions) -> Generator {
        Generator {
            rng: Rng::new(opts.seed),
            opts,
            trace_no: 0,
            pending: Vec::new(),
            queue: Default::default(),
        }
    }

    fn id(&mut self) -> String {
        format!("{:016x}", self.rng.next_u64())
    }

    fn trace(&mut self) {
        let r = &mut self.rng;
        let t0 = self.opts.start + self.trace_no as f64 / self.opts.rate + r.f64() / self.opts.rate;
        let trace_id = format!(
            "1-{:08x}-{:024x}",
            t0 as u64,
            r.next_u64() as u128 | ((r.next_u64() as u128 & 0xffff_ffff) << 64)
        );
        let &(service, method, url) = self.rng.pick(ENTRY);
        let seg_id = self.id();
        let r = &mut self.rng;

        // outcome of the request
        let roll = r.f64();
        let (status, error, fault, throttle) = if roll < 0.03 {
            (500 + r.below(4) as i64, false, true, false)
        } else if roll < 0.05 {
            (429, true, false, true)
        } else if roll < 0.10 {
            (*r.pick(&[400i64, 403, 404, 409]), true, false, false)
        } else {
            (200, false, false, false)
        };
        let total = r.latency(0.08) + if fault { r.latency(0.5) } else { 0.0 };
        let end = t0 + total;

        let mut subs: Vec<String> = Vec::new();
        let mut cursor = t0 + 0.0002;
        let span = |r: &mut Rng, cursor: &mut f64, median: f64, end: f64| {
            let s = *cursor;
            let d = r.latency(median).min((end - s).max(0.00001) * 0.9);
            *cursor = s + d + 0.00005;
            (s, s + d)
        };

        // SQL
        let sql_id = self.id();
        let (s, e) = span(&mut self.rng, &mut cursor, 0.0003, end);
        subs.push(format!(
            r#"{{"id":"{sql_id}","name":"orders.db","start_time":{s},"end_time":{e},"namespace":"remote","sql":{{"database_type":"sqlite3","database_version":"3.40.1","sanitized_query":"SELECT * FROM orders WHERE id = ?"}}}}"#
        ));
        // local validation with annotations
        let val_id = self.id();
        let (s, e) = span(&mut self.rng, &mut cursor, 0.001, end);
        let rule = self.rng.pick(&["v1", "v2", "v3"]).to_string();
        subs.push(format!(
            r#"{{"id":"{val_id}","name":"validate","start_time":{s},"end_time":{e},"namespace":"local","annotations":{{"rule_set":"{rule}"}}}}"#
        ));
        // DynamoDB, sometimes
        if self.rng.chance(0.4) {
            let ddb_id = self.id();
            let (s, e) = span(&mut self.rng, &mut cursor, 0.004, end);
            let op = self.rng.pick(&["GetItem", "PutItem", "Query"]).to_string();
            let req = format!("{:08X}", self.rng.next_u64() as u32);
            subs.push(format!(
                r#"{{"id":"{ddb_id}","name":"DynamoDB","start_time":{s},"end_time":{e},"namespace":"aws","http":{{"response":{{"status":200,"content_length":{cl}}}}},"aws":{{"operation":"{op}","region":"us-east-1","request_id":"{req}","table_name":"orders","retries":0}}}}"#,
                cl = 60 + self.rng.below(400)
            ));
        }
        // uninstrumented HTTP dependency, sometimes failing
        let mut dep_fault = false;
        if self.rng.chance(0.3) {
            let dep_id = self.id();
            let (s, e) = span(&mut self.rng, &mut cursor, 0.02, end);
            dep_fault = fault && self.rng.chance(0.5);
            let st = if dep_fault { 502 } else { 200 };
            let flag = if dep_fault { r#","fault":true"# } else { "" };
            subs.push(format!(
                r#"{{"id":"{dep_id}","name":"payments.example.com","start_time":{s},"end_time":{e},"namespace":"remote","http":{{"request":{{"method":"POST","url":"https://payments.example.com/charge"}},"response":{{"status":{st}}}}}{flag}}}"#
            ));
        }
        // call to the instrumented downstream service
        let call_id = self.id();
        let (cs, ce) = span(&mut self.rng, &mut cursor, 0.015, end);
        let down_fault = fault && !dep_fault;
        let down_status = if down_fault { 503 } else { 200 };
        let call_flag = if down_fault { r#","fault":true"# } else { "" };
        subs.push(format!(
            r#"{{"id":"{call_id}","name":"inventory.internal","start_time":{cs},"end_time":{ce},"namespace":"remote","http":{{"request":{{"method":"GET","url":"http://inventory.internal/stock","traced":true}},"response":{{"status":{down_status}}}}}{call_flag}}}"#
        ));
        // a burst of small local subsegments, for some traces (streamed by the SDK)
        let burst = if self.rng.chance(0.15) {
            4 + self.rng.below(6) as usize
        } else {
            0
        };
        let mut streamed = Vec::new();
        for i in 0..burst {
            let bid = self.id();
            let (s, e) = span(&mut self.rng, &mut cursor, 0.0005, end);
            let doc = format!(
                r#"{{"id":"{bid}","name":"render-{i}","start_time":{s},"end_time":{e},"namespace":"local","type":"subsegment","parent_id":"{seg_id}","trace_id":"{trace_id}"}}"#
            );
            streamed.push(doc);
        }

        // annotations: low (tenant, premium), medium (cart_items; campaign, each of its
        // 100 values on 1% of traces: the selective-annotation benchmark T4), high
        // (order_id)
        let tenant = self.rng.pick(TENANTS).to_string();
        let campaign = self.rng.below(100);
        let premium = self.rng.chance(0.2);
        let items = 1 + self.rng.below(12);
        let total_price = (self.rng.f64() * 50000.0).round() / 100.0;
        let order_id = format!("ord-{:010}", self.rng.below(10_000_000_000));
        let agent = self.rng.pick(AGENTS).to_string();
        let ip = format!(
            "10.{}.{}.{}",
            self.rng.below(256),
            self.rng.below(256),
            self.rng.below(256)
        );
        let origin = self.rng.pick(ORIGINS).to_string();
        let user = if self.rng.chance(0.6) {
            format!(r#","user":"user-{}""#, self.rng.below(5000))
        } else {
            String::new()
        };
        let mut flags = String::new();
        if error {
            flags.push_str(r#","error":true"#);
        }
        if throttle {
            flags.push_str(r#","throttle":true"#);
        }
        if fault {
            flags.push_str(r#","fault":true"#);
            let exc = self.id();
            let _ = write!(
                flags,
                r#","cause":{{"working_directory":"/srv/app","exceptions":[{{"id":"{exc}","type":"DownstreamError","message":"inventory returned {down_status}","remote":true,"stack":[{{"path":"/srv/app/handlers.py","line":{line},"label":"handle"}}]}}]}}"#,
                line = 10 + self.rng.below(300)
            );
        }
        let instance = format!("i-{:017x}", self.rng.below(40));
        let az = self
            .rng
            .pick(&["us-east-1a", "us-east-1b", "us-east-1c"])
            .to_string();
        let segment_body = |end_part: &str, subs: &str| {
            format!(
                r#"{{"id":"{seg_id}","name":"{service}","trace_id":"{trace_id}","start_time":{t0},{end_part},"origin":"{origin}","http":{{"request":{{"method":"{method}","url":"{url}","user_agent":"{agent}","client_ip":"{ip}"}},"response":{{"status":{status},"content_length":{cl}}}}},"annotations":{{"tenant":"{tenant}","campaign":"cmp-{campaign:02}","premium":{premium},"cart_items":{items},"order_total":{total_price},"order_id":"{order_id}"}},"metadata":{{"debug":{{"attempt":1,"headers":{{"accept":"application/json"}}}}}},"aws":{{"account_id":"123456789012","ec2":{{"instance_id":"{instance}","availability_zone":"{az}"}},"xray":{{"sdk":"X-Ray for Python","sdk_version":"2.15.0"}}}},"service":{{"runtime":"CPython","runtime_version":"3.11.7"}}{user}{flags}{subs}}}"#,
                cl = 100 + (t0 as u64 % 900),
            )
        };
        let subs_json = format!(r#","subsegments":[{}]"#, subs.join(","));

        // In-progress fragment first for some traces; its completion comes later.
        if self.rng.chance(0.03) {
            self.queue
                .push_back(segment_body(r#""in_progress":true"#, ""));
            let done = segment_body(&format!(r#""end_time":{end}"#), &subs_json);
            self.pending.push((self.trace_no + 3, done));
        } else {
            for s in streamed.drain(..) {
                self.queue.push_back(s);
            }
            self.queue
                .push_back(segment_body(&format!(r#""end_time":{end}"#), &subs_json));
        }
        for s in streamed {
            self.queue.push_back(s);
        }

        // downstream service continues the trace
        let down_id = self.id();
        let ds = cs + 0.0003;
        let de = (ce - 0.0003).max(ds + 0.0001);
        let wh = self.rng.pick(WAREHOUSES).to_string();
        let stock = self.rng.below(500);
        let reserve_id = self.id();
        let rs = ds + 0.0001;
        let re = (de - 0.0001).max(rs);
        let dflag = if down_fault { r#","fault":true"# } else { "" };
        self.queue.push_back(format!(
            r#"{{"id":"{down_id}","name":"inventory-svc","trace_id":"{trace_id}","parent_id":"{call_id}","start_time":{ds},"end_time":{de},"origin":"AWS::ECS::Container","http":{{"request":{{"method":"GET","url":"http://inventory.internal/stock"}},"response":{{"status":{down_status}}}}},"annotations":{{"warehouse":"{wh}","stock_level":{stock}}},"aws":{{"xray":{{"sdk":"X-Ray for Python","sdk_version":"2.15.0"}}}}{dflag},"subsegments":[{{"id":"{reserve_id}","name":"reserve-stock","start_time":{rs},"end_time":{re},"namespace":"local"}}]}}"#
        ));

        self.trace_no += 1;
        let now = self.trace_no;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.pending = later;
        for (_, d) in due {
            self.queue.push_back(d);
        }
    }
}

impl Iterator for Generator {
    type Item = String;
    fn next(&mut self) -> Option<String> {
        while self.queue.is_empty() {
            self.trace();
        }
        self.queue.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_valid_json() {
        let a: Vec<String> = Generator::new(GenOptions::default()).take(500).collect();
        let b: Vec<String> = Generator::new(GenOptions::default()).take(500).collect();
        assert_eq!(a, b);
        let c: Vec<String> = Generator::new(GenOptions {
            seed: 2,
            ..Default::default()
        })
        .take(500)
        .collect();
        assert_ne!(a, c);
        for d in &a {
            let v: serde_json::Value =
                serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}"));
            assert!(v.get("trace_id").is_some());
        }
        assert!(a.iter().any(|d| d.contains(r#""in_progress":true"#)));
        assert!(a.iter().any(|d| d.contains(r#""type":"subsegment""#)));
        assert!(a.iter().any(|d| d.contains(r#""throttle":true"#)));
        let mean = a.iter().map(|d| d.len()).sum::<usize>() / a.len();
        assert!((500..2500).contains(&mean), "mean document size {mean}");
    }
}
