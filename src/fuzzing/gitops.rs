//! GitOps inputs: the history file and the served resources `flotilla diff --against` reads.

use crate::gitops::{diff, history};

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
