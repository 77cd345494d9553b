#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sd_fuzz::run("http_request", data));
