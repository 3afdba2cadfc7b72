//! End-to-end tests: the real `clarity-host` binary, real plugin libraries, a real server
//! on a loopback port. Build the workspace first (`scripts/test.sh` does).

mod api_fuzz;
mod api_key;
mod backpressure;
mod cli;
mod config_faults;
mod deploy_manifests;
mod encoder;
mod ensemble;
mod hf_folders;
mod hostile_input;
mod hub;
mod input_construction;
mod int8;
mod interrupt;
mod load_failures;
mod lora;
mod notebook;
mod open_inference;
mod original_keys;
mod panics;
mod playground;
mod plugin_faults;
mod python_habits;
mod quality;
mod reload;
mod runs;
mod scale_out;
mod security;
mod serve;
mod serving_controls;
mod slow_clients;
mod sweep;
mod tensorboard;
mod training;
mod training_faults;
