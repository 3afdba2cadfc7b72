//! The OpenAPI document (`GET /openapi.json`), a self-contained docs page (`GET /docs`) and
//! a ReDoc page (`GET /redoc`), all built from the models actually served.

use crate::worker::ModelWorker;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// OpenAPI 3.1 description of the service.
pub fn document(models: &[Arc<ModelWorker>]) -> Value {
    let mut paths = Map::new();
    for worker in models {
        let spec = worker.spec();
        paths.insert(
            spec.route(),
            json!({
                "post": {
                    "summary": format!("Classify with model `{}` ({})", spec.name, spec.kind),
                    "operationId": format!("classify_{}", spec.name.replace(['-', '.'], "_")),
                    "requestBody": {
                        "required": true,
                        "content": {"application/json": {"schema": {"oneOf": [
                            {"$ref": "#/components/schemas/Pair"},
                            {"type": "array", "items": {"$ref": "#/components/schemas/Pair"}, "minItems": 1,
                             "maxItems": spec.serving_config.max_request_pairs}
                        ]}}}
                    },
                    "responses": {
                        "200": {"description": "One prediction per pair (a list for a list).",
                                "content": {"application/json": {"schema": {"oneOf": [
                                    {"$ref": "#/components/schemas/Prediction"},
                                    {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}}
                                ]}}}},
                        "400": error_response("Body is not JSON."),
                        "413": error_response("Body over the size limit."),
                        "415": error_response("Content-Type is not application/json."),
                        "422": error_response("Wrong shape, a missing or empty field, or too many pairs."),
                        "429": overloaded_response(),
                        "500": error_response("The plugin failed or panicked."),
                        "503": error_response("Model loading, training or failed to load."),
                        "504": error_response("No answer within --request-timeout (kind `timeout`); pairs not yet started are dropped.")
                    }
                }
            }),
        );
    }
    let simple = |summary: &str| json!({"get": {"summary": summary, "responses": {"200": {"description": "OK"}}}});
    let ok_with = |summary: &str, schema: &str| {
        json!({"get": {"summary": summary, "responses": {"200": {"description": "OK",
            "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}}}}})
    };
    paths.insert(
        "/".into(),
        ok_with(
            "Service version and every model's route, labels and status",
            "Index",
        ),
    );
    paths.insert(
        "/health".into(),
        ok_with("Liveness: 200 while the process runs", "Health"),
    );
    paths.insert(
        "/ready".into(),
        json!({"get": {"summary": "Readiness: 200 once every served model is loaded",
                       "responses": {"200": {"description": "Ready"}, "503": error_response("Not ready yet")}}}),
    );
    paths.insert("/metrics".into(), simple("Prometheus metrics"));
    paths.insert(
        "/docs".into(),
        simple("This API as a page (no external scripts)"),
    );
    paths.insert(
        "/redoc".into(),
        simple("This API in ReDoc (loaded from a CDN; the /docs page offline)"),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Clarity",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Text classifiers for question/answer pairs, declared in models.yaml."
        },
        "paths": paths,
        "components": {"schemas": {
            "Pair": {"type": "object", "required": ["question", "context"], "properties": {
                "question": {"type": "string", "minLength": 1, "description": "The question asked."},
                "context": {"type": "string", "minLength": 1,
                            "description": "The interview question and answer (alias: answer)."},
                "truncate": {"type": "boolean", "default": true,
                             "description": "false: a pair longer than the model's max_length is a 422 instead of being truncated."}
            }},
            "Prediction": {"type": "object", "required": ["clarity_label", "confidence", "scores"], "properties": {
                "clarity_label": {"type": "string", "description": "The most probable label."},
                "confidence": {"type": "number", "description": "Its probability."},
                "scores": {"type": "object", "additionalProperties": {"type": "number"},
                           "description": "Every label's probability, in the model's label order."}
            }},
            "Error": {"type": "object", "required": ["error", "kind", "detail"], "properties": {
                "error": {"type": "string", "description": "What went wrong."},
                "kind": {"type": "string", "description": "Machine-readable kind, e.g. validation."},
                "detail": {"type": "string",
                           "description": "The same text as `error`, under FastAPI's name (always a string)."},
                "request_id": {"type": "string", "description": "The request's id, also in the x-request-id header."}
            }},
            "Index": {"type": "object", "required": ["service", "version", "models", "endpoints"], "properties": {
                "service": {"type": "string"},
                "version": {"type": "string"},
                "sdk_version": {"type": "string"},
                "models": {"type": "array", "items": {"type": "object"},
                           "description": "Every served model: name, type, route, status, labels, backend."},
                "endpoints": {"type": "array", "items": {"type": "string"},
                              "description": "The served models' routes, in models.yaml order."}
            }},
            "Health": {"type": "object", "required": ["status", "models_loaded"], "properties": {
                "status": {"type": "string", "enum": ["ok"]},
                "models_loaded": {"type": "integer", "minimum": 0,
                                  "description": "How many served models are loaded and ready."}
            }}
        }}
    })
}

fn error_response(description: &str) -> Value {
    json!({"description": description,
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// 429 `overloaded`, with the `Retry-After` header clients should honour.
fn overloaded_response() -> Value {
    let mut response = error_response(
        "Overloaded (kind `overloaded`): the model's queue is full, or --max-concurrent-requests \
         requests are in flight. Retry after `Retry-After` seconds.",
    );
    response["headers"] = json!({"Retry-After": {
        "description": "Seconds to wait before retrying: the queue's drain estimate (1 to 60), 1 for the in-flight bound.",
        "schema": {"type": "integer", "minimum": 1}
    }});
    response
}

/// A docs page with no external scripts: each route with a curl example.
pub fn docs_page(models: &[Arc<ModelWorker>]) -> String {
    let mut rows = String::new();
    for worker in models {
        let spec = worker.spec();
        let route = html_escape(&spec.route());
        rows.push_str(&format!(
            "<h2><code>POST {route}</code></h2><p>Model <b>{}</b> ({}).</p>\
             <pre>curl -s http://HOST{route} -H 'content-type: application/json' \\\n  \
             -d '{{\"question\": \"Will you sign the bill?\", \"context\": \"Q: Will you sign it?\\nA: Yes.\"}}'</pre>",
            html_escape(&spec.name),
            html_escape(&spec.kind),
        ));
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Clarity API</title>\
         <style>body{{font-family:sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem}}\
         pre{{background:#f4f4f4;padding:.8rem;overflow-x:auto}}</style></head><body>\
         <h1>Clarity API {}</h1>\
         <p>A pair is <code>{{\"question\", \"context\"}}</code>; a list of pairs gets a list of answers. \
         Each answer is <code>{{\"clarity_label\", \"confidence\", \"scores\"}}</code>. Errors are \
         <code>{{\"error\", \"kind\", \"detail\"}}</code>. Machine-readable: <a href=\"/openapi.json\">/openapi.json</a> \
         (also as <a href=\"/redoc\">ReDoc</a>). \
         Also <a href=\"/\">/</a>, <a href=\"/health\">/health</a>, <a href=\"/ready\">/ready</a>, \
         <a href=\"/metrics\">/metrics</a>.</p>{rows}</body></html>",
        env!("CARGO_PKG_VERSION")
    )
}

/// Where FastAPI's `/redoc` loads ReDoc from.
const REDOC_SCRIPT: &str = "https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js";

/// ReDoc over `/openapi.json`, like FastAPI's page. The script comes from a CDN (shipping the
/// 1 MB bundle is not worth it); without network the page shows the `/docs` content instead.
pub fn redoc_page(models: &[Arc<ModelWorker>]) -> String {
    let docs = docs_page(models);
    let body = docs
        .split_once("<body>")
        .and_then(|(_, rest)| rest.rsplit_once("</body>"))
        .map_or("", |(body, _)| body);
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Clarity API - ReDoc</title>\
         <style>body{{margin:0;font-family:sans-serif}}\
         #offline{{max-width:52rem;margin:2rem auto;padding:0 1rem}}\
         pre{{background:#f4f4f4;padding:.8rem;overflow-x:auto}}</style></head><body>\
         <div id=\"redoc\"></div><div id=\"offline\">{body}</div>\
         <script src=\"{REDOC_SCRIPT}\" onload=\"document.getElementById('offline').remove();\
         Redoc.init('/openapi.json', {{}}, document.getElementById('redoc'))\"></script>\
         </body></html>"
    )
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
