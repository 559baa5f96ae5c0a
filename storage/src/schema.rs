//! The Arrow schema of the `spans` table: one row per segment and per subsegment.
//!
//! Column names are constants in [`col`]. Open JSON blocks are kept verbatim as text;
//! `extra` holds every part of a document that no other column holds, so that
//! [`crate::rebuild`] gives back a document value-equal to the one sent.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};

/// Column names.
pub mod col {
    pub const TRACE_ID: &str = "trace_id";
    pub const ID: &str = "id";
    pub const PARENT_ID: &str = "parent_id";
    pub const SEGMENT_ID: &str = "segment_id";
    pub const KIND: &str = "kind";
    pub const POS: &str = "pos";
    pub const NAME: &str = "name";
    pub const ORIGIN: &str = "origin";
    pub const NAMESPACE: &str = "namespace";
    pub const START_NS: &str = "start_ns";
    pub const END_NS: &str = "end_ns";
    pub const IN_PROGRESS: &str = "in_progress";
    pub const ERROR: &str = "error";
    pub const FAULT: &str = "fault";
    pub const THROTTLE: &str = "throttle";
    pub const HTTP_METHOD: &str = "http_method";
    pub const HTTP_URL: &str = "http_url";
    pub const HTTP_USER_AGENT: &str = "http_user_agent";
    pub const HTTP_CLIENT_IP: &str = "http_client_ip";
    pub const HTTP_STATUS: &str = "http_status";
    pub const HTTP_CONTENT_LENGTH: &str = "http_content_length";
    pub const USER: &str = "user";
    pub const ANNOTATIONS: &str = "annotations";
    pub const AWS: &str = "aws";
    pub const CAUSE: &str = "cause";
    pub const SQL: &str = "sql";
    pub const METADATA: &str = "metadata";
    pub const ACCOUNT_ID: &str = "account_id";
    pub const INSTANCE_ID: &str = "instance_id";
    pub const AVAILABILITY_ZONE: &str = "availability_zone";
    pub const RESOURCE_ARN: &str = "resource_arn";
    pub const EXTRA: &str = "extra";
    pub const PRESENCE: &str = "presence";
    pub const REVISION: &str = "revision";
}

/// Values of the `kind` column.
pub mod kind {
    pub const SEGMENT: u8 = 0;
    pub const SUBSEGMENT: u8 = 1;
}

/// Bits of the `presence` column: keys whose value a column holds but whose presence in
/// the document it cannot show (an explicit `"error": false`, or the `trace_id`,
/// `parent_id` and `type` the Python SDK repeats on nested subsegments).
pub mod presence {
    pub const IN_PROGRESS: u16 = 1 << 0;
    pub const ERROR: u16 = 1 << 1;
    pub const FAULT: u16 = 1 << 2;
    pub const THROTTLE: u16 = 1 << 3;
    pub const TRACE_ID: u16 = 1 << 4;
    pub const PARENT_ID: u16 = 1 << 5;
    pub const TYPE: u16 = 1 << 6;
    pub const EMPTY_SUBSEGMENTS: u16 = 1 << 7;
}

/// Fields of one annotation entry.
pub fn annotation_fields() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("str", DataType::Utf8, true),
        Field::new("num", DataType::Float64, true),
        Field::new("bool", DataType::Boolean, true),
    ])
}

/// The list item field of the `annotations` column.
pub fn annotation_item() -> Arc<Field> {
    Arc::new(Field::new(
        "item",
        DataType::Struct(annotation_fields()),
        false,
    ))
}

static SPANS: LazyLock<SchemaRef> = LazyLock::new(|| {
    use col::*;
    let utf8 = |n: &str| Field::new(n, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new(TRACE_ID, DataType::FixedSizeBinary(16), false),
        Field::new(ID, DataType::UInt64, false),
        Field::new(PARENT_ID, DataType::UInt64, true),
        Field::new(SEGMENT_ID, DataType::UInt64, false),
        Field::new(KIND, DataType::UInt8, false),
        Field::new(POS, DataType::UInt32, false),
        Field::new(NAME, DataType::Utf8, false),
        utf8(ORIGIN),
        utf8(NAMESPACE),
        Field::new(START_NS, DataType::Int64, false),
        Field::new(END_NS, DataType::Int64, true),
        Field::new(IN_PROGRESS, DataType::Boolean, false),
        Field::new(ERROR, DataType::Boolean, false),
        Field::new(FAULT, DataType::Boolean, false),
        Field::new(THROTTLE, DataType::Boolean, false),
        utf8(HTTP_METHOD),
        utf8(HTTP_URL),
        utf8(HTTP_USER_AGENT),
        utf8(HTTP_CLIENT_IP),
        Field::new(HTTP_STATUS, DataType::Int32, true),
        Field::new(HTTP_CONTENT_LENGTH, DataType::Int64, true),
        utf8(USER),
        Field::new(ANNOTATIONS, DataType::List(annotation_item()), true),
        utf8(AWS),
        utf8(CAUSE),
        utf8(SQL),
        utf8(METADATA),
        utf8(ACCOUNT_ID),
        utf8(INSTANCE_ID),
        utf8(AVAILABILITY_ZONE),
        utf8(RESOURCE_ARN),
        utf8(EXTRA),
        Field::new(PRESENCE, DataType::UInt16, false),
        Field::new(REVISION, DataType::UInt64, false),
    ]))
});

/// The schema of the `spans` table (and of every data file).
pub fn spans() -> SchemaRef {
    Arc::clone(&SPANS)
}

/// Low-cardinality string columns: the only ones Parquet dictionary-encodes.
pub const DICTIONARY_COLUMNS: &[&str] = &[
    col::NAME,
    col::ORIGIN,
    col::NAMESPACE,
    col::HTTP_METHOD,
    col::HTTP_USER_AGENT,
    col::ACCOUNT_ID,
    col::AVAILABILITY_ZONE,
    col::INSTANCE_ID,
    col::RESOURCE_ARN,
];
