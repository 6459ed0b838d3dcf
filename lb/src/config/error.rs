//! Config errors and the byte-offset → line/column translation they need.

use std::fmt;
use std::ops::Range;

/// One problem in a config file, located so an operator can jump to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 only when the file could not be read at all.
    pub line: usize,
    /// 1-based, counted in characters; 0 only when the file could not be read.
    pub column: usize,
    pub message: String,
}

impl ConfigError {
    /// Locates `message` at the start of `span` within `source`.
    pub(crate) fn at(file: &str, source: &str, span: Range<usize>, message: String) -> Self {
        let (line, column) = position(source, span.start);
        Self {
            file: file.to_owned(),
            line,
            column,
            message,
        }
    }
}

/// Every problem found in one config file. Reported together so an operator
/// can fix them all in one edit instead of one per reload attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self(vec![error])
    }
}

/// 1-based (line, column) of byte `offset` in `source`. Columns count
/// characters, not bytes, so they match what editors show. Offsets past the
/// end or inside a multi-byte character are clamped rather than trusted.
pub(crate) fn position(source: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(source.len());
    while !source.is_char_boundary(end) {
        end -= 1;
    }
    let before = &source[..end];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}
