//! `format()`: printf-style text from field values (`%s`, `%d`, `%f`, `%.2f`, `%x`, `%%`, with
//! an optional width like `%5d` or `%-8s`).

use eddy_event::Value;

use crate::syntax::{QueryError, Span};

/// A piece of a format.
#[derive(Debug, Clone, PartialEq)]
pub enum FormatPiece {
    /// Text as is.
    Text(String),
    /// A placeholder for the next value.
    Value {
        /// `s`, `d`, `f` or `x`.
        conversion: char,
        /// Minimum width (padded with spaces).
        width: usize,
        /// Pad on the right instead.
        left: bool,
        /// Digits after the point for `f`.
        precision: Option<usize>,
    },
}

/// Cuts `format` into pieces; a bad placeholder is an error at `span`.
pub fn parse(format: &str, span: Span) -> Result<Vec<FormatPiece>, QueryError> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            text.push('%');
            continue;
        }
        let left = chars.next_if_eq(&'-').is_some();
        let mut width = String::new();
        while let Some(d) = chars.next_if(char::is_ascii_digit) {
            width.push(d);
        }
        let mut precision = None;
        if chars.next_if_eq(&'.').is_some() {
            let mut digits = String::new();
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                digits.push(d);
            }
            precision = Some(digits.parse().unwrap_or(0));
        }
        let conversion = match chars.next() {
            Some(c @ ('s' | 'd' | 'f' | 'x')) => c,
            Some('i') => 'd',
            other => {
                return Err(QueryError::new(
                    format!(
                        "unknown placeholder %{}",
                        other.map(String::from).unwrap_or_default()
                    ),
                    span,
                )
                .hint("format() knows %s, %d, %f, %.2f, %x and %% (with a width like %5d)"))
            }
        };
        if !text.is_empty() {
            pieces.push(FormatPiece::Text(std::mem::take(&mut text)));
        }
        pieces.push(FormatPiece::Value {
            conversion,
            width: width.parse().unwrap_or(0).min(1000),
            left,
            precision: precision.map(|p: usize| p.min(30)),
        });
    }
    if !text.is_empty() {
        pieces.push(FormatPiece::Text(text));
    }
    Ok(pieces)
}

/// The number of values a format takes.
pub fn placeholders(pieces: &[FormatPiece]) -> usize {
    pieces
        .iter()
        .filter(|p| matches!(p, FormatPiece::Value { .. }))
        .count()
}

/// The text of `pieces` with `values` in order; `None` if a value is missing, or a number
/// conversion meets text that is not a number.
pub fn render(pieces: &[FormatPiece], values: &[Option<Value>]) -> Option<String> {
    let mut out = String::new();
    let mut values = values.iter();
    for p in pieces {
        match p {
            FormatPiece::Text(t) => out.push_str(t),
            FormatPiece::Value {
                conversion,
                width,
                left,
                precision,
            } => {
                let v = values.next()?.as_ref()?;
                let text = match conversion {
                    's' => v.to_text(),
                    'd' => format!("{}", v.as_f64()?.trunc() as i64),
                    'x' => format!("{:x}", v.as_f64()?.trunc() as i64),
                    _ => format!("{:.*}", precision.unwrap_or(6), v.as_f64()?),
                };
                let pad = width.saturating_sub(text.chars().count());
                if *left {
                    out.push_str(&text);
                    out.extend(std::iter::repeat_n(' ', pad));
                } else {
                    out.extend(std::iter::repeat_n(' ', pad));
                    out.push_str(&text);
                }
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn span() -> Span {
        Span { start: 0, end: 1 }
    }

    #[test]
    fn placeholders_render_values() {
        let f = parse("%s took %.1f ms (%d%%) %5d|%-3s|%x", span()).unwrap();
        assert_eq!(placeholders(&f), 6);
        let values = [
            Some(Value::Str("GET".into())),
            Some(Value::Float(12.345)),
            Some(Value::Int(7)),
            Some(Value::Int(42)),
            Some(Value::Str("a".into())),
            Some(Value::Int(255)),
        ];
        assert_eq!(
            render(&f, &values).unwrap(),
            "GET took 12.3 ms (7%)    42|a  |ff"
        );
        assert_eq!(render(&f, &[None]), None);
        assert_eq!(
            render(
                &parse("%d", span()).unwrap(),
                &[Some(Value::Str("x".into()))]
            ),
            None
        );
    }

    #[test]
    fn bad_placeholders_are_errors() {
        let e = parse("%q", span()).unwrap_err();
        assert!(e.message.contains("%q"), "{e}");
        assert!(parse("50%", span()).is_err());
    }

    proptest! {
        #[test]
        fn any_format_parses_or_errors_never_panics(f in ".{0,20}", v in any::<i64>()) {
            if let Ok(pieces) = parse(&f, span()) {
                let values = vec![Some(Value::Int(v)); placeholders(&pieces)];
                prop_assert!(render(&pieces, &values).is_some());
            }
        }
    }
}
