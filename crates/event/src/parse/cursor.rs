//! A byte cursor over a line, for the hand-written parsers: position-aware, never panics.

use super::ParseError;
use std::borrow::Cow;

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

    /// A quoted string starting at the opening `quote` (ASCII); backslash escapes the next
    /// character. Copied a stretch at a time, not a character at a time: the request and user
    /// agent of every access line pass through here, at ingest and again in the digest.
    pub fn quoted(&mut self, quote: u8, field: &str) -> Result<Cow<'a, str>, ParseError> {
        let open = self.pos;
        self.expect(quote, field)?;
        let rest = self.rest();
        let bytes = rest.as_bytes();
        // Most quoted texts have no escape: they are borrowed, found with one search.
        let first = memchr::memchr2(quote, b'\\', bytes);
        if let Some(end) = first.filter(|&i| bytes[i] == quote) {
            self.pos += end + 1;
            return Ok(Cow::Borrowed(&rest[..end]));
        }
        let mut out = String::new();
        // `from..i` is text not yet copied; backslash and quote are ASCII, so every index where
        // one is found is a character boundary.
        let (mut from, mut i) = (0, first.unwrap_or(bytes.len()));
        while i < bytes.len() {
            if bytes[i] == b'\\' {
                out.push_str(&rest[from..i]);
                let Some(escaped) = rest[i + 1..].chars().next() else {
                    break;
                };
                out.push(escaped);
                i += 1 + escaped.len_utf8();
                from = i;
            } else if bytes[i] == quote {
                out.push_str(&rest[from..i]);
                self.pos += i + 1;
                return Ok(Cow::Owned(out));
            } else {
                i += 1;
            }
        }
        self.pos = open;
        Err(self.error(field, format!("quote {:?} is never closed", quote as char)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The character-at-a-time reading `quoted` replaced: what it must still return.
    fn quoted_by_chars(text: &str, quote: char) -> Option<(String, usize)> {
        let mut chars = text.char_indices();
        if chars.next()?.1 != quote {
            return None;
        }
        let mut out = String::new();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?.1),
                c if c == quote => return Some((out, i + 1)),
                c => out.push(c),
            }
        }
        None
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn quoted_reads_what_the_character_reader_read(
            text in "[\"'][a-zé\\\\\"' ]{0,12}",
            quote in prop_oneof![Just(b'"'), Just(b'\'')],
        ) {
            let mut c = Cursor::new(&text);
            let got = c.quoted(quote, "f").ok().map(|s| (s.into_owned(), c.pos));
            prop_assert_eq!(got, quoted_by_chars(&text, quote as char));
        }
    }
}
