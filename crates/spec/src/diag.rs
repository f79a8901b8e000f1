//! Diagnostics: an error message tied to a file, a line and a column, rendered with the line
//! and a caret under the offending text, the way a compiler does.

use std::fmt;

use crate::yaml::Pos;

/// A spec file as given to the loader: a name for messages and its text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Shown in messages: a path relative to the spec root, or `<commit>:path` for Git.
    pub name: String,
    pub text: String,
}

/// One problem in a spec.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub message: String,
    /// File name; empty when the problem is not in a file (a bad `--set`).
    pub file: String,
    pub line: u32,
    pub column: u32,
    #[serde(skip)]
    pub len: u32,
    /// The source line, for the snippet.
    #[serde(skip)]
    pub source_line: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn at(file: &SourceFile, pos: Pos, message: impl Into<String>) -> Diagnostic {
        let source_line = file
            .text
            .lines()
            .nth(pos.line.saturating_sub(1) as usize)
            .unwrap_or("")
            .to_string();
        Diagnostic {
            message: message.into(),
            file: file.name.clone(),
            line: pos.line,
            column: pos.col,
            len: pos.len,
            source_line,
            help: None,
        }
    }

    /// A problem that belongs to no file, such as a bad command-line override.
    pub fn bare(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            message: message.into(),
            file: String::new(),
            line: 0,
            column: 0,
            len: 0,
            source_line: String::new(),
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
        if !self.file.is_empty() {
            let gutter = self.line.to_string().len();
            let pad = " ".repeat(gutter);
            writeln!(f, "{pad}--> {}:{}:{}", self.file, self.line, self.column)?;
            writeln!(f, "{pad} |")?;
            writeln!(f, "{} | {}", self.line, self.source_line)?;
            let lead: String = self
                .source_line
                .chars()
                .take(self.column.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            writeln!(f, "{pad} | {lead}{}", "^".repeat(self.len.max(1) as usize))?;
        }
        if let Some(help) = &self.help {
            writeln!(f, "  = help: {help}")?;
        }
        Ok(())
    }
}

/// Everything wrong with a spec, in file order.
#[derive(Debug, Clone, thiserror::Error)]
pub struct SpecError {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        let n = self.diagnostics.len();
        write!(
            f,
            "\nthe spec has {n} error{}; nothing was changed",
            if n == 1 { "" } else { "s" }
        )
    }
}

impl From<Diagnostic> for SpecError {
    fn from(d: Diagnostic) -> SpecError {
        SpecError { diagnostics: vec![d] }
    }
}
