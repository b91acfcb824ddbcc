#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flotilla::fuzzing::sidecar_iptables(data));
