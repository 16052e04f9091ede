//! The learning-rate schedules of the authors' `train.py`:
//! `cosine_warmup` (per optimiser step: linear warm-up, then cosine down to
//! `min_lr`, through `LambdaLR`), and the per-epoch `cosine`
//! (`CosineAnnealingLR`, whose chained recursion is reproduced step by
//! step) and `step` (`StepLR`).

#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    CosineWarmup { base: f64, total_steps: u64, warmup_steps: u64, min_lr_ratio: f64 },
    Cosine { base: f64, t_max: u64, eta_min: f64 },
    Step { base: f64, step_size: u64, gamma: f64 },
}

impl Schedule {
    /// `cosine_warmup` over `total_steps` optimiser steps; `warmup_steps`
    /// when > 0, else `warmup_ratio` of the total, kept in [1, total - 1].
    pub fn cosine_warmup(base: f64, total_steps: u64, warmup_steps: i64, warmup_ratio: f64, min_lr: f64) -> Self {
        let total_steps = total_steps.max(1);
        let mut warmup = if warmup_steps > 0 { warmup_steps as u64 } else { (total_steps as f64 * warmup_ratio) as u64 };
        warmup = warmup.min(total_steps.saturating_sub(1)).max(1);
        let min_lr_ratio = (min_lr / base.max(1e-12)).clamp(0.0, 1.0);
        Self::CosineWarmup { base, total_steps, warmup_steps: warmup, min_lr_ratio }
    }

    /// Whether the rate changes every optimiser step (else every epoch).
    pub fn per_step(&self) -> bool {
        matches!(self, Self::CosineWarmup { .. })
    }

    /// The rate for optimiser step `step` (0-based) in epoch `epoch`.
    pub fn lr(&self, step: u64, epoch: u64) -> f64 {
        match *self {
            Self::CosineWarmup { base, total_steps, warmup_steps, min_lr_ratio } => {
                let factor = if step < warmup_steps {
                    (step + 1) as f64 / warmup_steps as f64
                } else {
                    let progress = (step - warmup_steps) as f64 / (total_steps.saturating_sub(warmup_steps)).max(1) as f64;
                    let progress = progress.clamp(0.0, 1.0);
                    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                    min_lr_ratio + (1.0 - min_lr_ratio) * cosine
                };
                base * factor
            }
            Self::Cosine { base, t_max, eta_min } => {
                let t = t_max as f64;
                let mut lr = base;
                for e in 1..=epoch as i64 {
                    let ef = e as f64;
                    lr = if (e - 1 - t_max as i64).rem_euclid(2 * t_max as i64) == 0 {
                        lr + (base - eta_min) * (1.0 - (std::f64::consts::PI / t).cos()) / 2.0
                    } else {
                        (1.0 + (std::f64::consts::PI * ef / t).cos()) / (1.0 + (std::f64::consts::PI * (ef - 1.0) / t).cos())
                            * (lr - eta_min)
                            + eta_min
                    };
                }
                lr
            }
            Self::Step { base, step_size, gamma } => {
                let mut lr = base;
                for e in 1..=epoch {
                    if step_size > 0 && e % step_size == 0 {
                        lr *= gamma;
                    }
                }
                lr
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_warmup_rises_then_falls_to_min() {
        let s = Schedule::cosine_warmup(1e-4, 100, 0, 0.05, 1e-6);
        let Schedule::CosineWarmup { total_steps, warmup_steps, min_lr_ratio, .. } = s else { panic!("{s:?}") };
        assert_eq!((total_steps, warmup_steps), (100, 5));
        assert!((min_lr_ratio - 0.01).abs() < 1e-15);
        assert!((s.lr(0, 0) - 2e-5).abs() < 1e-18);
        assert!((s.lr(4, 0) - 1e-4).abs() < 1e-18);
        assert!((s.lr(5, 0) - 1e-4).abs() < 1e-18);
        assert!((s.lr(100, 0) - 1e-6).abs() < 1e-15);
        assert!(s.lr(50, 0) < s.lr(20, 0));
        // Degenerate totals keep one warm-up step.
        assert!(matches!(Schedule::cosine_warmup(1.0, 1, 0, 0.05, 0.0), Schedule::CosineWarmup { warmup_steps: 1, .. }));
    }

    #[test]
    fn per_epoch_schedules() {
        let c = Schedule::Cosine { base: 1.0, t_max: 4, eta_min: 0.0 };
        let closed = |e: f64| 0.5 * (1.0 + (std::f64::consts::PI * e / 4.0).cos());
        for e in 0..=4 {
            assert!((c.lr(0, e) - closed(e as f64)).abs() < 1e-12, "{e}");
        }
        let s = Schedule::Step { base: 1.0, step_size: 2, gamma: 0.5 };
        assert_eq!([0, 1, 2, 3, 4].map(|e| s.lr(0, e)), [1.0, 1.0, 0.5, 0.5, 0.25]);
    }
}
