//! The state file (drains and weight overrides kept across restarts).

use crate::store::StateFile;

/// Whatever the loader accepts must save and load back as the same state. The file lives on
/// tmpfs where there is one: the fuzzer writes it for every input.
pub fn state_file(data: &[u8]) {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!(
        "flotilla-fuzz-state-file-{}.json",
        std::process::id()
    ));
    std::fs::write(&path, data).expect("a writable temporary directory");
    let file = StateFile::new(path.clone());
    if let Ok(state) = file.load() {
        file.save(&state).expect("a loaded state saves");
        let again = file.load().expect("a saved state loads");
        assert_eq!(again, state, "a state changes through a save and load");
    }
    let _ = std::fs::remove_file(&path);
}
