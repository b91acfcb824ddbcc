//! The command line as the docs show it: docs/reference/cli.md is `flotilla --help` of every
//! command (a golden file, `UPDATE_GOLDEN=1` rewrites it), and every `flotilla …` line in a
//! shell block of README.md or docs/ parses with the real `Cli` (tests/docs.rs checks the
//! rest of the docs; this part lives here because the binary owns its clap `Command`).

use clap::CommandFactory;

use super::Cli;

#[allow(unreachable_pub, dead_code)]
#[path = "../../tests/support/markdown.rs"]
mod markdown;

/// The clap command with environment values hidden, so the help is the same whatever the
/// environment of the test holds.
fn command() -> clap::Command {
    fn hide(cmd: clap::Command) -> clap::Command {
        cmd.mut_args(|a| a.hide_env_values(true))
            .mut_subcommands(hide)
    }
    hide(Cli::command())
}

fn reference() -> String {
    let mut out = String::from(
        "# Command-line reference\n\n\
         <!-- Generated from the clap definitions in src/cli.rs. Do not edit: run \
         `UPDATE_GOLDEN=1 cargo test --bin flotilla docs_tests`. -->\n\n\
         `flotilla --help` of every command. Flags that read an environment variable say so \
         (`[env: NAME]`): the variable is read when the flag is not given.\n",
    );
    let mut cmd = command();
    cmd.build();
    section(&mut out, &mut cmd, "flotilla");
    out
}

fn section(out: &mut String, cmd: &mut clap::Command, path: &str) {
    let help = cmd.render_long_help().to_string();
    let help: Vec<&str> = help.lines().map(str::trim_end).collect();
    out.push_str(&format!(
        "\n## {path}\n\n```text\n{}\n```\n",
        help.join("\n").trim_end()
    ));
    let names: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| s.get_name() != "help")
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        let sub = cmd.find_subcommand_mut(&name).expect("subcommand");
        section(out, sub, &format!("{path} {name}"));
    }
}

#[test]
fn the_cli_reference_is_flotilla_help_of_every_command() {
    let path = markdown::root().join("docs/reference/cli.md");
    let generated = reference();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &generated).expect("write docs/reference/cli.md");
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == generated,
        "docs/reference/cli.md is not `flotilla --help`: run `UPDATE_GOLDEN=1 cargo test --bin flotilla docs_tests` and commit it"
    );
}

/// The flotilla arguments of a command line: `flotilla …`, `target/dist/flotilla …`,
/// `cargo run -- …`, after any `VAR=value` assignments. A shell expansion (`"$(hostname)"`,
/// `$NODE`) stands for a plain value.
fn flotilla_args(words: &[String]) -> Option<Vec<String>> {
    let expanded: Vec<String> = words
        .iter()
        .map(|w| {
            if w.starts_with('$') {
                "value".to_string()
            } else {
                w.clone()
            }
        })
        .collect();
    let words: Vec<&String> = expanded
        .iter()
        .skip_while(|w| w.contains('=') && !w.starts_with('-'))
        .collect();
    let first = words.first()?;
    if first.as_str() == "flotilla" || first.ends_with("/flotilla") {
        return Some(words.iter().map(|w| w.to_string()).collect());
    }
    if first.as_str() == "cargo" && words.get(1).is_some_and(|w| w.as_str() == "run") {
        let at = words.iter().position(|w| w.as_str() == "--")?;
        let mut args = vec!["flotilla".to_string()];
        args.extend(words[at + 1..].iter().map(|w| w.to_string()));
        return Some(args);
    }
    None
}

#[test]
fn every_flotilla_command_in_the_docs_parses() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in markdown::doc_files() {
        for block in markdown::blocks(&markdown::read(&file)) {
            if !matches!(
                block.lang.as_str(),
                "sh" | "console" | "bash" | "shell" | ""
            ) || block.not_validated.is_some()
            {
                continue;
            }
            for (line, shown) in markdown::command_lines(&block) {
                let Some(args) = flotilla_args(&markdown::words(&shown)) else {
                    continue;
                };
                checked += 1;
                if let Err(e) = command().try_get_matches_from(&args) {
                    if matches!(
                        e.kind(),
                        clap::error::ErrorKind::DisplayHelp
                            | clap::error::ErrorKind::DisplayVersion
                    ) {
                        continue;
                    }
                    failures.push(format!("{}:{line}: `{shown}`:\n{e}", file.display()));
                }
            }
        }
    }
    assert!(
        checked >= 10,
        "only {checked} flotilla command lines found in the docs"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_misspelt_flag_in_a_shell_block_is_refused() {
    let page = "```sh\nflotilla serve --config config/ \\\n    --xds-listn 0.0.0.0:18000   # a typo\n```\n";
    let block = &markdown::blocks(page)[0];
    let lines = markdown::command_lines(block);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let (line, shown) = &lines[0];
    assert_eq!(*line, 2, "reported at the line the command starts on");
    let args = flotilla_args(&markdown::words(shown)).expect("a flotilla command");
    assert!(command().try_get_matches_from(&args).is_err());
}
