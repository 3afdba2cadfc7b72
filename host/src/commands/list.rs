//! `clarity-host list`.

use crate::artifacts;
use crate::cli::ListArgs;
use crate::config::Config;
use crate::plugins;
use serde_json::json;
use std::process::ExitCode;

pub fn run(config: &Config, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let rows: Vec<serde_json::Value> = config
        .models
        .iter()
        .map(|spec| {
            let artifact_dir = config.artifact_dir(spec);
            if let Some(ensemble) = &spec.ensemble_config {
                // No plugin: the host combines the members.
                return json!({
                    "name": spec.name,
                    "type": spec.kind,
                    "enabled": spec.enabled,
                    "route": spec.route(),
                    "plugin": format!("(members: {})", ensemble.members.join(", ")),
                    "plugin_found": true,
                    "members": ensemble.members,
                    "trained": artifact_dir.join(crate::ensemble::artifact::FILE).is_file(),
                    "artifact_dir": artifact_dir.display().to_string(),
                });
            }
            let plugin = plugins::plugin_path(spec, &config.dir);
            json!({
                "name": spec.name,
                "type": spec.kind,
                "enabled": spec.enabled,
                "route": spec.route(),
                "plugin": plugin.display().to_string(),
                "plugin_found": plugin.is_file(),
                "trained": artifacts::has_model(&artifact_dir),
                "artifact_dir": artifact_dir.display().to_string(),
            })
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("Models in {}:", config.path.display());
    println!(
        "{:<24} {:<8} {:<8} {:<32} {:<8} PLUGIN",
        "NAME", "TYPE", "ENABLED", "ROUTE", "TRAINED"
    );
    for row in &rows {
        let text = |k: &str| row[k].as_str().unwrap_or_default().to_string();
        let flag = |k: &str| {
            if row[k].as_bool().unwrap_or(false) {
                "yes"
            } else {
                "no"
            }
        };
        let plugin = if row["plugin_found"].as_bool().unwrap_or(false) {
            text("plugin")
        } else {
            format!("{} (not found)", text("plugin"))
        };
        println!(
            "{:<24} {:<8} {:<8} {:<32} {:<8} {}",
            text("name"),
            text("type"),
            flag("enabled"),
            text("route"),
            flag("trained"),
            plugin
        );
    }
    Ok(ExitCode::SUCCESS)
}
