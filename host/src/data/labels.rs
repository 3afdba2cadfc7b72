//! Checking the labels of records against a label list.

use super::{DataError, Record};
use crate::config::quoted_list;
use clarity_sdk::config::DataConfig;
use std::collections::{BTreeSet, HashMap};

pub(super) fn require_label<'r>(
    record: &'r Record,
    cfg: &DataConfig,
) -> Result<&'r str, DataError> {
    record.label.as_deref().ok_or_else(|| DataError::Record {
        location: record.location.clone(),
        message: format!(
            "record {} has no label: field \"{}\" (data_config.label_field) is missing or empty",
            record.number, cfg.label_field
        ),
    })
}

/// Label indices of `records`, which must all carry one of `labels`. `what` describes the
/// label list for the message ("label_config.labels", "the model's labels").
pub(super) fn label_indices(
    records: &[Record],
    labels: &[String],
    cfg: &DataConfig,
    what: &str,
    hint: &str,
) -> Result<Vec<usize>, DataError> {
    let index: HashMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let mut first_bad: Option<(&Record, &str)> = None;
    let mut bad_labels = BTreeSet::new();
    let mut bad_count = 0usize;
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let label = require_label(record, cfg)?;
        match index.get(label) {
            Some(&i) => out.push(i),
            None => {
                bad_count += 1;
                bad_labels.insert(label);
                if first_bad.is_none() {
                    first_bad = Some((record, label));
                }
            }
        }
    }
    match first_bad {
        None => Ok(out),
        Some((record, label)) => {
            let mut message = format!(
                "record {} has label \"{label}\", which is not one of {what} ({})",
                record.number,
                quoted_list(labels)
            );
            if bad_count > 1 {
                let others: Vec<String> = bad_labels.iter().map(|l| l.to_string()).collect();
                message.push_str(&format!(
                    "; {bad_count} records in this file have such labels: {}",
                    quoted_list(&others)
                ));
            }
            message.push_str(hint);
            Err(DataError::Record {
                location: record.location.clone(),
                message,
            })
        }
    }
}
