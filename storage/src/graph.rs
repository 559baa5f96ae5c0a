//! The structure of one trace: its root, each row's segment, the real segments calling
//! into each row and the inferred nodes (SPEC 7.5, 7.7, 7.19, 7.20).
//!
//! The query layer (filters, summaries, the service graph) and the rollups written at
//! flush read traces through this one definition, so a node or an edge means the same
//! thing everywhere.

use std::collections::HashMap;

/// What the structure needs of one row.
#[derive(Debug, Clone, Copy)]
pub struct Links {
    pub id: u64,
    pub parent: Option<u64>,
    /// A segment (not a subsegment).
    pub segment: bool,
    /// Namespace `aws` or `remote`: a call that yields an inferred node unless a real
    /// segment answers it.
    pub remote: bool,
    pub start: i64,
}

/// The structure of one trace's rows (indexes are positions in the rows given).
#[derive(Debug, Clone)]
pub struct Shape {
    pub by_id: HashMap<u64, usize>,
    /// The root segment (SPEC 7.5, ties broken by the smaller id, 7.21).
    pub root: Option<usize>,
    /// For each row, the segment row whose node it belongs to.
    pub seg_of: Vec<Option<usize>>,
    /// For each row, the segment rows naming it as `parent_id`.
    pub real_children: Vec<Vec<usize>>,
    /// For each row, whether it yields an inferred node.
    pub inferred: Vec<bool>,
}

impl Shape {
    /// Works out the structure of `rows`.
    pub fn new(rows: &[Links]) -> Shape {
        let n = rows.len();
        let by_id: HashMap<u64, usize> = rows.iter().enumerate().map(|(k, r)| (r.id, k)).collect();

        let mut real_children = vec![Vec::new(); n];
        for (k, r) in rows.iter().enumerate() {
            if r.segment
                && let Some(&p) = r.parent.as_ref().and_then(|p| by_id.get(p))
                && p != k
            {
                real_children[p].push(k);
            }
        }

        let key = |k: usize| (rows[k].start, rows[k].id);
        let candidate = (0..n)
            .filter(|&k| rows[k].segment && rows[k].parent.is_none_or(|p| !by_id.contains_key(&p)))
            .min_by_key(|&k| key(k));
        let root =
            candidate.or_else(|| (0..n).filter(|&k| rows[k].segment).min_by_key(|&k| key(k)));

        // Each row's segment: follow parent links through subsegment rows.
        let mut seg_of: Vec<Option<Option<usize>>> = vec![None; n];
        for k in 0..n {
            let mut chain = Vec::new();
            let mut cur = Some(k);
            let found = loop {
                let Some(c) = cur else { break None };
                if let Some(known) = seg_of[c] {
                    break known;
                }
                if rows[c].segment {
                    break Some(c);
                }
                if chain.len() > n {
                    break None; // a parent cycle
                }
                chain.push(c);
                cur = rows[c].parent.and_then(|p| by_id.get(&p).copied());
            };
            seg_of[k] = Some(found);
            for c in chain {
                seg_of[c] = Some(found);
            }
        }
        let seg_of: Vec<Option<usize>> = seg_of.into_iter().map(Option::flatten).collect();

        let inferred = (0..n)
            .map(|k| !rows[k].segment && rows[k].remote && real_children[k].is_empty())
            .collect();
        Shape {
            by_id,
            root,
            seg_of,
            real_children,
            inferred,
        }
    }
}

/// Whether a namespace makes a call that can yield an inferred node.
pub fn is_remote(namespace: Option<&str>) -> bool {
    matches!(namespace, Some("aws" | "remote"))
}

/// The type of the inferred node a row yields (SPEC 7.19): `Database::SQL` with a `sql`
/// block, `remote` for plain HTTP, `AWS::<name>` (`AWS::<name>::Table` when
/// `aws.table_name` names the resource) for the `aws` namespace; `None` for other rows.
pub fn inferred_type(
    namespace: &str,
    name: &str,
    has_sql: bool,
    aws: Option<&str>,
) -> Option<String> {
    if !is_remote(Some(namespace)) {
        return None;
    }
    if has_sql {
        return Some("Database::SQL".to_owned());
    }
    if namespace == "remote" {
        return Some("remote".to_owned());
    }
    let table = aws
        .and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok())
        .is_some_and(|v| v.get("table_name").is_some_and(|t| !t.is_null()));
    Some(if table {
        format!("AWS::{name}::Table")
    } else {
        format!("AWS::{name}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, parent: Option<u64>, segment: bool, remote: bool, start: i64) -> Links {
        Links {
            id,
            parent,
            segment,
            remote,
            start,
        }
    }

    #[test]
    fn a_call_answered_by_a_real_segment_yields_no_inferred_node() {
        // front (1) -> sub 2 (remote) -> back (3); sub 4 (remote) unanswered
        let rows = [
            row(1, None, true, false, 10),
            row(2, Some(1), false, true, 11),
            row(3, Some(2), true, false, 12),
            row(4, Some(1), false, true, 13),
        ];
        let s = Shape::new(&rows);
        assert_eq!(s.root, Some(0));
        assert_eq!(s.seg_of, vec![Some(0), Some(0), Some(2), Some(0)]);
        assert_eq!(s.real_children[1], vec![2]);
        assert_eq!(s.inferred, vec![false, false, false, true]);
    }

    #[test]
    fn a_parent_cycle_has_no_segment() {
        let rows = [
            row(1, Some(2), false, false, 0),
            row(2, Some(1), false, false, 0),
        ];
        let s = Shape::new(&rows);
        assert_eq!(s.seg_of, vec![None, None]);
        assert_eq!(s.root, None);
    }

    #[test]
    fn inferred_types_follow_spec_7_19() {
        assert_eq!(
            inferred_type("remote", "api", false, None).as_deref(),
            Some("remote")
        );
        assert_eq!(
            inferred_type("remote", "db", true, None).as_deref(),
            Some("Database::SQL")
        );
        let aws = Some(r#"{"table_name":"t"}"#);
        assert_eq!(
            inferred_type("aws", "DynamoDB", false, aws).as_deref(),
            Some("AWS::DynamoDB::Table")
        );
        assert_eq!(
            inferred_type("aws", "S3", false, Some("{}")).as_deref(),
            Some("AWS::S3")
        );
        assert_eq!(inferred_type("local", "x", false, None), None);
    }
}
