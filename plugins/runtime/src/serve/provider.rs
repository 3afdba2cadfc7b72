//! Which execution provider runs a session.
//!
//! `auto` tries CUDA (builds with `--features cuda` or `cuda-serving`), then CoreML
//! (`--features coreml`), then the CPU. Each accelerator is registered with `error_on_failure`, so a provider that does
//! not come up is seen and skipped (or, for a fixed choice, reported) rather than ONNX
//! Runtime silently running on the CPU under its name.

use clarity_sdk::config::Device;

/// An execution provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// ONNX Runtime's default CPU provider.
    Cpu,
    /// NVIDIA CUDA.
    Cuda,
    /// Apple CoreML.
    Coreml,
}

impl Provider {
    /// Name for logs and `info` (`cpu`, `cuda`, `coreml`).
    pub fn name(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
            Provider::Coreml => "coreml",
        }
    }
}

/// Execution providers compiled into this build.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Built {
    /// `--features cuda` or `cuda-serving`.
    pub cuda: bool,
    /// `--features coreml`.
    pub coreml: bool,
}

impl Built {
    /// What this build of clarity-runtime has.
    pub fn this_build() -> Self {
        Self {
            cuda: cfg!(feature = "cuda-serving"),
            coreml: cfg!(feature = "coreml"),
        }
    }
}

/// The providers to try for `choice`, best first. `auto` always ends with the CPU; a fixed
/// choice is the only entry, so its failure is an error.
pub fn plan(choice: Device, built: Built) -> Result<Vec<Provider>, String> {
    match choice {
        Device::Auto => {
            let mut plan = Vec::new();
            if built.cuda {
                plan.push(Provider::Cuda);
            }
            if built.coreml {
                plan.push(Provider::Coreml);
            }
            plan.push(Provider::Cpu);
            Ok(plan)
        }
        Device::Cpu => Ok(vec![Provider::Cpu]),
        Device::Cuda if built.cuda => Ok(vec![Provider::Cuda]),
        Device::Cuda => Err(
            "device `cuda` asked for, but this build has no CUDA execution provider \
             (build the plugin with `--features cuda` or `cuda-serving` and install the \
             onnxruntime-gpu library, or set `device: auto`)"
                .into(),
        ),
        Device::Coreml if built.coreml => Ok(vec![Provider::Coreml]),
        Device::Coreml => Err(
            "device `coreml` asked for, but this build has no CoreML execution provider \
             (build the plugin with `--features coreml` on macOS, or set `device: auto`)"
                .into(),
        ),
    }
}

/// Try `attempt` for each provider of `plan` in order; the first success wins. If all fail,
/// the error lists why each did.
pub fn choose<T>(
    plan: &[Provider],
    mut attempt: impl FnMut(Provider) -> Result<T, String>,
) -> Result<(Provider, T), String> {
    let mut failures = Vec::new();
    for &provider in plan {
        match attempt(provider) {
            Ok(value) => return Ok((provider, value)),
            Err(why) => failures.push(format!("{}: {why}", provider.name())),
        }
    }
    if failures.is_empty() {
        Err("no execution provider to try".into())
    } else {
        Err(failures.join("; "))
    }
}

/// Register `provider` on `builder`, failing (not falling back) if it does not come up.
pub(crate) fn register(
    provider: Provider,
    builder: ort::session::builder::SessionBuilder,
) -> Result<ort::session::builder::SessionBuilder, String> {
    match provider {
        Provider::Cpu => Ok(builder),
        #[cfg(feature = "cuda-serving")]
        Provider::Cuda => {
            use ort::ep::ExecutionProvider;
            if !ort::ep::CUDA::is_available().map_err(|e| e.to_string())? {
                return Err("this ONNX Runtime library has no CUDA execution provider \
                            (install the onnxruntime-gpu library)"
                    .into());
            }
            builder
                .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
                .map_err(|e| e.to_string())
        }
        #[cfg(feature = "coreml")]
        Provider::Coreml => {
            use ort::ep::ExecutionProvider;
            if !ort::ep::CoreML::is_available().map_err(|e| e.to_string())? {
                return Err("this ONNX Runtime library has no CoreML execution provider".into());
            }
            builder
                .with_execution_providers([ort::ep::CoreML::default().build().error_on_failure()])
                .map_err(|e| e.to_string())
        }
        #[allow(unreachable_patterns)]
        other => Err(format!(
            "the {} execution provider is not compiled into this build",
            other.name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Built = Built {
        cuda: true,
        coreml: true,
    };

    #[test]
    fn auto_tries_cuda_then_coreml_then_cpu() {
        use Provider::*;
        assert_eq!(plan(Device::Auto, ALL), Ok(vec![Cuda, Coreml, Cpu]));
        let coreml_only = Built {
            cuda: false,
            coreml: true,
        };
        assert_eq!(plan(Device::Auto, coreml_only), Ok(vec![Coreml, Cpu]));
        assert_eq!(plan(Device::Auto, Built::default()), Ok(vec![Cpu]));
        assert_eq!(plan(Device::Cpu, ALL), Ok(vec![Cpu]));
    }

    #[test]
    fn a_fixed_choice_is_alone_or_an_error_naming_the_feature() {
        assert_eq!(plan(Device::Cuda, ALL), Ok(vec![Provider::Cuda]));
        assert_eq!(plan(Device::Coreml, ALL), Ok(vec![Provider::Coreml]));
        let none = Built::default();
        assert!(plan(Device::Cuda, none)
            .unwrap_err()
            .contains("--features cuda"));
        assert!(plan(Device::Coreml, none)
            .unwrap_err()
            .contains("--features coreml"));
    }

    #[test]
    fn a_provider_that_fails_to_register_is_skipped_and_recorded() {
        let plan = plan(Device::Auto, ALL).unwrap();
        let mut tried = Vec::new();
        let (used, value) = choose(&plan, |p| {
            tried.push(p);
            match p {
                Provider::Cpu => Ok(7),
                _ => Err("not in this library".to_string()),
            }
        })
        .unwrap();
        assert_eq!(used, Provider::Cpu);
        assert_eq!(value, 7);
        assert_eq!(tried, vec![Provider::Cuda, Provider::Coreml, Provider::Cpu]);
    }

    #[test]
    fn a_fixed_provider_that_fails_is_an_error_with_its_reason() {
        let err = choose(&[Provider::Cuda], |_| -> Result<(), _> {
            Err("CUDA execution provider is not enabled in this build".to_string())
        })
        .unwrap_err();
        assert!(err.starts_with("cuda: CUDA execution provider"), "{err}");
    }

    #[test]
    fn this_build_matches_its_features() {
        let built = Built::this_build();
        assert_eq!(built.cuda, cfg!(feature = "cuda-serving"));
        assert_eq!(built.coreml, cfg!(feature = "coreml"));
    }
}
