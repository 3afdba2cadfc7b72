//! Which device candle trains on.
//!
//! `auto` takes CUDA, then Metal, then the CPU: the first one this build supports and the
//! machine has. A fixed choice that is not available is an error, not a silent CPU run.

use clarity_sdk::config::Device as DeviceChoice;

/// Accelerators this build and machine offer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Available {
    /// candle was built with CUDA and a GPU answers.
    pub cuda: bool,
    /// Why a CUDA build has no GPU to offer (the driver's answer), if it has none.
    pub cuda_missing: Option<String>,
    /// candle was built with Metal and the machine has it.
    pub metal: bool,
}

impl Available {
    /// Ask candle what is there: a CUDA build on a machine without a GPU (or without its
    /// driver) offers no CUDA.
    pub fn detect() -> Self {
        let built = candle_core::utils::cuda_is_available();
        let cuda_missing = built.then(cuda_answers).and_then(Result::err);
        Self {
            cuda: built && cuda_missing.is_none(),
            cuda_missing,
            metal: candle_core::utils::metal_is_available(),
        }
    }
}

/// Whether GPU 0 opens (on a CUDA build), and if not, why (the driver's answer, without
/// the backtrace candle appends when `RUST_BACKTRACE` is set).
pub fn cuda_answers() -> Result<(), String> {
    candle_core::Device::new_cuda(0).map(|_| ()).map_err(|e| {
        let text = e.to_string();
        text.lines().next().unwrap_or_default().to_string()
    })
}

/// A device kind, before it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The CPU.
    Cpu,
    /// CUDA GPU 0.
    Cuda,
    /// Apple Metal.
    Metal,
}

impl Kind {
    /// Name for logs and `info`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Cpu => "cpu",
            Kind::Cuda => "cuda",
            Kind::Metal => "metal",
        }
    }
}

/// The device `choice` means on a machine offering `available`.
pub fn pick(choice: DeviceChoice, available: &Available) -> Result<Kind, String> {
    match choice {
        DeviceChoice::Auto if available.cuda => Ok(Kind::Cuda),
        DeviceChoice::Auto if available.metal => Ok(Kind::Metal),
        DeviceChoice::Auto | DeviceChoice::Cpu => Ok(Kind::Cpu),
        DeviceChoice::Cuda if available.cuda => Ok(Kind::Cuda),
        DeviceChoice::Cuda if available.cuda_missing.is_some() => Err(format!(
            "device `cuda` asked for, but no GPU answers ({}); set `device: auto` to train \
             on the CPU",
            available.cuda_missing.as_deref().unwrap_or_default()
        )),
        DeviceChoice::Cuda => Err(
            "device `cuda` asked for, but this build has no CUDA support \
             (build the plugin with `--features cuda`, or set `device: auto`)"
                .into(),
        ),
        DeviceChoice::Coreml if available.metal => Ok(Kind::Metal),
        DeviceChoice::Coreml => Err(
            "device `coreml` asked for, but this build has no Metal support \
             (build the plugin with `--features coreml` on macOS, or set `device: auto`)"
                .into(),
        ),
    }
}

/// Open the candle device for `choice`.
pub fn open(choice: DeviceChoice) -> Result<(candle_core::Device, Kind), String> {
    let available = Available::detect();
    let kind = pick(choice, &available)?;
    if let (Kind::Cpu, DeviceChoice::Auto, Some(why)) = (kind, choice, &available.cuda_missing) {
        clarity_sdk::info!("device auto: training on the CPU, since no GPU answers ({why})");
    }
    let device = match kind {
        Kind::Cpu => candle_core::Device::Cpu,
        Kind::Cuda => candle_core::Device::new_cuda(0).map_err(|e| format!("CUDA: {e}"))?,
        Kind::Metal => candle_core::Device::new_metal(0).map_err(|e| format!("Metal: {e}"))?,
    };
    Ok((device, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offering(cuda: bool, metal: bool) -> Available {
        Available {
            cuda,
            metal,
            ..Available::default()
        }
    }

    #[test]
    fn auto_prefers_cuda_then_metal_then_cpu() {
        assert_eq!(
            pick(DeviceChoice::Auto, &offering(true, true)),
            Ok(Kind::Cuda)
        );
        assert_eq!(
            pick(DeviceChoice::Auto, &offering(false, true)),
            Ok(Kind::Metal)
        );
        assert_eq!(
            pick(DeviceChoice::Auto, &Available::default()),
            Ok(Kind::Cpu)
        );
    }

    #[test]
    fn a_fixed_choice_that_is_missing_is_an_error() {
        let none = Available::default();
        assert!(pick(DeviceChoice::Cuda, &none)
            .unwrap_err()
            .contains("--features cuda"));
        assert!(pick(DeviceChoice::Coreml, &none)
            .unwrap_err()
            .contains("coreml"));
        assert_eq!(
            pick(DeviceChoice::Cpu, &offering(true, true)),
            Ok(Kind::Cpu)
        );
    }

    #[test]
    fn a_cuda_build_without_a_gpu_trains_auto_on_the_cpu_and_says_why_for_cuda() {
        let no_gpu = Available {
            cuda_missing: Some("DriverError(CUDA_ERROR_NO_DEVICE)".into()),
            ..Available::default()
        };
        assert_eq!(pick(DeviceChoice::Auto, &no_gpu), Ok(Kind::Cpu));
        let err = pick(DeviceChoice::Cuda, &no_gpu).unwrap_err();
        assert!(err.contains("no GPU answers"), "{err}");
        assert!(err.contains("CUDA_ERROR_NO_DEVICE"), "{err}");
    }

    /// What this build on this machine offers: no CUDA without the feature; with it, CUDA
    /// exactly when GPU 0 opens, and the driver's answer when it does not.
    #[test]
    fn detection_matches_the_build_and_the_machine() {
        let found = Available::detect();
        match (candle_core::utils::cuda_is_available(), cuda_answers()) {
            (false, answer) => {
                assert!(!found.cuda);
                assert_eq!(found.cuda_missing, None);
                assert!(answer.is_err(), "a build without CUDA opened a GPU");
            }
            (true, Ok(())) => {
                assert!(found.cuda);
                assert_eq!(pick(DeviceChoice::Auto, &found), Ok(Kind::Cuda));
            }
            (true, Err(why)) => {
                eprintln!("CUDA build, no GPU answers here: {why}");
                assert!(!found.cuda);
                assert_eq!(found.cuda_missing, Some(why));
                assert_eq!(pick(DeviceChoice::Auto, &found), Ok(Kind::Cpu));
            }
        }
    }

    #[test]
    fn this_machine_opens_the_device_auto_picks() {
        let (device, kind) = open(DeviceChoice::Auto).unwrap();
        assert_eq!(
            kind,
            pick(DeviceChoice::Auto, &Available::detect()).unwrap()
        );
        assert_eq!(device.is_cpu(), kind == Kind::Cpu);
    }
}
