//! The query language's syntax: a pipeline of stages separated by `|`, parsed by hand with the
//! byte span of every node, so that an error can underline what it is about.
//!
//! ```text
//! query    := stage ("|" stage)*
//! stage    := name ":=" expr                      assignment (eval)
//!           | name "(" args ")"                   a function (not `in`)
//!           | filter
//! filter   := and ("or" and)*
//! and      := unary ("and"? unary)*                juxtaposition means and
//! unary    := ("not" | "!") unary | primary
//! primary  := "(" filter ")" | "in" "(" args ")"
//!           | field ("=" | "!=" | "<" | "<=" | ">" | ">=") value
//!           | /regex/flags | "quoted text" | word
//! value    := "quoted" | /regex/flags | word (with * wildcards)
//! args     := (arg ("," arg)*)?          arg := (name "=")? argvalue
//! argvalue := "[" argvalue ("," argvalue)* "]" | /regex/flags | expr
//! expr     := term (("+" | "-") term)*   term := unary (("*" | "/" | "%") unary)*
//! unary    := "-" unary | number | "quoted" | name "(" args ")" | name | "(" expr ")"
//! ```
//!
//! Keywords (`and`, `or`, `not`, `in`) are case-insensitive, as in LogScale.
//!
//! Chains (`a b c …`, `x or y or …`, `1 + 2 + …`) are parsed in a loop into one flat node, so a
//! long line pasted as a search just works. True nesting (parentheses, `not`, `!`, unary minus,
//! calls and lists inside arguments) is refused past [`MAX_NESTING`] levels with an error at the
//! level that went too deep: every function over the tree recurses at most that deep, on any
//! thread's stack. A text longer than [`MAX_QUERY_BYTES`] is refused before it is parsed.

use std::fmt;

/// The longest query text accepted, in bytes (64 KiB): far more than any query written by hand,
/// and it bounds the plan built from it.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;

/// How deep parentheses, `not`, `!`, unary minus, calls in arguments and lists may nest.
pub const MAX_NESTING: usize = 64;

/// A byte range of the query text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// The span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// A parsed query: its stages in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The stages, left to right.
    pub stages: Vec<Stage>,
}

/// One stage between pipes.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// Keeps the events that match.
    Filter(Filter),
    /// `name := expr`.
    Assign {
        /// The field assigned.
        field: String,
        /// Its new value.
        expr: Expr,
        /// The whole assignment.
        span: Span,
    },
    /// A function such as `count()` or `groupBy(...)`.
    Call(Call),
}

/// How a field is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CompareOp {
    /// Whether `x op value` holds.
    pub fn holds(self, x: f64, value: f64) -> bool {
        match self {
            CompareOp::Lt => x < value,
            CompareOp::Le => x <= value,
            CompareOp::Gt => x > value,
            CompareOp::Ge => x >= value,
            CompareOp::Eq => x == value,
            CompareOp::Ne => x != value,
        }
    }
}

/// A literal a filter compares with.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// Text as written (a quoted string, or a bare word without `*`).
    Exact(String),
    /// A bare word with `*` wildcards.
    Wildcard(String),
    /// `/regex/flags`.
    Regex(RegexLit),
}

/// `/pattern/flags`.
#[derive(Debug, Clone, PartialEq)]
pub struct RegexLit {
    /// The pattern between the slashes (`\/` unescaped).
    pub pattern: String,
    /// Flags after the closing slash (`i`, `m`, `s`, `x`).
    pub flags: String,
}

/// A filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// A bare word or quoted phrase searched in the event's text.
    Text {
        /// The text (with `*` wildcards if `wildcard`).
        text: String,
        /// Whether `*` in it is a wildcard (bare words only).
        wildcard: bool,
        /// Where it is.
        span: Span,
    },
    /// `/regex/` over the event's text.
    Regex {
        /// The regex.
        regex: RegexLit,
        /// Where it is.
        span: Span,
    },
    /// `field op value`; tags are fields named `#name`.
    Compare {
        /// The field.
        field: String,
        /// The comparison.
        op: CompareOp,
        /// What it is compared with.
        value: Pattern,
        /// Where it is.
        span: Span,
    },
    /// `in(field, values=[...])`.
    In {
        /// The field.
        field: String,
        /// Any of these (wildcards allowed).
        values: Vec<Pattern>,
        /// Where it is.
        span: Span,
    },
    /// All of these (two or more, flat: a chain is one node).
    And(Vec<Filter>),
    /// Any of these (two or more, flat).
    Or(Vec<Filter>),
    /// Not.
    Not(Box<Filter>),
}

/// A function call: `name(arg, name=arg, ...)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The function's name as written.
    pub name: String,
    /// Where the name is.
    pub name_span: Span,
    /// Its arguments in order.
    pub args: Vec<Arg>,
    /// The whole call.
    pub span: Span,
}

/// One argument of a call.
#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    /// `name=` if given.
    pub name: Option<String>,
    /// The value.
    pub value: ArgValue,
    /// The whole argument.
    pub span: Span,
}

/// An argument's value.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgValue {
    /// `[a, b, ...]`.
    List(Vec<ArgValue>, Span),
    /// `/regex/flags`.
    Regex(RegexLit, Span),
    /// Anything else: a field name, a literal, a call or arithmetic.
    Expr(Expr),
}

impl ArgValue {
    /// Where it is.
    pub fn span(&self) -> Span {
        match self {
            ArgValue::List(_, s) | ArgValue::Regex(_, s) => *s,
            ArgValue::Expr(e) => e.span(),
        }
    }
}

/// A binary arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `+` (numbers) or concatenation (text).
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
}

/// An expression (eval, function arguments).
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A number.
    Number(f64, Span),
    /// A quoted string.
    Str(String, Span),
    /// A bare name: a field (or, where a function expects a word, the word itself).
    Field(String, Span),
    /// A call.
    Call(Call),
    /// `-x`
    Neg(Box<Expr>, Span),
    /// `first op x op y …`, left to right (operators of one precedence; flat, so a long chain
    /// is one node).
    Chain {
        /// The leftmost operand.
        first: Box<Expr>,
        /// Each operator with its right operand, in order.
        rest: Vec<(BinOp, Expr)>,
        /// The whole chain.
        span: Span,
    },
}

impl Expr {
    /// Where it is.
    pub fn span(&self) -> Span {
        match self {
            Expr::Number(_, s)
            | Expr::Str(_, s)
            | Expr::Field(_, s)
            | Expr::Neg(_, s)
            | Expr::Chain { span: s, .. } => *s,
            Expr::Call(c) => c.span,
        }
    }
}

/// Why a query is not valid: what, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    /// What is wrong.
    pub message: String,
    /// Where.
    pub span: Span,
    /// A likely fix (e.g. the nearest function name).
    pub hint: Option<String>,
}

impl QueryError {
    /// An error at `span`.
    pub fn new(message: impl Into<String>, span: Span) -> QueryError {
        QueryError {
            message: message.into(),
            span,
            hint: None,
        }
    }

    /// With a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> QueryError {
        self.hint = Some(hint.into());
        self
    }

    /// The error for a call of an unknown function, suggesting the nearest of the `known`
    /// names.
    pub fn unknown_function(c: &Call, known: &[&str]) -> QueryError {
        let nearest = known
            .iter()
            .map(|k| {
                (
                    strsim::damerau_levenshtein(&c.name.to_lowercase(), &k.to_lowercase()),
                    k,
                )
            })
            .min();
        let e = QueryError::new(format!("unknown function {}", c.name), c.name_span);
        match nearest {
            Some((d, k)) if d <= 3 => e.hint(format!("did you mean {k}?")),
            _ => e.hint(format!("known functions: {}", known.join(", "))),
        }
    }

    /// The 1-based line and column (in characters) where the error starts.
    pub fn line_column(&self, query: &str) -> (usize, usize) {
        let at = self.span.start.min(query.len());
        let before = query.get(..at).unwrap_or(query);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        (line, column)
    }

    /// The message with the line and column, the offending line and the part underlined:
    ///
    /// ```text
    /// error at line 1, column 9: unknown function cuont
    ///   error | cuont()
    ///           ^^^^^
    ///   did you mean count?
    /// ```
    pub fn render(&self, query: &str) -> String {
        let (line, column) = self.line_column(query);
        let text = query.lines().nth(line - 1).unwrap_or("");
        let line_start = query
            .get(..self.span.start.min(query.len()))
            .map_or(0, |b| b.rfind('\n').map_or(0, |i| i + 1));
        let line_end = line_start + text.len();
        let end = self
            .span
            .end
            .clamp(self.span.start, line_end.max(self.span.start));
        let width = query
            .get(self.span.start.min(query.len())..end.min(query.len()))
            .map_or(1, |s| s.chars().count())
            .max(1);
        let mut out = format!(
            "error at line {line}, column {column}: {}\n  {text}\n  {}{}",
            self.message,
            " ".repeat(column - 1),
            "^".repeat(width)
        );
        if let Some(hint) = &self.hint {
            out.push_str("\n  ");
            out.push_str(hint);
        }
        out
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

/// Parses a query.
pub fn parse(text: &str) -> Result<Query, QueryError> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(QueryError::new(
            format!(
                "the query is {} bytes long; at most {MAX_QUERY_BYTES} bytes are accepted",
                text.len()
            ),
            Span::new(floor_char_boundary(text, MAX_QUERY_BYTES), text.len()),
        ));
    }
    let mut p = Parser {
        text,
        pos: 0,
        depth: 0,
    };
    let mut stages = Vec::new();
    loop {
        p.skip_space();
        if p.at_end() && stages.is_empty() {
            // The empty query keeps everything.
            return Ok(Query { stages });
        }
        stages.push(p.stage()?);
        p.skip_space();
        match p.peek() {
            None => return Ok(Query { stages }),
            Some('|') => p.pos += 1,
            Some(c) => {
                return Err(QueryError::new(
                    format!("unexpected {c:?}; a stage ends at | or at the end"),
                    p.char_span(),
                ))
            }
        }
    }
}

/// Bytes that end a bare word.
fn ends_word(c: char) -> bool {
    c.is_whitespace() || "|()[],=!<>\"".contains(c)
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    /// Levels of nesting open at `pos`.
    depth: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        self.text.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn char_span(&self) -> Span {
        Span::new(self.pos, self.pos + self.peek().map_or(1, char::len_utf8))
    }

    /// Runs `inner` one level of nesting deeper, refusing to go past [`MAX_NESTING`]; the
    /// error points at `start`, where the level that is too deep opens.
    fn nested<T>(
        &mut self,
        start: usize,
        inner: impl FnOnce(&mut Self) -> Result<T, QueryError>,
    ) -> Result<T, QueryError> {
        if self.depth >= MAX_NESTING {
            let end = (start + 1..=self.text.len())
                .find(|&i| self.text.is_char_boundary(i))
                .unwrap_or(self.text.len());
            return Err(QueryError::new(
                format!("the query nests more than {MAX_NESTING} levels deep here"),
                Span::new(start, end),
            )
            .hint("parentheses, not, !, unary minus and calls in arguments count as levels"));
        }
        self.depth += 1;
        let out = inner(self);
        self.depth -= 1;
        out
    }

    fn skip_space(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                self.pos += c.len_utf8();
            } else if self.rest().starts_with("//") {
                // A comment to the end of the line.
                self.pos += self.rest().find('\n').unwrap_or(self.rest().len());
            } else {
                break;
            }
        }
    }

    fn expect(&mut self, c: char, what: &str) -> Result<Span, QueryError> {
        self.skip_space();
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            Ok(Span::new(self.pos - c.len_utf8(), self.pos))
        } else {
            let found = self
                .peek()
                .map_or("the end of the query".to_string(), |c| format!("{c:?}"));
            Err(QueryError::new(
                format!("expected {what}, found {found}"),
                self.char_span(),
            ))
        }
    }

    /// A bare word at the position (possibly empty).
    fn word(&mut self) -> (String, Span) {
        let start = self.pos;
        while let Some(c) = self.peek() {
            // `:=` ends a word (an assignment); a lone `:` belongs to it (times, URLs).
            if ends_word(c) || (c == ':' && self.peek2() == Some('=')) {
                break;
            }
            self.pos += c.len_utf8();
        }
        (
            self.text[start..self.pos].to_string(),
            Span::new(start, self.pos),
        )
    }

    /// A name (of a field or function): letters, digits, `_`, `.`, `@`, `#`, `-`.
    fn name_ahead(&self) -> Option<&str> {
        let rest = self.rest();
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || "_.@#-".contains(c)))
            .unwrap_or(rest.len());
        (end > 0).then(|| &rest[..end])
    }

    fn keyword_ahead(&self, kw: &str) -> bool {
        self.name_ahead()
            .is_some_and(|n| n.eq_ignore_ascii_case(kw))
    }

    fn stage(&mut self) -> Result<Stage, QueryError> {
        self.skip_space();
        let start = self.pos;
        if let Some(name) = self.name_ahead().map(str::to_string) {
            let q = self.past(name.len());
            if q.rest().starts_with(":=") {
                self.pos = q.pos + 2;
                let expr = self.expr()?;
                let span = Span::new(start, expr.span().end);
                return Ok(Stage::Assign {
                    field: name,
                    expr,
                    span,
                });
            }
            if self.rest()[name.len()..].starts_with('(') && !name.eq_ignore_ascii_case("in") {
                let call = self.call()?;
                return Ok(Stage::Call(call));
            }
        }
        Ok(Stage::Filter(self.filter()?))
    }

    fn filter(&mut self) -> Result<Filter, QueryError> {
        let mut any = vec![self.and()?];
        loop {
            self.skip_space();
            if self.keyword_ahead("or") {
                self.pos += 2;
                any.push(self.and()?);
            } else {
                return Ok(one_or(any, Filter::Or));
            }
        }
    }

    fn and(&mut self) -> Result<Filter, QueryError> {
        let mut all = vec![self.unary()?];
        loop {
            self.skip_space();
            match self.peek() {
                None | Some('|' | ')') => return Ok(one_or(all, Filter::And)),
                _ if self.keyword_ahead("or") => return Ok(one_or(all, Filter::And)),
                _ => {
                    if self.keyword_ahead("and") {
                        self.pos += 3;
                    }
                    all.push(self.unary()?);
                }
            }
        }
    }

    fn unary(&mut self) -> Result<Filter, QueryError> {
        self.skip_space();
        let start = self.pos;
        let negation = if self.keyword_ahead("not") {
            3
        } else if self.peek() == Some('!') && self.peek2() != Some('=') {
            1
        } else {
            return self.primary();
        };
        self.nested(start, |p| {
            p.pos += negation;
            Ok(Filter::Not(Box::new(p.unary()?)))
        })
    }

    fn primary(&mut self) -> Result<Filter, QueryError> {
        self.skip_space();
        let start = self.pos;
        match self.peek() {
            None => Err(QueryError::new(
                "expected a filter, found the end of the query",
                self.char_span(),
            )),
            Some('(') => self.nested(start, |p| {
                p.pos += 1;
                let inner = p.filter()?;
                p.expect(')', "')' to close the '('")?;
                Ok(inner)
            }),
            Some('"') => {
                let (text, span) = self.quoted()?;
                Ok(Filter::Text {
                    text,
                    wildcard: false,
                    span,
                })
            }
            Some('/') => {
                let (regex, span) = self.regex()?;
                Ok(Filter::Regex { regex, span })
            }
            Some(c) if ends_word(c) => Err(QueryError::new(
                format!("unexpected {c:?}; expected a filter"),
                self.char_span(),
            )),
            Some(_) => {
                if self.keyword_ahead("in") && self.rest()[2..].trim_start().starts_with('(') {
                    return self.in_filter();
                }
                let (word, span) = self.word();
                let after_word = self.pos;
                self.skip_space();
                let op = match (self.peek(), self.peek2()) {
                    (Some('!'), Some('=')) => Some((CompareOp::Ne, 2)),
                    (Some('<'), Some('=')) => Some((CompareOp::Le, 2)),
                    (Some('>'), Some('=')) => Some((CompareOp::Ge, 2)),
                    (Some('='), _) => Some((CompareOp::Eq, 1)),
                    (Some('<'), _) => Some((CompareOp::Lt, 1)),
                    (Some('>'), _) => Some((CompareOp::Gt, 1)),
                    _ => None,
                };
                let Some((op, len)) = op else {
                    self.pos = after_word;
                    if word.is_empty() {
                        return Err(QueryError::new("expected a filter", self.char_span()));
                    }
                    return Ok(Filter::Text {
                        wildcard: word.contains('*'),
                        text: word,
                        span,
                    });
                };
                if word.contains('*') {
                    return Err(QueryError::new("a field name cannot hold a wildcard", span));
                }
                self.pos += len;
                let value = self.value()?;
                if matches!(value.0, Pattern::Regex(_))
                    && !matches!(op, CompareOp::Eq | CompareOp::Ne)
                {
                    return Err(QueryError::new(
                        "a regex compares with = or != only",
                        value.1,
                    ));
                }
                Ok(Filter::Compare {
                    field: word,
                    op,
                    value: value.0,
                    span: Span::new(start, value.1.end),
                })
            }
        }
    }

    fn value(&mut self) -> Result<(Pattern, Span), QueryError> {
        self.skip_space();
        match self.peek() {
            Some('"') => {
                let (s, span) = self.quoted()?;
                Ok((Pattern::Exact(s), span))
            }
            Some('/') => {
                let (r, span) = self.regex()?;
                Ok((Pattern::Regex(r), span))
            }
            _ => {
                let (w, span) = self.word();
                if w.is_empty() {
                    return Err(QueryError::new(
                        "expected a value after the comparison",
                        self.char_span(),
                    ));
                }
                Ok((pattern_of_word(w), span))
            }
        }
    }

    fn in_filter(&mut self) -> Result<Filter, QueryError> {
        let call = self.call()?;
        let mut field = None;
        let mut values = None;
        for arg in &call.args {
            match (arg.name.as_deref(), &arg.value) {
                (None | Some("field"), ArgValue::Expr(Expr::Field(f, _))) if field.is_none() => {
                    field = Some(f.clone())
                }
                (None | Some("field"), ArgValue::Expr(Expr::Str(f, _))) if field.is_none() => {
                    field = Some(f.clone())
                }
                (Some("values"), ArgValue::List(items, _)) => {
                    let mut out = Vec::new();
                    for item in items {
                        out.push(match item {
                            ArgValue::Expr(Expr::Str(s, _)) => Pattern::Exact(s.clone()),
                            ArgValue::Expr(Expr::Field(w, _)) => pattern_of_word(w.clone()),
                            ArgValue::Expr(Expr::Number(_, s)) => {
                                Pattern::Exact(self.text[s.start..s.end].to_string())
                            }
                            ArgValue::Regex(r, _) => Pattern::Regex(r.clone()),
                            other => {
                                return Err(QueryError::new(
                                    "in() values are words, quoted strings or regexes",
                                    other.span(),
                                ))
                            }
                        });
                    }
                    values = Some(out);
                }
                _ => {
                    return Err(QueryError::new(
                        "in() takes a field and values=[...]",
                        arg.span,
                    ))
                }
            }
        }
        match (field, values) {
            (Some(field), Some(values)) => Ok(Filter::In {
                field,
                values,
                span: call.span,
            }),
            _ => Err(
                QueryError::new("in() needs a field and values=[...]", call.span)
                    .hint("for example: in(method, values=[GET, HEAD])"),
            ),
        }
    }

    fn quoted(&mut self) -> Result<(String, Span), QueryError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(QueryError::new(
                    "this quote is never closed",
                    Span::new(start, start + 1),
                ));
            };
            self.pos += c.len_utf8();
            match c {
                '"' => return Ok((out, Span::new(start, self.pos))),
                '\\' => {
                    let Some(next) = self.peek() else { continue };
                    self.pos += next.len_utf8();
                    match next {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        '"' | '\\' => out.push(next),
                        // Other escapes stay as written (regex classes such as \d).
                        other => {
                            out.push('\\');
                            out.push(other);
                        }
                    }
                }
                c => out.push(c),
            }
        }
    }

    fn regex(&mut self) -> Result<(RegexLit, Span), QueryError> {
        let start = self.pos;
        self.pos += 1;
        let mut pattern = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(QueryError::new(
                    "this regex is never closed with /",
                    Span::new(start, start + 1),
                ));
            };
            self.pos += c.len_utf8();
            match c {
                '/' => break,
                '\\' if self.peek() == Some('/') => {
                    self.pos += 1;
                    pattern.push('/');
                }
                '\\' => {
                    pattern.push('\\');
                    if let Some(next) = self.peek() {
                        self.pos += next.len_utf8();
                        pattern.push(next);
                    }
                }
                c => pattern.push(c),
            }
        }
        let flags_start = self.pos;
        while let Some(c) = self.peek().filter(char::is_ascii_alphabetic) {
            if !"imsx".contains(c) {
                return Err(QueryError::new(
                    format!("unknown regex flag {c:?}; known flags are i, m, s and x"),
                    self.char_span(),
                ));
            }
            self.pos += 1;
        }
        let flags = self.text[flags_start..self.pos].to_string();
        Ok((RegexLit { pattern, flags }, Span::new(start, self.pos)))
    }

    fn call(&mut self) -> Result<Call, QueryError> {
        self.skip_space();
        let start = self.pos;
        let name = self.name_ahead().unwrap_or("").to_string();
        self.pos += name.len();
        let name_span = Span::new(start, self.pos);
        self.expect('(', "'('")?;
        let (args, close) = self.nested(start, |p| {
            p.separated(')', "',' or ')' in the arguments", Self::arg)
        })?;
        Ok(Call {
            name,
            name_span,
            args,
            span: Span::new(start, close.end),
        })
    }

    /// Items separated by commas up to `close` (which may come at once), and its span.
    fn separated<T>(
        &mut self,
        close: char,
        expected: &str,
        mut item: impl FnMut(&mut Self) -> Result<T, QueryError>,
    ) -> Result<(Vec<T>, Span), QueryError> {
        let mut items = Vec::new();
        self.skip_space();
        if self.peek() != Some(close) {
            loop {
                items.push(item(self)?);
                self.skip_space();
                if self.peek() != Some(',') {
                    break;
                }
                self.pos += 1;
            }
        }
        let span = self.expect(close, expected)?;
        Ok((items, span))
    }

    /// A parser at the first non-space after the next `len` bytes (to look past a name).
    fn past(&self, len: usize) -> Parser<'_> {
        let mut q = Parser {
            text: self.text,
            pos: self.pos + len,
            depth: self.depth,
        };
        q.skip_space();
        q
    }

    fn arg(&mut self) -> Result<Arg, QueryError> {
        self.skip_space();
        let start = self.pos;
        let mut name = None;
        if let Some(n) = self.name_ahead().map(str::to_string) {
            let q = self.past(n.len());
            if q.peek() == Some('=') && q.peek2() != Some('=') {
                self.pos = q.pos + 1;
                name = Some(n);
            }
        }
        let value = self.arg_value()?;
        Ok(Arg {
            name,
            span: Span::new(start, value.span().end),
            value,
        })
    }

    fn arg_value(&mut self) -> Result<ArgValue, QueryError> {
        self.skip_space();
        match self.peek() {
            Some('[') => {
                let start = self.pos;
                self.nested(start, |p| {
                    p.pos += 1;
                    let (items, close) =
                        p.separated(']', "',' or ']' in the list", Self::list_item)?;
                    Ok(ArgValue::List(items, Span::new(start, close.end)))
                })
            }
            Some('/') => {
                let (r, span) = self.regex()?;
                Ok(ArgValue::Regex(r, span))
            }
            _ => Ok(ArgValue::Expr(self.expr()?)),
        }
    }

    /// An item of a list: a wildcard word such as `web-*` (in `in()` values), or any value.
    fn list_item(&mut self) -> Result<ArgValue, QueryError> {
        self.skip_space();
        let start = self.pos;
        if !matches!(self.peek(), Some('"' | '/' | '[')) {
            let (word, span) = self.word();
            self.skip_space();
            if word.contains('*') && matches!(self.peek(), Some(',' | ']')) {
                return Ok(ArgValue::Expr(Expr::Field(word, span)));
            }
            self.pos = start;
        }
        self.arg_value()
    }

    fn expr(&mut self) -> Result<Expr, QueryError> {
        let first = self.term()?;
        let mut rest = Vec::new();
        loop {
            self.skip_space();
            let op = match self.peek() {
                Some('+') => BinOp::Add,
                Some('-') => BinOp::Sub,
                _ => return Ok(chain(first, rest)),
            };
            self.pos += 1;
            rest.push((op, self.term()?));
        }
    }

    fn term(&mut self) -> Result<Expr, QueryError> {
        let first = self.factor()?;
        let mut rest = Vec::new();
        loop {
            self.skip_space();
            let op = match self.peek() {
                Some('*') => BinOp::Mul,
                Some('/') if !self.rest().starts_with("//") => BinOp::Div,
                Some('%') => BinOp::Rem,
                _ => return Ok(chain(first, rest)),
            };
            self.pos += 1;
            rest.push((op, self.factor()?));
        }
    }

    fn factor(&mut self) -> Result<Expr, QueryError> {
        self.skip_space();
        let start = self.pos;
        match self.peek() {
            Some('-') => self.nested(start, |p| {
                p.pos += 1;
                let inner = p.factor()?;
                let span = Span::new(start, inner.span().end);
                Ok(Expr::Neg(Box::new(inner), span))
            }),
            Some('(') => self.nested(start, |p| {
                p.pos += 1;
                let inner = p.expr()?;
                p.expect(')', "')' to close the '('")?;
                Ok(inner)
            }),
            Some('"') => {
                let (s, span) = self.quoted()?;
                Ok(Expr::Str(s, span))
            }
            Some(c) if c.is_ascii_digit() => {
                let rest = self.rest();
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
                    .unwrap_or(rest.len());
                let text = rest[..end].to_string();
                self.pos += end;
                let span = Span::new(start, self.pos);
                match text.parse::<f64>() {
                    Ok(n) => Ok(Expr::Number(n, span)),
                    // Durations and other words that start with a digit (`5m`, `1h`).
                    Err(_) => Ok(Expr::Field(text, span)),
                }
            }
            _ => match self.name_ahead().map(str::to_string) {
                Some(name) => {
                    if self.rest()[name.len()..].starts_with('(') {
                        return Ok(Expr::Call(self.call()?));
                    }
                    self.pos += name.len();
                    Ok(Expr::Field(name, Span::new(start, self.pos)))
                }
                None => Err(QueryError::new(
                    match self.peek() {
                        None => "expected a value, found the end of the query".to_string(),
                        Some(c) => format!("expected a value, found {c:?}"),
                    },
                    self.char_span(),
                )),
            },
        }
    }
}

/// The largest character boundary of `text` at or before `at`.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    (0..=at.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

/// The one item, or the items joined by `join` (a flat `and` or `or`).
fn one_or(mut items: Vec<Filter>, join: fn(Vec<Filter>) -> Filter) -> Filter {
    match items.len() {
        1 => items.remove(0),
        _ => join(items),
    }
}

/// `first`, or a chain of it and `rest`.
fn chain(first: Expr, rest: Vec<(BinOp, Expr)>) -> Expr {
    match rest.last() {
        None => first,
        Some((_, last)) => Expr::Chain {
            span: first.span().to(last.span()),
            first: Box::new(first),
            rest,
        },
    }
}

fn pattern_of_word(w: String) -> Pattern {
    if w.contains('*') {
        Pattern::Wildcard(w)
    } else {
        Pattern::Exact(w)
    }
}

/// The first stage of `q`, which must be a filter (for tests).
#[cfg(test)]
pub(crate) fn first_filter(q: &str) -> Filter {
    match parse(q).unwrap().stages.remove(0) {
        Stage::Filter(f) => f,
        other => panic!("not a filter: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use first_filter as filter;

    fn text(t: &str) -> Filter {
        Filter::Text {
            text: t.into(),
            wildcard: t.contains('*'),
            span: Span::default(),
        }
    }

    /// The filter without spans, for comparing shapes.
    fn shape(f: &Filter) -> String {
        match f {
            Filter::Text { text, wildcard, .. } => {
                format!("text({text}{})", if *wildcard { ",*" } else { "" })
            }
            Filter::Regex { regex, .. } => format!("re({}/{})", regex.pattern, regex.flags),
            Filter::Compare {
                field, op, value, ..
            } => format!("{field} {op:?} {value:?}"),
            Filter::In { field, values, .. } => format!("in({field}, {values:?})"),
            Filter::And(all) => format!(
                "and({})",
                all.iter().map(shape).collect::<Vec<_>>().join(", ")
            ),
            Filter::Or(any) => format!(
                "or({})",
                any.iter().map(shape).collect::<Vec<_>>().join(", ")
            ),
            Filter::Not(a) => format!("not({})", shape(a)),
        }
    }

    #[test]
    fn free_text_phrases_and_regexes() {
        assert_eq!(shape(&filter("error")), shape(&text("error")));
        assert_eq!(
            shape(&filter("\"connection reset\"")),
            "text(connection reset)"
        );
        assert_eq!(shape(&filter("/time ?out/i")), "re(time ?out/i)");
        assert_eq!(shape(&filter(r"/a\/b/")), "re(a/b/)");
        assert_eq!(shape(&filter("err*")), "text(err*,*)");
    }

    #[test]
    fn comparisons() {
        assert_eq!(shape(&filter("status>=500")), "status Ge Exact(\"500\")");
        assert_eq!(shape(&filter("status >= 500")), "status Ge Exact(\"500\")");
        assert_eq!(shape(&filter("method=GET")), "method Eq Exact(\"GET\")");
        assert_eq!(shape(&filter("host=web-*")), "host Eq Wildcard(\"web-*\")");
        assert_eq!(shape(&filter("host!=web-1")), "host Ne Exact(\"web-1\")");
        assert_eq!(shape(&filter("n<3")), "n Lt Exact(\"3\")");
        assert_eq!(shape(&filter("n<=3")), "n Le Exact(\"3\")");
        assert_eq!(shape(&filter("n>3")), "n Gt Exact(\"3\")");
        assert_eq!(
            shape(&filter("#type=accesslog")),
            "#type Eq Exact(\"accesslog\")"
        );
        assert_eq!(shape(&filter("msg=\"a b\"")), "msg Eq Exact(\"a b\")");
        assert_eq!(
            shape(&filter(r"url=/\/api\/v\d+/")),
            "url Eq Regex(RegexLit { pattern: \"/api/v\\\\d+\", flags: \"\" })"
        );
        assert_eq!(shape(&filter("@timestamp>5")), "@timestamp Gt Exact(\"5\")");
    }

    #[test]
    fn boolean_structure_and_precedence() {
        assert_eq!(shape(&filter("a b")), "and(text(a), text(b))");
        assert_eq!(
            shape(&filter("a and b or c")),
            "or(and(text(a), text(b)), text(c))"
        );
        assert_eq!(
            shape(&filter("a AND (b OR c)")),
            "and(text(a), or(text(b), text(c)))"
        );
        assert_eq!(shape(&filter("not a b")), "and(not(text(a)), text(b))");
        assert_eq!(shape(&filter("!a")), "not(text(a))");
        assert_eq!(
            shape(&filter("in(method, values=[GET, \"HEAD\", P*])")),
            "in(method, [Exact(\"GET\"), Exact(\"HEAD\"), Wildcard(\"P*\")])"
        );
    }

    #[test]
    fn pipelines_calls_and_assignments() {
        let q = parse("error | groupBy([host, method], function=[count(), avg(latency)], limit=10) | x := a * (b + 2) - 1 // comment").unwrap();
        assert_eq!(q.stages.len(), 3);
        let Stage::Call(c) = &q.stages[1] else {
            panic!()
        };
        assert_eq!(c.name, "groupBy");
        assert_eq!(c.args.len(), 3);
        assert_eq!(c.args[1].name.as_deref(), Some("function"));
        assert!(matches!(&c.args[0].value, ArgValue::List(items, _) if items.len() == 2));
        let Stage::Assign { field, expr, .. } = &q.stages[2] else {
            panic!()
        };
        assert_eq!(field, "x");
        assert!(
            matches!(expr, Expr::Chain { rest, .. } if rest.len() == 1 && rest[0].0 == BinOp::Sub)
        );
        assert_eq!(parse("").unwrap().stages.len(), 0);
        let q = parse("timechart(span=5m, function=count())").unwrap();
        let Stage::Call(c) = &q.stages[0] else {
            panic!()
        };
        assert!(matches!(&c.args[0].value, ArgValue::Expr(Expr::Field(w, _)) if w == "5m"));
    }

    #[test]
    fn long_chains_parse_flat_without_nesting() {
        let words = "a ".repeat(2_000);
        assert!(matches!(filter(&words), Filter::And(all) if all.len() == 2_000));
        let ors = vec!["x"; 2_000].join(" or ");
        assert!(matches!(filter(&ors), Filter::Or(any) if any.len() == 2_000));
        let sum = format!("n := 1{}", "+1".repeat(20_000));
        let Stage::Assign { expr, .. } = &parse(&sum).unwrap().stages[0] else {
            panic!()
        };
        assert!(matches!(expr, Expr::Chain { rest, .. } if rest.len() == 20_000));
    }

    #[test]
    fn nesting_past_the_limit_is_an_error_at_the_level_too_deep() {
        let at_limit = format!("{}a{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        assert!(parse(&at_limit).is_ok());
        for (q, at) in [
            (
                format!("{}a{}", "(".repeat(1_500), ")".repeat(1_500)),
                MAX_NESTING,
            ),
            (format!("{}a", "!".repeat(60_000)), MAX_NESTING),
            (format!("{}a", "not ".repeat(15_000)), 4 * MAX_NESTING),
            (format!("x := {}1", "-".repeat(60_000)), 5 + MAX_NESTING),
            (
                format!("eval(x = {}1{})", "(".repeat(30_000), ")".repeat(30_000)),
                9 + MAX_NESTING - 1,
            ),
            (
                format!("x := {}1", "abs(".repeat(1_000)),
                5 + 4 * MAX_NESTING,
            ),
            (
                format!("in(f, values={}a)", "[".repeat(1_000)),
                13 + MAX_NESTING - 1,
            ),
        ] {
            let e = parse(&q).unwrap_err();
            assert!(e.message.contains("nests more than"), "{e}");
            assert_eq!(e.span.start, at, "{e}");
        }
    }

    #[test]
    fn a_text_over_the_size_limit_is_refused_unparsed() {
        let e = parse(&"a ".repeat(MAX_QUERY_BYTES)).unwrap_err();
        assert!(e.message.contains("at most 65536 bytes"), "{e}");
        assert!(parse(&"é".repeat(MAX_QUERY_BYTES)).is_err());
    }

    #[test]
    fn errors_say_where() {
        let q = "status>=500 | count(";
        let e = parse(q).unwrap_err();
        assert_eq!(e.line_column(q), (1, 21));
        let q = "a\n  | b=\"open";
        let e = parse(q).unwrap_err();
        assert_eq!(e.line_column(q), (2, 7));
        assert!(e.message.contains("never closed"), "{e}");
        let rendered = e.render(q);
        assert!(rendered.contains("line 2, column 7"), "{rendered}");
        assert!(rendered.contains("  | b=\"open\n        ^"), "{rendered}");
        let e = parse("a | /x/q").unwrap_err();
        assert!(e.message.contains("unknown regex flag"), "{e}");
        assert!(parse("a = ")
            .unwrap_err()
            .message
            .contains("expected a value"));
        assert!(parse("(a").unwrap_err().message.contains("')'"));
        assert!(parse("a | ").is_err());
        assert!(parse("a*b=c").unwrap_err().message.contains("wildcard"));
        assert!(parse("in(x)").unwrap_err().message.contains("values"));
    }
}
