//! Every target in one binary, the target named by `SD_FUZZ_TARGET` (for machines where one
//! binary is easier to carry than twelve).
#![no_main]

static TARGET: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let t = std::env::var("SD_FUZZ_TARGET").expect("set SD_FUZZ_TARGET to a target name");
    assert!(
        sd_fuzz::TARGETS.contains(&t.as_str()),
        "no fuzz target `{t}`"
    );
    t
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| sd_fuzz::run(&TARGET, data));
