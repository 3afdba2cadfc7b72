//! A model request's body: JSON as `axum::Json` reads it, except that a list of pairs is
//! counted before its pairs are built, so a list over the model's `max_request_pairs` is
//! refused without taking memory.

use super::backpressure::BodyArrived;
use super::error::ApiError;
use super::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A model request's JSON body, as `axum::Json` reads it (content type, size limit, syntax),
/// but see [`bounded_body`].
pub async fn read(request: Request, state: &AppState, max_pairs: usize) -> Result<Value, ApiError> {
    if !is_json(request.headers()) {
        return Err(ApiError::UnsupportedMediaType(
            "expected `Content-Type: application/json`".into(),
        ));
    }
    let arrived = request.extensions().get::<BodyArrived>().cloned();
    let bytes = Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            let text = rejection.body_text();
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(format!("request body is over the limit: {text}"))
            } else {
                ApiError::MalformedJson(text)
            }
        })?;
    if let Some(arrived) = arrived {
        arrived.mark();
    }
    bounded_body(&bytes, max_pairs)
}

/// `application/json` or `application/*+json`, parameters aside: what `axum::Json` takes.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.len() > "+json".len() && subtype.ends_with("+json"))
}

/// The body as JSON values, unless it is a list of more than `max_pairs` items: those are
/// counted without being built and refused, so a long list costs no memory (100,000 pairs
/// are ~80 MB as values, which the allocator would then keep).
fn bounded_body(bytes: &[u8], max_pairs: usize) -> Result<Value, ApiError> {
    if let Some(items) = list_length(bytes) {
        if items > max_pairs {
            return Err(too_many_pairs(items, max_pairs));
        }
    }
    axum::Json::<Value>::from_bytes(bytes)
        .map(|axum::Json(value)| value)
        .map_err(ApiError::from)
}

/// How many items `bytes` has if it is a JSON list (`None` for anything else, or not JSON),
/// read without building them.
pub fn list_length(bytes: &[u8]) -> Option<usize> {
    serde_json::from_slice::<ListLength>(bytes).ok()?.0
}

struct ListLength(Option<usize>);

impl<'de> Deserialize<'de> for ListLength {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Count;
        impl<'de> Visitor<'de> for Count {
            type Value = ListLength;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ListLength, A::Error> {
                let mut items = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    items += 1;
                }
                Ok(ListLength(Some(items)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ListLength, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(ListLength(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<ListLength, E> {
                Ok(ListLength(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<ListLength, E> {
                Ok(ListLength(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<ListLength, E> {
                Ok(ListLength(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<ListLength, E> {
                Ok(ListLength(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<ListLength, E> {
                Ok(ListLength(None))
            }
            fn visit_unit<E>(self) -> Result<ListLength, E> {
                Ok(ListLength(None))
            }
        }
        deserializer.deserialize_any(Count)
    }
}

/// The 422 for a list over `serving_config.max_request_pairs`.
pub fn too_many_pairs(items: usize, max_pairs: usize) -> ApiError {
    ApiError::Validation(format!(
        "{items} pairs in one request; the limit is {max_pairs} (serving_config.max_request_pairs)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_over_the_limit_is_refused_before_it_is_built() {
        let list = format!(
            "[{}]",
            vec![r#"{"question":"a","context":"b"}"#; 100_000].join(",")
        );
        match bounded_body(list.as_bytes(), 64) {
            Err(ApiError::Validation(message)) => {
                assert!(
                    message.starts_with("100000 pairs in one request; the limit is 64"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
        let within = format!(
            "[{}]",
            vec![r#"{"question":"a","context":"b"}"#; 64].join(",")
        );
        assert_eq!(
            bounded_body(within.as_bytes(), 64)
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            64
        );
        for other in [
            r#"{"question":"a","context":"b"}"#,
            "7",
            "null",
            r#""text""#,
            "[]",
        ] {
            assert_eq!(
                bounded_body(other.as_bytes(), 1).unwrap(),
                serde_json::from_str::<Value>(other).unwrap()
            );
        }
        // Syntax errors are still the JSON extractor's.
        assert!(matches!(
            bounded_body(b"[1, 2", 1),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            bounded_body(b"[1, 2, 3", 1),
            Err(ApiError::MalformedJson(_))
        ));
    }

    #[test]
    fn json_content_types_are_what_axum_json_takes() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            is_json(&headers)
        };
        for yes in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/vnd.api+json",
        ] {
            assert!(with(yes), "{yes}");
        }
        for no in [
            "text/plain",
            "application/",
            "application/+json",
            "json",
            "*/*",
            "text/json",
            "application/jsonx",
        ] {
            assert!(!with(no), "{no}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }
}
