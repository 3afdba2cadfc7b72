//! Structural checks run before a model is written, so a builder mistake is reported with
//! the node and value names instead of as an opaque ONNX Runtime load error.

use super::proto::{DataLocation, DataType, ModelProto, TensorProto};
use super::OnnxError;
use std::collections::HashSet;

/// Check that every value is defined once before it is read, every graph output exists, and
/// every inline initializer's bytes fill its shape.
pub fn check(model: &ModelProto) -> Result<(), OnnxError> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| OnnxError::Invalid("the model has no graph".into()))?;
    let mut defined = HashSet::new();
    for input in &graph.input {
        define(&mut defined, input.name.as_deref(), "a graph input")?;
    }
    for tensor in &graph.initializer {
        define(&mut defined, tensor.name.as_deref(), "an initializer")?;
        check_size(tensor.name.as_deref().unwrap_or_default(), tensor)?;
    }
    for node in &graph.node {
        let label = format!(
            "node `{}` ({})",
            node.name.as_deref().unwrap_or_default(),
            node.op_type.as_deref().unwrap_or_default()
        );
        for input in node.input.iter().filter(|i| !i.is_empty()) {
            if !defined.contains(input.as_str()) {
                return Err(OnnxError::Invalid(format!(
                    "{label} reads `{input}`, which no graph input, initializer or earlier \
                     node defines"
                )));
            }
        }
        for output in &node.output {
            define(&mut defined, Some(output), &label)?;
        }
    }
    for output in &graph.output {
        let name = output.name.as_deref().unwrap_or_default();
        if !defined.contains(name) {
            return Err(OnnxError::Invalid(format!(
                "graph output `{name}` is not defined by any node, input or initializer"
            )));
        }
    }
    Ok(())
}

/// Record `name` as defined by `by`; a second definition is an error.
fn define<'a>(
    defined: &mut HashSet<&'a str>,
    name: Option<&'a str>,
    by: &str,
) -> Result<(), OnnxError> {
    let name = name.unwrap_or_default();
    if name.is_empty() {
        return Err(OnnxError::Invalid(format!("{by} has an empty name")));
    }
    if defined.insert(name) {
        Ok(())
    } else {
        Err(OnnxError::Invalid(format!(
            "value `{name}` is defined twice (again by {by})"
        )))
    }
}

/// Bytes per element of the types we write (None: not checked).
fn elem_size(data_type: i32) -> Option<usize> {
    match DataType::try_from(data_type).ok()? {
        DataType::Float | DataType::Int32 => Some(4),
        DataType::Int64 | DataType::Double => Some(8),
        DataType::Float16 | DataType::Bfloat16 => Some(2),
        DataType::Bool | DataType::Uint8 | DataType::Int8 => Some(1),
        DataType::Undefined | DataType::String => None,
    }
}

fn check_size(name: &str, tensor: &TensorProto) -> Result<(), OnnxError> {
    let external = tensor.data_location == Some(DataLocation::External as i32);
    let (Some(raw), false) = (&tensor.raw_data, external) else {
        return Ok(());
    };
    let Some(size) = tensor.data_type.and_then(elem_size) else {
        return Ok(());
    };
    if tensor.dims.iter().any(|&d| d < 0) {
        return Err(OnnxError::Invalid(format!(
            "initializer `{name}` has a negative dimension {:?}",
            tensor.dims
        )));
    }
    let count: i64 = tensor.dims.iter().product();
    if raw.len() as u64 != count as u64 * size as u64 {
        return Err(OnnxError::Invalid(format!(
            "initializer `{name}` of shape {:?} needs {count} values but has {}",
            tensor.dims,
            raw.len() / size
        )));
    }
    Ok(())
}
