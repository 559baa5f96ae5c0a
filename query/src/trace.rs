//! One trace in memory: its rows, root, nodes, inferred nodes and edges
//! (`docs/filter-semantics.md`, "The trace").
//!
//! A [`Trace`] borrows its rows from Arrow arrays: the `array_agg`ed rows of one trace in a
//! search, or the rows of a fetched batch for summaries. Everything is computed once, when
//! the trace is built, and then read by the filter program, the root causes and the
//! summaries.

use std::collections::HashMap;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListArray, StringArray, UInt8Array,
    UInt64Array,
};
use arrow::datatypes::{Int64Type, UInt8Type, UInt64Type};
use tracelake_storage::graph::{Links, Shape};
use tracelake_storage::schema::{col, kind};

/// Names of the fields the trace model reads (beside the spans columns it shares names
/// with).
pub(crate) mod field {
    /// Namespace is `aws` or `remote`.
    pub(crate) const REMOTE: &str = "remote";
    /// Type of the inferred node the row would yield.
    pub(crate) const INFERRED_TYPE: &str = "inferred_type";
    /// Prefix of filter leaf columns: `l0`, `l1`, ...
    pub(crate) const LEAF: &str = "l";
}

/// Typed columns of a batch (or of a struct array) that hold trace rows.
#[derive(Debug, Clone)]
pub(crate) struct Columns<'a> {
    pub id: &'a UInt64Array,
    pub parent_id: &'a UInt64Array,
    pub kind: &'a UInt8Array,
    pub start_ns: &'a Int64Array,
    pub end_ns: &'a Int64Array,
    pub in_progress: &'a BooleanArray,
    pub error: &'a BooleanArray,
    pub fault: &'a BooleanArray,
    pub throttle: &'a BooleanArray,
    pub remote: &'a BooleanArray,
    pub name: &'a StringArray,
    pub origin: &'a StringArray,
    pub account_id: &'a StringArray,
    pub inferred_type: &'a StringArray,
    pub leaves: Vec<&'a BooleanArray>,
    /// Other columns by name (rich data for summaries and root causes).
    pub others: HashMap<String, &'a ArrayRef>,
}

impl<'a> Columns<'a> {
    /// Resolves the columns from `(name, array)` pairs; `None` names the missing one.
    pub(crate) fn resolve(
        cols: impl IntoIterator<Item = (&'a str, &'a ArrayRef)>,
    ) -> Result<Columns<'a>, String> {
        let mut by_name: HashMap<String, &'a ArrayRef> = HashMap::new();
        for (n, a) in cols {
            by_name.insert(n.to_owned(), a);
        }
        fn get<'a, T: 'static>(
            m: &HashMap<String, &'a ArrayRef>,
            n: &str,
            f: impl Fn(&'a ArrayRef) -> Option<&'a T>,
        ) -> Result<&'a T, String> {
            m.get(n)
                .and_then(|a| f(a))
                .ok_or_else(|| format!("trace rows lack column {n} of the expected type"))
        }
        let u64s = |a: &'a ArrayRef| a.as_primitive_opt::<UInt64Type>();
        let i64s = |a: &'a ArrayRef| a.as_primitive_opt::<Int64Type>();
        let bools = |a: &'a ArrayRef| a.as_boolean_opt();
        let strs = |a: &'a ArrayRef| a.as_string_opt::<i32>();
        let mut leaves = Vec::new();
        for i in 0.. {
            let n = format!("{}{i}", field::LEAF);
            match by_name.get(&n) {
                Some(a) => leaves.push(a.as_boolean_opt().ok_or(format!("{n} is not boolean"))?),
                None => break,
            }
        }
        Ok(Columns {
            id: get(&by_name, col::ID, u64s)?,
            parent_id: get(&by_name, col::PARENT_ID, u64s)?,
            kind: get(&by_name, col::KIND, |a: &'a ArrayRef| {
                a.as_primitive_opt::<UInt8Type>()
            })?,
            start_ns: get(&by_name, col::START_NS, i64s)?,
            end_ns: get(&by_name, col::END_NS, i64s)?,
            in_progress: get(&by_name, col::IN_PROGRESS, bools)?,
            error: get(&by_name, col::ERROR, bools)?,
            fault: get(&by_name, col::FAULT, bools)?,
            throttle: get(&by_name, col::THROTTLE, bools)?,
            remote: get(&by_name, field::REMOTE, bools)?,
            name: get(&by_name, col::NAME, strs)?,
            origin: get(&by_name, col::ORIGIN, strs)?,
            account_id: get(&by_name, col::ACCOUNT_ID, strs)?,
            inferred_type: get(&by_name, field::INFERRED_TYPE, strs)?,
            leaves,
            others: by_name,
        })
    }

    pub(crate) fn other(&self, name: &str) -> Option<&'a ArrayRef> {
        self.others.get(name).copied()
    }
}

/// The node a row belongs to (SPEC 7.19).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Node<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub account: Option<&'a str>,
    pub inferred: bool,
}

/// One row of a trace.
#[derive(Debug, Clone)]
pub(crate) struct Row<'a> {
    /// Index into the columns.
    pub at: usize,
    pub id: u64,
    pub parent: Option<u64>,
    pub segment: bool,
    pub start: i64,
    pub end: Option<i64>,
    pub in_progress: bool,
    pub error: bool,
    pub fault: bool,
    pub throttle: bool,
    pub remote: bool,
    pub name: &'a str,
}

fn opt_str(a: &StringArray, i: usize) -> Option<&str> {
    (!a.is_null(i)).then(|| a.value(i))
}

fn flag(a: &BooleanArray, i: usize) -> bool {
    !a.is_null(i) && a.value(i)
}

/// A trace with its structure worked out.
#[derive(Debug)]
pub(crate) struct Trace<'a> {
    pub cols: &'a Columns<'a>,
    pub rows: Vec<Row<'a>>,
    pub by_id: HashMap<u64, usize>,
    pub root: Option<usize>,
    /// For each row, the segment row whose node it belongs to.
    pub seg_of: Vec<Option<usize>>,
    /// For each row, the segment rows naming it as `parent_id`.
    pub real_children: Vec<Vec<usize>>,
    /// For each row, whether it yields an inferred node.
    pub inferred: Vec<bool>,
}

impl<'a> Trace<'a> {
    /// Builds the trace of the rows `at` of `cols`.
    pub(crate) fn new(cols: &'a Columns<'a>, at: impl IntoIterator<Item = usize>) -> Trace<'a> {
        let rows: Vec<Row<'a>> = at
            .into_iter()
            .map(|i| Row {
                at: i,
                id: cols.id.value(i),
                parent: (!cols.parent_id.is_null(i)).then(|| cols.parent_id.value(i)),
                segment: cols.kind.value(i) == kind::SEGMENT,
                start: cols.start_ns.value(i),
                end: (!cols.end_ns.is_null(i)).then(|| cols.end_ns.value(i)),
                in_progress: flag(cols.in_progress, i),
                error: flag(cols.error, i),
                fault: flag(cols.fault, i),
                throttle: flag(cols.throttle, i),
                remote: flag(cols.remote, i),
                name: if cols.name.is_null(i) {
                    ""
                } else {
                    cols.name.value(i)
                },
            })
            .collect();
        let links: Vec<Links> = rows
            .iter()
            .map(|r| Links {
                id: r.id,
                parent: r.parent,
                segment: r.segment,
                remote: r.remote,
                start: r.start,
            })
            .collect();
        let Shape {
            by_id,
            root,
            seg_of,
            real_children,
            inferred,
        } = Shape::new(&links);
        Trace {
            cols,
            rows,
            by_id,
            root,
            seg_of,
            real_children,
            inferred,
        }
    }

    /// The value of filter leaf `leaf` on row `k`.
    pub(crate) fn leaf(&self, k: usize, leaf: usize) -> bool {
        self.cols
            .leaves
            .get(leaf)
            .is_some_and(|a| flag(a, self.rows[k].at))
    }

    /// The node of a segment row.
    pub(crate) fn segment_node(&self, k: usize) -> Node<'a> {
        let i = self.rows[k].at;
        Node {
            name: self.rows[k].name,
            kind: opt_str(self.cols.origin, i).unwrap_or(""),
            account: opt_str(self.cols.account_id, i),
            inferred: false,
        }
    }

    /// The node a row belongs to (its segment's), if any.
    pub(crate) fn node_of(&self, k: usize) -> Option<Node<'a>> {
        self.seg_of[k].map(|s| self.segment_node(s))
    }

    /// The inferred node a row yields.
    pub(crate) fn inferred_node(&self, k: usize) -> Option<Node<'a>> {
        self.inferred[k].then(|| Node {
            name: self.rows[k].name,
            kind: opt_str(self.cols.inferred_type, self.rows[k].at).unwrap_or("remote"),
            account: None,
            inferred: true,
        })
    }

    /// Every node of the trace, real ones first, each once, in row order.
    pub(crate) fn nodes(&self) -> Vec<Node<'a>> {
        let mut out: Vec<Node<'a>> = Vec::new();
        for k in 0..self.rows.len() {
            let n = if self.rows[k].segment {
                Some(self.segment_node(k))
            } else {
                self.inferred_node(k)
            };
            if let Some(n) = n
                && !out.contains(&n)
            {
                out.push(n);
            }
        }
        out
    }

    /// Earliest start over all rows.
    pub(crate) fn first_start(&self) -> Option<i64> {
        self.rows.iter().map(|r| r.start).min()
    }

    /// Latest end over rows that ended.
    pub(crate) fn last_end(&self) -> Option<i64> {
        self.rows.iter().filter_map(|r| r.end).max()
    }

    /// `duration`: latest end minus earliest start; `None` while nothing has ended.
    pub(crate) fn duration_ns(&self) -> Option<i64> {
        self.last_end()?.checked_sub(self.first_start()?)
    }

    /// `responsetime`: the root's end minus its start.
    pub(crate) fn response_ns(&self) -> Option<i64> {
        let r = &self.rows[self.root?];
        r.end?.checked_sub(r.start)
    }

    /// The entity children of row `k`, in start order: its subsegments and the segments
    /// naming it as parent (inferred nodes are handled by the caller).
    pub(crate) fn children(&self) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); self.rows.len()];
        for (k, r) in self.rows.iter().enumerate() {
            if let Some(&p) = r.parent.as_ref().and_then(|p| self.by_id.get(p))
                && p != k
            {
                out[p].push(k);
            }
        }
        for c in &mut out {
            c.sort_by_key(|&k| (self.rows[k].start, self.rows[k].id));
        }
        out
    }
}

/// The row range of each list entry of a `ListArray` of trace rows.
pub(crate) fn list_ranges(list: &ListArray) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let offsets = list.value_offsets();
    (0..list.len()).map(move |i| offsets[i] as usize..offsets[i + 1] as usize)
}
