//! The Kubernetes and KServe manifests in `deploy/kubernetes`: every overlay renders with
//! `kubectl kustomize` and validates against the Kubernetes schemas and the vendored KServe
//! CRD schemas (`deploy/kubernetes/validate.py`, offline); a broken manifest fails that
//! validation, naming the field; and the serving Deployment's and training Job's containers
//! (their command, environment, ConfigMap, volume paths, probes, API key Secret and stop
//! sequence) work against the real binary, with the container paths mapped to a temporary
//! folder.
//!
//! Needs `scripts/setup.sh` (installs `kubernetes-validate`, and kubectl when none is on PATH).

use clarity_tests::encoder::venv;
use clarity_tests::process::{free_port, signal, wait_exit, CapturedLog};
use clarity_tests::{bin_dir, host_bin, sample_data, workspace_root};
use serde_yaml::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long `clarity-host` lets open connections finish after SIGTERM (`DRAIN_LIMIT` in
/// host/src/http/listener.rs); the pod's grace period must cover it after preStop.
const HOST_DRAIN_LIMIT_SECS: u64 = 30;

fn deploy_dir() -> PathBuf {
    workspace_root().join("deploy/kubernetes")
}

/// `validate.py` on `folders` (none: its defaults), with the project's Python.
fn validate(script: &Path, folders: &[PathBuf]) -> Output {
    Command::new(venv().join("bin/python"))
        .arg(script)
        .args(folders)
        .output()
        .expect("run validate.py (./scripts/setup.sh makes .venv)")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// kubectl as validate.py finds it: `$KUBECTL`, `.venv/bin/kubectl`, then PATH.
fn kubectl() -> PathBuf {
    std::env::var_os("KUBECTL")
        .map(PathBuf::from)
        .into_iter()
        .chain([venv().join("bin/kubectl")])
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("kubectl"))
}

/// The resources `kubectl kustomize folder` renders.
fn render(folder: &Path) -> Vec<Value> {
    let out = Command::new(kubectl())
        .arg("kustomize")
        .arg(folder)
        .output()
        .expect("run kubectl (./scripts/setup.sh installs it when missing)");
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .split("\n---\n")
        .map(|doc| serde_yaml::from_str(doc).expect("rendered YAML"))
        .collect()
}

fn find<'a>(resources: &'a [Value], kind: &str, name: &str) -> &'a Value {
    resources
        .iter()
        .find(|r| r["kind"] == kind && r["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} rendered"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_overlay_renders_and_validates_against_the_kubernetes_and_kserve_schemas() {
    let out = validate(&deploy_dir().join("validate.py"), &[]);
    let report = text(&out);
    println!("{report}");
    assert!(out.status.success(), "{report}");
    for folder in ["overlays/cpu", "overlays/gpu"] {
        for resource in [
            "Deployment/clarity",
            "Service/clarity",
            "HorizontalPodAutoscaler/clarity",
            "Job/clarity-train",
            "PersistentVolumeClaim/clarity-artifacts",
            "ConfigMap/clarity-config",
        ] {
            let line = format!("ok   deploy/kubernetes/{folder}: {resource}");
            assert!(report.contains(&line), "missing `{line}`:\n{report}");
        }
    }
    for resource in ["ServingRuntime/clarity", "InferenceService/clarity"] {
        let line = format!("ok   deploy/kubernetes/kserve: {resource}");
        assert!(report.contains(&line), "missing `{line}`:\n{report}");
    }
    assert!(report.contains("0 problem(s) in 3 folder(s)"), "{report}");

    // What the overlays are for: the GPU one asks for a GPU, on GPU nodes, with the GPU image
    // and the queue-length autoscaler; the CPU one does none of that.
    let gpu = render(&deploy_dir().join("overlays/gpu"));
    let pod = &find(&gpu, "Deployment", "clarity")["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["image"], "clarity:gpu");
    assert_eq!(
        pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
        "1"
    );
    assert_eq!(pod["nodeSelector"]["nvidia.com/gpu.present"], "true");
    assert_eq!(pod["tolerations"][0]["key"], "nvidia.com/gpu");
    let metrics = &find(&gpu, "HorizontalPodAutoscaler", "clarity")["spec"]["metrics"];
    assert_eq!(metrics[0]["pods"]["metric"]["name"], "clarity_queued_pairs");
    let cpu = render(&deploy_dir().join("overlays/cpu"));
    let pod = &find(&cpu, "Deployment", "clarity")["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["image"], "clarity:latest");
    assert!(pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"].is_null());
}

#[test]
fn a_broken_manifest_fails_validation_naming_the_field() {
    let copy = tempfile::tempdir().expect("temp dir");
    let tree = copy.path().join("kubernetes");
    let copied = Command::new("cp")
        .arg("-r")
        .arg(deploy_dir())
        .arg(&tree)
        .status()
        .expect("cp");
    assert!(copied.success());
    let edit = |file: &str, from: &str, to: &str| {
        let path = tree.join(file);
        let text = std::fs::read_to_string(&path).expect("read manifest");
        assert!(text.contains(from), "{file} has no `{from}`");
        std::fs::write(&path, text.replacen(from, to, 1)).expect("write manifest");
    };
    // A misspelt field, a number written as a string, and a KServe field of the wrong type.
    edit(
        "base/deployment.yaml",
        "          readinessProbe:",
        "          readinesProbe:",
    );
    edit(
        "base/hpa.yaml",
        "averageUtilization: 70",
        "averageUtilization: \"70\"",
    );
    edit(
        "kserve/inferenceservice.yaml",
        "maxReplicas: 4",
        "maxReplicas: four",
    );
    edit(
        "kserve/servingruntime.yaml",
        "  protocolVersions:",
        "  protocolVersion:",
    );
    let script = tree.join("validate.py");
    let out = validate(&script, &[tree.join("overlays/cpu"), tree.join("kserve")]);
    let report = text(&out);
    println!("{report}");
    assert_eq!(out.status.code(), Some(1), "{report}");
    for expected in [
        "Deployment/clarity: spec.template.spec.containers.0: Additional properties are not allowed ('readinesProbe' was unexpected)",
        "HorizontalPodAutoscaler/clarity: spec.metrics.0.resource.target.averageUtilization: '70' is not of type 'integer'",
        "InferenceService/clarity: spec.predictor.maxReplicas: 'four' is not of type 'integer'",
        "ServingRuntime/clarity: spec: Additional properties are not allowed ('protocolVersion' was unexpected)",
    ] {
        assert!(report.contains(expected), "missing `{expected}`:\n{report}");
    }
    assert!(
        report.contains("ok   "),
        "the untouched resources still pass: {report}"
    );

    // A kustomization that does not render is a failure too, not an empty pass.
    edit(
        "overlays/gpu/kustomization.yaml",
        "path: gpu-serving.yaml",
        "path: gpu-serving-missing.yaml",
    );
    let out = validate(&script, &[tree.join("overlays/gpu")]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains("overlays/gpu: kubectl kustomize:")
            && report.contains("gpu-serving-missing.yaml"),
        "{report}"
    );
}

/// A child process killed when dropped (a failing assertion leaves nothing running).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Container paths and where this test puts them.
struct Mounts(Vec<(String, PathBuf)>);

impl Mounts {
    /// `text` with each container path replaced by its folder, in one pass (a folder may
    /// itself lie under a container path, e.g. `/tmp`).
    fn map(&self, text: &str) -> String {
        let token = |i: usize| format!("\u{0}mount{i}\u{0}");
        let marked = self
            .0
            .iter()
            .enumerate()
            .fold(text.to_string(), |t, (i, (from, _))| {
                t.replace(from.as_str(), &token(i))
            });
        self.0.iter().enumerate().fold(marked, |t, (i, (_, to))| {
            t.replace(&token(i), &to.display().to_string())
        })
    }
}

/// `command` run as the container would: its args (the image's entrypoint is tini, so args
/// are the whole command), its env with container paths mapped, the Secret's key given.
fn container_command(container: &Value, mounts: &Mounts, api_key: &str) -> Command {
    let args: Vec<String> = strings(&container["args"])
        .iter()
        .map(|a| mounts.map(a))
        .collect();
    let mut command = if args[0] == "sh" {
        let mut c = Command::new("sh");
        c.args(&args[1..]);
        c
    } else {
        assert_eq!(args[0], "clarity-host", "{args:?}");
        let mut c = Command::new(host_bin());
        c.args(&args[1..]);
        c
    };
    // `clarity-host` on PATH, as in the image; plugins are found beside it.
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    command.env_clear().env("PATH", path);
    for var in container["env"].as_sequence().expect("env") {
        let name = var["name"].as_str().expect("env name");
        if let Some(value) = var["value"].as_str() {
            command.env(name, mounts.map(value));
        } else {
            assert_eq!(
                var["valueFrom"]["secretKeyRef"]["name"], "clarity-api-keys",
                "{name}"
            );
            command.env(name, api_key);
        }
    }
    // The image's ONNX Runtime and model packages are the project's .venv here.
    command.env("VIRTUAL_ENV", venv());
    command
}

#[test]
fn the_job_trains_and_the_deployment_serves_with_their_own_commands_env_and_probes() {
    let resources = render(&deploy_dir().join("overlays/cpu"));
    let job = &find(&resources, "Job", "clarity-train")["spec"]["template"]["spec"];
    let deployment = &find(&resources, "Deployment", "clarity")["spec"]["template"]["spec"];
    let config = &find(&resources, "ConfigMap", "clarity-config")["data"];

    // Every container path the manifests use, mapped to a temporary folder.
    let root = tempfile::tempdir().expect("temp dir");
    let mounts = Mounts(vec![
        ("/etc/clarity".into(), root.path().join("etc-clarity")),
        ("/mnt/models".into(), root.path().join("mnt-models")),
        ("/app/data/sample".into(), sample_data()),
        ("/tmp".into(), root.path().join("tmp")),
    ]);
    for (_, dir) in &mounts.0 {
        std::fs::create_dir_all(dir).expect("mount folder");
    }
    // The ConfigMap's models.yaml as it is, but for MiniLM: fine-tuning it takes minutes, so
    // this test serves only the classic model (the README's MiniLM figures come from the
    // same entry).
    let mut models: Value =
        serde_yaml::from_str(&mounts.map(config["models.yaml"].as_str().expect("models.yaml")))
            .expect("the ConfigMap's models.yaml is YAML");
    let entries = models["models"].as_sequence_mut().expect("models list");
    let enabled: Vec<String> = entries
        .iter()
        .filter(|m| m["enabled"] == true)
        .filter_map(|m| m["name"].as_str().map(String::from))
        .collect();
    for entry in entries.iter_mut() {
        if entry["name"] != "classic" {
            entry["enabled"] = Value::Bool(false);
        }
    }
    let etc = root.path().join("etc-clarity");
    std::fs::write(
        etc.join("models.yaml"),
        serde_yaml::to_string(&models).expect("yaml"),
    )
    .expect("write models.yaml");
    std::fs::write(
        etc.join("logging.yaml"),
        config["logging.yaml"].as_str().expect("logging.yaml"),
    )
    .expect("write logging.yaml");

    // The training Job trains every enabled model of the ConfigMap, one `train` each.
    let script = strings(&job["containers"][0]["args"]).join(" ");
    for name in &enabled {
        assert!(
            script.contains(&format!("clarity-host train --model {name}")),
            "the Job does not train `{name}`: {script}"
        );
    }
    let train_classic = Value::Sequence(vec![
        "clarity-host".into(),
        "train".into(),
        "--model".into(),
        "classic".into(),
    ]);
    let mut job_container = job["containers"][0].clone();
    job_container["args"] = train_classic;
    let out = container_command(&job_container, &mounts, "unused")
        .output()
        .expect("run the Job's train");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        root.path().join("mnt-models/classic").is_dir(),
        "the Job writes to the volume: {}",
        text(&out)
    );

    // The Deployment's container, on a free loopback port instead of 0.0.0.0:8000.
    let container = &deployment["containers"][0];
    let port = free_port();
    let mut args = strings(&container["args"]);
    let host_at = args.iter().position(|a| a == "--host").expect("--host");
    args[host_at + 1] = "127.0.0.1".into();
    let port_at = args.iter().position(|a| a == "--port").expect("--port");
    assert_eq!(args[port_at + 1], "8000");
    assert_eq!(container["ports"][0]["containerPort"].as_u64(), Some(8000));
    args[port_at + 1] = port.to_string();
    assert!(args.contains(&"--no-auto-train".to_string()), "{args:?}");
    let mut serving = container.clone();
    serving["args"] = Value::Sequence(args.into_iter().map(Value::from).collect());
    let key = "k8s-test-key-0123456789abcdef";
    let mut child = container_command(&serving, &mounts, key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Deployment's serve");
    let log = CapturedLog::attach(&mut child, |_| {});
    let mut server = Running(child);
    assert!(
        log.wait_for(Duration::from_secs(60), |l| l.contains("Listening on"))
            .is_some(),
        "{}",
        log.text()
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::blocking::Client::new();
    let get = |path: &str| {
        client
            .get(format!("{base}{path}"))
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };

    // The probes answer without the key (the kubelet sends none).
    let probe_path = |probe: &str| {
        container[probe]["httpGet"]["path"]
            .as_str()
            .unwrap_or_else(|| panic!("{probe} has no httpGet path"))
            .to_string()
    };
    let ready = probe_path("readinessProbe");
    let started = Instant::now();
    while get(&ready) != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{ready} never answered 200:\n{}",
            log.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(&probe_path("livenessProbe")), 200);
    assert_eq!(get(&probe_path("startupProbe")), 200);
    assert_eq!(get("/metrics"), 200, "Prometheus scrapes without a key");

    // The models need the Secret's key.
    let pair = serde_json::json!({"question": "Will you sign it?", "context": "Q: Will you?\nA: Yes, today."});
    let post = |key: Option<&str>| {
        let mut request = client.post(format!("{base}/classify/classic")).json(&pair);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send().expect("POST").status().as_u16()
    };
    assert_eq!(post(None), 401);
    assert_eq!(post(Some(key)), 200, "{}", log.text());
    // The queue-length autoscaler's metric is one the host exports.
    let gpu = render(&deploy_dir().join("overlays/gpu"));
    let queue_metric = find(&gpu, "HorizontalPodAutoscaler", "clarity")["spec"]["metrics"][0]
        ["pods"]["metric"]["name"]
        .as_str()
        .expect("queue metric name")
        .to_string();
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .and_then(|r| r.text())
        .expect("GET /metrics");
    assert!(
        metrics.contains(&format!("{queue_metric}{{model=\"classic\"}}")),
        "{queue_metric} is not in /metrics:\n{metrics}"
    );
    assert!(
        !log.text().contains(key),
        "the key is never logged: {}",
        log.text()
    );

    // Stop: preStop's sleep, then SIGTERM; the host must be gone well inside the grace period.
    let pre_stop = strings(&container["lifecycle"]["preStop"]["exec"]["command"]);
    assert_eq!(pre_stop[0], "sleep", "{pre_stop:?}");
    let sleep_secs: u64 = pre_stop[1].parse().expect("preStop sleep seconds");
    let grace = deployment["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace >= sleep_secs + HOST_DRAIN_LIMIT_SECS,
        "grace {grace} s < preStop {sleep_secs} s + drain {HOST_DRAIN_LIMIT_SECS} s"
    );
    let stopping = Instant::now();
    signal(server.0.id(), "TERM");
    assert_eq!(
        wait_exit(&mut server.0, Duration::from_secs(grace - sleep_secs)),
        Some(0),
        "{}",
        log.text()
    );
    println!(
        "serve stopped {:?} after SIGTERM (grace {grace} s, preStop {sleep_secs} s)",
        stopping.elapsed()
    );
}
