//! A YAML document as a tree of nodes that remember where they were written.
//!
//! serde-based YAML readers stop at the first error and forget positions; flotilla must report
//! every mistake with `path:line:col`, so it reads the YAML event stream (saphyr-parser) into
//! this small tree and decodes the schema from it by hand (see `decode`).

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::path::PathBuf;
use std::sync::Arc;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Span};

/// Where something was written: file, 1-based line and 1-based column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub file: Arc<PathBuf>,
    pub line: usize,
    pub col: usize,
}

impl Location {
    pub fn new(file: Arc<PathBuf>, line: usize, col: usize) -> Location {
        Location { file, line, col }
    }

    fn at(file: &Arc<PathBuf>, marker: &Marker) -> Location {
        Location::new(file.clone(), marker.line(), marker.col() + 1)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

#[derive(Debug, Clone, PartialEq, Hash)]
pub enum Value {
    /// `~`, `null` or an empty value.
    Null,
    /// Any scalar; `quoted` scalars are always strings, plain ones may be numbers or booleans.
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    /// Entries in the order written; duplicate keys are rejected while parsing.
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone)]
pub struct Node {
    pub loc: Location,
    pub value: Value,
}

/// Nodes compare by value: where they were written does not change what they mean.
impl PartialEq for Node {
    fn eq(&self, other: &Node) -> bool {
        self.value == other.value
    }
}

/// Hashes what `eq` compares: the value alone.
impl Hash for Node {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.value.hash(state);
    }
}

impl Node {
    /// The text of a scalar (plain or quoted), or `None` for any other node.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// What the node is, for error messages ("expected a map, found a list").
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }
}

/// A syntax error, positioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub loc: Location,
    pub message: String,
}

/// Nodes that aliases may add to a document beyond [`ALIAS_NODES_PER_WRITTEN`] per node
/// written. A "billion laughs" file of a few hundred bytes is refused after this many copies
/// (milliseconds, a few MB) instead of expanding into gigabytes.
pub const ALIAS_NODE_BUDGET: usize = 100_000;

/// Nodes aliases may add per node written in the file, on top of [`ALIAS_NODE_BUDGET`]: an
/// anchor shared by every cluster of a large config stays well within it.
pub const ALIAS_NODES_PER_WRITTEN: usize = 4;

/// Bytes of scalar text aliases may add to a document beyond [`ALIAS_BYTES_PER_WRITTEN`] per
/// byte of the file. The node budget alone lets one long string, anchored once and aliased
/// 100,000 times, expand a 21 KB file into gigabytes; this bound is checked at each alias,
/// before its copy is made.
pub const ALIAS_BYTE_BUDGET: usize = 1024 * 1024;

/// Bytes of scalar text aliases may add per byte of the file, on top of [`ALIAS_BYTE_BUDGET`]:
/// a short anchor (a health check, a retry policy) shared by every cluster stays well within it.
pub const ALIAS_BYTES_PER_WRITTEN: usize = 4;

/// Deepest nesting of lists and maps. flotilla's schema needs fewer than ten levels; the bound
/// keeps the recursive reader (and dropping the tree) far from the end of the stack.
pub const MAX_DEPTH: usize = 64;

/// Parses one YAML document read from `file`. An empty file yields `None`.
pub fn parse(source: &str, file: Arc<PathBuf>) -> Result<Option<Node>, SyntaxError> {
    let mut builder = Builder {
        parser: Parser::new_from_str(source),
        anchors: HashMap::new(),
        file,
        written: 0,
        aliased: 0,
        text_bytes: 0,
        aliased_bytes: 0,
        byte_budget: ALIAS_BYTE_BUDGET
            .saturating_add(source.len().saturating_mul(ALIAS_BYTES_PER_WRITTEN)),
        depth: 0,
        hasher: RandomState::new(),
    };
    builder.document()
}

struct Builder<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    /// Each anchor's node, how many nodes it holds and how many bytes of scalar text (what an
    /// alias to it adds).
    anchors: HashMap<usize, (Node, usize, usize)>,
    file: Arc<PathBuf>,
    /// Nodes read from the text, and nodes added by expanding aliases.
    written: usize,
    aliased: usize,
    /// Bytes of scalar text in the tree so far (written and aliased), and those added by aliases.
    text_bytes: usize,
    aliased_bytes: usize,
    byte_budget: usize,
    depth: usize,
    hasher: RandomState,
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), SyntaxError> {
        match self.parser.next_event() {
            Some(Ok(event)) => Ok(event),
            Some(Err(e)) => Err(SyntaxError {
                loc: Location::at(&self.file, e.marker()),
                message: e.info().to_string(),
            }),
            None => Err(SyntaxError {
                loc: Location::new(self.file.clone(), 1, 1),
                message: "unexpected end of input".to_string(),
            }),
        }
    }

    fn document(&mut self) -> Result<Option<Node>, SyntaxError> {
        let mut root = None;
        loop {
            let (event, span) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => return Ok(root),
                Event::DocumentStart(_) => {
                    if root.is_some() {
                        return Err(SyntaxError {
                            loc: self.loc(&span),
                            message: "a file holds one YAML document; split the others into files of their own".to_string(),
                        });
                    }
                    let (event, span) = self.next()?;
                    root = Some(self.node(event, span)?);
                }
                other => {
                    return Err(SyntaxError {
                        loc: self.loc(&span),
                        message: format!("unexpected YAML event {other:?}"),
                    });
                }
            }
        }
    }

    fn loc(&self, span: &Span) -> Location {
        Location::at(&self.file, &span.start)
    }

    fn produced(&self) -> usize {
        self.written + self.aliased
    }

    fn node(&mut self, event: Event<'a>, span: Span) -> Result<Node, SyntaxError> {
        let loc = self.loc(&span);
        let before = self.produced();
        let bytes_before = self.text_bytes;
        let (node, anchor) = match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let quoted = !matches!(style, ScalarStyle::Plain);
                self.text_bytes += text.len();
                let value =
                    if !quoted && matches!(text.as_ref(), "" | "~" | "null" | "Null" | "NULL") {
                        Value::Null
                    } else {
                        Value::Scalar {
                            text: text.into_owned(),
                            quoted,
                        }
                    };
                (Node { loc, value }, anchor)
            }
            Event::Alias(id) => {
                let Some((target, size, bytes)) = self.anchors.get(&id) else {
                    return Err(SyntaxError {
                        loc,
                        message: "alias refers to an unknown anchor".to_string(),
                    });
                };
                let budget = ALIAS_NODE_BUDGET + ALIAS_NODES_PER_WRITTEN * self.written;
                if self.aliased + size > budget {
                    return Err(SyntaxError {
                        loc,
                        message: format!(
                            "aliases expand this file past {budget} nodes (at most {ALIAS_NODE_BUDGET} plus {ALIAS_NODES_PER_WRITTEN} per node written): refusing a probable alias bomb"
                        ),
                    });
                }
                if self.aliased_bytes + bytes > self.byte_budget {
                    return Err(SyntaxError {
                        loc,
                        message: format!(
                            "aliases expand this file past {} bytes of text (at most {ALIAS_BYTE_BUDGET} plus {ALIAS_BYTES_PER_WRITTEN} per byte of the file): refusing a probable alias bomb",
                            self.byte_budget
                        ),
                    });
                }
                self.aliased += size;
                self.aliased_bytes += bytes;
                self.text_bytes += bytes;
                return Ok(Node {
                    loc,
                    value: target.value.clone(),
                });
            }
            Event::SequenceStart(anchor, _tag) => {
                self.enter(&loc)?;
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(event, span)?);
                }
                self.depth -= 1;
                (
                    Node {
                        loc,
                        value: Value::Seq(items),
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, _tag) => {
                self.enter(&loc)?;
                let mut entries: Vec<(Node, Node)> = Vec::new();
                // Keys by hash, to find a duplicate without comparing against every key.
                let mut seen: HashMap<u64, Vec<usize>> = HashMap::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::MappingEnd) {
                        break;
                    }
                    let key = self.node(event, span)?;
                    let (event, span) = self.next()?;
                    let value = self.node(event, span)?;
                    let same_hash = seen.entry(self.hasher.hash_one(&key)).or_default();
                    if let Some(first) = same_hash
                        .iter()
                        .map(|&i| &entries[i].0)
                        .find(|k| k.value == key.value)
                    {
                        return Err(SyntaxError {
                            loc: key.loc.clone(),
                            message: format!(
                                "duplicate key `{}` (first at line {}, column {})",
                                key.as_str().unwrap_or("?"),
                                first.loc.line,
                                first.loc.col
                            ),
                        });
                    }
                    same_hash.push(entries.len());
                    entries.push((key, value));
                }
                self.depth -= 1;
                (
                    Node {
                        loc,
                        value: Value::Map(entries),
                    },
                    anchor,
                )
            }
            other => {
                return Err(SyntaxError {
                    loc,
                    message: format!("unexpected YAML event {other:?}"),
                });
            }
        };
        self.written += 1;
        if anchor != 0 {
            let size = self.produced() - before;
            let bytes = self.text_bytes - bytes_before;
            self.anchors.insert(anchor, (node.clone(), size, bytes));
        }
        Ok(node)
    }

    /// Steps into a list or map, refusing nesting deeper than [`MAX_DEPTH`].
    fn enter(&mut self, loc: &Location) -> Result<(), SyntaxError> {
        if self.depth >= MAX_DEPTH {
            return Err(SyntaxError {
                loc: loc.clone(),
                message: format!("lists and maps nested more than {MAX_DEPTH} deep"),
            });
        }
        self.depth += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(source: &str) -> Result<Option<Node>, SyntaxError> {
        super::parse(source, Arc::new(PathBuf::from("t.yaml")))
    }

    fn map_keys(node: &Node) -> Vec<(String, (usize, usize))> {
        match &node.value {
            Value::Map(entries) => entries
                .iter()
                .map(|(k, _)| {
                    (
                        k.as_str().unwrap_or_default().to_string(),
                        (k.loc.line, k.loc.col),
                    )
                })
                .collect(),
            _ => panic!("not a map"),
        }
    }

    #[test]
    fn positions_are_one_based() {
        let root = parse("version: 1\nclusters:\n  api:\n    policy: maglev\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            map_keys(&root),
            vec![
                ("version".to_string(), (1, 1)),
                ("clusters".to_string(), (2, 1))
            ]
        );
    }

    #[test]
    fn empty_file_is_none() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("# only a comment\n").unwrap(), None);
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!((err.loc.line, err.loc.col), (3, 1));
        assert_eq!(err.loc.to_string(), "t.yaml:3:1");
        assert!(err.message.contains("duplicate key `a`"), "{}", err.message);
    }

    #[test]
    fn syntax_errors_are_positioned() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(err.loc.line, 2, "{err:?}");
    }

    #[test]
    fn quoted_scalars_are_marked_and_nulls_recognised() {
        let root = parse("a: '1'\nb: 1\nc:\nd: ~\n").unwrap().unwrap();
        let Value::Map(entries) = root.value else {
            panic!()
        };
        assert_eq!(
            entries[0].1.value,
            Value::Scalar {
                text: "1".into(),
                quoted: true
            }
        );
        assert_eq!(
            entries[1].1.value,
            Value::Scalar {
                text: "1".into(),
                quoted: false
            }
        );
        assert!(entries[2].1.is_null());
        assert!(entries[3].1.is_null());
    }

    #[test]
    fn aliases_copy_their_anchor() {
        let root = parse("a: &x {k: v}\nb: *x\n").unwrap().unwrap();
        let Value::Map(entries) = root.value else {
            panic!()
        };
        assert_eq!(entries[0].1.value, entries[1].1.value);
    }

    /// The classic "billion laughs": each level is a list of nine aliases to the one below.
    pub(crate) fn billion_laughs(levels: u8) -> String {
        let mut text = "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n".to_string();
        for level in 1..levels {
            let (name, below) = ((b'a' + level) as char, (b'a' + level - 1) as char);
            let aliases = vec![format!("*{below}"); 9].join(",");
            text.push_str(&format!("{name}: &{name} [{aliases}]\n"));
        }
        text
    }

    #[test]
    fn an_alias_bomb_is_refused_at_the_alias_that_exceeds_the_budget() {
        for levels in [7, 8, 9] {
            let bomb = billion_laughs(levels);
            assert!(bomb.len() < 400, "{} bytes", bomb.len());
            let err = parse(&bomb).unwrap_err();
            assert!(
                err.message.contains("probable alias bomb"),
                "{}",
                err.message
            );
            assert!(err.loc.line >= 5, "{err:?}");
            assert!(err.loc.col > 1, "points at the alias: {err:?}");
        }
    }

    #[test]
    fn aliases_within_the_budget_expand() {
        let root = parse(&billion_laughs(4)).unwrap().unwrap();
        let Value::Map(entries) = root.value else {
            panic!()
        };
        let Value::Seq(d) = &entries[3].1.value else {
            panic!()
        };
        assert_eq!(d.len(), 9);
    }

    #[test]
    fn an_anchor_shared_by_many_items_is_not_a_bomb() {
        let mut text =
            "hc: &hc { interval: 1s, timeout: 1s, tcp: {}, jitter: 1ms }\nitems:\n".to_string();
        for i in 0..30_000 {
            text.push_str(&format!("  c{i}: {{ health_check: *hc }}\n"));
        }
        assert!(parse(&text).is_ok());
    }

    /// One long string anchored once and aliased many times, under the node budget: 21 KB of
    /// YAML that expanded to 1.9 GB before the byte budget.
    pub(crate) fn string_bomb(string_bytes: usize, aliases: usize) -> String {
        let mut text = format!("s: &s \"{}\"\nl: [", "x".repeat(string_bytes));
        text.push_str(&vec!["*s"; aliases].join(","));
        text.push_str("]\n");
        text
    }

    #[test]
    fn a_string_bomb_is_refused_before_it_expands() {
        let bomb = string_bomb(16 * 1024, 1_500);
        assert!(bomb.len() < 22_000, "{} bytes", bomb.len());
        let err = parse(&bomb).unwrap_err();
        assert!(err.message.contains("bytes of text"), "{}", err.message);
        assert!(
            err.message.contains("probable alias bomb"),
            "{}",
            err.message
        );
        assert_eq!(err.loc.line, 2, "{err:?}");
        // Refused at the alias that crosses 1 MiB + 4 × the file, not after all of them.
        let fit = (ALIAS_BYTE_BUDGET + ALIAS_BYTES_PER_WRITTEN * bomb.len()) / (16 * 1024);
        assert_eq!(err.loc.col, "l: [".len() + 1 + 3 * fit, "{err:?}");
    }

    #[test]
    fn a_string_multiplied_through_nested_aliases_is_refused() {
        // 16 KiB × 10 × 10 × 10 × 10 × 9: 90,000 copies, under the node budget (1.4 GB).
        let mut bomb = format!("s: &s \"{}\"\n", "x".repeat(16 * 1024));
        for (name, below) in [("a", "s"), ("b", "a"), ("c", "b"), ("d", "c")] {
            let aliases = vec![format!("*{below}"); 10].join(",");
            bomb.push_str(&format!("{name}: &{name} [{aliases}]\n"));
        }
        bomb.push_str(&format!("e: [{}]\n", ["*d"; 9].join(",")));
        let err = parse(&bomb).unwrap_err();
        assert!(err.message.contains("bytes of text"), "{}", err.message);
    }

    #[test]
    fn a_shared_string_within_the_byte_budget_expands() {
        let root = parse(&string_bomb(1024, 1_000)).unwrap().unwrap();
        let Value::Map(entries) = root.value else {
            panic!()
        };
        let Value::Seq(l) = &entries[1].1.value else {
            panic!()
        };
        assert_eq!(l.len(), 1_000);
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!(
            "a: {}1{}\n",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        let err = parse(&deep).unwrap_err();
        assert!(err.message.contains("nested more than"), "{}", err.message);
        let fine = format!(
            "a: {}1{}\n",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(parse(&fine).is_ok());
    }

    #[test]
    fn duplicate_keys_are_found_among_many_and_by_value() {
        let mut text: String = (0..50_000).map(|i| format!("k{i}: 1\n")).collect();
        text.push_str("k49999: 2\n'1': a\n1: b\n[x]: c\n[x]: d\n");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.loc.line, 50_001, "{err:?}");
        let err = parse("'1': a\n1: b\n[x]: c\n[x]: d\n").unwrap_err();
        assert_eq!(
            err.loc.line, 4,
            "quoted and plain keys differ; lists compare by value"
        );
    }

    #[test]
    fn two_documents_are_rejected() {
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
    }
}
