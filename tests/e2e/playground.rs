//! The playground page: served at `/ui` and to browsers at `/`, open without an API key while
//! the data stays behind it, and driven in a real headless Chromium (Debian's) over the
//! DevTools protocol ([`clarity_tests::cdp`]): the models listed, a pair sent to every model with its bars, a labelled
//! file uploaded and scored, a phone-width layout. Screenshots go to
//! `target/tmp/playground/`.

use clarity_tests::cdp::{Chromium, Page};
use clarity_tests::{plugin_lib, sample_data, Project};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

const KEY: &str = "playground-test-key";
/// What Chromium sends when it navigates.
const BROWSER_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

/// The classic example and the frequency template: two models to compare.
fn project() -> Project {
    Project::classic(&format!(
        r#"
- name: template
  type: classic
  plugin: {}
  route: /classify/template
  label_config:
    labels: ["Clear Reply", "Clear Non-Reply", "Ambivalent"]
  data_config:
    train_file: {{data}}/train.json
    valid_file: {{data}}/valid.json
"#,
        plugin_lib("clarity-classic-template").display()
    ))
}

fn get(base: &str, path: &str, accept: &str, key: Option<&str>) -> reqwest::blocking::Response {
    let client = reqwest::blocking::Client::new();
    let mut request = client.get(format!("{base}{path}")).header("accept", accept);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().expect("request")
}

#[test]
fn browsers_get_the_page_json_clients_the_index_and_the_key_guards_the_data() {
    let project = project();
    let server = project.serve(&["--api-key", KEY]);
    server.wait_ready(Duration::from_secs(120));

    for (path, accept) in [("/ui", "*/*"), ("/", BROWSER_ACCEPT)] {
        let response = get(&server.base, path, accept, None);
        assert_eq!(response.status(), 200, "{path} without a key");
        let headers = response.headers().clone();
        let kind = headers["content-type"].to_str().unwrap_or_default();
        assert!(kind.starts_with("text/html"), "{path}: {kind}");
        let csp = headers["content-security-policy"]
            .to_str()
            .unwrap_or_default();
        assert!(csp.contains("connect-src 'self'"), "{csp}");
        let page = response.text().expect("page");
        assert!(page.contains("<title>Clarity playground</title>"), "{path}");
    }
    // The data is not open: JSON clients of `/` need the key, as before.
    assert_eq!(
        get(&server.base, "/", "application/json", None).status(),
        401
    );
    assert_eq!(get(&server.base, "/", "*/*", None).status(), 401);
    let index: Value = get(&server.base, "/", "application/json", Some(KEY))
        .json()
        .expect("index");
    assert_eq!(index["models"].as_array().map(Vec::len), Some(2), "{index}");
}

fn post(base: &str, path: &str, body: &Value, key: &str) -> Value {
    reqwest::blocking::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(key)
        .json(body)
        .send()
        .expect("request")
        .json()
        .expect("json answer")
}

/// Debian's Chromium; the test says how to get it when it is missing.
fn chromium() -> PathBuf {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    found.unwrap_or_else(|| panic!("no Chromium: `apt-get install chromium` (Debian's package)"))
}

fn screenshot(page: &mut Page, name: &str) -> PathBuf {
    let png = page.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("playground");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    let path = dir.join(name);
    std::fs::write(&path, png).expect("write screenshot");
    println!(
        "screenshot: {} ({} bytes)",
        path.display(),
        path.metadata().map_or(0, |m| m.len())
    );
    path
}

/// The first `n` labelled pairs of the sample validation file as JSON lines, and each row.
fn labelled_file(dir: &Path, n: usize) -> (PathBuf, Vec<Value>) {
    let rows: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(sample_data().join("valid.json")).expect("sample"),
    )
    .expect("json");
    let rows: Vec<Value> = rows.into_iter().take(n).collect();
    let path = dir.join("labelled.jsonl");
    let lines: Vec<String> = rows.iter().map(Value::to_string).collect();
    std::fs::write(&path, lines.join("\n")).expect("write jsonl");
    (path, rows)
}

#[test]
#[ignore = "needs Debian's Chromium (`apt-get install chromium`), which the suite does not install; \
            run: cargo test -p clarity-tests --test e2e playground -- --ignored"]
fn the_playground_works_in_a_real_browser() {
    let project = project();
    let server = project.serve(&["--api-key", KEY]);
    server.wait_ready(Duration::from_secs(120));

    let browser = Chromium::launch(&chromium(), 1280, 1000);
    let mut page = browser.page();
    page.navigate(&format!("{}/", server.base));
    assert_eq!(page.evaluate("document.title"), json!("Clarity playground"));
    // Without the key the page says why it cannot list the models.
    page.wait_until(
        "document.getElementById('models-error').textContent.includes('401')",
        "the 401 message",
    );

    // The key, typed as a user would; leaving the field lists both models.
    page.focus("#api-key");
    page.type_text(KEY);
    page.press("Tab");
    page.wait_until(
        "document.querySelectorAll('#models tbody tr').length === 2 && \
         [...document.querySelectorAll('#models tbody tr')].every(r => r.cells[1].textContent === 'ready')",
        "two ready models",
    );

    // A pair to every model, typed and sent from the keyboard.
    let (question, context) = (
        "Will you raise taxes next year?",
        "We have no plans to raise taxes; we will cut them.",
    );
    page.focus("#question");
    page.type_text(question);
    page.focus("#context");
    page.type_text(context);
    page.focus("#pair-form button");
    page.press("Enter");
    page.wait_until(
        "document.querySelectorAll('#pair-results .card').length === 2 && \
         [...document.querySelectorAll('#pair-results .card')].every(c => \
            c.querySelectorAll('.bar-row').length === 3 && c.querySelector('.label'))",
        "bars for both models",
    );
    // The page shows what the API answers.
    let answer = post(
        &server.base,
        "/classify/classic",
        &json!({"question": question, "context": context}),
        KEY,
    );
    let label = answer["clarity_label"].as_str().expect("label");
    let shown = page.evaluate(
        "document.querySelector('#pair-results .card[data-model=classic] .label').textContent",
    );
    let shown = shown.as_str().unwrap_or_default();
    assert!(shown.starts_with(label), "page: {shown}, API: {answer}");
    screenshot(&mut page, "pair.png");

    // A labelled file, uploaded: the table, accuracy and the confusion matrix.
    let scratch = tempfile::tempdir().expect("tempdir");
    let (file, rows) = labelled_file(scratch.path(), 24);
    page.evaluate("document.getElementById('batch-model').value = 'classic'");
    page.set_files("#batch-file", &[&file]);
    page.click("#batch-form button");
    page.wait_until(
        "!!document.getElementById('batch-metrics')",
        "the batch metrics",
    );
    let answers = post(&server.base, "/classify/classic", &json!(rows), KEY);
    let answers = answers.as_array().expect("answers");
    let correct = rows
        .iter()
        .zip(answers)
        .filter(|(r, a)| r["clarity_label"] == a["clarity_label"])
        .count();
    let accuracy = correct as f64 / rows.len() as f64;
    let metrics = page.evaluate("document.getElementById('batch-metrics').textContent");
    let metrics = metrics.as_str().unwrap_or_default();
    assert!(
        metrics.starts_with(&format!("accuracy {accuracy:.4}")),
        "page: {metrics}; API: {correct} of {}",
        rows.len()
    );
    assert_eq!(
        page.evaluate("document.querySelectorAll('#batch-table tr').length"),
        json!(rows.len() + 1)
    );
    let confusion_total = page.evaluate(
        "[...document.querySelectorAll('#confusion td')].reduce((s, td) => s + (Number(td.textContent) || 0), 0)",
    );
    assert_eq!(confusion_total, json!(rows.len()));
    screenshot(&mut page, "batch.png");

    // Pasted JSON lines without labels: the answers, no metrics.
    page.evaluate("document.getElementById('batch-file').value = ''");
    let pasted: Vec<String> = rows[..3]
        .iter()
        .map(|r| json!({"question": r["question"], "context": r["context"]}).to_string())
        .collect();
    page.focus("#batch-text");
    page.type_text(&pasted.join("\n"));
    page.click("#batch-form button");
    page.wait_until(
        "(document.getElementById('batch-summary')?.textContent || '').startsWith('3 pairs')",
        "three pasted pairs answered",
    );
    assert_eq!(
        page.evaluate("document.getElementById('batch-metrics') === null"),
        json!(true),
        "no metrics without labels"
    );
    assert_eq!(
        page.evaluate("document.querySelectorAll('#batch-table tr').length"),
        json!(4)
    );

    // A phone: nothing wider than the screen.
    page.emulate_phone(390, 844);
    page.wait_until(
        "document.documentElement.scrollWidth <= 390",
        "no horizontal scrolling at 390 px",
    );
    screenshot(&mut page, "phone.png");
}
