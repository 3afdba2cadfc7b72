//! An ensemble served: its route's requests go to its members' workers (their queues,
//! batching and limits apply), all at once, and the answers are combined.
//!
//! A member served on its own route is looked up by name in the served table at every
//! request, so a hot reload or a watchdog restart of that member is picked up at once. A
//! member not served on its own (`enabled: false`, or left out by `serve --model`) gets a
//! worker of its own, owned by the ensemble: it starts with the ensemble and is replaced
//! when the ensemble is reloaded (`POST /admin/models/<ensemble>/reload`).

use super::artifact::Fitted;
use super::combine::{align, Combiner};
use super::local::{check_member, info};
use crate::config::Config;
use crate::reload::{SharedTable, SpawnWorker};
use crate::worker::{ClassifyError, Delegate, DelegateFuture, ModelWorker, Status};
use clarity_sdk::{Error as SdkError, ErrorKind, ModelSpec, TextPair};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// How often a private member's status is looked at while the ensemble starts.
const POLL: Duration = Duration::from_millis(50);

/// Where a member's worker is found.
enum Link {
    /// In the served table, by this name.
    Served(String),
    /// A worker of the ensemble's own.
    Private(Arc<ModelWorker>),
}

/// The ensemble's answerer.
struct Remote {
    name: String,
    fitted: Fitted,
    links: Vec<Link>,
    combiner: Combiner,
    table: SharedTable,
}

impl Remote {
    fn worker(&self, link: &Link) -> Result<Arc<ModelWorker>, ClassifyError> {
        match link {
            Link::Private(worker) => Ok(Arc::clone(worker)),
            Link::Served(name) => {
                self.table
                    .load()
                    .by_name(name)
                    .cloned()
                    .ok_or_else(|| ClassifyError::NotReady {
                        model: name.clone(),
                        status: "not served",
                        reason: Some(format!(
                            "member of ensemble `{}`, no longer served: reload the ensemble",
                            self.name
                        )),
                    })
            }
        }
    }
}

impl Delegate for Remote {
    fn classify(&self, pairs: Vec<TextPair>, keep_whole: Vec<bool>) -> DelegateFuture<'_> {
        Box::pin(async move {
            let workers = self
                .links
                .iter()
                .map(|link| self.worker(link))
                .collect::<Result<Vec<_>, _>>()?;
            let answers = futures_util::future::join_all(
                workers
                    .iter()
                    .map(|w| w.classify_with(pairs.clone(), keep_whole.clone())),
            )
            .await;
            let mut tables = Vec::with_capacity(workers.len());
            for ((worker, answer), member) in workers.iter().zip(answers).zip(&self.fitted.members)
            {
                // A member's failure is the request's, with that member's status.
                let rows = answer?;
                let columns = check_member(&self.fitted, &member.name, &worker.labels()).map_err(
                    |message| ClassifyError::Plugin {
                        model: self.name.clone(),
                        source: SdkError::config(message),
                    },
                )?;
                tables.push(align(rows, &columns));
            }
            Ok(self.combiner.combine(&tables))
        })
    }
}

/// Start the ensemble `spec` on a worker of its own. `served` says whether a member is
/// served on its own route; `spawn` starts a worker for one that is not.
pub fn spawn(
    config: Arc<Config>,
    spec: ModelSpec,
    table: SharedTable,
    served: impl Fn(&str) -> bool + Send + 'static,
    spawn: Arc<SpawnWorker>,
) -> std::io::Result<ModelWorker> {
    let name = spec.name.clone();
    let startup_spec = spec.clone();
    let startup: crate::worker::DelegateStartup = Box::new(move |_set_status| {
        let spec = startup_spec;
        let dir = config.artifact_dir(&spec);
        let fitted = Fitted::read(&dir, &spec).map_err(|e| match e.kind {
            ErrorKind::NotTrained => format!(
                "not trained yet ({}): run `clarity-host train --model {}`",
                e.message, spec.name
            ),
            _ => format!("load failed: {e}"),
        })?;
        let mut links = Vec::with_capacity(fitted.members.len());
        let mut shown = Vec::with_capacity(fitted.members.len());
        for member in &fitted.members {
            let member_spec = config
                .model(&member.name)
                .map_err(|e| format!("member `{}`: {e}", member.name))?;
            let own_route = served(&member.name);
            shown.push(json!({
                "name": member.name,
                "weight": member.weight,
                "valid_macro_f1": member.valid.map(|s| s.macro_f1),
                "route": own_route.then(|| member_spec.route()),
            }));
            if own_route {
                links.push(Link::Served(member.name.clone()));
                continue;
            }
            let worker = spawn(Arc::clone(&config), member_spec.clone(), false)
                .map_err(|e| format!("member `{}`: cannot start its thread: {e}", member.name))?;
            links.push(Link::Private(Arc::new(worker)));
        }
        for (link, member) in links.iter().zip(&fitted.members) {
            if let Link::Private(worker) = link {
                wait_ready(worker).map_err(|reason| {
                    format!("member `{}` failed to load: {reason}", member.name)
                })?;
                check_member(&fitted, &member.name, &worker.labels())?;
            }
        }
        let mut info = info(&fitted, &dir);
        info.details.insert("members".into(), json!(shown));
        let remote = Remote {
            name: spec.name.clone(),
            combiner: fitted.combiner(),
            fitted,
            links,
            table,
        };
        Ok((info, Arc::new(remote) as Arc<dyn Delegate>))
    });
    tracing::debug!("Ensemble `{name}`: starting");
    ModelWorker::spawn_delegating(spec, String::new(), startup)
}

/// Wait until `worker` is ready; its reason when it fails.
fn wait_ready(worker: &ModelWorker) -> Result<(), String> {
    loop {
        match worker.status() {
            Status::Ready => return Ok(()),
            Status::Failed(reason) => return Err(reason),
            Status::Loading | Status::Training => std::thread::sleep(POLL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Classify, LoadedModel};
    use crate::ensemble::artifact::Member;
    use crate::http::error::ApiError;
    use clarity_sdk::config::{Combine, EnsembleBias, EnsembleConfig, EnsembleWeights};
    use clarity_sdk::ModelInfo;

    /// A member answering every pair with `row`, or failing with `error`.
    struct Fake {
        row: Vec<f32>,
        error: Option<SdkError>,
    }

    impl Classify for Fake {
        fn classify(&self, pairs: &[TextPair]) -> Result<Vec<Vec<f32>>, SdkError> {
            match &self.error {
                Some(e) => Err(e.clone()),
                None => Ok(vec![self.row.clone(); pairs.len()]),
            }
        }
    }

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn worker(name: &str, labels: Vec<String>, fake: Fake) -> Arc<ModelWorker> {
        let spec: ModelSpec = serde_json::from_value(json!({"name": name})).expect("spec");
        let startup: crate::worker::Startup = Box::new(move |_| {
            Ok(LoadedModel::new(
                Box::new(fake),
                ModelInfo::new("fake", labels),
            ))
        });
        let worker = Arc::new(ModelWorker::spawn(spec, String::new(), startup).expect("spawn"));
        wait_ready(&worker).expect("ready");
        worker
    }

    fn remote(members: Vec<(Arc<ModelWorker>, f64)>) -> Remote {
        let ensemble_labels = labels(&["x", "y"]);
        let fitted = Fitted::new(
            EnsembleConfig {
                members: members.iter().map(|(w, _)| w.spec().name.clone()).collect(),
                weights: EnsembleWeights::Fit,
                bias: EnsembleBias::None,
                combine: Combine::MeanProb,
            },
            ensemble_labels,
            members
                .iter()
                .map(|(w, weight)| Member {
                    name: w.spec().name.clone(),
                    labels: w.labels().to_vec(),
                    weight: *weight,
                    valid: None,
                })
                .collect(),
            vec![0.0, 0.0],
            None,
        );
        Remote {
            name: "ens".into(),
            combiner: fitted.combiner(),
            fitted,
            links: members.into_iter().map(|(w, _)| Link::Private(w)).collect(),
            table: crate::reload::ModelTable::shared(Vec::new()),
        }
    }

    fn run(remote: &Remote, pairs: usize) -> Result<Vec<Vec<f32>>, ClassifyError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let pairs = vec![TextPair::new("q", "c"); pairs];
        rt.block_on(remote.classify(pairs, Vec::new()))
    }

    #[test]
    fn members_are_combined_in_the_ensembles_label_order() {
        let a = worker(
            "a",
            labels(&["x", "y"]),
            Fake {
                row: vec![0.8, 0.2],
                error: None,
            },
        );
        // Same labels, other order: its 0.4 is "x".
        let b = worker(
            "b",
            labels(&["y", "x"]),
            Fake {
                row: vec![0.6, 0.4],
                error: None,
            },
        );
        let scores = run(&remote(vec![(a, 0.75), (b, 0.25)]), 2).expect("scores");
        assert_eq!(scores.len(), 2);
        let want = [0.75 * 0.8 + 0.25 * 0.4, 0.75 * 0.2 + 0.25 * 0.6];
        for row in &scores {
            assert!(
                (row[0] - want[0]).abs() < 1e-6 && (row[1] - want[1]).abs() < 1e-6,
                "{row:?}"
            );
        }
    }

    #[test]
    fn a_members_error_is_the_requests_with_its_status() {
        let good = worker(
            "good",
            labels(&["x", "y"]),
            Fake {
                row: vec![0.5, 0.5],
                error: None,
            },
        );
        let bad = worker(
            "bad",
            labels(&["x", "y"]),
            Fake {
                row: Vec::new(),
                error: Some(SdkError::input("the context is too long")),
            },
        );
        let err = run(&remote(vec![(good, 0.5), (bad, 0.5)]), 1).expect_err("the member fails");
        assert!(
            matches!(&err, ClassifyError::Plugin { model, .. } if model == "bad"),
            "{err}"
        );
        let api = ApiError::from(err);
        assert_eq!(api.status().as_u16(), 422, "{api}");
        assert!(api.public_message().contains("too long"), "{api}");

        let broken = worker(
            "broken",
            labels(&["x", "y"]),
            Fake {
                row: Vec::new(),
                error: Some(SdkError::other("boom")),
            },
        );
        let api = ApiError::from(run(&remote(vec![(broken, 1.0)]), 1).expect_err("fails"));
        assert_eq!(api.status().as_u16(), 500);
        assert!(
            api.public_message().contains("model `broken`"),
            "{}",
            api.public_message()
        );
    }

    #[test]
    fn a_member_whose_labels_changed_is_refused() {
        let a = worker(
            "a",
            labels(&["x", "y"]),
            Fake {
                row: vec![0.5, 0.5],
                error: None,
            },
        );
        let mut r = remote(vec![(a, 1.0)]);
        r.fitted.members[0].labels = labels(&["y", "x"]);
        let err = run(&r, 1).expect_err("labels differ");
        assert!(
            err.to_string().contains("train the ensemble again"),
            "{err}"
        );
    }
}
