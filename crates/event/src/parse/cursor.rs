//! A byte cursor over a line, for the hand-written parsers: position-aware, never panics.

use super::ParseError;

pub(crate) struct Cursor<'a> {
    pub line: &'a str,
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(line: &'a str) -> Cursor<'a> {
        Cursor { line, pos: 0 }
    }

    pub fn rest(&self) -> &'a str {
        self.line.get(self.pos..).unwrap_or("")
    }

    pub fn peek(&self) -> Option<u8> {
        self.line.as_bytes().get(self.pos).copied()
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.line.len()
    }

    pub fn error(&self, field: &str, reason: impl Into<String>) -> ParseError {
        ParseError {
            column: self.pos.min(self.line.len()) + 1,
            field: (!field.is_empty()).then(|| field.to_string()),
            reason: reason.into(),
        }
    }

    /// Consumes `b` or fails naming `field`.
    pub fn expect(&mut self, b: u8, field: &str) -> Result<(), ParseError> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            let found = self
                .rest()
                .chars()
                .next()
                .map_or("the end of the line".to_string(), |c| format!("{c:?}"));
            Err(self.error(field, format!("expected {:?}, found {found}", b as char)))
        }
    }

    pub fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// Takes bytes up to (not including) the first ASCII byte for which `stop` holds, or the end.
    pub fn take_until(&mut self, stop: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        let bytes = self.line.as_bytes();
        while self.pos < bytes.len() && !stop(bytes[self.pos]) {
            self.pos += 1;
        }
        // Stops are ASCII, so both ends are on char boundaries.
        self.line.get(start..self.pos).unwrap_or("")
    }

    /// A quoted string starting at the opening `quote`; backslash escapes the next character.
    pub fn quoted(&mut self, quote: u8, field: &str) -> Result<String, ParseError> {
        let open = self.pos;
        self.expect(quote, field)?;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e)) => out.push(e),
                    None => break,
                },
                c if c as u32 == u32::from(quote) => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                c => out.push(c),
            }
        }
        self.pos = open;
        Err(self.error(field, format!("quote {:?} is never closed", quote as char)))
    }
}
