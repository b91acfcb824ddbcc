use super::*;

fn entry(summary: &str) -> Entry {
    Entry {
        id: 0,
        revision: None,
        at: 1,
        trigger: "file".into(),
        who: None,
        summary: summary.into(),
        outcome: BTreeMap::new(),
    }
}

#[test]
fn keeps_the_newest_hundred_with_growing_ids() {
    let h = History::open(Box::new(MemoryHistory::default()));
    for i in 0..(CAPACITY + 5) {
        h.push(entry(&format!("change {i}")));
    }
    let all = h.entries();
    assert_eq!(all.len(), CAPACITY);
    assert_eq!(all[0].id, CAPACITY as u64 + 5);
    assert_eq!(all[0].summary, format!("change {}", CAPACITY + 4));
}

#[test]
fn survives_a_restart_through_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = || HistoryFile::beside(&dir.path().join("flotilla-state.json"));
    assert!(file().path().ends_with("flotilla-state.history.json"));
    let h = History::open(Box::new(file()));
    let first = h.push(entry("first"));
    let outcome = Outcome {
        sync: "OutOfSync".into(),
        rejected_by: vec!["edge-1".into()],
        rejections: vec!["rejected by edge-1: web.yaml:3:3 listeners.x: bad".into()],
    };
    h.set_outcome(
        first,
        BTreeMap::from([("edge".to_string(), outcome.clone())]),
    );
    h.push(entry("second"));
    let again = History::open(Box::new(file()));
    let e = again.entries();
    assert_eq!(e.len(), 2);
    assert_eq!((e[0].id, e[0].summary.as_str()), (2, "second"));
    assert_eq!(e[1].outcome["edge"], outcome);
}

#[test]
fn only_the_entry_a_run_pushed_takes_an_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let file = || HistoryFile::new(dir.path().join("h.history.json"));
    let h = History::open(Box::new(file()));
    let first = h.push(entry("first"));
    let synced = |sync: &str| {
        BTreeMap::from([(
            "edge".to_string(),
            Outcome {
                sync: sync.into(),
                rejected_by: Vec::new(),
                rejections: Vec::new(),
            },
        )])
    };
    h.set_outcome(first, synced("Synced"));
    // A restarted flotilla has pushed nothing yet: the last run's newest entry keeps its
    // outcome, whatever the status of a fleet without a config says.
    let again = History::open(Box::new(file()));
    again.set_outcome(first + 1, BTreeMap::new());
    let second = again.push(entry("second"));
    // An older entry's outcome is final.
    again.set_outcome(first, synced("OutOfSync"));
    again.set_outcome(second, synced("Unknown"));
    let e = History::open(Box::new(file())).entries();
    assert_eq!(e[1].outcome, synced("Synced"));
    assert_eq!(e[0].outcome, synced("Unknown"));
}

#[test]
fn a_corrupt_or_oversized_file_is_an_empty_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.json");
    for bad in [
        "{not json".to_string(),
        r#"{"version": 9, "entries": []}"#.to_string(),
        " ".repeat(MAX_FILE_BYTES as usize + 1),
    ] {
        std::fs::write(&path, &bad).unwrap();
        assert!(HistoryFile::new(path.clone()).load().is_err());
        let h = History::open(Box::new(HistoryFile::new(path.clone())));
        assert!(h.entries().is_empty());
    }
}

#[test]
fn a_hand_edited_file_is_cut_to_the_bounds() {
    let mut e = entry(&"x".repeat(MAX_TEXT * 2));
    e.outcome = (0..MAX_FLEETS + 3)
        .map(|i| {
            (
                format!("f{i}"),
                Outcome {
                    sync: "Synced".into(),
                    rejected_by: vec!["n".into(); 20],
                    rejections: vec![],
                },
            )
        })
        .collect();
    let text = serde_json::json!({ "version": 1, "entries": vec![e; CAPACITY + 2] }).to_string();
    let entries = parse(&text).unwrap();
    assert_eq!(entries.len(), CAPACITY);
    assert_eq!(entries[0].summary.len(), MAX_TEXT);
    assert_eq!(entries[0].outcome.len(), MAX_FLEETS);
    assert_eq!(entries[0].outcome["f0"].rejected_by.len(), MAX_REJECTIONS);
}

#[test]
fn a_fifo_or_a_device_as_history_file_is_an_error_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("flotilla-state.history.json");
    crate::util::mkfifo(&fifo);
    let err = HistoryFile::new(fifo).load().unwrap_err().to_string();
    assert!(err.contains("not a regular file (a FIFO)"), "{err}");
    let zero = dir.path().join("zero.history.json");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let err = HistoryFile::new(zero).load().unwrap_err().to_string();
    assert!(err.contains("a character device"), "{err}");
}

#[test]
fn a_truncated_history_file_is_kept_aside_before_the_next_save() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flotilla-state.history.json");
    let h = History::open(Box::new(HistoryFile::new(path.clone())));
    h.push(entry("first"));
    h.push(entry("second"));
    let whole = std::fs::read(&path).unwrap();
    std::fs::write(&path, &whole[..whole.len() / 2]).unwrap();
    let h = History::open(Box::new(HistoryFile::new(path.clone())));
    assert!(h.entries().is_empty());
    h.push(entry("third"));
    let aside = dir.path().join("flotilla-state.history.json.unreadable");
    assert_eq!(std::fs::read(&aside).unwrap(), &whole[..whole.len() / 2]);
    assert_eq!(h.entries().len(), 1);
}

#[test]
fn a_hand_edited_file_cannot_overflow_ids_or_hold_long_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.history.json");
    let long = "r".repeat(100_000);
    std::fs::write(
        &path,
        format!(
            r#"{{"version":1,"entries":[{{"id":18446744073709551615,"revision":{{"commit":"{long}","dirty":false,"source":"file","subject":"{long}"}},"at":1,"trigger":"file","who":null,"summary":"x"}}]}}"#
        ),
    )
    .unwrap();
    let h = History::open(Box::new(HistoryFile::new(path)));
    let kept = h.entries();
    let revision = kept[0].revision.as_ref().unwrap();
    assert!(revision.commit.len() <= crate::gitops::revision::MAX_REVISION);
    assert!(revision.subject.as_ref().unwrap().len() <= crate::gitops::revision::MAX_REVISION);
    h.push(entry("after"));
    assert_eq!(h.entries()[0].id, u64::MAX);
}
