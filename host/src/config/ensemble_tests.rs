use super::tests::{parse_err, parse_ok};
use clarity_sdk::config::{Combine, EnsembleBias, EnsembleWeights};

const MEMBERS: &str = r#"- name: a
  type: classic
  label_config: {labels: [x, y, z]}
- name: b
  type: classic
  enabled: false
  label_config: {labels: [z, x, y]}
- name: c
  type: classic
"#;

#[test]
fn an_ensemble_entry_parses_with_its_defaults_and_choices() {
    let text = format!(
        "{MEMBERS}- name: ens\n  type: ensemble\n  ensemble_config: {{members: [a, b, c]}}\n\
         - name: ens2\n  type: ensemble\n  ensemble_config:\n    members: [a, b]\n    weights: [2, 1]\n    bias: fit\n    combine: mean_log_prob\n"
    );
    let models = parse_ok(&text);
    let e = models[3].ensemble_config.as_ref().expect("ensemble_config");
    assert_eq!(e.members, ["a", "b", "c"]);
    assert_eq!(e.weights, EnsembleWeights::Fit);
    assert_eq!(e.bias, EnsembleBias::None);
    assert_eq!(e.combine, Combine::MeanProb);
    let e = models[4].ensemble_config.as_ref().expect("ensemble_config");
    assert_eq!(e.weights, EnsembleWeights::Given(vec![2.0, 1.0]));
    assert_eq!(e.bias, EnsembleBias::Fit);
    assert_eq!(e.combine, Combine::MeanLogProb);
    // No training defaults of another type leak in, and the route is the usual one.
    assert_eq!(models[3].route(), "/classify/ens");
}

#[test]
fn an_unknown_member_is_named_with_its_line_and_field() {
    let text = format!(
        "{MEMBERS}- name: ens\n  type: ensemble\n  ensemble_config:\n    members: [a, nope]\n"
    );
    let err = parse_err(&text);
    assert!(err.contains("models.yaml:13"), "{err}");
    assert!(
        err.contains("models[3].ensemble_config.members[1]"),
        "{err}"
    );
    assert!(
        err.contains("member \"nope\" is not an entry of this file"),
        "{err}"
    );
    assert!(err.contains("\"a\", \"b\", \"c\""), "{err}");
}

#[test]
fn members_with_other_labels_are_refused() {
    let text = r#"- name: a
  type: classic
  label_config: {labels: [x, y, z]}
- name: b
  type: classic
  label_config: {labels: [x, y, w]}
- name: ens
  type: ensemble
  ensemble_config:
    members:
      - a
      - b
"#;
    let err = parse_err(text);
    assert!(err.contains("models.yaml:12"), "{err}");
    assert!(
        err.contains("models[2].ensemble_config.members[1]"),
        "{err}"
    );
    assert!(err.contains("must predict the same labels"), "{err}");
}

#[test]
fn every_other_misuse_is_explained() {
    let cases = [
        (
            "  ensemble_config: {members: [a]}\n",
            "ensemble_config.members",
            "2 to 6 members",
        ),
        (
            "  ensemble_config: {members: [a, a]}\n",
            "members[1]",
            "listed twice",
        ),
        (
            "  ensemble_config: {members: [a, ens]}\n",
            "members[1]",
            "its own member",
        ),
        (
            "  ensemble_config: {members: [a, b], weights: [1]}\n",
            "ensemble_config.weights",
            "one per member",
        ),
        (
            "  ensemble_config: {members: [a, b], weights: [0, 0]}\n",
            "ensemble_config.weights",
            "not all 0",
        ),
        (
            "  ensemble_config: {members: [a, b], weights: best}\n",
            "ensemble_config.weights",
            "`fit` or a list of numbers",
        ),
        (
            "  ensemble_config: {members: [a, b], combine: median}\n",
            "ensemble_config.combine",
            "mean_prob",
        ),
        (
            "  ensemble_config: {members: [a, b], member: c}\n",
            "ensemble_config",
            "member",
        ),
        (
            "  plugin: classic-example\n  ensemble_config: {members: [a, b]}\n",
            "plugin",
            "has no plugin",
        ),
        ("", "type", "needs `ensemble_config:`"),
    ];
    for (extra, field, message) in cases {
        let text = format!("{MEMBERS}- name: ens\n  type: ensemble\n{extra}");
        let err = parse_err(&text);
        assert!(err.contains(field), "{extra}: {err}");
        assert!(err.contains(message), "{extra}: {err}");
        assert!(err.contains("models.yaml:"), "{extra}: {err}");
    }
    let nested = format!(
        "{MEMBERS}- name: ens\n  type: ensemble\n  ensemble_config: {{members: [a, b]}}\n\
         - name: top\n  type: ensemble\n  ensemble_config: {{members: [a, ens]}}\n"
    );
    let err = parse_err(&nested);
    assert!(
        err.contains("models[4].ensemble_config.members[1]") && err.contains("itself an ensemble"),
        "{err}"
    );
    let stray =
        format!("{MEMBERS}- name: d\n  type: classic\n  ensemble_config: {{members: [a, b]}}\n");
    let err = parse_err(&stray);
    assert!(
        err.contains("models[3].ensemble_config") && err.contains("only read for `type: ensemble`"),
        "{err}"
    );
}
