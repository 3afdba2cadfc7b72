//! The OpenAPI document (`GET /openapi.json`) and a self-contained docs page (`GET /docs`),
//! both built from the models actually served.

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
                        "500": error_response("The plugin failed or panicked."),
                        "503": error_response("Model loading, training or failed; or its queue is full.")
                    }
                }
            }),
        );
    }
    let simple = |summary: &str| json!({"get": {"summary": summary, "responses": {"200": {"description": "OK"}}}});
    paths.insert(
        "/".into(),
        simple("Service version and every model's route, labels and status"),
    );
    paths.insert(
        "/health".into(),
        simple("Liveness: 200 while the process runs"),
    );
    paths.insert(
        "/ready".into(),
        json!({"get": {"summary": "Readiness: 200 once every served model is loaded",
                       "responses": {"200": {"description": "Ready"}, "503": error_response("Not ready yet")}}}),
    );
    paths.insert("/metrics".into(), simple("Prometheus metrics"));
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
                            "description": "The interview question and answer (alias: answer)."}
            }},
            "Prediction": {"type": "object", "required": ["clarity_label", "confidence", "scores"], "properties": {
                "clarity_label": {"type": "string", "description": "The most probable label."},
                "confidence": {"type": "number", "description": "Its probability."},
                "scores": {"type": "object", "additionalProperties": {"type": "number"},
                           "description": "Every label's probability, in the model's label order."}
            }},
            "Error": {"type": "object", "required": ["error", "kind"], "properties": {
                "error": {"type": "string"}, "kind": {"type": "string"}
            }}
        }}
    })
}

fn error_response(description: &str) -> Value {
    json!({"description": description,
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
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
         <code>{{\"error\", \"kind\"}}</code>. Machine-readable: <a href=\"/openapi.json\">/openapi.json</a>. \
         Also <a href=\"/\">/</a>, <a href=\"/health\">/health</a>, <a href=\"/ready\">/ready</a>, \
         <a href=\"/metrics\">/metrics</a>.</p>{rows}</body></html>",
        env!("CARGO_PKG_VERSION")
    )
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
