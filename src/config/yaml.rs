//! A YAML document as a tree of nodes that remember where they were written.
//!
//! serde-based YAML readers stop at the first error and forget positions; flotilla must report
//! every mistake with `path:line:col`, so it reads the YAML event stream (saphyr-parser) into
//! this small tree and decodes the schema from it by hand (see `decode`).

use std::collections::HashMap;
use std::fmt;
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

#[derive(Debug, Clone, PartialEq)]
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

/// Parses one YAML document read from `file`. An empty file yields `None`.
pub fn parse(source: &str, file: Arc<PathBuf>) -> Result<Option<Node>, SyntaxError> {
    let mut builder = Builder {
        parser: Parser::new_from_str(source),
        anchors: HashMap::new(),
        file,
    };
    builder.document()
}

struct Builder<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    anchors: HashMap<usize, Node>,
    file: Arc<PathBuf>,
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

    fn node(&mut self, event: Event<'a>, span: Span) -> Result<Node, SyntaxError> {
        let loc = self.loc(&span);
        let (node, anchor) = match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let quoted = !matches!(style, ScalarStyle::Plain);
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
                let target = self.anchors.get(&id).cloned().ok_or_else(|| SyntaxError {
                    loc: loc.clone(),
                    message: "alias refers to an unknown anchor".to_string(),
                })?;
                return Ok(Node { loc, ..target });
            }
            Event::SequenceStart(anchor, _tag) => {
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(event, span)?);
                }
                (
                    Node {
                        loc,
                        value: Value::Seq(items),
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, _tag) => {
                let mut entries: Vec<(Node, Node)> = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::MappingEnd) {
                        break;
                    }
                    let key = self.node(event, span)?;
                    let (event, span) = self.next()?;
                    let value = self.node(event, span)?;
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.value == key.value) {
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
                    entries.push((key, value));
                }
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
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
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

    #[test]
    fn two_documents_are_rejected() {
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
    }
}
