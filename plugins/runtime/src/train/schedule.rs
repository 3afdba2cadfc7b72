//! The learning-rate schedule: linear warmup, then linear decay to zero (transformers'
//! `get_linear_schedule_with_warmup`).

/// Learning rate for optimizer step `step` (counting from 0) of `total`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearSchedule {
    /// Peak learning rate, reached at the end of the warmup.
    pub peak: f64,
    /// Steps of warmup.
    pub warmup: u64,
    /// Optimizer steps in the whole run.
    pub total: u64,
}

impl LinearSchedule {
    /// The schedule for `total` steps with `warmup_ratio` of them warming up.
    pub fn new(peak: f64, warmup_ratio: f64, total: u64) -> Self {
        let warmup = (warmup_ratio.clamp(0.0, 1.0) * total as f64).ceil() as u64;
        Self {
            peak,
            warmup,
            total,
        }
    }

    /// The rate used by step `step` (0-based). Warmup counts the step itself, so the first
    /// step already moves the weights (transformers' first step has a rate of 0).
    pub fn at(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let decay = self.total.saturating_sub(self.warmup).max(1);
        let left = self.total.saturating_sub(step);
        self.peak * left as f64 / decay as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays_to_zero() {
        let s = LinearSchedule::new(1.0, 0.1, 100);
        assert_eq!(s.warmup, 10);
        assert!((s.at(0) - 0.1).abs() < 1e-12);
        assert!((s.at(9) - 1.0).abs() < 1e-12);
        assert!((s.at(10) - 1.0).abs() < 1e-12);
        assert!((s.at(55) - 0.5).abs() < 1e-12);
        assert!(s.at(99) > 0.0 && s.at(99) < 0.02);
        assert_eq!(s.at(100), 0.0);
        assert_eq!(s.at(1000), 0.0);
    }

    #[test]
    fn no_warmup_and_a_single_step() {
        let s = LinearSchedule::new(2.0, 0.0, 4);
        assert_eq!(s.at(0), 2.0);
        assert_eq!(s.at(2), 1.0);
        let one = LinearSchedule::new(1.0, 0.5, 1);
        assert_eq!(one.at(0), 1.0);
    }
}
