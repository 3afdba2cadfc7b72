//! The OpenAPI document (`GET /openapi.json`), a self-contained docs page (`GET /docs`) and
//! a ReDoc page (`GET /redoc`), all built from the models actually served.

use crate::worker::ModelWorker;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// JSON Schema `pattern` (ECMA-262) of a text a model can read: at least one character that
/// is neither whitespace nor a control character (what the server checks).
pub const VISIBLE_TEXT: &str = r"[^\s\u0000-\u001F\u007F-\u009F]";

/// A `Pair` whose texts are at most `max_chars` characters (JSON Schema's `maxLength` counts
/// code points, as the server does): the model's `serving_config.max_text_chars`.
fn pair_within(max_chars: usize) -> Value {
    json!({"allOf": [
        {"$ref": "#/components/schemas/Pair"},
        {"properties": {"question": {"maxLength": max_chars}, "context": {"maxLength": max_chars}}}
    ]})
}

/// OpenAPI 3.1 description of the service.
pub fn document(models: &[Arc<ModelWorker>]) -> Value {
    let mut paths = Map::new();
    for worker in models {
        let spec = worker.spec();
        let pair = pair_within(spec.serving_config.max_text_chars);
        paths.insert(
            spec.route(),
            json!({
                "post": {
                    "summary": format!("Classify with model `{}` ({})", spec.name, spec.kind),
                    "operationId": format!("classify_{}", spec.name.replace(['-', '.'], "_")),
                    "requestBody": {
                        "required": true,
                        "content": {"application/json": {"schema": {"oneOf": [
                            pair,
                            {"type": "array", "items": pair, "minItems": 1,
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
                        "422": error_response("Wrong shape, a missing or empty field, a text over serving_config.max_text_chars, or too many pairs."),
                        "429": overloaded_response(),
                        "500": error_response("The plugin failed or panicked."),
                        "503": error_response("Model loading, training or failed to load."),
                        "408": error_response("The body did not arrive within --request-timeout (kind `request_timeout`)."),
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
    open_inference_paths(&mut paths);
    admin_paths(&mut paths);
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
                "question": {"type": "string", "minLength": 1, "pattern": VISIBLE_TEXT,
                             "description": "The question asked."},
                "context": {"type": "string", "minLength": 1, "pattern": VISIBLE_TEXT,
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
            }},
            "ReloadReport": {"type": "object",
                "required": ["trigger", "finished_at", "loaded", "unchanged", "removed", "failed", "pending"],
                "properties": {
                    "trigger": {"type": "string", "description": "POST /admin/reload, SIGHUP, or POST /admin/models/{name}/reload."},
                    "finished_at": {"type": "string", "format": "date-time"},
                    "loaded": {"type": "array", "items": {"type": "string"}, "description": "New or changed models now serving on a new worker."},
                    "unchanged": {"type": "array", "items": {"type": "string"}, "description": "Same entry: same worker."},
                    "removed": {"type": "array", "items": {"type": "string"}, "description": "No longer served; they stop after their requests in flight."},
                    "failed": {"type": "array", "items": {"type": "object", "required": ["name", "error", "old_model_serving"], "properties": {
                        "name": {"type": "string"}, "error": {"type": "string"},
                        "old_model_serving": {"type": "boolean", "description": "Whether the previous worker still serves the route."}}}},
                    "pending": {"type": "array", "items": {"type": "string"}, "description": "Still loading or training: they join when ready (see GET / `last_reload`)."},
                    "error": {"type": "string", "description": "Only with a failure: which entries failed."},
                    "kind": {"type": "string", "enum": ["reload_failed"], "description": "Only with a failure."}
                }},
            "V2Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "string", "description": "What went wrong (the protocol's field)."},
                "kind": {"type": "string", "description": "Machine-readable kind, as in Error."},
                "request_id": {"type": "string", "description": "The request's id, also in the x-request-id header."}
            }},
            "V2Tensor": {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
                "name": {"type": "string"},
                "datatype": {"type": "string", "description": "BYTES for the inputs and `label`, FP32 for `scores`."},
                "shape": {"type": "array", "items": {"type": "integer"}},
                "parameters": {"type": "object"},
                "data": {"type": "array", "description": "Row-major, flattened (nested lists are accepted in requests)."}
            }},
            "V2InputTensor": {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
                "name": {"type": "string", "enum": ["question", "context"]},
                "datatype": {"type": "string", "enum": ["BYTES"]},
                "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "maxItems": 2,
                          "description": "[N] (or [N, 1])."},
                "parameters": {"type": "object"},
                "data": {"type": "array", "description": "N strings (nested lists are accepted); absent with `parameters.binary_data_size`."}
            }},
            "V2InferRequest": {"type": "object", "required": ["inputs"], "properties": {
                "id": {"type": "string", "description": "Echoed in the response."},
                "parameters": {"type": "object"},
                "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/V2InputTensor"},
                           "minItems": 2, "maxItems": 2,
                           "description": "`question` and `context`: BYTES, shape [N], `data` N strings each."},
                "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string", "enum": ["scores", "label"]}, "parameters": {"type": "object"}}},
                    "description": "Only these outputs (default: both)."}
            }},
            "V2InferResponse": {"type": "object", "required": ["model_name", "outputs"], "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "id": {"type": "string"},
                "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/V2Tensor"},
                            "description": "`scores`: FP32 [N, labels], each row the labels' probabilities in label order; `label`: BYTES [N], the most probable label."}
            }}
        }}
    })
}

/// The hot-reload routes; see [`super::admin`].
fn admin_paths(paths: &mut Map<String, Value>) {
    let report = |summary: &str| {
        json!({"summary": summary, "tags": ["Admin"],
        "responses": {
            "200": {"description": "Applied: what was loaded, unchanged, removed, pending.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ReloadReport"}}}},
            "422": {"description": "An entry failed to load (the report with `error` and kind `reload_failed`; the rest is applied and the old model keeps serving), or models.yaml is invalid (kind `invalid_config`, with file, line and field; nothing changed).",
                    "content": {"application/json": {"schema": {"oneOf": [
                        {"$ref": "#/components/schemas/ReloadReport"}, {"$ref": "#/components/schemas/Error"}]}}}},
            "503": error_response("Hot reload is not available in this process.")
        }})
    };
    paths.insert(
        "/admin/reload".into(),
        json!({"post": report("Re-read models.yaml: new and changed models load beside the served ones and switch when ready; removed ones stop after their requests in flight (SIGHUP does the same)")}),
    );
    let mut one = report("Load one model's artifacts again (after a `train` in another process) and switch to it when ready; it is never trained here");
    one["parameters"] =
        json!([{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}]);
    one["responses"]["404"] = error_response("No served model has that name.");
    paths.insert("/admin/models/{name}/reload".into(), json!({"post": one}));
}

/// The Open Inference Protocol (KServe v2) routes; see [`super::v2`].
fn open_inference_paths(paths: &mut Map<String, Value>) {
    let v2_error = |description: &str| {
        json!({"description": description,
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/V2Error"}}}})
    };
    let ok = |summary: &str, example: Value| {
        json!({"summary": summary, "tags": ["Open Inference Protocol"],
               "responses": {"200": {"description": "OK", "content": {"application/json": {"example": example}}}}})
    };
    let name = json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string"},
                      "description": "The model's name in models.yaml."});
    let version = json!({"name": "version", "in": "path", "required": true,
                         "schema": {"type": "string", "enum": [super::v2::MODEL_VERSION]},
                         "description": "Every model has the one version `1`."});
    paths.insert(
        "/v2".into(),
        json!({"get": ok("Server metadata (Open Inference Protocol)",
        json!({"name": "clarity-host", "version": env!("CARGO_PKG_VERSION"), "extensions": []}))}),
    );
    paths.insert(
        "/v2/health/live".into(),
        json!({"get": ok("Liveness: 200 while the process runs", json!({"live": true}))}),
    );
    let mut ready = ok(
        "Readiness: 200 once every served model is loaded",
        json!({"ready": true}),
    );
    ready["responses"]["503"] =
        v2_error("Not ready yet (`ready: false` and the models not ready in `error`).");
    paths.insert("/v2/health/ready".into(), json!({"get": ready}));
    for (prefix, params) in [
        ("/v2/models/{name}", vec![name.clone()]),
        (
            "/v2/models/{name}/versions/{version}",
            vec![name.clone(), version.clone()],
        ),
    ] {
        let mut metadata = ok("Model metadata: inputs `question`, `context` (BYTES [-1]); outputs `scores` (FP32 [-1, labels]), `label` (BYTES [-1])",
            json!({"name": "classic", "versions": ["1"], "platform": "clarity_classic",
                   "inputs": [{"name": "question", "datatype": "BYTES", "shape": [-1]},
                              {"name": "context", "datatype": "BYTES", "shape": [-1]}],
                   "outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1, 3]},
                               {"name": "label", "datatype": "BYTES", "shape": [-1]}],
                   "parameters": {"labels": ["Clear Reply", "Clear Non-Reply", "Ambivalent"]}}));
        metadata["parameters"] = json!(params);
        metadata["responses"]["404"] = v2_error("Unknown model or version.");
        paths.insert(prefix.into(), json!({"get": metadata}));
        let mut model_ready = ok(
            "Model readiness: 200 when it serves",
            json!({"name": "classic", "ready": true}),
        );
        model_ready["parameters"] = json!(params);
        model_ready["responses"]["404"] = v2_error("Unknown model or version.");
        model_ready["responses"]["503"] =
            v2_error("The model is loading, training or failed to load.");
        paths.insert(format!("{prefix}/ready"), json!({"get": model_ready}));
        paths.insert(format!("{prefix}/infer"), json!({"post": {
            "summary": "Classify N pairs (Open Inference Protocol); the same queue, batching and limits as the model's route",
            "description": "Tensors as JSON `data`, or in the binary tensor data extension: the JSON part is `Inference-Header-Content-Length` bytes, followed by each input with `parameters.binary_data_size` (BYTES: a 4-byte little-endian length before each element). Outputs asked with `parameters.binary_data: true` (or the request's `binary_data_output: true`) follow the JSON answer the same way, FP32 little-endian.",
            "tags": ["Open Inference Protocol"],
            "parameters": params,
            "requestBody": {"required": true, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/V2InferRequest"},
                "example": {"id": "42", "inputs": [
                    {"name": "question", "datatype": "BYTES", "shape": [1], "data": ["Will you sign the bill?"]},
                    {"name": "context", "datatype": "BYTES", "shape": [1], "data": ["Q: Will you sign it?\nA: Yes."]}]}}}},
            "responses": {
                "200": {"description": "`scores` and `label` (or the requested `outputs`).",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/V2InferResponse"}}}},
                "400": v2_error("Not JSON, a missing, unknown or mistyped input, mismatched shapes, a blank element, a text over serving_config.max_text_chars, too many pairs, an unknown output, or binary data whose sizes do not add up."),
                "404": v2_error("Unknown model or version."),
                "413": v2_error("Body over the size limit."),
                "429": overloaded_response(),
                "500": v2_error("The plugin failed or panicked."),
                "503": v2_error("Model loading, training or failed to load."),
                "408": v2_error("The body did not arrive within --request-timeout."),
                "504": v2_error("No answer within --request-timeout.")
            }
        }}));
    }
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
         <a href=\"/metrics\">/metrics</a>.</p>{rows}\
         <h2>Open Inference Protocol (KServe v2)</h2><p><code>GET /v2</code>, \
         <code>/v2/health/live</code>, <code>/v2/health/ready</code>, <code>/v2/models/NAME</code>, \
         <code>/v2/models/NAME/ready</code> and <code>POST /v2/models/NAME/infer</code> with BYTES inputs \
         <code>question</code> and <code>context</code> (shape [N]), answering FP32 <code>scores</code> \
         [N, labels] and BYTES <code>label</code> [N].</p>\
         <h2>Hot reload</h2><p><code>POST /admin/reload</code> (or SIGHUP) re-reads models.yaml; \
         <code>POST /admin/models/NAME/reload</code> loads one model's artifacts again. Both answer \
         what was loaded, unchanged, removed, failed and pending.</p>\
         <pre>curl -s http://HOST/v2/models/NAME/infer -d '{{\"inputs\": [\
         {{\"name\": \"question\", \"datatype\": \"BYTES\", \"shape\": [1], \"data\": [\"Will you sign it?\"]}}, \
         {{\"name\": \"context\", \"datatype\": \"BYTES\", \"shape\": [1], \"data\": [\"Q: Will you sign it?\\nA: Yes.\"]}}]}}'</pre>\
         </body></html>",
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
