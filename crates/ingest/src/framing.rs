//! Splitting a TCP byte stream into events.
//!
//! - Lines: each event ends with `\n` (a `\r` before it is dropped); a last line without one
//!   counts at the end of the stream.
//! - Syslog (RFC 6587): each frame is either octet-counted, `<length> <message>`, or a line
//!   (non-transparent framing), decided per frame: a syslog message starts with `<`, a count
//!   with a digit.
//!
//! A frame longer than the limit is skipped whole and reported, never buffered: memory per
//! connection stays bounded by the limit.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// How frames are delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One event per line.
    Lines,
    /// Octet counting or lines, per frame.
    Syslog,
}

/// What the next frame was.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A frame, now in the caller's buffer (without its delimiter).
    Event,
    /// A frame of this many bytes, over the limit, skipped.
    TooLong(usize),
}

/// Why the stream cannot be framed any further.
#[derive(Debug, thiserror::Error)]
pub enum FramingError {
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// An octet count was not a number followed by a space.
    #[error("bad octet count {text:?} at byte {at} of the stream: expected digits and a space before the message")]
    BadCount {
        /// What was read where the count should be.
        text: String,
        /// Where the count starts in the stream (0-based).
        at: u64,
    },
    /// The stream ended inside an octet-counted frame.
    #[error("the stream ended at byte {at}, {missing} bytes short of an octet-counted frame")]
    Truncated {
        /// Bytes that did not arrive.
        missing: usize,
        /// Where the stream ended (bytes read in all).
        at: u64,
    },
}

/// Longest octet count accepted (digits); longer counts are not syslog.
const MAX_COUNT_DIGITS: usize = 10;

/// Reads frames from `reader`.
#[derive(Debug)]
pub struct FrameReader<R> {
    reader: R,
    framing: Framing,
    max: usize,
    /// Bytes consumed so far: where errors are.
    offset: u64,
}

impl<R: AsyncBufRead + Unpin> FrameReader<R> {
    /// Frames of at most `max` bytes.
    pub fn new(reader: R, framing: Framing, max: usize) -> FrameReader<R> {
        FrameReader {
            reader,
            framing,
            max,
            offset: 0,
        }
    }

    /// Whether bytes are buffered, so the next frame may come without waiting for the network.
    pub fn has_buffered(&self) -> bool
    where
        R: HasBuffer,
    {
        self.reader.buffered() > 0
    }

    /// The next frame into `out` (cleared first), or `None` at the end of the stream.
    pub async fn next(&mut self, out: &mut Vec<u8>) -> Result<Option<Frame>, FramingError> {
        out.clear();
        if self.framing == Framing::Syslog {
            let buf = self.reader.fill_buf().await?;
            if buf.first().is_some_and(u8::is_ascii_digit) {
                return self.counted(out).await.map(Some);
            }
        }
        self.line(out).await
    }

    async fn line(&mut self, out: &mut Vec<u8>) -> Result<Option<Frame>, FramingError> {
        let mut seen = 0usize;
        loop {
            let buf = self.reader.fill_buf().await?;
            if buf.is_empty() {
                return Ok(match seen {
                    0 => None,
                    n if n > self.max => Some(Frame::TooLong(n)),
                    _ => Some(Frame::Event),
                });
            }
            let (chunk, used, done) = match memchr::memchr(b'\n', buf) {
                Some(i) => (&buf[..i], i + 1, true),
                None => (buf, buf.len(), false),
            };
            seen += chunk.len();
            if seen <= self.max {
                out.extend_from_slice(chunk);
            } else {
                out.clear();
            }
            self.consume(used);
            if done {
                if seen > self.max {
                    return Ok(Some(Frame::TooLong(seen)));
                }
                if out.last() == Some(&b'\r') {
                    out.pop();
                }
                return Ok(Some(Frame::Event));
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.reader.consume(n);
        self.offset += n as u64;
    }

    async fn counted(&mut self, out: &mut Vec<u8>) -> Result<Frame, FramingError> {
        let at = self.offset;
        let mut digits = String::new();
        loop {
            let buf = self.reader.fill_buf().await?;
            let Some(&b) = buf.first() else {
                return Err(FramingError::BadCount { text: digits, at });
            };
            self.consume(1);
            match b {
                b'0'..=b'9' if digits.len() < MAX_COUNT_DIGITS => digits.push(char::from(b)),
                b' ' if !digits.is_empty() => break,
                other => {
                    digits.push(char::from(other));
                    return Err(FramingError::BadCount { text: digits, at });
                }
            }
        }
        let len: usize = digits.parse().map_err(|_| FramingError::BadCount {
            text: digits.clone(),
            at,
        })?;
        let mut left = len;
        while left > 0 {
            let buf = self.reader.fill_buf().await?;
            if buf.is_empty() {
                return Err(FramingError::Truncated {
                    missing: left,
                    at: self.offset,
                });
            }
            let n = buf.len().min(left);
            if len <= self.max {
                out.extend_from_slice(&buf[..n]);
            }
            self.consume(n);
            left -= n;
        }
        if len > self.max {
            return Ok(Frame::TooLong(len));
        }
        // Some senders end counted frames with a newline as well.
        while matches!(out.last(), Some(b'\n' | b'\r')) {
            out.pop();
        }
        Ok(Frame::Event)
    }
}

/// Readers that can tell how many bytes they hold.
pub trait HasBuffer {
    /// Bytes buffered.
    fn buffered(&self) -> usize;
}

impl<R: tokio::io::AsyncRead> HasBuffer for tokio::io::BufReader<R> {
    fn buffered(&self) -> usize {
        self.buffer().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames(
        input: &[u8],
        framing: Framing,
        max: usize,
        chunk: usize,
    ) -> (Vec<Result<Vec<u8>, usize>>, Option<String>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let reader = tokio::io::BufReader::with_capacity(chunk.max(1), input);
            let mut r = FrameReader::new(reader, framing, max);
            let mut out = Vec::new();
            let mut got = Vec::new();
            loop {
                match r.next(&mut out).await {
                    Ok(Some(Frame::Event)) => got.push(Ok(out.clone())),
                    Ok(Some(Frame::TooLong(n))) => got.push(Err(n)),
                    Ok(None) => return (got, None),
                    Err(e) => return (got, Some(e.to_string())),
                }
            }
        })
    }

    #[test]
    fn lines_with_crlf_a_last_unterminated_line_and_a_long_one() {
        let (got, err) = frames(b"a\r\nbb\n0123456789\nlast", Framing::Lines, 5, 3);
        assert_eq!(err, None);
        assert_eq!(
            got,
            vec![
                Ok(b"a".to_vec()),
                Ok(b"bb".to_vec()),
                Err(10),
                Ok(b"last".to_vec())
            ]
        );
    }

    #[test]
    fn syslog_mixes_octet_counting_and_lines() {
        let input = b"11 <13>1 - - x\n<13>plain line\n5 <1>ab";
        let (got, err) = frames(input, Framing::Syslog, 100, 4);
        assert_eq!(err, None);
        assert_eq!(
            got,
            vec![
                Ok(b"<13>1 - - x".to_vec()),
                // The newline after a counted frame is an empty line; callers skip those.
                Ok(Vec::new()),
                Ok(b"<13>plain line".to_vec()),
                Ok(b"<1>ab".to_vec())
            ]
        );
        let (_, err) = frames(b"12x <1>", Framing::Syslog, 100, 4);
        assert!(err.unwrap().contains("bad octet count \"12x\" at byte 0"));
        let (_, err) = frames(b"10 <1>", Framing::Syslog, 100, 4);
        assert!(err.unwrap().contains("ended at byte 6, 7 bytes short"));
        let (got, _) = frames(b"8 <1>abcde3 <2>", Framing::Syslog, 4, 2);
        assert_eq!(got, vec![Err(8), Ok(b"<2>".to_vec())]);
    }

    proptest! {
        #[test]
        fn lines_roundtrip_whatever_the_chunking(
            lines in proptest::collection::vec("[^\r\n]{0,30}", 0..20),
            chunk in 1usize..40,
        ) {
            let mut input = Vec::new();
            for l in &lines {
                input.extend_from_slice(l.as_bytes());
                input.push(b'\n');
            }
            let (got, err) = frames(&input, Framing::Lines, 1000, chunk);
            prop_assert_eq!(err, None);
            let want: Vec<Result<Vec<u8>, usize>> = lines.iter().map(|l| Ok(l.as_bytes().to_vec())).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn octet_counted_frames_roundtrip(
            msgs in proptest::collection::vec("<[0-9]{1,3}>[^\r\n]{0,40}", 0..20),
            chunk in 1usize..40,
        ) {
            let mut input = Vec::new();
            for m in &msgs {
                input.extend_from_slice(format!("{} {m}", m.len()).as_bytes());
            }
            let (got, err) = frames(&input, Framing::Syslog, 1000, chunk);
            prop_assert_eq!(err, None);
            let want: Vec<Result<Vec<u8>, usize>> = msgs.iter().map(|m| Ok(m.as_bytes().to_vec())).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn mutated_octet_counted_streams_give_frames_or_an_error_with_its_byte(
            msgs in proptest::collection::vec("<[0-9]{1,3}>[^\r\n]{0,40}", 1..10),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            chunk in 1usize..40,
        ) {
            let mut input = Vec::new();
            for m in &msgs {
                input.extend_from_slice(format!("{} {m}", m.len()).as_bytes());
            }
            for (at, byte) in edits {
                let at = at % input.len();
                input[at] = byte;
            }
            let (got, err) = frames(&input, Framing::Syslog, 64, chunk);
            for bytes in got.into_iter().flatten() {
                prop_assert!(bytes.len() <= 64);
            }
            if let Some(e) = err {
                prop_assert!(e.contains("at byte") || e.contains("ended at byte"), "{}", e);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_frames_stay_bounded(
            input in proptest::collection::vec(any::<u8>(), 0..400),
            chunk in 1usize..50,
            max in 1usize..64,
        ) {
            for framing in [Framing::Lines, Framing::Syslog] {
                let (got, _) = frames(&input, framing, max, chunk);
                for bytes in got.into_iter().flatten() {
                    prop_assert!(bytes.len() <= max);
                }
            }
        }
    }
}
