//! A wrong config or call is a clear, typed error.

use sd_sched::{SchedError, SchedulerConfig, from_config};

fn cfg(json: &str) -> SchedulerConfig {
    SchedulerConfig::from_json(json).unwrap()
}

#[test]
fn unknown_beta_schedule() {
    let e = from_config(&cfg(
        r#"{"_class_name": "EulerDiscreteScheduler", "beta_schedule": "cubic"}"#,
    ))
    .err();
    assert_eq!(e, Some(SchedError::UnknownBetaSchedule("cubic".into())));
}

#[test]
fn unknown_prediction_type_and_spacing() {
    let e = from_config(&cfg(
        r#"{"_class_name": "DDIMScheduler", "prediction_type": "x0"}"#,
    ))
    .err();
    assert_eq!(e, Some(SchedError::UnknownPredictionType("x0".into())));
    let e = from_config(&cfg(
        r#"{"_class_name": "LMSDiscreteScheduler", "timestep_spacing": "log"}"#,
    ))
    .err();
    assert_eq!(e, Some(SchedError::UnknownTimestepSpacing("log".into())));
}

#[test]
fn unknown_keys_are_ignored_and_bad_json_is_an_error() {
    let c = cfg(
        r#"{"_class_name": "PNDMScheduler", "skip_prk_steps": true, "_diffusers_version": "0.6.0", "clip_sample": false, "something_new": [1, 2]}"#,
    );
    assert!(from_config(&c).is_ok());
    assert!(matches!(
        SchedulerConfig::from_json("{"),
        Err(SchedError::Config(_))
    ));
    assert!(matches!(
        SchedulerConfig::from_json(r#"{"steps_offset": "one"}"#),
        Err(SchedError::Config(_))
    ));
}

/// Every scheduler class this crate builds.
const CLASSES: [&str; 7] = [
    "PNDMScheduler",
    "DDIMScheduler",
    "DPMSolverMultistepScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "LMSDiscreteScheduler",
    "LCMScheduler",
];

#[test]
fn zero_and_too_many_steps() {
    for name in CLASSES {
        let mut s = from_config(&cfg(&format!(
            r#"{{"_class_name": "{name}", "skip_prk_steps": true}}"#
        )))
        .unwrap();
        assert_eq!(s.set_timesteps(0), Err(SchedError::ZeroSteps), "{name}");
        assert!(
            matches!(s.set_timesteps(1001), Err(SchedError::TooManySteps { .. })),
            "{name}"
        );
    }
}

#[test]
fn strength_outside_unit_interval() {
    let mut s = from_config(&cfg(r#"{"_class_name": "EulerDiscreteScheduler"}"#)).unwrap();
    assert_eq!(s.img2img_start(0.5), Err(SchedError::NotInitialized));
    s.set_timesteps(10).unwrap();
    assert_eq!(
        s.img2img_start(1.5),
        Err(SchedError::StrengthOutOfRange(1.5))
    );
    assert_eq!(
        s.img2img_start(-0.1),
        Err(SchedError::StrengthOutOfRange(-0.1))
    );
    assert_eq!(s.img2img_start(0.5), Ok(5));
}

#[test]
fn unsupported_options_and_misuse() {
    let e = from_config(&cfg(
        r#"{"_class_name": "DDIMScheduler", "thresholding": true}"#,
    ))
    .err();
    assert!(matches!(e, Some(SchedError::Unsupported(_))));
    let e = from_config(&cfg(r#"{"_class_name": "Nope"}"#)).err();
    assert!(matches!(e, Some(SchedError::Unsupported(_))));
    let mut s = from_config(&cfg(r#"{"_class_name": "DDIMScheduler"}"#)).unwrap();
    let r = s.step(&[0.0; 4], 999.0, &[0.0; 4], &mut sd_sched::NoNoise);
    assert_eq!(r.err(), Some(SchedError::NotInitialized));
    s.set_timesteps(10).unwrap();
    let r = s.step(&[0.0; 3], 901.0, &[0.0; 4], &mut sd_sched::NoNoise);
    assert_eq!(
        r.err(),
        Some(SchedError::LengthMismatch {
            expected: 4,
            got: 3
        })
    );
    let mut e = from_config(&cfg(r#"{"_class_name": "EulerDiscreteScheduler"}"#)).unwrap();
    e.set_timesteps(10).unwrap();
    assert_eq!(
        e.scale_model_input(&[1.0], 123.5).err(),
        Some(SchedError::TimestepNotFound(123.5))
    );
}

#[test]
fn squaredcos_uses_real_division() {
    // Integer division (t = i / n == 0) would give beta 0 for every step but the last.
    let b = sd_sched::schedule::betas_for_alpha_bar(1000, 0.999);
    assert!(b[0] > 0.0 && b[500] > b[0] && b[999] == 0.999);
}

/// Every scheduler, with SD's config (leading spacing, steps_offset 1) and the other
/// spacings, at every step count up to the training schedule: either a typed error from
/// `set_timesteps` or a run through every step without a panic.
#[test]
fn every_step_count_either_runs_or_is_refused() {
    let classes = CLASSES;
    let mut refused = Vec::new();
    for class in classes {
        for spacing in ["leading", "linspace", "trailing"] {
            let json = format!(
                r#"{{"_class_name": "{class}", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1, "timestep_spacing": "{spacing}"}}"#
            );
            for steps in [1usize, 2, 3, 7, 50, 333, 500, 999, 1000, 1001] {
                let mut s = from_config(&cfg(&json)).unwrap();
                if let Err(e) = s.set_timesteps(steps) {
                    assert!(!e.to_string().is_empty());
                    refused.push((class, spacing, steps, e));
                    continue;
                }
                if steps > 50 && steps != 1000 && steps != 999 {
                    continue; // the long runs cost time; 999 and 1000 are the edges
                }
                let mut noise = sd_sched::TorchRng::new(0);
                let sample = vec![0.1f32; 4];
                let mut x = sample.clone();
                for t in s.timesteps().to_vec() {
                    let input = s.scale_model_input(&x, t).unwrap();
                    x = s.step(&input, t, &x, &mut noise).unwrap().prev_sample;
                }
                assert!(
                    x.iter().all(|v| v.is_finite()),
                    "{class} {spacing} {steps}: {x:?}"
                );
            }
        }
    }
    // 1001 steps is always refused; SD's leading spacing + offset 1 at 1000 reaches timestep
    // 1000 (diffusers' IndexError), refused with the largest count that works.
    assert!(refused.iter().any(|(c, sp, n, e)| *c == "PNDMScheduler"
        && *sp == "leading"
        && *n == 1000
        && matches!(
            e,
            SchedError::TimestepOutOfRange {
                timestep: 1000,
                max_ok: 999,
                ..
            }
        )));
    assert!(
        classes
            .iter()
            .all(|c| refused.iter().any(|(rc, _, n, _)| rc == c && *n == 1001))
    );
}
