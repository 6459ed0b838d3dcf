//! Config errors and the byte-offset → line/column translation they need.

use std::fmt;
use std::ops::Range;

/// At most this many errors are kept and shown; the rest are only counted. A file with
/// thousands of mistakes is fixed from its first ones, and a reload's reply stays small.
pub const MAX_REPORTED: usize = 50;

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

/// A value that is allowed but most likely not meant, located like an error: `check` prints
/// it and passes, the daemon logs it at start and on reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning(pub ConfigError);

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.0;
        write!(
            f,
            "{}:{}:{}: warning: {}",
            e.file, e.line, e.column, e.message
        )
    }
}

/// The problems found in one config file, in document order. Reported together so an
/// operator can fix them all in one edit instead of one per reload attempt; only the first
/// [`MAX_REPORTED`] are kept, the others counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// The first errors, at most [`MAX_REPORTED`]; never empty.
    pub shown: Vec<ConfigError>,
    /// How many more were found.
    pub more: usize,
}

impl ConfigErrors {
    /// How many errors were found in all.
    pub fn total(&self) -> usize {
        self.shown.len() + self.more
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.shown.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        match self.more {
            0 => Ok(()),
            1 => f.write_str("\n... and 1 more error"),
            n => write!(f, "\n... and {n} more errors"),
        }
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self {
            shown: vec![error],
            more: 0,
        }
    }
}

/// 1-based (line, column) of byte `offset` in `source`; see [`LineIndex::position`]. Builds an
/// index, so it is for a single lookup: many go through one [`LineIndex`].
pub(crate) fn position(source: &str, offset: usize) -> (usize, usize) {
    LineIndex::new(source).position(offset)
}

/// Byte offsets to (line, column) in time independent of where in the file they are: the
/// line by binary search over the line starts, the column from the count of UTF-8
/// continuation bytes, kept per block of [`BLOCK`] bytes. Built in one pass over the source,
/// so locating every error of a file costs no more than reading it (a scan from the start
/// per error made a large file's check quadratic).
pub(crate) struct LineIndex<'a> {
    source: &'a str,
    /// Byte offset where each line starts; the first is 0.
    line_starts: Vec<usize>,
    /// `continuations[i]`: UTF-8 continuation bytes in `source[..i * BLOCK]`.
    continuations: Vec<usize>,
}

/// Block size of the continuation-byte counts: a column costs at most two such scans.
const BLOCK: usize = 1024;

impl<'a> LineIndex<'a> {
    pub(crate) fn new(source: &'a str) -> Self {
        let bytes = source.as_bytes();
        let mut line_starts = vec![0];
        line_starts.extend(newline_offsets(bytes).map(|i| i + 1));
        let mut continuations = Vec::with_capacity(bytes.len() / BLOCK + 1);
        let mut total = 0;
        continuations.push(0);
        for block in bytes.chunks(BLOCK) {
            total += count_continuations(block);
            continuations.push(total);
        }
        Self {
            source,
            line_starts,
            continuations,
        }
    }

    /// 1-based (line, column) of byte `offset`. Columns count characters, not bytes, so they
    /// match what editors show. Offsets past the end or inside a multi-byte character are
    /// clamped rather than trusted.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let mut end = offset.min(self.source.len());
        while !self.source.is_char_boundary(end) {
            end -= 1;
        }
        // The last line starting at or before `end`.
        let line = self.line_starts.partition_point(|&start| start <= end);
        let start = self.line_starts[line - 1];
        let column =
            (end - start) - (self.continuations_before(end) - self.continuations_before(start));
        (line, column + 1)
    }

    /// The line of byte `offset`, 1-based.
    pub(crate) fn line(&self, offset: usize) -> usize {
        self.position(offset).0
    }

    fn continuations_before(&self, offset: usize) -> usize {
        let block = offset / BLOCK;
        let from = block * BLOCK;
        self.continuations[block] + count_continuations(&self.source.as_bytes()[from..offset])
    }
}

fn newline_offsets(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes
        .iter()
        .enumerate()
        .filter_map(|(i, &b)| (b == b'\n').then_some(i))
}

/// Bytes of the form `10xxxxxx`: every byte of a character but its first.
fn count_continuations(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| (b as i8) < -64).count()
}
