//! Writes the seed inputs into `corpus/<target>/` for targets whose corpus is empty
//! (`scripts/fuzz` runs it): the examples' YAML for the config target, well-formed requests
//! and reports for the others.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = fuzz.parent().expect("fuzz/ is inside the repository");
    for (target, _) in flotilla::fuzzing::TARGETS {
        let dir = fuzz.join("corpus").join(target);
        std::fs::create_dir_all(&dir)?;
        if std::fs::read_dir(&dir)?.next().is_some() {
            continue;
        }
        let mut seeds = flotilla::fuzzing::seeds(target);
        if target == "config" {
            for sub in ["examples", "examples/fleets"] {
                for entry in std::fs::read_dir(repo.join(sub))? {
                    let path = entry?.path();
                    if path.extension().is_some_and(|e| e == "yaml") {
                        seeds.push(std::fs::read(path)?);
                    }
                }
            }
        }
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:03}")), seed)?;
        }
        println!("{target}: {} seeds", seeds.len());
    }
    Ok(())
}
