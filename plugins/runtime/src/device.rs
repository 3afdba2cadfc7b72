//! Which device candle trains on.
//!
//! `auto` takes CUDA, then Metal, then the CPU: the first one this build supports and the
//! machine has. A fixed choice that is not available is an error, not a silent CPU run.

use clarity_sdk::config::Device as DeviceChoice;

/// Accelerators this build and machine offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Available {
    /// candle was built with CUDA and a GPU answers.
    pub cuda: bool,
    /// candle was built with Metal and the machine has it.
    pub metal: bool,
}

impl Available {
    /// Ask candle what is there.
    pub fn detect() -> Self {
        Self {
            cuda: candle_core::utils::cuda_is_available(),
            metal: candle_core::utils::metal_is_available(),
        }
    }
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
pub fn pick(choice: DeviceChoice, available: Available) -> Result<Kind, String> {
    match choice {
        DeviceChoice::Auto if available.cuda => Ok(Kind::Cuda),
        DeviceChoice::Auto if available.metal => Ok(Kind::Metal),
        DeviceChoice::Auto | DeviceChoice::Cpu => Ok(Kind::Cpu),
        DeviceChoice::Cuda if available.cuda => Ok(Kind::Cuda),
        DeviceChoice::Cuda => Err(
            "device `cuda` asked for, but this build has no CUDA support or no GPU answers \
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
    let kind = pick(choice, Available::detect())?;
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

    #[test]
    fn auto_prefers_cuda_then_metal_then_cpu() {
        let both = Available {
            cuda: true,
            metal: true,
        };
        let metal = Available {
            cuda: false,
            metal: true,
        };
        assert_eq!(pick(DeviceChoice::Auto, both), Ok(Kind::Cuda));
        assert_eq!(pick(DeviceChoice::Auto, metal), Ok(Kind::Metal));
        assert_eq!(
            pick(DeviceChoice::Auto, Available::default()),
            Ok(Kind::Cpu)
        );
    }

    #[test]
    fn a_fixed_choice_that_is_missing_is_an_error() {
        let none = Available::default();
        assert!(pick(DeviceChoice::Cuda, none)
            .unwrap_err()
            .contains("--features cuda"));
        assert!(pick(DeviceChoice::Coreml, none)
            .unwrap_err()
            .contains("coreml"));
        assert_eq!(
            pick(
                DeviceChoice::Cpu,
                Available {
                    cuda: true,
                    metal: true
                }
            ),
            Ok(Kind::Cpu)
        );
    }

    #[test]
    fn this_machine_opens_the_cpu_for_auto() {
        let (device, kind) = open(DeviceChoice::Auto).unwrap();
        assert_eq!(kind, pick(DeviceChoice::Auto, Available::detect()).unwrap());
        if kind == Kind::Cpu {
            assert!(device.is_cpu());
        }
    }
}
