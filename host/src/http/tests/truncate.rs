//! `"truncate": false` in-process: a pair the model would cut is a 422 naming it, the
//! default still truncates, and a refused request does not fail the others in its batch.

use super::*;

/// A model of at most [`LIMIT`] tokens, one token per word of the pair; it records the
/// batches it scores.
struct Counting {
    scored: Arc<Mutex<Vec<usize>>>,
}

const LIMIT: usize = 8;

fn words(pair: &TextPair) -> usize {
    pair.question().split_whitespace().count() + pair.context().split_whitespace().count()
}

impl Classify for Counting {
    fn classify(&self, pairs: &[TextPair]) -> Result<Vec<Vec<f32>>, SdkError> {
        self.scored.lock().unwrap().push(pairs.len());
        Ok(pairs.iter().map(|_| vec![0.5, 0.25, 0.25]).collect())
    }

    fn token_counts(&self, pairs: &[TextPair]) -> Result<Option<Vec<usize>>, SdkError> {
        Ok(Some(pairs.iter().map(words).collect()))
    }
}

fn counting(name: &str) -> (Arc<ModelWorker>, Arc<Mutex<Vec<usize>>>) {
    let scored = Arc::new(Mutex::new(Vec::new()));
    let backend = Counting {
        scored: Arc::clone(&scored),
    };
    let mut info = ModelInfo::new("counting", LABELS.iter().map(|l| l.to_string()).collect());
    info.max_length = Some(LIMIT);
    let worker = spawn(
        name,
        64,
        Box::new(move |_| Ok(LoadedModel::new(Box::new(backend), info))),
    );
    wait_until(|| worker.status().as_str() == "ready");
    (worker, scored)
}

fn with_words(n: usize, truncate: Option<bool>) -> Value {
    let mut body = json!({"question": "why", "context": vec!["word"; n - 1].join(" ")});
    if let Some(t) = truncate {
        body["truncate"] = json!(t);
    }
    body
}

#[tokio::test]
async fn a_pair_that_would_be_cut_is_refused_only_when_truncate_is_false() {
    let (worker, scored) = counting("t");
    let app = app(&[&worker]);
    let long = LIMIT + 5;

    // The default, and `true`, cut the pair and score it.
    for truncate in [None, Some(true)] {
        let (status, body, _) =
            send(&app, post_json("/classify/t", &with_words(long, truncate))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // A pair that fits is scored with `false` too.
    let (status, body, _) = send(
        &app,
        post_json("/classify/t", &with_words(LIMIT, Some(false))),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(scored.lock().unwrap().len(), 3);

    let (status, body, _) = send(
        &app,
        post_json("/classify/t", &with_words(long, Some(false))),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["kind"], "validation", "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("the pair is {long} tokens long"))
            && message.contains(&format!("max_length {LIMIT}")),
        "{body}"
    );
    assert_eq!(
        scored.lock().unwrap().len(),
        3,
        "a refused pair is not scored"
    );
}

#[tokio::test]
async fn in_a_list_each_item_carries_its_own_truncate_and_the_culprit_is_named() {
    let (worker, scored) = counting("t");
    let app = app(&[&worker]);
    let list = json!([
        with_words(LIMIT + 3, None),
        with_words(2, Some(false)),
        with_words(LIMIT + 1, Some(false)),
        with_words(LIMIT + 9, Some(false)),
    ]);
    let (status, body, _) = send(&app, post_json("/classify/t", &list)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("item 2 is {} tokens long", LIMIT + 1))
            && message.contains("1 more pairs are too long"),
        "item 0 may be cut, so item 2 is the first culprit: {body}"
    );
    assert!(scored.lock().unwrap().is_empty());

    // The same list with the long `false` items allowed to be cut is scored in full.
    let list = json!([with_words(LIMIT + 3, None), with_words(2, Some(false))]);
    let (status, body, _) = send(&app, post_json("/classify/t", &list)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body.as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn truncate_must_be_a_boolean() {
    let (worker, _) = counting("t");
    let app = app(&[&worker]);
    let mut body = with_words(3, None);
    body["truncate"] = json!("no");
    let (status, body, _) = send(&app, post_json("/classify/t", &body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("boolean"),
        "{body}"
    );
}

#[tokio::test]
async fn a_model_that_never_truncates_accepts_truncate_false() {
    // The plain fake reports no token counts (like the classic plugins).
    let served = fake("plain", 64, None);
    let app = app(&[&served.worker]);
    let mut body = pair("Will it be cut?");
    body["truncate"] = json!(false);
    let (status, body, _) = send(&app, post_json("/classify/plain", &body)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
