#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flotilla::fuzzing::etcd_value(data));
