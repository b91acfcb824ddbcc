#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flotilla::fuzzing::admin_request(data));
