//! The seam between the host and whatever scores pairs (TEI's `Backend`): a small
//! object-safe [`Classify`] trait, and [`LoadedModel`], which checks every answer's shape.
//!
//! The server's worker and the CLI both hold a [`LoadedModel`], so a plugin that answers
//! with the wrong number of rows or scores is an error on every path, never a response
//! built from a misaligned vector. Tests put a fake [`Classify`] behind the real router.

use clarity_sdk::groups::LabelGroups;
use clarity_sdk::{Error as SdkError, ModelInfo, TextPair};
use std::sync::Arc;

/// Ends a backend call that does not return, from another thread (kills a model's process).
pub type Stopper = Arc<dyn Fn() + Send + Sync>;

/// Anything that scores question/context pairs: a plugin's backend, or a test's fake.
pub trait Classify: Send {
    /// One probability vector per pair, in the model's label order.
    fn classify(&self, pairs: &[TextPair]) -> Result<Vec<Vec<f32>>, SdkError>;

    /// Each pair's untruncated length in tokens; `None` when the model never truncates.
    fn token_counts(&self, pairs: &[TextPair]) -> Result<Option<Vec<usize>>, SdkError> {
        let _ = pairs;
        Ok(None)
    }

    /// How to end a call stuck in this backend, if it can be (`None`: in-process plugins
    /// cannot be stopped from outside).
    fn stopper(&self) -> Option<Stopper> {
        None
    }
}

/// A loaded model: its backend and what it reported about itself when it loaded.
pub struct LoadedModel {
    backend: Box<dyn Classify + Send>,
    info: ModelInfo,
    /// Set for `label_config.groups`: the backend answers fine labels, `info` has the coarse.
    groups: Option<LabelGroups>,
}

impl LoadedModel {
    /// Wrap `backend`, loaded with `info` (whose labels every answer must match).
    pub fn new(backend: Box<dyn Classify + Send>, info: ModelInfo) -> Self {
        Self {
            backend,
            info,
            groups: None,
        }
    }

    /// Answer with the coarse labels of `groups`, summing the fine probabilities the backend
    /// returns. The backend must have loaded with exactly the groups' fine labels.
    pub fn with_groups(mut self, groups: Option<LabelGroups>) -> Result<Self, SdkError> {
        let Some(groups) = groups else {
            return Ok(self);
        };
        if self.info.labels != groups.fine {
            return Err(SdkError::config(format!(
                "the trained model's labels {:?} are not label_config.groups' fine labels {:?}: \
                 retrain it",
                self.info.labels, groups.fine
            )));
        }
        self.info.labels = groups.coarse.clone();
        self.groups = Some(groups);
        Ok(self)
    }

    /// What the model reported when it loaded.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Its labels, in output order.
    pub fn labels(&self) -> &[String] {
        &self.info.labels
    }

    /// Score `pairs`: one row per pair, one score per label, or an error saying which
    /// count was wrong.
    pub fn classify(&self, pairs: &[TextPair]) -> Result<Vec<Vec<f32>>, SdkError> {
        let scores = self.backend.classify(pairs)?;
        let scores = self.checked(pairs, scores)?;
        Ok(match &self.groups {
            Some(groups) => scores.iter().map(|row| groups.coarse_scores(row)).collect(),
            None => scores,
        })
    }

    /// The backend's own answer, refused when its shape or values are wrong.
    fn checked(
        &self,
        pairs: &[TextPair],
        scores: Vec<Vec<f32>>,
    ) -> Result<Vec<Vec<f32>>, SdkError> {
        if scores.len() != pairs.len() {
            return Err(SdkError::other(format!(
                "the model returned {} score vectors for {} pairs",
                scores.len(),
                pairs.len()
            )));
        }
        let labels = self
            .groups
            .as_ref()
            .map_or(self.labels().len(), |g| g.fine.len());
        if let Some(row) = scores.iter().find(|row| row.len() != labels) {
            return Err(SdkError::other(format!(
                "the model returned {} scores for {labels} labels",
                row.len()
            )));
        }
        // A NaN or infinity would reach the client as `null` or break argmax: a model
        // that produces one is failing, whatever else it returned.
        let bad = scores
            .iter()
            .enumerate()
            .find_map(|(i, row)| row.iter().find(|s| !s.is_finite()).map(|s| (i, *s)));
        if let Some((i, score)) = bad {
            return Err(SdkError::other(format!(
                "the model returned a non-finite score ({score}) for pair {i}"
            )));
        }
        Ok(scores)
    }

    /// Each pair's untruncated length in tokens (`None`: the model never truncates).
    pub fn token_counts(&self, pairs: &[TextPair]) -> Result<Option<Vec<usize>>, SdkError> {
        self.backend.token_counts(pairs)
    }

    /// How to end a call stuck in the backend, if it can be.
    pub fn stopper(&self) -> Option<Stopper> {
        self.backend.stopper()
    }

    /// The pairs (by index) that `max_length` would cut, with their lengths in tokens, and
    /// the limit; empty when none would be or the model never truncates.
    pub fn too_long(&self, pairs: &[TextPair]) -> Result<Vec<(usize, usize)>, SdkError> {
        let Some(limit) = self.info.max_length else {
            return Ok(Vec::new());
        };
        let Some(counts) = self.token_counts(pairs)? else {
            return Ok(Vec::new());
        };
        if counts.len() != pairs.len() {
            return Err(SdkError::other(format!(
                "the model returned {} token counts for {} pairs",
                counts.len(),
                pairs.len()
            )));
        }
        Ok(counts
            .into_iter()
            .enumerate()
            .filter(|&(_, n)| n > limit)
            .collect())
    }

    /// Score `pairs` in calls of at most `chunk` pairs.
    pub fn classify_chunked(
        &self,
        pairs: &[TextPair],
        chunk: usize,
    ) -> Result<Vec<Vec<f32>>, SdkError> {
        let mut out = Vec::with_capacity(pairs.len());
        for part in pairs.chunks(chunk.max(1)) {
            out.extend(self.classify(part)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<Vec<f32>>);

    impl Classify for Fixed {
        fn classify(&self, _pairs: &[TextPair]) -> Result<Vec<Vec<f32>>, SdkError> {
            Ok(self.0.clone())
        }
    }

    fn model(rows: Vec<Vec<f32>>) -> LoadedModel {
        let labels = vec!["a".to_string(), "b".to_string()];
        LoadedModel::new(Box::new(Fixed(rows)), ModelInfo::new("fixed", labels))
    }

    #[test]
    fn answers_of_the_right_shape_pass() {
        let pairs = [TextPair::new("q", "c")];
        let scores = model(vec![vec![0.25, 0.75]]).classify(&pairs);
        assert_eq!(scores, Ok(vec![vec![0.25, 0.75]]));
    }

    #[test]
    fn groups_answer_coarse_labels_with_summed_probabilities() {
        use std::collections::BTreeMap;
        let groups = BTreeMap::from([
            ("reply".to_string(), vec!["explicit".to_string()]),
            (
                "evasion".to_string(),
                vec!["dodging".to_string(), "declining".to_string()],
            ),
        ]);
        let groups = LabelGroups::resolve(&groups, &[]).unwrap();
        let fine = groups.fine.clone();
        assert_eq!(fine, ["dodging", "declining", "explicit"]);
        let fixed = |rows| Box::new(Fixed(rows));
        let model = LoadedModel::new(
            fixed(vec![vec![0.25, 0.25, 0.5]]),
            ModelInfo::new("fixed", fine.clone()),
        )
        .with_groups(Some(groups.clone()))
        .unwrap();
        assert_eq!(model.labels(), ["evasion", "reply"]);
        let pairs = [TextPair::new("q", "c")];
        assert_eq!(model.classify(&pairs), Ok(vec![vec![0.5, 0.5]]));
        // The backend's row is checked against the fine labels, not the coarse ones.
        let short = LoadedModel::new(fixed(vec![vec![0.5, 0.5]]), ModelInfo::new("f", fine))
            .with_groups(Some(groups.clone()))
            .unwrap();
        assert!(short.classify(&pairs).is_err());
        // A model trained for other labels is refused at load.
        let other = LoadedModel::new(
            fixed(vec![]),
            ModelInfo::new("f", vec!["a".into(), "b".into()]),
        )
        .with_groups(Some(groups));
        let err = other.err().expect("labels differ");
        assert!(err.message.contains("retrain"), "{err}");
    }

    #[test]
    fn wrong_row_or_score_counts_are_errors() {
        let pairs = [TextPair::new("q", "c")];
        let too_few = model(vec![vec![1.0]]).classify(&pairs);
        let err = too_few.expect_err("one score for two labels");
        assert!(err.message.contains("1 scores for 2 labels"), "{err}");
        let no_rows = model(Vec::new()).classify(&pairs);
        let err = no_rows.expect_err("no rows for one pair");
        assert!(err.message.contains("0 score vectors for 1 pairs"), "{err}");
    }

    #[test]
    fn non_finite_scores_are_errors() {
        let pairs = [TextPair::new("q", "c"), TextPair::new("q2", "c2")];
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let err = model(vec![vec![0.5, 0.5], vec![bad, 0.5]])
                .classify(&pairs)
                .expect_err("a non-finite score");
            assert!(err.message.contains("non-finite score"), "{err}");
            assert!(err.message.contains("pair 1"), "{err}");
        }
    }
}
