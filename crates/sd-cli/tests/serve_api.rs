//! `sd serve`'s HTTP APIs on the tiny model: every endpoint round-trips, bad input gets a 4xx
//! with a JSON message, overlapping requests finish in order, cancelled and abandoned jobs stop,
//! and a bounded load shows no error and no memory growth.

mod serve_support;

use base64::Engine as _;
use sd_runtime::pipeline::image::{RgbImage, decode_image, encode_png, read_png_text};
use serde_json::{Value, json};
use serve_support::{ServerProcess, wait_for};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn server() -> &'static ServerProcess {
    static S: OnceLock<ServerProcess> = OnceLock::new();
    S.get_or_init(|| ServerProcess::start("api", &["--max-steps", "1000", "--max-body-mib", "4"]))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into()
}

struct Reply {
    status: u16,
    bytes: Vec<u8>,
    headers: ureq::http::HeaderMap,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.bytes)))
    }
}

fn reply(mut r: ureq::http::Response<ureq::Body>) -> Reply {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let bytes = r
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap();
    Reply {
        status,
        bytes,
        headers,
    }
}

fn get(path: &str) -> Reply {
    reply(
        agent()
            .get(format!("{}{path}", server().url))
            .call()
            .unwrap(),
    )
}

fn post(path: &str, body: &Value) -> Reply {
    post_raw(path, "application/json", body.to_string().into_bytes())
}

fn post_raw(path: &str, content_type: &str, body: Vec<u8>) -> Reply {
    reply(
        agent()
            .post(format!("{}{path}", server().url))
            .header("Content-Type", content_type)
            .send(&body[..])
            .unwrap(),
    )
}

/// The error object of a 4xx answer, checked for shape.
fn error_of(r: &Reply, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.bytes));
    let v = r.json();
    let e = v["error"].clone();
    assert!(
        e["message"].as_str().is_some_and(|m| m.len() > 10),
        "a clear message: {v}"
    );
    assert!(e["type"].is_string(), "{v}");
    e
}

/// Reads a job's event stream to its end: (event name, data) in order.
fn events(id: &str) -> Vec<(String, Value)> {
    let r = agent()
        .get(format!("{}/api/v1/jobs/{id}/events", server().url))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut out = Vec::new();
    let mut name = String::new();
    for line in BufReader::new(r.into_body().into_reader()).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("event: ") {
            name = n.to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            out.push((name.clone(), serde_json::from_str(d).unwrap()));
        }
    }
    out
}

fn submit(body: Value) -> Value {
    let r = post("/api/v1/jobs", &body);
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.bytes));
    r.json()
}

fn png_parameters(png: &[u8]) -> String {
    read_png_text(png)
        .unwrap()
        .into_iter()
        .find(|(k, _)| k == "parameters")
        .map(|(_, v)| v)
        .expect("a parameters chunk")
}

fn wait_state(id: &str, state: &str) -> Value {
    wait_for(Duration::from_secs(300), || {
        let v = get(&format!("/api/v1/jobs/{id}")).json();
        (v["state"] == state).then_some(v)
    })
    .unwrap_or_else(|| panic!("job {id} never became {state}"))
}

#[test]
fn health_info_and_the_openapi_description_cover_every_route() {
    let h = get("/health").json();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["model"], "sd1-tiny");
    let info = get("/api/v1/info").json();
    assert_eq!(info["model"]["width"], 256);
    assert_eq!(info["model"]["image_to_image"], true);
    assert_eq!(info["schedulers"].as_array().unwrap().len(), 8);
    let samplers = get("/sdapi/v1/samplers").json();
    let names: Vec<&str> = samplers
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"DPM++ 2M Karras") && names.contains(&"Euler a"),
        "{names:?}"
    );
    assert_eq!(
        get("/sdapi/v1/sd-models").json()[0]["model_name"],
        "sd1-tiny"
    );
    assert_eq!(
        get("/sdapi/v1/options").json()["sd_model_checkpoint"],
        "sd1-tiny"
    );
    let p = get("/sdapi/v1/progress").json();
    assert!(
        p["progress"].is_number() && p["state"]["job_count"].is_number(),
        "{p}"
    );
    let page = get("/");
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.bytes).contains("id=\"generate\""));
    assert!(
        page.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert_eq!(get("/app.js").status, 200);
    assert_eq!(get("/style.css").status, 200);

    // Every path and method the description names is served (no fallback 404, no 405).
    let doc = get("/openapi.json").json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 19, "{}", paths.len());
    let unknown = "00000000-0000-4000-8000-000000000000";
    for (path, item) in paths {
        let concrete = path.replace("{id}", unknown).replace("{index}", "0");
        for method in ["get", "post", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let url = format!("{}{concrete}", server().url);
            let r = match method {
                "get" if concrete.ends_with("/events") => agent().get(&url).call().unwrap(),
                "get" => agent().get(&url).call().unwrap(),
                "post" => agent()
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .send("{}")
                    .unwrap(),
                _ => agent().delete(&url).call().unwrap(),
            };
            let r = reply(r);
            assert_ne!(r.status, 405, "{method} {path}");
            if r.status == 404 {
                let m = r.json()["error"]["message"].as_str().unwrap().to_string();
                assert!(
                    !m.contains("no such page"),
                    "{method} {path} is not routed: {m}"
                );
            }
        }
    }
}

#[test]
fn native_jobs_stream_progress_and_give_pngs_with_parameters() {
    let job = submit(json!({
        "prompt": "a lighthouse at dusk",
        "negative_prompt": "blurry",
        "steps": 3,
        "seed": 1234,
        "scheduler": "euler",
        "preview_every": 1,
    }));
    let id = job["id"].as_str().unwrap();
    assert!(
        job["state"] == "queued" || job["state"] == "running",
        "{job}"
    );
    let evs = events(id);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.last(), Some(&"done"), "{names:?}");
    assert!(names.contains(&"running"), "{names:?}");
    assert!(
        evs.iter().any(|(_, d)| d["preview"]
            .as_str()
            .is_some_and(|p| p.starts_with("data:image/png;base64,"))),
        "a preview rode along"
    );
    let done = &evs.last().unwrap().1;
    let image = &done["images"][0];
    assert_eq!(image["file_name"], "a_lighthouse_at_dusk.1234.final.png");
    let url = image["url"].as_str().unwrap();
    let r = get(&format!("{url}?download=1"));
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "image/png");
    let disposition = r.headers["content-disposition"].to_str().unwrap();
    assert_eq!(
        disposition,
        "attachment; filename=\"a_lighthouse_at_dusk.1234.final.png\"; filename*=UTF-8''a_lighthouse_at_dusk.1234.final.png"
    );
    let params = png_parameters(&r.bytes);
    assert_eq!(
        params,
        "a lighthouse at dusk\nNegative prompt: blurry\nSteps: 3, Sampler: Euler, CFG scale: 7.5, Seed: 1234, Size: 256x256, Model: sd1-tiny"
    );
    assert_eq!(image["parameters"], params);
    let img = decode_image(&r.bytes, "result").unwrap();
    assert_eq!((img.rgb.width, img.rgb.height), (256, 256));
    // Saved in the output folder, and nowhere else, with the same bytes.
    let saved: Vec<_> = std::fs::read_dir(&server().output)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.to_string_lossy()
                .ends_with("a_lighthouse_at_dusk.1234.final.png")
        })
        .collect();
    assert_eq!(saved.len(), 1, "{saved:?}");
    assert_eq!(std::fs::read(&saved[0]).unwrap(), r.bytes);
    // An image that does not exist, and one of an unknown job.
    error_of(&get(&format!("/api/v1/jobs/{id}/images/7")), 404);
    error_of(&get(&format!("/api/v1/jobs/{id}/images/x")), 400);
}

#[test]
fn a1111_txt2img_and_img2img_round_trip() {
    let body = json!({
        "prompt": "a red fox", "steps": 2, "seed": 7, "cfg_scale": 5.0,
        "sampler_name": "DPM++ 2M", "scheduler": "Karras", "batch_size": 2,
        "restore_faces": false, "override_settings": {"sd_model_checkpoint": "x"}
    });
    let r = post("/sdapi/v1/txt2img", &body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.bytes));
    let v = r.json();
    assert_eq!(v["parameters"], body, "the request echoed");
    let images = v["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    let info: Value = serde_json::from_str(v["info"].as_str().unwrap()).unwrap();
    assert_eq!(info["all_seeds"], json!([7, 8]));
    assert_eq!(info["sampler_name"], "DPM++ 2M Karras");
    let first = B64.decode(images[0].as_str().unwrap()).unwrap();
    assert_eq!(
        png_parameters(&first),
        "a red fox\nSteps: 2, Sampler: DPM++ 2M Karras, CFG scale: 5.0, Seed: 7, Size: 256x256, Model: sd1-tiny"
    );
    assert_eq!(
        info["infotexts"][1].as_str().unwrap(),
        png_parameters(&B64.decode(images[1].as_str().unwrap()).unwrap())
    );
    assert!(png_parameters(&B64.decode(images[1].as_str().unwrap()).unwrap()).contains("Seed: 8"));
    // Each image is its own seed's: seed 8 alone gives image 1 again, bit for bit.
    let again = post(
        "/sdapi/v1/txt2img",
        &json!({
            "prompt": "a red fox", "steps": 2, "seed": 8, "cfg_scale": 5.0,
            "sampler_name": "DPM++ 2M Karras"
        }),
    )
    .json();
    assert_eq!(again["images"][0], images[1]);

    // img2img from that picture, with a data URL; then inpainting with a mask; then a
    // starting image of another size, resized with a warning.
    let init = format!("data:image/png;base64,{}", images[0].as_str().unwrap());
    let r = post(
        "/sdapi/v1/img2img",
        &json!({
            "prompt": "a red fox in snow", "steps": 4, "seed": 3, "denoising_strength": 0.5,
            "init_images": [init], "sampler_name": "Euler a"
        }),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.bytes));
    let v = r.json();
    let png = B64.decode(v["images"][0].as_str().unwrap()).unwrap();
    assert!(
        png_parameters(&png).contains("Denoising strength: 0.5"),
        "{}",
        png_parameters(&png)
    );
    let mut mask = RgbImage {
        width: 256,
        height: 256,
        data: vec![0; 256 * 256 * 3],
    };
    for y in 64..192 {
        for x in 64..192 {
            for c in 0..3 {
                mask.data[(y * 256 + x) * 3 + c] = 255;
            }
        }
    }
    let mask_b64 = B64.encode(encode_png(&mask, &[]).unwrap());
    let r = post(
        "/sdapi/v1/img2img",
        &json!({
            "prompt": "a red fox", "steps": 2, "seed": 3, "init_images": [images[0]], "mask": mask_b64,
            "denoising_strength": 1.0
        }),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.bytes));
    let small = RgbImage {
        width: 64,
        height: 48,
        data: vec![128; 64 * 48 * 3],
    };
    let r = post(
        "/sdapi/v1/img2img",
        &json!({
            "prompt": "grey", "steps": 2, "seed": 3, "denoising_strength": 0.5,
            "init_images": [B64.encode(encode_png(&small, &[]).unwrap())]
        }),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.bytes));
    let info: Value = serde_json::from_str(r.json()["info"].as_str().unwrap()).unwrap();
    assert!(
        info["warnings"][0]
            .as_str()
            .unwrap()
            .contains("64x48 and was resized"),
        "{info}"
    );
}

#[test]
fn openai_generations_round_trip() {
    let r = post(
        "/v1/images/generations",
        &json!({
            "prompt": "a watercolor boat", "n": 2, "size": "256x256", "model": "dall-e-2", "response_format": "b64_json"
        }),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.bytes));
    let v = r.json();
    assert!(v["created"].as_u64().unwrap() > 1_700_000_000);
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for d in data {
        let png = B64.decode(d["b64_json"].as_str().unwrap()).unwrap();
        assert!(png_parameters(&png).starts_with("a watercolor boat\n"));
    }
    let r = post(
        "/v1/images/generations",
        &json!({"prompt": "a boat", "response_format": "url"}),
    );
    let url = r.json()["data"][0]["url"].as_str().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let img = reply(agent().get(&url).call().unwrap());
    assert_eq!(img.status, 200);
    assert!(png_parameters(&img.bytes).starts_with("a boat\n"));
}

#[test]
fn bad_input_gets_a_4xx_with_a_clear_json_message() {
    let not_image = B64.encode(b"hello, this is not a picture at all");
    let gif = B64.encode(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;");
    let cases: Vec<(&str, Value, u16, Option<&str>, &str)> = vec![
        (
            "/sdapi/v1/txt2img",
            json!({"prompt": "x", "steps": -5}),
            400,
            Some("steps"),
            "between 1 and 1000",
        ),
        (
            "/sdapi/v1/txt2img",
            json!({"prompt": "x", "steps": 0}),
            400,
            Some("steps"),
            "between",
        ),
        (
            "/sdapi/v1/txt2img",
            json!({"prompt": "x", "steps": 100000}),
            400,
            Some("steps"),
            "between",
        ),
        (
            "/sdapi/v1/txt2img",
            json!({"prompt": "x", "batch_size": 100000}),
            400,
            Some("batch_size"),
            "between",
        ),
        (
            "/sdapi/v1/txt2img",
            json!({"prompt": "x", "batch_size": 8, "n_iter": 8}),
            400,
            Some("batch_size"),
            "64 images",
        ),
        (
            "/sdapi/v1/txt2img",
            json!({"prompt": "x", "steps": "many"}),
            422,
            Some("steps"),
            "invalid type",
        ),
        (
            "/sdapi/v1/txt2img",
            json!({"prompt": 5}),
            422,
            Some("prompt"),
            "invalid type",
        ),
        (
            "/sdapi/v1/txt2img",
            json!({"prompt": "x", "cfg_scale": [1]}),
            422,
            Some("cfg_scale"),
            "invalid type",
        ),
        (
            "/sdapi/v1/txt2img",
            json!({"prompt": "x", "cfg_scale": 1e9}),
            400,
            Some("cfg_scale"),
            "between",
        ),
        (
            "/sdapi/v1/txt2img",
            json!({"prompt": "x", "seed": 1u64 << 40}),
            400,
            Some("seed"),
            "between 0 and",
        ),
        (
            "/sdapi/v1/txt2img",
            json!({"prompt": "x", "width": 1024, "height": 1024}),
            400,
            Some("width"),
            "256x256",
        ),
        (
            "/sdapi/v1/txt2img",
            json!({"prompt": "x", "sampler_name": "DPM++ 9M"}),
            400,
            Some("sampler_name"),
            "unknown scheduler",
        ),
        (
            "/sdapi/v1/txt2img",
            json!({"prompt": "x".repeat(5000)}),
            400,
            Some("prompt"),
            "5000 characters",
        ),
        ("/sdapi/v1/txt2img", json!([1, 2]), 400, None, "JSON object"),
        (
            "/sdapi/v1/txt2img",
            json!({"prompt": "a\u{0}b"}),
            400,
            Some("prompt"),
            "NUL",
        ),
        (
            "/api/v1/jobs",
            json!({"prompt": "x", "negative_prompt": "\u{0}"}),
            400,
            Some("negative_prompt"),
            "NUL",
        ),
        (
            "/v1/images/generations",
            json!({"prompt": "x", "n": -2}),
            400,
            Some("n"),
            "between",
        ),
        (
            "/v1/images/generations",
            json!({"prompt": "x", "n": "2"}),
            422,
            Some("n"),
            "invalid type",
        ),
        (
            "/sdapi/v1/img2img",
            json!({"prompt": "x"}),
            400,
            Some("init_images"),
            "needs one image",
        ),
        (
            "/sdapi/v1/img2img",
            json!({"prompt": "x", "init_images": [not_image]}),
            400,
            Some("init_images[0]"),
            "not PNG or JPEG",
        ),
        (
            "/sdapi/v1/img2img",
            json!({"prompt": "x", "init_images": [gif]}),
            400,
            Some("init_images[0]"),
            "GIF",
        ),
        (
            "/sdapi/v1/img2img",
            json!({"prompt": "x", "init_images": ["%%%not base64%%%"]}),
            400,
            Some("init_images[0]"),
            "not base64",
        ),
        (
            "/sdapi/v1/img2img",
            json!({"prompt": "x", "init_images": "abc"}),
            422,
            Some("init_images"),
            "invalid type",
        ),
        (
            "/sdapi/v1/txt2img",
            json!({"prompt": "x", "init_images": [not_image]}),
            400,
            Some("init_images"),
            "img2img",
        ),
        (
            "/api/v1/jobs",
            json!({"prompt": "x", "steps": -1}),
            400,
            Some("steps"),
            "between",
        ),
        (
            "/api/v1/jobs",
            json!({"prompt": "x", "image_count": 1000}),
            400,
            Some("image_count"),
            "between",
        ),
        (
            "/api/v1/jobs",
            json!({"prompt": "x", "stpes": 3}),
            422,
            None,
            "unknown field `stpes`",
        ),
        (
            "/api/v1/jobs",
            json!({"prompt": "x", "scheduler": 3}),
            422,
            Some("scheduler"),
            "invalid type",
        ),
        (
            "/api/v1/jobs",
            json!({"prompt": "x", "rng": "dice"}),
            400,
            Some("rng"),
            "unknown random source",
        ),
        (
            "/api/v1/jobs",
            json!({"prompt": "x", "mask": not_image}),
            400,
            Some("mask"),
            "starting image",
        ),
        (
            "/api/v1/jobs",
            json!({"prompt": "x", "image": not_image}),
            400,
            Some("image"),
            "not PNG or JPEG",
        ),
        (
            "/api/v1/jobs",
            json!({"prompt": "x", "strength": 0.5}),
            400,
            Some("strength"),
            "starting image",
        ),
        (
            "/api/v1/jobs",
            json!({"negative_prompt": "x"}),
            422,
            None,
            "missing field `prompt`",
        ),
        (
            "/v1/images/generations",
            json!({"prompt": "x", "n": 1000}),
            400,
            Some("n"),
            "between",
        ),
        (
            "/v1/images/generations",
            json!({"prompt": "x", "size": "1024x1024"}),
            400,
            Some("size"),
            "256x256",
        ),
        (
            "/v1/images/generations",
            json!({"prompt": "x", "size": "big"}),
            400,
            Some("size"),
            "WIDTHxHEIGHT",
        ),
        (
            "/v1/images/generations",
            json!({"prompt": "x", "response_format": "jpeg"}),
            400,
            Some("response_format"),
            "b64_json",
        ),
        (
            "/v1/images/generations",
            json!({"prompt": ""}),
            400,
            Some("prompt"),
            "empty",
        ),
        (
            "/v1/images/generations",
            json!({"n": 1}),
            422,
            None,
            "missing field `prompt`",
        ),
    ];
    for (path, body, status, param, text) in cases {
        let r = post(path, &body);
        let e = error_of(&r, status);
        let message = e["message"].as_str().unwrap();
        assert!(
            message.contains(text),
            "{path} {body}: `{message}` lacks `{text}`"
        );
        if let Some(p) = param {
            assert_eq!(e["param"], p, "{path} {body}: {e}");
        }
    }
    // An image wider than the limit is refused from its header, before decoding.
    let wide = RgbImage {
        width: 5000,
        height: 1,
        data: vec![0; 5000 * 3],
    };
    let r = post(
        "/sdapi/v1/img2img",
        &json!({"prompt": "x", "init_images": [B64.encode(encode_png(&wide, &[]).unwrap())]}),
    );
    let e = error_of(&r, 400);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("at most 4096 pixels a side"),
        "{e}"
    );
    // Not JSON, no JSON content type, the wrong method, an unknown route and job.
    let e = error_of(
        &post_raw(
            "/sdapi/v1/txt2img",
            "application/json",
            b"{\"prompt\": ".to_vec(),
        ),
        400,
    );
    assert!(
        e["message"].as_str().unwrap().contains("not valid JSON"),
        "{e}"
    );
    let e = error_of(
        &post_raw("/sdapi/v1/txt2img", "text/plain", b"{}".to_vec()),
        415,
    );
    assert!(
        e["message"].as_str().unwrap().contains("application/json"),
        "{e}"
    );
    error_of(
        &reply(
            agent()
                .get(format!("{}/sdapi/v1/txt2img", server().url))
                .call()
                .unwrap(),
        ),
        405,
    );
    error_of(&get("/etc/passwd"), 404);
    error_of(&get("/../../etc/passwd"), 404);
    error_of(&get("/api/v1/jobs/not-a-job"), 404);
    error_of(
        &get("/api/v1/jobs/00000000-0000-4000-8000-000000000000/events"),
        404,
    );
    error_of(
        &post(
            "/api/v1/jobs/00000000-0000-4000-8000-000000000000/cancel",
            &json!({}),
        ),
        404,
    );
}

/// Sends raw bytes and reads the status line and body of the answer.
fn raw_exchange(head: &str, body: &[u8]) -> (u16, String) {
    let addr = server().url.trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[test]
fn huge_bodies_and_foreign_hosts_are_refused() {
    // A declared 100 MB body is refused before it is read.
    let head = "POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\nConnection: close\r\n\r\n";
    let (status, text) = raw_exchange(head, &[b' '; 65536]);
    assert_eq!(status, 413, "{text}");
    assert!(
        text.contains("104857600 bytes") && text.contains("\"error\""),
        "{text}"
    );
    // A body over the limit (4 MiB here) sent in chunks, with no length declared.
    let chunk = vec![b' '; 1 << 20];
    let mut body = Vec::new();
    for _ in 0..5 {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(&chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let head = "POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let (status, text) = raw_exchange(head, &body);
    assert!(status == 413 || status == 0, "{text}");
    // A page of another site may not change anything (cross-site request forgery), by Origin
    // or by Fetch metadata; a request naming no host is not served on loopback.
    for extra in [
        "Origin: https://evil.example\r\n",
        "Origin: null\r\n",
        "Sec-Fetch-Site: cross-site\r\n",
    ] {
        let head = format!(
            "POST /api/v1/jobs/00000000-0000-4000-8000-000000000000/cancel HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let (status, text) = raw_exchange(&head, b"");
        assert_eq!(status, 403, "{extra}: {text}");
        assert!(text.contains("\"error\""), "{text}");
    }
    let port = server().url.rsplit(':').next().unwrap().to_string();
    let head = format!(
        "POST /api/v1/jobs/00000000-0000-4000-8000-000000000000/cancel HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\nSec-Fetch-Site: same-origin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let (status, text) = raw_exchange(&head, b"");
    assert_eq!(status, 404, "its own page may (the job is unknown): {text}");
    let (status, text) = raw_exchange("GET /health HTTP/1.0\r\n\r\n", b"");
    assert_eq!(status, 403, "{text}");
    // A page elsewhere that resolves its name to 127.0.0.1 (DNS rebinding) is not served.
    let (status, text) = raw_exchange(
        "GET /api/v1/jobs HTTP/1.1\r\nHost: evil.example:7860\r\nConnection: close\r\n\r\n",
        b"",
    );
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("answers only to localhost"), "{text}");
}

#[test]
fn overlapping_requests_both_complete_in_order() {
    let a = submit(json!({"prompt": "first", "steps": 3, "seed": 1}));
    let b = submit(json!({"prompt": "second", "steps": 3, "seed": 2}));
    assert!(b["number"].as_u64() > a["number"].as_u64());
    let (ia, ib) = (
        a["id"].as_str().unwrap().to_string(),
        b["id"].as_str().unwrap().to_string(),
    );
    let ta = std::thread::spawn(move || {
        let e = events(&ia);
        (Instant::now(), e)
    });
    let tb = std::thread::spawn(move || {
        let e = events(&ib);
        (Instant::now(), e)
    });
    let (done_a, ea) = ta.join().unwrap();
    let (done_b, eb) = tb.join().unwrap();
    assert_eq!(ea.last().unwrap().0, "done");
    assert_eq!(eb.last().unwrap().0, "done");
    assert!(done_a <= done_b, "the first submitted finished first");
    // The second waited its turn and was told its place.
    assert!(
        eb.iter()
            .any(|(n, d)| n == "queued" && d["position"].as_u64() >= Some(1)),
        "{eb:?}"
    );
    // Two synchronous A1111 calls at once both answer.
    let calls: Vec<_> = (0..2)
        .map(|i| {
            std::thread::spawn(move || {
                post(
                    "/sdapi/v1/txt2img",
                    &json!({"prompt": "p", "steps": 1, "seed": i}),
                )
            })
        })
        .collect();
    for c in calls {
        let r = c.join().unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.bytes));
    }
}

#[test]
fn cancelled_queued_and_abandoned_jobs_stop() {
    // A running job stops at the next step.
    let long = submit(json!({"prompt": "long", "steps": 900, "seed": 5}));
    let id = long["id"].as_str().unwrap().to_string();
    wait_for(Duration::from_secs(300), || {
        let v = get(&format!("/api/v1/jobs/{id}")).json();
        (v["state"] == "running" && v["step"].as_u64() >= Some(1)).then_some(())
    })
    .expect("the long job runs");
    // One queued behind it leaves the queue at once when cancelled.
    let queued = submit(json!({"prompt": "queued", "steps": 900, "seed": 6}));
    let qid = queued["id"].as_str().unwrap();
    let r = post(&format!("/api/v1/jobs/{qid}/cancel"), &json!({}));
    assert_eq!(r.status, 200);
    assert_eq!(
        get(&format!("/api/v1/jobs/{qid}")).json()["state"],
        "cancelled"
    );
    let r = reply(
        agent()
            .delete(format!("{}/api/v1/jobs/{id}", server().url))
            .call()
            .unwrap(),
    );
    assert_eq!(r.status, 200);
    let v = wait_state(&id, "cancelled");
    assert!(v["step"].as_u64().unwrap() < 900, "{v}");
    let evs = events(&id);
    assert_eq!(evs.last().unwrap().0, "cancelled");
    error_of(&get(&format!("/api/v1/jobs/{id}/images/0")), 404);

    // A synchronous caller that hangs up: its job is cancelled.
    let addr = server().url.trim_start_matches("http://").to_string();
    let body = json!({"prompt": "abandoned", "steps": 900, "seed": 9}).to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let abandoned = wait_for(Duration::from_secs(300), || {
        let jobs = get("/api/v1/jobs").json();
        jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| {
                j["request"]["prompt"] == "abandoned"
                    && j["state"] == "running"
                    && j["step"].as_u64() >= Some(1)
            })
            .cloned()
    })
    .expect("the abandoned job runs");
    drop(s);
    let aid = abandoned["id"].as_str().unwrap();
    let v = wait_state(aid, "cancelled");
    assert!(v["step"].as_u64().unwrap() < 900, "{v}");

    // A1111's interrupt stops the running job; its caller gets an empty answer.
    let t = std::thread::spawn(|| {
        post(
            "/sdapi/v1/txt2img",
            &json!({"prompt": "interrupted", "steps": 900}),
        )
    });
    wait_for(Duration::from_secs(300), || {
        let p = get("/sdapi/v1/progress").json();
        (p["state"]["sampling_step"].as_u64() >= Some(1)).then_some(())
    })
    .expect("progress reports the running job");
    let r = post("/sdapi/v1/interrupt", &json!({}));
    assert_eq!(r.status, 200);
    let answer = t.join().unwrap();
    assert_eq!(answer.status, 200);
    let v = answer.json();
    assert_eq!(v["images"], json!([]));
    assert!(
        v["info"].as_str().unwrap().contains("\"interrupted\":true"),
        "{v}"
    );
}

#[test]
fn a_bounded_load_shows_no_error_and_no_memory_growth() {
    let server = ServerProcess::start("load", &["--kept-jobs", "4"]);
    let url = server.url.clone();
    let round = |jobs_per_client: usize| {
        let clients: Vec<_> = (0..4)
            .map(|c| {
                let url = url.clone();
                std::thread::spawn(move || {
                    let a = agent();
                    for i in 0..jobs_per_client {
                        let r = reply(a.get(format!("{url}/health")).call().unwrap());
                        assert_eq!(r.status, 200);
                        let r = reply(a.get(format!("{url}/sdapi/v1/progress")).call().unwrap());
                        assert_eq!(r.status, 200);
                        let body =
                            json!({"prompt": format!("client {c} job {i}"), "steps": 1, "seed": i});
                        let r = reply(
                            a.post(format!("{url}/sdapi/v1/txt2img"))
                                .header("Content-Type", "application/json")
                                .send(body.to_string().as_bytes())
                                .unwrap(),
                        );
                        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.bytes));
                        let r = reply(
                            a.post(format!("{url}/sdapi/v1/txt2img"))
                                .header("Content-Type", "application/json")
                                .send(&b"{\"steps\": -1}"[..])
                                .unwrap(),
                        );
                        assert_eq!(r.status, 400);
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
    };
    round(2);
    let before = server.rss_kib();
    round(4);
    let after = server.rss_kib();
    let growth = after as i64 - before as i64;
    eprintln!("server RSS {before} KiB -> {after} KiB over 16 generations");
    assert!(
        growth < 16 * 1024,
        "RSS grew {growth} KiB ({before} -> {after})"
    );
}

#[test]
fn a_unicode_prompt_is_saved_and_downloaded_under_its_name() {
    let prompt = "雪の中の赤い狐".repeat(11);
    let job = submit(json!({"prompt": prompt, "steps": 1, "seed": 77}));
    let id = job["id"].as_str().unwrap();
    let done = events(id).pop().unwrap();
    assert_eq!(done.0, "done", "{:?}", done.1);
    assert_eq!(done.1["images"][0]["saved"], true, "{}", done.1);
    let url = done.1["images"][0]["url"].as_str().unwrap();
    let r = get(&format!("{url}?download=1"));
    let disposition = r.headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.contains("filename*=UTF-8''%E9%9B%AA"),
        "{disposition}"
    );
    assert!(png_parameters(&r.bytes).starts_with(&prompt));
    let saved: Vec<_> = std::fs::read_dir(&server().output)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".77.final.png"))
        .collect();
    assert_eq!(saved.len(), 1, "{saved:?}");
    assert!(
        saved[0].len() <= 255 && saved[0].contains('雪'),
        "{}",
        saved[0]
    );
}

#[test]
fn an_interrupt_returns_the_images_already_made() {
    // Two generations of 12 steps; interrupted in the second, the first image comes back.
    let t = std::thread::spawn(|| {
        post(
            "/sdapi/v1/txt2img",
            &json!({"prompt": "two of them", "steps": 12, "seed": 40, "batch_size": 2}),
        )
    });
    wait_for(Duration::from_secs(600), || {
        let p = get("/sdapi/v1/progress").json();
        let mine = p["state"]["sampling_steps"] == 24;
        (mine && p["state"]["sampling_step"].as_u64() >= Some(14)).then_some(())
    })
    .expect("the second generation runs");
    assert_eq!(post("/sdapi/v1/interrupt", &json!({})).status, 200);
    let v = t.join().unwrap().json();
    let images = v["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{}", v["info"]);
    let info: Value = serde_json::from_str(v["info"].as_str().unwrap()).unwrap();
    assert_eq!(info["interrupted"], true);
    assert_eq!(info["all_seeds"], json!([40]));
    let png = B64.decode(images[0].as_str().unwrap()).unwrap();
    assert!(png_parameters(&png).contains("Seed: 40"));
}
