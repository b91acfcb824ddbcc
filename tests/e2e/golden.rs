//! Golden files pin what every example renders to. `UPDATE_GOLDEN=1` rewrites them.

use crate::support::repo_root;
use crate::validate::{examples, render};

#[test]
fn rendered_examples_match_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatched = Vec::new();
    for example in examples() {
        let stem = example
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("example name");
        let golden = repo_root()
            .join("tests/golden")
            .join(format!("{stem}.json"));
        let rendered = serde_json::to_string_pretty(&render(&example, None)).expect("json") + "\n";
        if update {
            std::fs::write(&golden, &rendered).expect("write golden");
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
                golden.display()
            )
        });
        if expected != rendered {
            mismatched.push(golden.display().to_string());
        }
    }
    assert!(
        mismatched.is_empty(),
        "rendered output differs from {mismatched:?}; inspect with `flotilla render`, then UPDATE_GOLDEN=1 if the change is intended"
    );
}
