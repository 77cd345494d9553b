//! The fuzz smoke pass of `cargo test`: every committed corpus input and every regression
//! input (`fuzz/corpus/<target>`, `fuzz/regressions/<target>`) run once through its target,
//! plus a few degenerate inputs for every target. A panic here is a reader bug.

#[path = "../../fuzz/targets.rs"]
mod targets;

use std::path::Path;

#[test]
fn committed_fuzz_inputs_replay_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut replayed = 0;
    for target in targets::TARGETS {
        let degenerate: [&[u8]; 4] = [b"", b"\0", &[0xff; 300], b"{}"];
        for data in degenerate {
            targets::run(target, data);
        }
        for kind in ["fuzz/corpus", "fuzz/regressions"] {
            let dir = root.join(kind).join(target);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries {
                let path = e.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                eprintln!("{target}: {}", path.display());
                targets::run(target, &data);
                replayed += 1;
            }
        }
    }
    assert!(
        replayed >= targets::TARGETS.len(),
        "only {replayed} committed inputs"
    );
}

#[test]
fn package_inputs_split_and_join() {
    let joined = targets::join_package(b"m", b"pb", b"weights");
    assert_eq!(
        targets::split_package(&joined),
        Some([&b"m"[..], &b"pb"[..], &b"weights"[..]])
    );
    assert_eq!(targets::split_package(&joined[..9]), None);
}

#[test]
fn http_requests_are_framed_whole() {
    let framed = targets::frame_http_request(
        b"POST /x HTTP/1.1\nHost: a\ncontent-LENGTH: 99\nConnection: keep-alive\n\n{}\r\n\r\nrest",
    );
    assert_eq!(
        String::from_utf8(framed).unwrap(),
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nConnection: close\r\n\r\n{}\r\n\r\nrest"
    );
    let framed = targets::frame_http_request(b"GET /health");
    assert_eq!(
        String::from_utf8(framed).unwrap(),
        "GET /health\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
}

#[test]
fn libfuzzer_waits_longer_than_the_targets_own_deadlines() {
    // A slow answer must surface as the target's own "did not answer" hang report, not be
    // cut short by libFuzzer's per-input timeout first.
    assert!(targets::timeout_seconds("http_request") > targets::HTTP_ANSWER_SECONDS);
    for t in targets::TARGETS {
        assert!(targets::timeout_seconds(t) >= 20, "{t}");
    }
}
