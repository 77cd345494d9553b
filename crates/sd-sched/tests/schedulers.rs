//! Schedulers against diffusers' own outputs (fixtures/schedulers/, from gen_schedulers.py).

mod common;
use common::*;
use sd_sched::noise::{NoNoise, NoiseSource, RecordedNoise, TorchRng};
use sd_sched::{DdimScheduler, Scheduler, SchedulerConfig, from_config, schedule};

/// Integers exactly, fractional (Karras) timesteps to 1e-6 relative.
fn assert_close(got: &[f32], exp: &[f32], what: &str) {
    assert_eq!(got.len(), exp.len(), "{what}: {got:?} vs {exp:?}");
    for (g, e) in got.iter().zip(exp) {
        if e.fract() == 0.0 && !what.contains("karras") {
            assert_eq!(g, e, "{what}: {got:?} vs {exp:?}");
        } else {
            assert!(
                ((g - e) / e.abs().max(1.0)).abs() <= 1e-6,
                "{what}: {got:?} vs {exp:?}"
            );
        }
    }
}

fn build(config: &serde_json::Value, eta: Option<f64>) -> Box<dyn Scheduler> {
    let c = common::config(config);
    match eta {
        Some(eta) => Box::new(DdimScheduler::new(&c).unwrap().with_eta(eta as f32)),
        None => from_config(&c).unwrap(),
    }
}

#[test]
fn betas_and_alphas_cumprod() {
    let fx = json("schedulers/betas.json");
    for (name, s) in fx["schedules"].as_object().unwrap() {
        let c: SchedulerConfig = common::config(&s["config"]);
        let kind = sd_sched::BetaSchedule::parse(c.beta_schedule.as_deref().unwrap()).unwrap();
        let betas = schedule::betas(
            kind,
            c.beta_start.unwrap_or(0.0001),
            c.beta_end.unwrap_or(0.02),
            1000,
        );
        let exp = hex_f32(s["betas_f32"].as_str().unwrap());
        let acp = schedule::alphas_cumprod(&betas);
        let exp_acp = hex_f32(s["alphas_cumprod_f32"].as_str().unwrap());
        let bad = betas
            .iter()
            .zip(&exp)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        let bad_acp = acp
            .iter()
            .zip(&exp_acp)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        eprintln!(
            "{name}: betas differing {bad}/1000, alphas_cumprod differing {bad_acp}/1000, rel err {:e}",
            rel_err(&acp, &exp_acp)
        );
        assert_eq!(bad, 0, "{name} betas");
        assert_eq!(bad_acp, 0, "{name} alphas_cumprod");
    }
}

#[test]
fn timesteps_and_sigmas() {
    let fx = json("schedulers/timesteps.json");
    let (mut n, mut max_t, mut max_s) = (0usize, 0f64, 0f64);
    for case in fx["cases"].as_array().unwrap() {
        let steps = case["steps"].as_u64().unwrap() as usize;
        let label = format!(
            "{} {} {} n={steps}",
            case["variant"], case["beta"], case["spacing"]
        );
        let mut s = build(&case["config"], None);
        let r = s.set_timesteps(steps);
        if case.get("error").is_some() {
            assert!(r.is_err(), "{label}: diffusers refused, we accepted");
            continue;
        }
        r.unwrap_or_else(|e| panic!("{label}: {e}"));
        let exp_t = f32s(&case["timesteps"]);
        let got_t = s.timesteps();
        assert_eq!(
            got_t.len(),
            exp_t.len(),
            "{label} timesteps len: {got_t:?} vs {exp_t:?}"
        );
        if case["timesteps_are_int"].as_bool().unwrap() {
            assert_eq!(got_t, &exp_t[..], "{label} timesteps");
        } else {
            for (g, e) in got_t.iter().zip(&exp_t) {
                let d = ((g - e) / e.abs().max(1.0)).abs() as f64;
                max_t = max_t.max(d);
                assert!(d <= 1e-6, "{label} timesteps {got_t:?} vs {exp_t:?}");
            }
        }
        if let Some(sig) = case.get("sigmas") {
            let exp = f32s(sig);
            let got = s.sigmas().unwrap();
            assert_eq!(got.len(), exp.len(), "{label} sigmas len");
            for (g, e) in got.iter().zip(&exp) {
                let d = ((g - e) / e.abs().max(1e-30)).abs() as f64;
                let d = if *e == 0.0 { g.abs() as f64 } else { d };
                max_s = max_s.max(d);
                assert!(d <= 1e-6, "{label} sigmas {got:?} vs {exp:?}");
            }
        }
        let ins = case["init_noise_sigma"].as_f64().unwrap() as f32;
        assert!(
            ((s.init_noise_sigma() - ins) / ins).abs() <= 1e-6,
            "{label} init_noise_sigma"
        );
        n += 1;
    }
    eprintln!("{n} schedules; max rel err timesteps {max_t:e}, sigmas {max_s:e}");
    assert!(n > 400);
}

#[test]
fn traces() {
    let fx = json("schedulers/traces.json");
    let t = safetensors_f32("schedulers/traces.safetensors");
    let mut worst = 0f64;
    for (name, info) in fx["traces"].as_object().unwrap() {
        let mut s = build(&info["config"], info.get("eta").and_then(|v| v.as_f64()));
        let steps = info["steps"].as_u64().unwrap() as usize;
        s.set_timesteps(steps).unwrap();
        let exp_ts = f32s(&info["timesteps"]);
        assert_close(s.timesteps(), &exp_ts, &format!("{name} timesteps"));
        let ins = info["init_noise_sigma"].as_f64().unwrap() as f32;
        assert!(
            ((s.init_noise_sigma() - ins) / ins).abs() <= 1e-6,
            "{name} init_noise_sigma"
        );

        // The pipeline's draw order: latents first, then each stochastic step's noise.
        let seed = info["seed"].as_u64().unwrap();
        let raw = &t[&format!("{name}/latents_noise")];
        let mut rng = TorchRng::new(seed);
        assert_eq!(&rng.randn(raw.len()), raw, "{name} latents draw");
        let noise_steps: Vec<u64> = info["noise_steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        for &i in &noise_steps {
            let rec = &t[&format!("{name}/{i}/noise")];
            assert_eq!(
                &rng.randn(rec.len()),
                rec,
                "{name} step {i} noise draw (torch generator order)"
            );
        }

        let mut sample = t[&format!("{name}/latents")].clone();
        let mut err = 0f64;
        for (i, &ts) in exp_ts.iter().enumerate() {
            let key = |k: &str| format!("{name}/{i}/{k}");
            let scaled = s.scale_model_input(&sample, ts).unwrap();
            err = err.max(rel_err(&scaled, &t[&key("scaled")]));
            let mo = &t[&key("model_output")];
            let out = if let Some(z) = t.get(&key("noise")) {
                let mut rec = RecordedNoise::new(vec![z.clone()]);
                let out = s.step(mo, ts, &sample, &mut rec).unwrap();
                assert_eq!(rec.remaining(), 0, "{name} step {i} did not draw");
                out
            } else {
                s.step(mo, ts, &sample, &mut NoNoise).unwrap()
            };
            let e = rel_err(&out.prev_sample, &t[&key("prev_sample")]);
            err = err.max(e);
            if let Some(x0) = t.get(&key("pred_original")) {
                err = err.max(rel_err(out.pred_original_sample.as_ref().unwrap(), x0));
            }
            assert!(err <= 1e-5, "{name} step {i} (t={ts}): rel err {err:e}");
            sample = t[&key("prev_sample")].clone();
        }
        eprintln!("{name}: max rel err {err:e}");
        worst = worst.max(err);
    }
    eprintln!("traces: worst rel err {worst:e}");
}

#[test]
fn img2img_strength_and_add_noise() {
    let fx = json("schedulers/traces.json");
    let t = safetensors_f32("schedulers/traces.safetensors");
    let init = &t["img2img/init"];
    let noise = &t["img2img/noise"];
    let mut worst = 0f64;
    for case in fx["img2img"].as_array().unwrap() {
        let mut s = build(&case["config"], None);
        let n = case["steps"].as_u64().unwrap() as usize;
        s.set_timesteps(n).unwrap();
        let strength = case["strength"].as_f64().unwrap();
        let start = s.img2img_start(strength).unwrap();
        assert_eq!(start as u64, case["start"].as_u64().unwrap(), "{case}");
        let exp = f32s(&case["timesteps"]);
        assert_close(&s.timesteps()[start..], &exp, &format!("{case}"));
        if let Some(k) = case.get("add_noise") {
            let got = s.add_noise(init, noise, exp[0]).unwrap();
            let e = rel_err(&got, &t[k.as_str().unwrap()]);
            worst = worst.max(e);
            assert!(e <= 1e-6, "{k}: {e:e}");
        }
    }
    eprintln!("add_noise: worst rel err {worst:e}");
}
