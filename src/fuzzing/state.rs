//! The state file (drains and weight overrides kept across restarts).

use crate::runtime::store::{decode, encode};

/// Whatever the loader accepts must save and load back as the same state.
pub fn state_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(state) = decode(text) {
        let again = decode(&encode(&state)).expect("a saved state loads");
        assert_eq!(again, state, "a state changes through a save and load");
    }
}
