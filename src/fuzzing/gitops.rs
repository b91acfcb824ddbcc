//! GitOps inputs: the history file, the served resources `flotilla diff --against` reads, and
//! the revision sources (`--revision-file`, `git log` output, `$FLOTILLA_REVISION`).

use crate::gitops::{diff, history, revision};

/// Whatever the history parser accepts is within its bounds and survives a save and load.
pub fn history_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(entries) = history::parse(text) else {
        return;
    };
    assert!(entries.len() <= history::CAPACITY);
    for e in &entries {
        assert!(e.summary.chars().count() <= history::MAX_TEXT);
        assert!(e.outcome.len() <= history::MAX_FLEETS);
        if let Some(r) = &e.revision {
            assert!(r.commit.len() <= revision::MAX_REVISION);
        }
    }
    let store = history::MemoryHistory::default();
    use history::HistoryStore;
    store.save(&entries).expect("memory saves");
    assert_eq!(store.load().expect("memory loads"), entries);
    let json = serde_json::json!({ "version": 1, "entries": entries }).to_string();
    assert_eq!(
        history::parse(&json).expect("what parsed re-parses"),
        entries
    );
}

/// A served-resources document diffs against itself as no change, and against nothing as
/// only removals, without panicking whatever its shape.
pub fn diff_input(data: &[u8]) {
    let Ok(served) = diff::parse_served(data) else {
        return;
    };
    for d in diff::diff(&served, &served, None) {
        assert!(d.changes.is_empty(), "a document differs from itself");
    }
    let empty = diff::Served::default();
    for d in diff::diff(&served, &empty, None) {
        assert_eq!(d.added + d.changed, 0);
    }
    let _ = diff::to_text(&diff::diff(&empty, &served, None));
}

/// A revision file's bytes, read as `--revision-file` and as `git log` output: what is kept
/// is bounded and free of control characters (it reaches terminals and the dashboard).
pub fn revision_source(data: &[u8]) {
    if let Ok(line) = revision::first_line(data)
        && let Ok(given) = revision::check_given(line)
    {
        assert!(given.len() <= revision::MAX_REVISION);
        assert!(!given.chars().any(char::is_control));
    }
    if let Some(log) = revision::parse_log(&String::from_utf8_lossy(data)) {
        assert!(revision::is_hash(&log.commit));
        for text in [&log.author, &log.subject].into_iter().flatten() {
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
    }
}
