//! The Markdown of README.md and docs/, read as the docs tests need it: fenced code blocks
//! (with their language, first line and an optional `<!-- not-validated: reason -->` marker
//! just above), links, headings and their GitHub anchors.

use std::path::{Path, PathBuf};

/// One fenced code block.
#[derive(Debug)]
pub struct Block {
    /// The word after the opening fence (`yaml`, `sh`), empty when none.
    pub lang: String,
    /// 1-based line of the first line inside the fence.
    pub line: usize,
    pub text: String,
    /// The reason given by a `<!-- not-validated: reason -->` comment right above the fence.
    pub not_validated: Option<String>,
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md, CONTRIBUTING.md and every `*.md` under docs/, as paths relative to the root.
pub fn doc_files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("README.md"), PathBuf::from("CONTRIBUTING.md")];
    let mut dirs = vec![PathBuf::from("docs")];
    while let Some(dir) = dirs.pop() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(root().join(&dir))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| dir.join(e.expect("dir entry").file_name()))
            .collect();
        entries.sort();
        for entry in entries {
            if root().join(&entry).is_dir() {
                dirs.push(entry);
            } else if entry.extension().is_some_and(|e| e == "md") {
                files.push(entry);
            }
        }
    }
    files
}

pub fn read(file: &Path) -> String {
    std::fs::read_to_string(root().join(file)).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// Every fenced block of `text`.
pub fn blocks(text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(lang) = lines[i].trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let not_validated = lines[..i]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .and_then(|l| l.trim().strip_prefix("<!-- not-validated:"))
            .map(|rest| rest.trim_end_matches("-->").trim().to_string());
        let start = i + 1;
        let mut end = start;
        while end < lines.len() && !lines[end].trim_start().starts_with("```") {
            end += 1;
        }
        out.push(Block {
            lang: lang.trim().to_string(),
            line: start + 1,
            text: lines[start..end.min(lines.len())].join("\n"),
            not_validated,
        });
        i = end + 1;
    }
    out
}

/// `text` with fenced blocks and inline code blanked out (lines kept), for finding links.
pub fn prose(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            out.push('\n');
            continue;
        }
        if !fenced {
            let mut in_code = false;
            for c in line.chars() {
                if c == '`' {
                    in_code = !in_code;
                }
                out.push(if in_code || c == '`' { ' ' } else { c });
            }
        }
        out.push('\n');
    }
    out
}

/// Every `[text](target)` link of `text` outside code: (line, target).
pub fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose(text).lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push((n + 1, after[..end].trim().to_string()));
            rest = &after[end..];
        }
    }
    out
}

/// The anchors GitHub gives the headings of `text` (`## How it serves Envoy` →
/// `how-it-serves-envoy`; a repeated heading gets `-1`, `-2`).
pub fn anchors(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let heading = line.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let slug: String = heading
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let seen = out
            .iter()
            .filter(|a| **a == slug || a.starts_with(&format!("{slug}-")))
            .count();
        out.push(if seen == 0 {
            slug
        } else {
            format!("{slug}-{seen}")
        });
    }
    out
}

/// The command lines of a shell block: `\`-continued lines joined, `$ ` prompts and
/// comments removed, split at `&&`, `||`, `;`, `|`; each with the line it starts on.
pub fn command_lines(block: &Block) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 0;
    for (n, line) in block.text.lines().enumerate() {
        let line = line.strip_prefix("$ ").unwrap_or(line);
        if current.is_empty() {
            start = block.line + n;
        }
        let code = strip_comment(line);
        match code.trim_end().strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(code);
                for part in split_commands(&current) {
                    out.push((start, part));
                }
                current.clear();
            }
        }
    }
    out
}

fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let bytes = line.as_bytes();
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if i == 0 || bytes[i - 1] == b' ' => return &line[..i],
            _ => {}
        }
    }
    line
}

fn split_commands(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quote = None;
    let mut depth = 0usize;
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '(') => depth += 1,
            (None, ')') => depth = depth.saturating_sub(1),
            (None, ';' | '|' | '&') if depth == 0 => {
                out.push(std::mem::take(&mut current));
                while i + 1 < chars.len() && matches!(chars[i + 1], '&' | '|') {
                    i += 1;
                }
                i += 1;
                continue;
            }
            _ => {}
        }
        current.push(c);
        i += 1;
    }
    out.push(current);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Shell words of one command (quotes removed; `$(...)` and `$VAR` kept as one word each);
/// stops at a redirection (`>`, `<`, `2>&1`).
pub fn words(command: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quote = None;
    let mut depth = 0usize;
    let mut started = false;
    for c in command.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, '(') if current.ends_with('$') || depth > 0 => {
                depth += 1;
                current.push(c);
            }
            (None, ')') if depth > 0 => {
                depth -= 1;
                current.push(c);
            }
            (None, ' ' | '\t') if depth == 0 => {
                if started || !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            (None, '>' | '<') if depth == 0 => {
                if current.chars().all(|c| c.is_ascii_digit()) {
                    current.clear();
                }
                if started || !current.is_empty() {
                    out.push(current);
                }
                return out;
            }
            _ => current.push(c),
        }
    }
    if started || !current.is_empty() {
        out.push(current);
    }
    out
}
