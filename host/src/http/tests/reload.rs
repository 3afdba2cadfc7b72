//! Hot reload in-process: a real `models.yaml` in a temporary folder, re-read by the real
//! [`Reloader`], over fake workers. What `model_config.options.fake` says decides how a fake
//! model loads: `fail` (its load fails), `train` (it trains until the test opens a gate).

use super::*;
use crate::http::auth::Auth;
use crate::reload::{ModelTable, Reloader, SharedTable};
use crate::worker::Status;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A project folder with a `models.yaml`, and the served table and router over it.
struct Reloadable {
    dir: tempfile::TempDir,
    table: SharedTable,
    app: Router,
    /// Workers started so far (each one's backend name is `fake-<n>`).
    started: Arc<AtomicUsize>,
    /// The gate the next started worker's batches wait at (open unless a test closes it).
    next_gate: Arc<Mutex<Arc<Gate>>>,
    /// Pairs per batch, over every fake model.
    calls: Arc<Mutex<Vec<usize>>>,
    /// Models marked `train` train until this opens.
    training: Arc<Gate>,
}

fn open_gate() -> Arc<Gate> {
    let gate = Gate::closed();
    gate.open();
    gate
}

fn entry(name: &str, extra: &str) -> String {
    format!(
        "- name: {name}\n  type: classic\n  route: /classify/{name}\n  label_config:\n    labels: [\"Clear Reply\", \"Clear Non-Reply\", \"Ambivalent\"]\n{extra}"
    )
}

fn options(pairs: &str) -> String {
    format!("  model_config:\n    options: {{{pairs}}}\n")
}

fn write_config(dir: &Path, entries: &[String]) {
    std::fs::write(dir.join("models.yaml"), entries.concat()).expect("write models.yaml");
}

impl Reloadable {
    fn new(entries: &[String], auth: Auth) -> Self {
        Self::with_first_gate(entries, auth, open_gate())
    }

    /// [`Reloadable::new`], the first workers' batches waiting at `first_gate`.
    fn with_first_gate(entries: &[String], auth: Auth, first_gate: Arc<Gate>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        write_config(dir.path(), entries);
        let config =
            Arc::new(crate::config::load(&dir.path().join("models.yaml")).expect("config"));
        let started = Arc::new(AtomicUsize::new(0));
        let next_gate = Arc::new(Mutex::new(first_gate));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let training = Gate::closed();
        let spawn = {
            let started = Arc::clone(&started);
            let next_gate = Arc::clone(&next_gate);
            let calls = Arc::clone(&calls);
            let training = Arc::clone(&training);
            move |_: Arc<crate::config::Config>, spec: ModelSpec, auto_train: bool| {
                let n = started.fetch_add(1, Ordering::SeqCst);
                let how = spec
                    .model_config
                    .options
                    .get("fake")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let gate = Arc::clone(&next_gate.lock().expect("gate"));
                let calls = Arc::clone(&calls);
                let training = Arc::clone(&training);
                let startup: Startup = Box::new(move |set_status| {
                    match how.as_str() {
                        "fail" => return Err(format!("fake-{n} cannot load: /srv/secret/model")),
                        "train" if auto_train => {
                            set_status(Status::Training);
                            training.wait();
                        }
                        "train" => return Err("not trained yet".into()),
                        _ => {}
                    }
                    let backend = Fake {
                        calls,
                        gate: Some(gate),
                    };
                    let labels = LABELS.iter().map(|l| l.to_string()).collect();
                    let info = ModelInfo::new(format!("fake-{n}"), labels);
                    Ok(LoadedModel::new(Box::new(backend), info))
                });
                ModelWorker::spawn(spec, "fake".into(), startup)
            }
        };
        let workers: Vec<_> = config
            .enabled()
            .map(|spec| Arc::new(spawn(Arc::clone(&config), spec.clone(), true).expect("worker")))
            .collect();
        for worker in &workers {
            wait_until(|| worker.status() != Status::Loading);
        }
        let table = ModelTable::shared(workers);
        let reloader = Reloader::new(config, Vec::new(), Arc::clone(&table), Box::new(spawn));
        let mut state = AppState::fixed(Vec::new(), None, auth);
        state.models = Arc::clone(&table);
        state.reloader = Some(Arc::new(reloader));
        Self {
            dir,
            app: router(state, LIMITS),
            table,
            started,
            next_gate,
            calls,
            training,
        }
    }

    fn rewrite(&self, entries: &[String]) {
        write_config(self.dir.path(), entries);
    }

    fn worker(&self, name: &str) -> Option<Arc<ModelWorker>> {
        self.table.load().by_name(name).cloned()
    }

    fn names(&self) -> Vec<String> {
        self.table
            .load()
            .iter()
            .map(|w| w.spec().name.clone())
            .collect()
    }

    /// The backend name (`fake-<n>`) the model `name` is served by, from `GET /`.
    async fn backend(&self, name: &str) -> String {
        let (_, index, _) = get(&self.app, "/").await;
        index["models"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["name"] == name))
            .map(|m| m["backend"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    }
}

async fn reload(app: &Router, path: &str) -> (StatusCode, Value) {
    let answer = send(app, post(path, Body::empty(), None)).await;
    (answer.0, answer.1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_new_changed_and_removed_entries_and_reports_a_broken_one() {
    let served = Reloadable::new(
        &[entry("a", ""), entry("b", ""), entry("keep", "")],
        Auth::default(),
    );
    let keep = served.worker("keep").expect("keep");
    assert_eq!(served.backend("a").await, "fake-0");

    // `a` changes, `b` goes, `c` is new, `d` is new and broken, `keep` stays as it is.
    served.rewrite(&[
        entry("a", &options("version: 2")),
        entry("keep", ""),
        entry("c", ""),
        entry("d", &options("fake: fail")),
    ]);
    let (status, report) = reload(&served.app, "/admin/reload").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{report}");
    assert_eq!(report["kind"], "reload_failed");
    assert_eq!(report["loaded"], json!(["a", "c"]), "{report}");
    assert_eq!(report["unchanged"], json!(["keep"]), "{report}");
    assert_eq!(report["removed"], json!(["b"]), "{report}");
    assert_eq!(report["pending"], json!([]), "{report}");
    assert_eq!(report["failed"][0]["name"], "d", "{report}");
    assert_eq!(report["failed"][0]["old_model_serving"], false, "{report}");
    assert!(
        report["failed"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot load"),
        "the admin sees why: {report}"
    );
    assert!(
        report["error"].as_str().unwrap_or_default().contains("d"),
        "{report}"
    );
    assert_eq!(served.names(), ["a", "keep", "c"]);
    assert!(
        Arc::ptr_eq(&keep, &served.worker("keep").expect("keep")),
        "unchanged keeps its worker"
    );
    assert_ne!(
        served.backend("a").await,
        "fake-0",
        "`a` runs on its new worker"
    );

    // Routes follow the table: `b` is gone, `c` answers.
    let gone = send(&served.app, post_json("/classify/b", &pair("q"))).await;
    assert_error(&gone, 404, "not_found");
    let new = send(&served.app, post_json("/classify/c", &pair("q"))).await;
    assert_eq!(new.0, StatusCode::OK, "{}", new.1);
    let v2 = send(
        &served.app,
        Request::get("/v2/models/c/ready")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(v2.0, StatusCode::OK, "{}", v2.1);
    assert_eq!(
        send(
            &served.app,
            Request::get("/v2/models/b")
                .body(Body::empty())
                .expect("request")
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );

    // GET / keeps the last reload, failure included; /ready only looks at served models.
    let (_, index, _) = get(&served.app, "/").await;
    assert_eq!(index["last_reload"]["failed"][0]["name"], "d", "{index}");
    assert_eq!(
        index["last_reload"]["trigger"], "POST /admin/reload",
        "{index}"
    );
    assert_eq!(
        index["endpoints"],
        json!(["/classify/a", "/classify/keep", "/classify/c"])
    );
    assert_eq!(get(&served.app, "/ready").await.0, StatusCode::OK);

    // Reloading the same file again changes nothing (the broken entry is retried).
    let (status, report) = reload(&served.app, "/admin/reload").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{report}");
    assert_eq!(report["unchanged"], json!(["a", "keep", "c"]), "{report}");
    assert_eq!(report["loaded"], json!([]), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_change_keeps_the_old_model_serving() {
    let served = Reloadable::new(&[entry("a", "")], Auth::default());
    let old = served.worker("a").expect("a");
    served.rewrite(&[entry("a", &options("fake: fail"))]);
    let (status, report) = reload(&served.app, "/admin/reload").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{report}");
    assert_eq!(report["failed"][0]["old_model_serving"], true, "{report}");
    assert!(Arc::ptr_eq(&old, &served.worker("a").expect("a")));
    let ok = send(&served.app, post_json("/classify/a", &pair("q"))).await;
    assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_models_yaml_that_does_not_parse_changes_nothing() {
    let served = Reloadable::new(&[entry("a", "")], Auth::default());
    let old = served.worker("a").expect("a");
    std::fs::write(
        served.dir.path().join("models.yaml"),
        entry("a", "  training_config:\n    batch_size: many\n"),
    )
    .expect("write");
    let before = served.started.load(Ordering::SeqCst);
    let answer = send(&served.app, post("/admin/reload", Body::empty(), None)).await;
    assert_error(&answer, 422, "invalid_config");
    let error = answer.1["error"].as_str().unwrap_or_default();
    assert!(error.contains("models.yaml:7"), "file and line: {error}");
    assert!(error.contains("batch_size"), "the field: {error}");
    assert!(error.contains("nothing changed"), "{error}");
    assert!(Arc::ptr_eq(&old, &served.worker("a").expect("a")));
    assert_eq!(
        served.started.load(Ordering::SeqCst),
        before,
        "no worker started"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_finish_on_the_model_they_started_on() {
    let old_gate = Gate::closed();
    let served =
        Reloadable::with_first_gate(&[entry("a", "")], Auth::default(), Arc::clone(&old_gate));
    let old = served.worker("a").expect("a");
    // A request runs on the old model and waits there ...
    let slow = {
        let app = served.app.clone();
        tokio::spawn(async move {
            send(
                &app,
                post_json("/classify/a", &json!([pair("1"), pair("2")])),
            )
            .await
        })
    };
    wait_until(|| served.calls.lock().expect("calls").len() == 1);
    // ... while a reload replaces the model: the new one serves at once.
    *served.next_gate.lock().expect("gate") = open_gate();
    served.rewrite(&[entry("a", &options("version: 2"))]);
    let (status, report) = reload(&served.app, "/admin/reload").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["loaded"], json!(["a"]), "{report}");
    let fresh = send(&served.app, post_json("/classify/a", &pair("3"))).await;
    assert_eq!(fresh.0, StatusCode::OK, "{}", fresh.1);
    assert_eq!(
        *served.calls.lock().expect("calls"),
        vec![2, 1],
        "the new model answered while the old one was busy"
    );
    assert!(!slow.is_finished());
    // The old model answers its request, then nothing holds it: its thread ends.
    old_gate.open();
    let answer = slow.await.expect("task");
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    assert_eq!(answer.1.as_array().map(Vec::len), Some(2));
    wait_until(|| Arc::strong_count(&old) == 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_model_that_trains_first_is_pending_and_joins_when_ready() {
    let served = Reloadable::new(&[entry("a", "")], Auth::default());
    served.rewrite(&[entry("a", ""), entry("t", &options("fake: train"))]);
    let (status, report) = reload(&served.app, "/admin/reload").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the reply does not wait for training: {report}"
    );
    assert_eq!(report["pending"], json!(["t"]), "{report}");
    assert_eq!(served.names(), ["a"]);
    let (_, index, _) = get(&served.app, "/").await;
    assert_eq!(index["last_reload"]["pending"], json!(["t"]), "{index}");
    assert_eq!(
        send(&served.app, post_json("/classify/t", &pair("q")))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // A second reload of the same file leaves it training.
    let (_, report) = reload(&served.app, "/admin/reload").await;
    assert_eq!(report["pending"], json!(["t"]), "{report}");
    assert_eq!(
        served.started.load(Ordering::SeqCst),
        2,
        "not started twice"
    );
    served.training.open();
    wait_until(|| served.names() == ["a", "t"]);
    let ok = send(&served.app, post_json("/classify/t", &pair("q"))).await;
    assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
    let (_, index, _) = get(&served.app, "/").await;
    assert_eq!(index["last_reload"]["loaded"], json!(["t"]), "{index}");
    assert_eq!(index["last_reload"]["pending"], json!([]), "{index}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_model_reloads_its_artifacts_and_admin_routes_need_the_key() {
    let keys = ["admin-key".to_string()];
    let served = Reloadable::new(
        &[entry("a", ""), entry("b", "")],
        Auth::new(&keys, None, &[]).expect("auth"),
    );
    let old = served.worker("a").expect("a");
    let b = served.worker("b").expect("b");
    let refused = send(
        &served.app,
        post("/admin/models/a/reload", Body::empty(), None),
    )
    .await;
    assert_error(&refused, 401, "unauthorized");
    let refused = send(&served.app, post("/admin/reload", Body::empty(), None)).await;
    assert_error(&refused, 401, "unauthorized");
    assert!(Arc::ptr_eq(&old, &served.worker("a").expect("a")));

    let keyed = |path: &str| {
        Request::post(path)
            .header(header::AUTHORIZATION, "Bearer admin-key")
            .body(Body::empty())
            .expect("request")
    };
    let (status, report, _) = send(&served.app, keyed("/admin/models/a/reload")).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["loaded"], json!(["a"]), "{report}");
    assert_eq!(report["trigger"], "POST /admin/models/a/reload", "{report}");
    assert!(!Arc::ptr_eq(&old, &served.worker("a").expect("a")));
    assert!(
        Arc::ptr_eq(&b, &served.worker("b").expect("b")),
        "the others are untouched"
    );
    assert_eq!(served.names(), ["a", "b"], "same place in the table");

    let missing = send(&served.app, keyed("/admin/models/nope/reload")).await;
    assert_error(&missing, 404, "not_found");
    let wrong_method = send(
        &served.app,
        Request::get("/admin/reload")
            .header(header::AUTHORIZATION, "Bearer admin-key")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_error(&wrong_method, 405, "method_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_artifact_reload_keeps_the_old_model() {
    // `train` models cannot load without training, and a one-model reload never trains.
    let served = Reloadable::new(&[entry("t", &options("fake: train"))], Auth::default());
    served.training.open();
    wait_until(|| {
        served
            .worker("t")
            .is_some_and(|w| w.status() == Status::Ready)
    });
    let old = served.worker("t").expect("t");
    let (status, report) = reload(&served.app, "/admin/models/t/reload").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{report}");
    assert_eq!(report["failed"][0]["old_model_serving"], true, "{report}");
    assert!(
        report["failed"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not trained"),
        "{report}"
    );
    assert!(Arc::ptr_eq(&old, &served.worker("t").expect("t")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_the_admin_routes_and_get_shows_no_reload_before_one() {
    let served = Reloadable::new(&[entry("a", "")], Auth::default());
    let (_, index, _) = get(&served.app, "/").await;
    assert!(index.get("last_reload").is_none(), "{index}");
    let (_, doc, _) = get(&served.app, "/openapi.json").await;
    for path in ["/admin/reload", "/admin/models/{name}/reload"] {
        let responses = &doc["paths"][path]["post"]["responses"];
        assert_eq!(
            responses["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ReloadReport",
            "{path}: {responses}"
        );
        assert!(responses["422"].is_object(), "{path}");
    }
    let report = &doc["components"]["schemas"]["ReloadReport"]["required"];
    assert_eq!(
        *report,
        json!([
            "trigger",
            "finished_at",
            "loaded",
            "unchanged",
            "removed",
            "failed",
            "pending"
        ])
    );
    // The fixed-state router (no reloader) answers the admin routes 503.
    let fixed = app(&[]);
    let answer = send(&fixed, post("/admin/reload", Body::empty(), None)).await;
    assert_error(&answer, 503, "unavailable");
}
