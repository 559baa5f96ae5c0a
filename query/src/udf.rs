//! The scalar functions filter plans call:
//! - `xray_annotation`: one annotation test per row (`annotation.K OP v`, SPEC 7.13/7.14);
//! - `xray_inferred_type`: the type of the inferred node a row would yield (SPEC 7.19);
//! - `xray_match`: the trace-level program over the `array_agg`ed rows of each trace.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, StringArray, StringBuilder,
};
use arrow::datatypes::DataType;
use datafusion::common::{Result as DfResult, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::filter::ast::{CmpOp, StrOp};
use crate::lower::{CompiledFilter, cmp_f64, cmp_ord};
use crate::search::eval_trace;
use crate::trace::{Columns, Trace, list_ranges};

/// What `xray_annotation` tests.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum AnnotationTest {
    Present,
    /// Number literal (as bits, for `Eq`/`Hash`).
    Num(CmpOp, u64),
    Str(CmpOp, String),
    Bool(CmpOp, bool),
    StrOp(StrOp, String),
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct AnnotationUdf {
    key: String,
    test: AnnotationTest,
    signature: Signature,
}

impl AnnotationUdf {
    pub(crate) fn new(key: String, test: AnnotationTest) -> Self {
        AnnotationUdf {
            key,
            test,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }

    fn value_holds(
        &self,
        strs: &StringArray,
        nums: &arrow::array::Float64Array,
        bools: &BooleanArray,
        j: usize,
    ) -> bool {
        match &self.test {
            AnnotationTest::Present => true,
            AnnotationTest::Num(op, bits) => {
                !nums.is_null(j) && cmp_f64(nums.value(j), *op, f64::from_bits(*bits))
            }
            AnnotationTest::Str(op, s) => {
                !strs.is_null(j) && cmp_ord(strs.value(j).as_bytes().cmp(s.as_bytes()), *op)
            }
            AnnotationTest::Bool(op, b) => {
                !bools.is_null(j)
                    && match op {
                        CmpOp::Eq => bools.value(j) == *b,
                        CmpOp::Ne => bools.value(j) != *b,
                        _ => false,
                    }
            }
            AnnotationTest::StrOp(op, s) => {
                !strs.is_null(j) && {
                    let v = strs.value(j);
                    match op {
                        StrOp::Eq => v == s,
                        StrOp::Ne => v != s,
                        StrOp::Contains => v.contains(s.as_str()),
                        StrOp::BeginsWith => v.starts_with(s.as_str()),
                        StrOp::EndsWith => v.ends_with(s.as_str()),
                    }
                }
            }
        }
    }
}

impl ScalarUDFImpl for AnnotationUdf {
    fn name(&self) -> &str {
        "xray_annotation"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let Some(list) = arrays.first().and_then(|a| a.as_list_opt::<i32>()) else {
            return exec_err!("xray_annotation takes the annotations list");
        };
        let entries = list.values().as_struct();
        let (Some(keys), Some(strs), Some(nums), Some(bools)) = (
            entries.column(0).as_string_opt::<i32>(),
            entries.column(1).as_string_opt::<i32>(),
            entries
                .column(2)
                .as_primitive_opt::<arrow::datatypes::Float64Type>(),
            entries.column(3).as_boolean_opt(),
        ) else {
            return exec_err!("xray_annotation: unexpected annotation entry types");
        };
        let mut out = BooleanBuilder::with_capacity(list.len());
        for (i, range) in list_ranges(list).enumerate() {
            let hit = !list.is_null(i)
                && range
                    .clone()
                    .any(|j| keys.value(j) == self.key && self.value_holds(strs, nums, bools, j));
            out.append_value(hit);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `xray_inferred_type(namespace, name, sql, aws)`: `Database::SQL`, `AWS::<name>[::Table]`
/// or `remote` for rows with namespace `aws`/`remote`, null otherwise.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct InferredTypeUdf {
    signature: Signature,
}

impl InferredTypeUdf {
    pub(crate) fn new() -> Self {
        InferredTypeUdf {
            signature: Signature::any(4, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for InferredTypeUdf {
    fn name(&self) -> &str {
        "xray_inferred_type"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let strs: Vec<&StringArray> = arrays
            .iter()
            .filter_map(|a| a.as_string_opt::<i32>())
            .collect();
        let [ns, name, sql, aws] = strs.as_slice() else {
            return exec_err!("xray_inferred_type takes four Utf8 columns");
        };
        let mut out = StringBuilder::with_capacity(ns.len(), 0);
        for i in 0..ns.len() {
            let t = (!ns.is_null(i))
                .then(|| {
                    tracelake_storage::graph::inferred_type(
                        ns.value(i),
                        if name.is_null(i) { "" } else { name.value(i) },
                        !sql.is_null(i),
                        (!aws.is_null(i)).then(|| aws.value(i)),
                    )
                })
                .flatten();
            out.append_option(t);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `xray_match(rows)`: evaluates a compiled filter on each trace's list of rows.
#[derive(Debug)]
pub(crate) struct MatchUdf {
    filter: Arc<CompiledFilter>,
    signature: Signature,
}

impl MatchUdf {
    pub(crate) fn new(filter: Arc<CompiledFilter>) -> Self {
        MatchUdf {
            filter,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl PartialEq for MatchUdf {
    fn eq(&self, other: &Self) -> bool {
        self.filter.key == other.filter.key
    }
}
impl Eq for MatchUdf {}
impl Hash for MatchUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.filter.key.hash(state);
    }
}

impl ScalarUDFImpl for MatchUdf {
    fn name(&self) -> &str {
        "xray_match"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let Some(list) = arrays.first().and_then(|a| a.as_list_opt::<i32>()) else {
            return exec_err!("xray_match takes a list of trace rows");
        };
        let rows = list.values().as_struct();
        let named: Vec<(&str, &ArrayRef)> = rows
            .fields()
            .iter()
            .zip(rows.columns())
            .map(|(f, a)| (f.name().as_str(), a))
            .collect();
        let cols = match Columns::resolve(named) {
            Ok(c) => c,
            Err(e) => return exec_err!("xray_match: {e}"),
        };
        let mut out = BooleanBuilder::with_capacity(list.len());
        for range in list_ranges(list) {
            let trace = Trace::new(&cols, range);
            out.append_value(eval_trace(&self.filter.program, &trace));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
