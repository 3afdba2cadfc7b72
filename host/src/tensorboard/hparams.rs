//! TensorBoard's HParams plugin data: each trial of a sweep is a "session" whose run folder
//! holds a `session_start_info` (its hyperparameters) and a `session_end_info` (its status).
//! TensorBoard infers the experiment (the hyperparameter columns and the metrics) from the
//! sessions and their scalars, so sweeps of different keys side by side still show.
//!
//! Messages from `tensorboard/plugins/hparams/plugin_data.proto` and `google/protobuf/
//! struct.proto`, declared for `prost` with upstream field numbers.

use super::proto::Value as SummaryKind;
use super::proto::{Dim, PluginData, SummaryMetadata, SummaryValue, TensorProto, TensorShapeProto};
use prost::Message;

/// `metadata.PLUGIN_NAME`.
const PLUGIN_NAME: &str = "hparams";
/// The tag of a session's start.
pub const SESSION_START_TAG: &str = "_hparams_/session_start_info";
/// The tag of a session's end.
pub const SESSION_END_TAG: &str = "_hparams_/session_end_info";
/// `tensorflow.DataType.DT_FLOAT`, the dtype of the plugin's empty tensor.
const DT_FLOAT: i32 = 1;

/// `tensorboard.hparams.HParamsPluginData`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HParamsPluginData {
    /// `metadata.PLUGIN_DATA_VERSION`: 0.
    #[prost(int32, tag = "1")]
    pub version: i32,
    #[prost(oneof = "Data", tags = "3, 4")]
    pub data: Option<Data>,
}

/// `HParamsPluginData.data`, the cases we write.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Data {
    #[prost(message, tag = "3")]
    SessionStartInfo(SessionStartInfo),
    #[prost(message, tag = "4")]
    SessionEndInfo(SessionEndInfo),
}

/// `tensorboard.hparams.SessionStartInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionStartInfo {
    #[prost(map = "string, message", tag = "1")]
    pub hparams: std::collections::HashMap<String, ProtoValue>,
    #[prost(string, tag = "2")]
    pub model_uri: String,
    #[prost(string, tag = "3")]
    pub monitor_url: String,
    /// Sessions of one group are repeats of the same settings; empty: its own group.
    #[prost(string, tag = "4")]
    pub group_name: String,
    #[prost(double, tag = "5")]
    pub start_time_secs: f64,
}

/// `tensorboard.hparams.SessionEndInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionEndInfo {
    /// [`Status`].
    #[prost(enumeration = "Status", tag = "1")]
    pub status: i32,
    #[prost(double, tag = "2")]
    pub end_time_secs: f64,
}

/// `tensorboard.hparams.Status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum Status {
    Unknown = 0,
    Success = 1,
    Failure = 2,
    Running = 3,
}

/// `google.protobuf.Value`, the kinds a hyperparameter takes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoValue {
    #[prost(oneof = "Kind", tags = "2, 3, 4")]
    pub kind: Option<Kind>,
}

/// `google.protobuf.Value.kind`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    #[prost(double, tag = "2")]
    Number(f64),
    #[prost(string, tag = "3")]
    Text(String),
    #[prost(bool, tag = "4")]
    Bool(bool),
}

impl ProtoValue {
    /// Numbers and booleans as themselves; anything else (strings, lists) as its JSON text.
    pub fn from_json(value: &serde_json::Value) -> Self {
        let kind = match value {
            serde_json::Value::Bool(b) => Kind::Bool(*b),
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(x) => Kind::Number(x),
                None => Kind::Text(n.to_string()),
            },
            serde_json::Value::String(s) => Kind::Text(s.clone()),
            other => Kind::Text(other.to_string()),
        };
        Self { kind: Some(kind) }
    }
}

/// The summary value that starts a session with `hparams`.
pub fn session_start(
    hparams: &[(String, serde_json::Value)],
    start_time_secs: f64,
) -> SummaryValue {
    let info = SessionStartInfo {
        hparams: hparams
            .iter()
            .map(|(k, v)| (k.clone(), ProtoValue::from_json(v)))
            .collect(),
        model_uri: String::new(),
        monitor_url: String::new(),
        group_name: String::new(),
        start_time_secs,
    };
    value(SESSION_START_TAG, Data::SessionStartInfo(info))
}

/// The summary value that ends a session.
pub fn session_end(status: Status, end_time_secs: f64) -> SummaryValue {
    let info = SessionEndInfo {
        status: status as i32,
        end_time_secs,
    };
    value(SESSION_END_TAG, Data::SessionEndInfo(info))
}

/// A summary value carrying plugin data, with the empty float tensor upstream writes.
fn value(tag: &str, data: Data) -> SummaryValue {
    let content = HParamsPluginData {
        version: 0,
        data: Some(data),
    }
    .encode_to_vec();
    SummaryValue {
        tag: tag.into(),
        metadata: Some(SummaryMetadata {
            plugin_data: Some(PluginData {
                plugin_name: PLUGIN_NAME.into(),
                content,
            }),
            display_name: String::new(),
            summary_description: String::new(),
        }),
        value: Some(SummaryKind::Tensor(TensorProto {
            dtype: DT_FLOAT,
            tensor_shape: Some(TensorShapeProto {
                dim: vec![Dim { size: 0 }],
            }),
            string_val: Vec::new(),
        })),
    }
}
