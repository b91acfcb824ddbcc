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

/// `flotilla schema` prints the JSON Schema that `schema/flotilla.schema.json` holds (the
/// examples' editor modelines point there; the library's test keeps that file generated).
#[test]
fn flotilla_schema_prints_the_committed_schema() {
    let out = std::process::Command::new(crate::support::flotilla_bin())
        .arg("schema")
        .output()
        .expect("run flotilla schema");
    assert!(out.status.success(), "{out:?}");
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("schema/flotilla.schema.json"))
            .expect("schema/flotilla.schema.json"),
    )
    .expect("JSON");
    assert_eq!(printed, committed);
    assert_eq!(
        printed["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
}
