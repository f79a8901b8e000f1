//! A YAML node tree that remembers where every node came from.
//!
//! serde's YAML deserializers lose positions once the text is parsed; resurgo needs them for
//! every error, including the semantic ones found long after parsing (an unknown reference, a
//! dependency cycle). So the text is parsed once into [`Node`]s that carry their [`Pos`], the
//! tree is turned into a `serde_json::Value` for typed deserialization, and any error path is
//! mapped back to a node and its position.

use std::collections::HashSet;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// A position in a source file: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
    /// Length of the underlined text, in characters (at least 1).
    pub len: u32,
}

impl Pos {
    fn from_span(span: Span) -> Pos {
        let len = if span.end.line() == span.start.line() {
            span.end.col().saturating_sub(span.start.col()).max(1)
        } else {
            1
        };
        Pos {
            line: span.start.line() as u32,
            col: span.start.col() as u32 + 1,
            len: len as u32,
        }
    }
}

#[derive(Debug, Clone)]
pub enum NodeKind {
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Entries in order. Keys keep their own position so an error about a key (unknown
    /// field, duplicate name) points at the key rather than at its value. A `Vec`, not a map:
    /// lookups happen only when explaining an error, and a spec of 10,000 services makes
    /// hundreds of thousands of these.
    Map(Vec<(String, Pos, Node)>),
}

#[derive(Debug, Clone)]
pub struct Node {
    pub pos: Pos,
    pub kind: NodeKind,
}

/// One step of a path into a node tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A parse failure with its position.
#[derive(Debug, Clone)]
pub struct ParseError {
    pub message: String,
    pub pos: Pos,
}

impl Node {
    /// Parses one YAML document. An empty document is an empty mapping.
    pub fn parse(text: &str) -> Result<Node, ParseError> {
        let mut builder = Builder::default();
        let mut documents = 0;
        for item in Parser::new_from_str(text) {
            let (event, span) = item.map_err(|e| ParseError {
                message: e.info().to_string(),
                pos: Pos {
                    line: e.marker().line() as u32,
                    col: e.marker().col() as u32 + 1,
                    len: 1,
                },
            })?;
            if let Event::DocumentStart(_) = event {
                documents += 1;
                if documents > 1 {
                    return Err(ParseError {
                        message: "more than one YAML document in a file; put each in its own file".into(),
                        pos: Pos::from_span(span),
                    });
                }
            }
            builder.event(event, span)?;
        }
        Ok(builder.root.unwrap_or(Node {
            pos: Pos {
                line: 1,
                col: 1,
                len: 1,
            },
            kind: NodeKind::Map(Vec::new()),
        }))
    }

    /// The position of the node at `path`, or of the deepest node on the way to it. With
    /// `key`, a final map entry is located by its key rather than its value.
    pub fn locate(&self, path: &[Seg], key: bool) -> Pos {
        let mut node = self;
        let mut pos = self.pos;
        for (i, seg) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            match (&node.kind, seg) {
                (NodeKind::Map(map), Seg::Key(k)) => match map.iter().find(|(key, ..)| key == k) {
                    Some((_, key_pos, child)) => {
                        pos = if last && key { *key_pos } else { child.pos };
                        node = child;
                    }
                    None => return pos,
                },
                (NodeKind::Seq(items), Seg::Index(i)) => match items.get(*i) {
                    Some(child) => {
                        pos = child.pos;
                        node = child;
                    }
                    None => return pos,
                },
                _ => return pos,
            }
        }
        pos
    }

    /// The node at `path`, if any.
    pub fn get(&self, path: &[Seg]) -> Option<&Node> {
        let mut node = self;
        for seg in path {
            node = match (&node.kind, seg) {
                (NodeKind::Map(map), Seg::Key(k)) => &map.iter().find(|(key, ..)| key == k)?.2,
                (NodeKind::Seq(items), Seg::Index(i)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// Converts to JSON with YAML 1.2 core-schema typing of plain scalars.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            NodeKind::Scalar { text, plain: false } => Value::String(text.clone()),
            NodeKind::Scalar { text, plain: true } => plain_scalar(text),
            NodeKind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Map(map) => Value::Object(map.iter().map(|(k, _, v)| (k.clone(), v.to_json())).collect()),
        }
    }
}

fn plain_scalar(text: &str) -> serde_json::Value {
    use serde_json::Value;
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = text.parse::<i64>() {
            return Value::from(i);
        }
        if let Ok(u) = text.parse::<u64>() {
            return Value::from(u);
        }
    }
    let looks_float = digits.bytes().next().is_some_and(|b| b.is_ascii_digit() || b == b'.')
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    if looks_float {
        if let Ok(f) = text.parse::<f64>() {
            if let Some(n) = serde_json::Number::from_f64(f) {
                return Value::Number(n);
            }
        }
    }
    Value::String(text.to_string())
}

enum Frame {
    Seq(Pos, Vec<Node>),
    /// A mapping being built: its entries, the keys seen (for duplicates; dropped when the
    /// mapping ends) and the key waiting for its value.
    Map(Pos, Vec<(String, Pos, Node)>, HashSet<String>, Option<(String, Pos)>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
}

impl Builder {
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), ParseError> {
        let pos = Pos::from_span(span);
        match event {
            Event::Alias(_) => Err(ParseError {
                message: "YAML aliases are not supported in a spec; use inputs instead".into(),
                pos,
            }),
            Event::Scalar(text, style, _, _) => {
                let node = Node {
                    pos,
                    kind: NodeKind::Scalar {
                        text: text.into_owned(),
                        plain: matches!(style, ScalarStyle::Plain),
                    },
                };
                self.push(node)
            }
            Event::SequenceStart(..) => {
                self.stack.push(Frame::Seq(pos, Vec::new()));
                Ok(())
            }
            Event::MappingStart(..) => {
                self.stack.push(Frame::Map(pos, Vec::new(), HashSet::new(), None));
                Ok(())
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop() {
                    Some(Frame::Seq(pos, mut items)) => {
                        items.shrink_to_fit();
                        Node {
                            pos,
                            kind: NodeKind::Seq(items),
                        }
                    }
                    Some(Frame::Map(pos, mut map, ..)) => {
                        map.shrink_to_fit();
                        Node {
                            pos,
                            kind: NodeKind::Map(map),
                        }
                    }
                    None => return Ok(()),
                };
                self.push(node)
            }
            _ => Ok(()),
        }
    }

    fn push(&mut self, node: Node) -> Result<(), ParseError> {
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Frame::Seq(_, items)) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map(_, map, keys, pending)) => match pending.take() {
                None => match node.kind {
                    NodeKind::Scalar { text, .. } => {
                        if !keys.insert(text.clone()) {
                            let first = map.iter().find(|(k, ..)| *k == text).map_or(0, |(_, p, _)| p.line);
                            return Err(ParseError {
                                message: format!("duplicate key `{text}` (first defined at line {first})"),
                                pos: node.pos,
                            });
                        }
                        *pending = Some((text, node.pos));
                        Ok(())
                    }
                    _ => Err(ParseError {
                        message: "mapping keys must be plain strings".into(),
                        pos: node.pos,
                    }),
                },
                Some((key, key_pos)) => {
                    map.push((key, key_pos, node));
                    Ok(())
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_point_at_keys_and_values() {
        let node = Node::parse("a:\n  b: 1\n  c: [x, 'y']\n").unwrap();
        let path = [Seg::Key("a".into()), Seg::Key("c".into())];
        assert_eq!(
            node.locate(&path, true),
            Pos {
                line: 3,
                col: 3,
                len: 1
            }
        );
        let item = [Seg::Key("a".into()), Seg::Key("c".into()), Seg::Index(1)];
        assert_eq!(node.locate(&item, false).line, 3);
        assert_eq!(node.locate(&item, false).col, 10);
    }

    #[test]
    fn plain_scalars_are_typed_quoted_are_strings() {
        let node = Node::parse("a: 8080\nb: '8080'\nc: true\nd: 1.5\ne: 10s\nf:\n").unwrap();
        let json = node.to_json();
        assert_eq!(
            json,
            serde_json::json!({"a": 8080, "b": "8080", "c": true, "d": 1.5, "e": "10s", "f": null})
        );
    }

    #[test]
    fn duplicate_keys_are_refused_with_both_lines() {
        let err = Node::parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.pos.line, 3);
        assert!(err.message.contains("first defined at line 1"), "{}", err.message);
    }
}
