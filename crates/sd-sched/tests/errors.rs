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

#[test]
fn zero_and_too_many_steps() {
    for name in [
        "PNDMScheduler",
        "DDIMScheduler",
        "DPMSolverMultistepScheduler",
        "EulerDiscreteScheduler",
        "EulerAncestralDiscreteScheduler",
        "LMSDiscreteScheduler",
        "LCMScheduler",
    ] {
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
