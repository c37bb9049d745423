//! The operators: a query compiles into stages that transform events one at a time (filters,
//! assignments, extraction, renaming) up to its first *collecting* stage (an aggregate, sort,
//! head, tail, table), whose state is mergeable: each thread (and later each live window or
//! machine) fills its own, and the states are merged before the rest of the query runs over the
//! collected rows. Rows are events with only fields, so every stage works on both.

use std::collections::{BTreeMap, HashMap};

use regex::Regex;

use eddy_event::{Event, Parser, Value};
use eddy_store::Parts;

use crate::blockwise;
use crate::expr;
use crate::fields;
use crate::filter::{self, Compiled};
use crate::format::{self, render, FormatPiece};
use crate::sketch::{Distinct, Quantiles};
use crate::syntax::{Arg, ArgValue, Call, Expr, Query, QueryError, Stage, MAX_NESTING};

/// Rows returned when the query does not say (events, `sort`, `table`).
pub const DEFAULT_LIMIT: usize = 200;
/// Groups `groupBy` keeps unless told.
pub const DEFAULT_GROUP_LIMIT: usize = 20_000;
/// The most groups any aggregate may keep (its memory bound).
pub const MAX_GROUPS: usize = 1_000_000;
/// The most rows `sort`, `head`, `tail` and `table` may keep (and the most events a request's
/// `limit` may ask for).
pub const MAX_ROWS: usize = 100_000;
/// The memory budget of the rows a query keeps and answers with, in bytes (as
/// [`approx_event_bytes`] counts them): 32 MiB. Past it the rows are cut, in their order, with
/// a warning, so that `head(100000)` of large events cannot take the server's memory.
pub const MAX_ANSWER_BYTES: usize = 32 << 20;

/// Every function name a stage may use.
pub const STAGE_FUNCTIONS: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "stats",
    "percentile",
    "countDistinct",
    "groupBy",
    "timechart",
    "bucket",
    "top",
    "sort",
    "head",
    "tail",
    "select",
    "table",
    "rename",
    "drop",
    "eval",
    "regex",
    "parseJson",
    "kvParse",
    "format",
    "histogram",
    "boxplot",
];

/// The error for an unknown function, suggesting the nearest known name.
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

/// A per-event stage.
#[derive(Debug, Clone)]
pub enum Step {
    /// Keep matching events.
    Filter(Compiled),
    /// Set a field from an expression.
    Assign(String, Expr),
    /// Extract named groups from a field; drop events that do not match.
    Extract {
        /// The field read (`@rawstring` by default).
        field: String,
        /// The regex with named groups.
        regex: Regex,
    },
    /// Parse a field's text (JSON or key=value) into fields.
    Parse {
        /// The field read (`@rawstring` by default).
        field: String,
        /// The parser.
        parser: Parser,
        /// Put before each name found.
        prefix: String,
        /// Replace fields the event already has.
        overwrite: bool,
    },
    /// Set a field to a printf-style format of fields.
    Format {
        /// The format, cut into pieces.
        format: Vec<FormatPiece>,
        /// The fields, one per placeholder.
        fields: Vec<String>,
        /// The field set.
        into: String,
    },
    /// Rename fields.
    Rename(Vec<(String, String)>),
    /// Remove fields.
    Drop(Vec<String>),
    /// Keep only these fields.
    Select(Vec<String>),
}

impl Step {
    /// The columns of rows after this step, given those before.
    pub fn columns_after(mut columns: Vec<String>, step: &Step) -> Vec<String> {
        let add = |columns: &mut Vec<String>, name: &str| {
            if !columns.iter().any(|c| c == name) {
                columns.push(name.to_string());
            }
        };
        match step {
            Step::Filter(_) | Step::Parse { .. } => {}
            Step::Assign(name, _) | Step::Format { into: name, .. } => add(&mut columns, name),
            Step::Extract { regex, .. } => {
                for name in regex.capture_names().flatten() {
                    add(&mut columns, name);
                }
            }
            Step::Rename(pairs) => {
                for (from, to) in pairs {
                    for c in columns.iter_mut().filter(|c| *c == from) {
                        c.clone_from(to);
                    }
                }
            }
            Step::Drop(names) => columns.retain(|c| !names.contains(c)),
            Step::Select(names) => columns.clone_from(names),
        }
        columns
    }

    /// Applies the step; `false` drops the event.
    pub fn apply(&self, e: &mut Event) -> bool {
        match self {
            Step::Filter(f) => f.matches(e),
            Step::Assign(field, x) => {
                if let Some(v) = expr::eval(x, e) {
                    fields::set(e, field, v);
                }
                true
            }
            Step::Extract { field, regex } => {
                // The groups are read while the text is borrowed, then set.
                let found: Vec<(&str, Value)> = {
                    let Some(text) = fields::text(e, field) else {
                        return false;
                    };
                    let Some(caps) = regex.captures(&text) else {
                        return false;
                    };
                    regex
                        .capture_names()
                        .flatten()
                        .filter_map(|n| caps.name(n).map(|m| (n, Value::infer(m.as_str()))))
                        .collect()
                };
                for (name, value) in found {
                    fields::set(e, name, value);
                }
                true
            }
            Step::Parse {
                field,
                parser,
                prefix,
                overwrite,
            } => {
                // Text that does not parse leaves the event as it was.
                let found = match fields::text(e, field) {
                    Some(text) => parser.fields_of(&text, e.ingest_timestamp).ok(),
                    None => None,
                };
                for (name, value) in found.into_iter().flatten() {
                    let name = format!("{prefix}{name}");
                    if *overwrite || !e.fields.contains_key(&name) {
                        e.fields.insert(name, value);
                    }
                }
                true
            }
            Step::Format {
                format,
                fields: names,
                into,
            } => {
                let values: Vec<Option<Value>> = names
                    .iter()
                    .map(|n| fields::get(e, n).map(|v| v.into_owned()))
                    .collect();
                if let Some(text) = render(format, &values) {
                    fields::set(e, into, Value::Str(text));
                }
                true
            }
            Step::Rename(pairs) => {
                for (from, to) in pairs {
                    let taken = e.fields.remove(from);
                    if let Some(v) = taken.or_else(|| fields::get(e, from).map(|v| v.into_owned()))
                    {
                        fields::set(e, to, v);
                    }
                }
                true
            }
            Step::Drop(names) => {
                for n in names {
                    e.fields.remove(n);
                }
                true
            }
            Step::Select(names) => {
                let kept = names
                    .iter()
                    .filter_map(|n| fields::get(e, n).map(|v| (n.clone(), v.into_owned())))
                    .collect();
                e.fields = kept;
                e.raw = None;
                e.tags.clear();
                true
            }
        }
    }
}

/// An aggregate function.
#[derive(Debug, Clone, PartialEq)]
pub enum Agg {
    /// `count()`, `count(field)`, `count(field, distinct=true)`.
    Count(Option<String>),
    /// `countDistinct(field)`.
    Distinct(String),
    /// `sum(field)`.
    Sum(String),
    /// `avg(field)`.
    Avg(String),
    /// `min(field)`.
    Min(String),
    /// `max(field)`.
    Max(String),
    /// `percentile(field, percentiles=[...])`.
    Percentile(String, Vec<f64>),
    /// `boxplot(field)`: quartiles, whiskers, outliers and range.
    Boxplot(String),
}

/// The columns of `boxplot()`, after its prefix.
const BOXPLOT_COLUMNS: [&str; 8] = [
    "_q1",
    "_median",
    "_q3",
    "_low_whisker",
    "_high_whisker",
    "_outliers",
    "_min",
    "_max",
];

/// An aggregate and the name(s) of its output.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    agg: Agg,
    /// `as=`, else the function's default (`_count`, `_sum`, ...).
    name: Option<String>,
}

impl Output {
    fn columns(&self) -> Vec<String> {
        let prefix = self.name.clone().unwrap_or_default();
        match &self.agg {
            Agg::Percentile(_, ps) => {
                return ps
                    .iter()
                    .map(|p| format!("{prefix}_{}", fmt_num(*p)))
                    .collect()
            }
            Agg::Boxplot(_) => {
                return BOXPLOT_COLUMNS
                    .iter()
                    .map(|c| format!("{prefix}{c}"))
                    .collect()
            }
            _ => {}
        }
        vec![self.name.clone().unwrap_or_else(|| {
            match &self.agg {
                Agg::Count(_) | Agg::Distinct(_) => "_count",
                Agg::Sum(_) => "_sum",
                Agg::Avg(_) => "_avg",
                Agg::Min(_) => "_min",
                Agg::Max(_) => "_max",
                Agg::Percentile(..) | Agg::Boxplot(_) => "",
            }
            .to_string()
        })]
    }
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{}", x as i64)
    } else {
        x.to_string()
    }
}

/// The mergeable state of one aggregate.
#[derive(Debug, Clone)]
enum AggState {
    Count(u64),
    Distinct(Box<Distinct>),
    Sum { sum: f64, n: u64 },
    Min(Option<f64>),
    Max(Option<f64>),
    Quantiles(Box<Quantiles>),
}

impl Agg {
    /// The field it reads, if any.
    fn field(&self) -> Option<&str> {
        match self {
            Agg::Count(f) => f.as_deref(),
            Agg::Distinct(f)
            | Agg::Sum(f)
            | Agg::Avg(f)
            | Agg::Min(f)
            | Agg::Max(f)
            | Agg::Percentile(f, _)
            | Agg::Boxplot(f) => Some(f),
        }
    }

    fn state(&self) -> AggState {
        match self {
            Agg::Count(_) => AggState::Count(0),
            Agg::Distinct(_) => AggState::Distinct(Box::default()),
            Agg::Sum(_) | Agg::Avg(_) => AggState::Sum { sum: 0.0, n: 0 },
            Agg::Min(_) => AggState::Min(None),
            Agg::Max(_) => AggState::Max(None),
            Agg::Percentile(..) | Agg::Boxplot(_) => AggState::Quantiles(Box::default()),
        }
    }

    fn add(&self, s: &mut AggState, e: &Event) {
        let number = |f: &str| fields::get(e, f).and_then(|v| v.as_f64());
        match (self, s) {
            (Agg::Count(None), AggState::Count(n)) => *n += 1,
            (Agg::Count(Some(f)), AggState::Count(n)) => {
                *n += u64::from(fields::get(e, f).is_some())
            }
            (Agg::Distinct(f), AggState::Distinct(d)) => {
                if let Some(t) = fields::text(e, f) {
                    d.add(&t)
                }
            }
            (Agg::Sum(f) | Agg::Avg(f), AggState::Sum { sum, n }) => {
                if let Some(x) = number(f) {
                    *sum += x;
                    *n += 1;
                }
            }
            (Agg::Min(f), AggState::Min(m)) => *m = extreme(*m, number(f), f64::min),
            (Agg::Max(f), AggState::Max(m)) => *m = extreme(*m, number(f), f64::max),
            (Agg::Percentile(f, _) | Agg::Boxplot(f), AggState::Quantiles(q)) => {
                if let Some(x) = number(f) {
                    q.add(x)
                }
            }
            _ => {}
        }
    }

    fn values(&self, s: &AggState) -> Vec<Value> {
        match (self, s) {
            (_, AggState::Count(n)) => vec![Value::Int(*n as i64)],
            (_, AggState::Distinct(d)) => vec![Value::Int(d.estimate() as i64)],
            (Agg::Avg(_), AggState::Sum { sum, n }) => vec![if *n == 0 {
                Value::Null
            } else {
                expr::number(sum / *n as f64)
            }],
            (_, AggState::Sum { sum, .. }) => vec![expr::number(*sum)],
            (_, AggState::Min(m) | AggState::Max(m)) => vec![m.map_or(Value::Null, expr::number)],
            (Agg::Percentile(_, ps), AggState::Quantiles(q)) => ps
                .iter()
                .map(|p| q.percentile(*p).map_or(Value::Null, expr::number))
                .collect(),
            (Agg::Boxplot(_), AggState::Quantiles(q)) => match q.boxplot() {
                Some(b) => [
                    b.q1,
                    b.median,
                    b.q3,
                    b.low_whisker,
                    b.high_whisker,
                    b.outliers as f64,
                    b.min,
                    b.max,
                ]
                .into_iter()
                .map(expr::number)
                .collect(),
                None => vec![Value::Null; BOXPLOT_COLUMNS.len()],
            },
            (_, AggState::Quantiles(_)) => vec![],
        }
    }
}

impl AggState {
    fn approx_bytes(&self) -> usize {
        16 + match self {
            AggState::Distinct(d) => match d.as_ref() {
                Distinct::Exact(set) => set.len() * 16,
                Distinct::Sketch(registers) => registers.len(),
            },
            AggState::Quantiles(q) => q.approx_bytes(),
            _ => 0,
        }
    }

    fn merge(&mut self, other: AggState) {
        match (self, other) {
            (AggState::Count(a), AggState::Count(b)) => *a += b,
            (AggState::Distinct(a), AggState::Distinct(b)) => a.merge(&b),
            (AggState::Sum { sum, n }, AggState::Sum { sum: s2, n: n2 }) => {
                *sum += s2;
                *n += n2;
            }
            (AggState::Min(a), AggState::Min(b)) => *a = extreme(*a, b, f64::min),
            (AggState::Max(a), AggState::Max(b)) => *a = extreme(*a, b, f64::max),
            (AggState::Quantiles(a), AggState::Quantiles(b)) => a.merge(&b),
            _ => {}
        }
    }
}

/// The smaller or larger (by `pick`) of two values either of which may be missing.
fn extreme(a: Option<f64>, b: Option<f64>, pick: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(pick(x, y)),
        (x, y) => x.or(y),
    }
}

/// A hashable group key part.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Int(i64),
    Text(String),
}

impl Key {
    fn approx_bytes(&self) -> usize {
        match self {
            Key::Int(_) => 16,
            Key::Text(t) => 24 + t.len(),
        }
    }

    fn of(v: &Value) -> Key {
        match v {
            Value::Int(i) => Key::Int(*i),
            other => Key::Text(other.to_text()),
        }
    }

    fn value(&self) -> Value {
        match self {
            Key::Int(i) => Value::Int(*i),
            Key::Text(t) => Value::Str(t.clone()),
        }
    }
}

/// How events are grouped before aggregating.
#[derive(Debug, Clone, PartialEq)]
pub enum Grouping {
    /// One group.
    All,
    /// By the values of fields (events without one of them are left out).
    Fields(Vec<String>),
    /// By time bucket (`_bucket`, ns of its start), and by a field's value if given; `pivot`
    /// turns the field's values into columns (timechart).
    Time {
        /// Bucket width, ns.
        span: i64,
        /// A series field.
        series: Option<String>,
        /// One row per bucket with a column per series value.
        pivot: bool,
    },
}

impl Grouping {
    /// The group of `e`; `None` if it lacks a field grouped by.
    fn key(&self, e: &Event) -> Option<Vec<Key>> {
        match self {
            Grouping::All => Some(Vec::new()),
            Grouping::Fields(fs) => fs
                .iter()
                .map(|f| fields::get(e, f).map(|v| Key::of(&v)))
                .collect(),
            Grouping::Time { span, series, .. } => {
                let bucket = e.timestamp.div_euclid(*span) * span;
                let mut key = vec![Key::Int(bucket)];
                if let Some(s) = series {
                    key.push(fields::get(e, s).map_or(Key::Text(String::new()), |v| Key::of(&v)));
                }
                Some(key)
            }
        }
    }
}

/// How rows are ordered for `sort`, `head`, `tail` and the default event list.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    field: String,
    descending: bool,
}

/// A collecting stage.
#[derive(Debug, Clone, PartialEq)]
pub enum Collect {
    /// Aggregates per group.
    Aggregate {
        /// The grouping.
        grouping: Grouping,
        /// The aggregates, in output order.
        outputs: Vec<Output>,
        /// Most groups kept.
        limit: usize,
    },
    /// `histogram(field, buckets=n)`: a row per bucket of equal width from the smallest value
    /// to the largest (or `min=`, `max=`).
    Histogram {
        /// The field.
        field: String,
        /// Buckets.
        buckets: usize,
        /// The lower end, if given.
        min: Option<f64>,
        /// The upper end, if given.
        max: Option<f64>,
    },
    /// The first `limit` rows in an order.
    Rows {
        /// The order (`None`: as the rows came, for stages after a collecting one).
        order: Option<Order>,
        /// Rows kept.
        limit: usize,
        /// Keep only these fields afterwards (`table`).
        select: Option<Vec<String>>,
    },
}

/// A collecting stage's state, mergeable.
#[derive(Debug, Clone)]
pub struct State(Collected);

#[derive(Debug, Clone)]
enum Collected {
    /// Per group, per aggregate.
    Groups {
        /// The groups.
        groups: HashMap<Vec<Key>, Vec<AggState>>,
        /// Whether a group was refused for the limit.
        overflowed: bool,
    },
    /// The values of a histogram.
    Values(Box<Quantiles>),
    /// Rows kept so far.
    Rows(KeptRows),
}

/// The rows a stage keeps, with their size, to hold them to [`MAX_ANSWER_BYTES`].
#[derive(Debug, Clone, Default)]
struct KeptRows {
    rows: Vec<Event>,
    /// Their [`approx_event_bytes`], summed.
    bytes: usize,
    /// Whether rows within the limit were dropped for the memory budget.
    cut: bool,
}

impl KeptRows {
    fn push(&mut self, e: Event) {
        self.bytes += approx_event_bytes(&e);
        self.rows.push(e);
    }

    /// Whether enough has come in to sort and trim (amortised: twice what is kept).
    fn due(&self, limit: usize) -> bool {
        self.rows.len() >= limit.saturating_mul(2).max(64)
            || self.bytes >= MAX_ANSWER_BYTES.saturating_mul(2)
    }

    /// Sorts, then keeps the first `limit` rows that fit the memory budget together.
    fn trim(&mut self, order: &Option<Order>, limit: usize) {
        sort_rows(&mut self.rows, order);
        self.rows.truncate(limit);
        let mut bytes = 0;
        let fit = self
            .rows
            .iter()
            .take_while(|r| {
                bytes += approx_event_bytes(r);
                bytes <= MAX_ANSWER_BYTES
            })
            .count();
        if fit < self.rows.len() {
            self.rows.truncate(fit);
            self.cut = true;
        }
        self.bytes = self.rows.iter().map(approx_event_bytes).sum();
    }
}

impl State {
    /// Roughly the bytes the state holds (for bounding live queries' memory).
    pub fn approx_bytes(&self) -> usize {
        match &self.0 {
            Collected::Groups { groups, .. } => groups
                .iter()
                .map(|(key, states)| {
                    64 + key.iter().map(Key::approx_bytes).sum::<usize>()
                        + states.iter().map(AggState::approx_bytes).sum::<usize>()
                })
                .sum(),
            Collected::Values(q) => q.approx_bytes(),
            Collected::Rows(kept) => kept.bytes,
        }
    }
}

/// Roughly the bytes an event holds.
pub fn approx_event_bytes(e: &Event) -> usize {
    let text = |t: &str| 24 + t.len();
    let value = |v: &Value| match v {
        Value::Str(t) => text(t),
        _ => 24,
    };
    96 + e.raw.as_deref().map_or(0, text)
        + e.tags
            .iter()
            .map(|(k, v)| 32 + text(k) + text(v))
            .sum::<usize>()
        + e.fields
            .iter()
            .map(|(k, v)| 32 + text(k) + value(v))
            .sum::<usize>()
}

impl Collect {
    /// An empty state.
    pub fn state(&self) -> State {
        State(match self {
            Collect::Aggregate { .. } => Collected::Groups {
                groups: HashMap::new(),
                overflowed: false,
            },
            Collect::Histogram { .. } => Collected::Values(Box::default()),
            Collect::Rows { .. } => Collected::Rows(KeptRows::default()),
        })
    }

    /// Adds an event.
    pub fn add(&self, state: &mut State, e: Event) {
        match (self, &mut state.0) {
            (
                Collect::Aggregate {
                    grouping,
                    outputs,
                    limit,
                },
                Collected::Groups { groups, overflowed },
            ) => {
                let Some(key) = grouping.key(&e) else {
                    return;
                };
                let len = groups.len();
                let states = match groups.get_mut(&key) {
                    Some(s) => s,
                    None if len >= *limit => {
                        *overflowed = true;
                        return;
                    }
                    None => groups
                        .entry(key)
                        .or_insert_with(|| outputs.iter().map(|o| o.agg.state()).collect()),
                };
                for (o, s) in outputs.iter().zip(states) {
                    o.agg.add(s, &e);
                }
            }
            (Collect::Histogram { field, .. }, Collected::Values(q)) => {
                if let Some(x) = fields::get(&e, field).and_then(|v| v.as_f64()) {
                    q.add(x);
                }
            }
            (Collect::Rows { order, limit, .. }, Collected::Rows(kept)) => {
                kept.push(e);
                if kept.due(*limit) {
                    kept.trim(order, *limit);
                }
            }
            _ => {}
        }
    }

    /// Whether the stage only counts events (one group, `count()`s without a field), so that
    /// [`Collect::add_count`] can stand for adding each.
    pub fn counts_only(&self) -> bool {
        matches!(self, Collect::Aggregate { grouping: Grouping::All, outputs, .. }
            if outputs.iter().all(|o| o.agg == Agg::Count(None)))
    }

    /// Adds `n` events at once to a state of a stage that [`Collect::counts_only`].
    pub fn add_count(&self, state: &mut State, n: u64) {
        if let (Collect::Aggregate { outputs, .. }, Collected::Groups { groups, .. }) =
            (self, &mut state.0)
        {
            let states = groups
                .entry(Vec::new())
                .or_insert_with(|| outputs.iter().map(|o| o.agg.state()).collect());
            for s in states {
                if let AggState::Count(c) = s {
                    *c += n;
                }
            }
        }
    }

    /// Merges `other` into `state`.
    pub fn merge(&self, state: &mut State, other: State) {
        match (self, &mut state.0, other.0) {
            (
                Collect::Aggregate { limit, .. },
                Collected::Groups { groups, overflowed },
                Collected::Groups {
                    groups: theirs,
                    overflowed: o2,
                },
            ) => {
                *overflowed |= o2;
                for (k, v) in theirs {
                    let len = groups.len();
                    match groups.get_mut(&k) {
                        Some(mine) => {
                            for (a, b) in mine.iter_mut().zip(v) {
                                a.merge(b);
                            }
                        }
                        None if len >= *limit => *overflowed = true,
                        None => {
                            groups.insert(k, v);
                        }
                    }
                }
            }
            (Collect::Histogram { .. }, Collected::Values(q), Collected::Values(theirs)) => {
                q.merge(&theirs)
            }
            (
                Collect::Rows { order, limit, .. },
                Collected::Rows(kept),
                Collected::Rows(theirs),
            ) => {
                kept.rows.extend(theirs.rows);
                kept.bytes += theirs.bytes;
                kept.cut |= theirs.cut;
                kept.trim(order, *limit);
            }
            _ => {}
        }
    }

    /// The rows of a state, and a warning if it was cut by its limit.
    pub fn finish(&self, state: State) -> (Vec<Event>, Vec<String>, Option<String>) {
        match (self, state.0) {
            (
                Collect::Aggregate {
                    grouping,
                    outputs,
                    limit,
                },
                Collected::Groups { groups, overflowed },
            ) => {
                let warning = overflowed.then(|| {
                    format!(
                        "more than {limit} groups: the result holds the first {limit} only; raise limit= (up to {MAX_GROUPS}) or group by fewer values"
                    )
                });
                let agg_columns: Vec<String> = outputs.iter().flat_map(Output::columns).collect();
                let mut entries: Vec<(Vec<Key>, Vec<AggState>)> = groups.into_iter().collect();
                if entries.is_empty() && *grouping == Grouping::All {
                    entries.push((Vec::new(), outputs.iter().map(|o| o.agg.state()).collect()));
                }
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                let aggregate_values = |states: &[AggState]| -> Vec<Value> {
                    outputs
                        .iter()
                        .zip(states)
                        .flat_map(|(o, s)| o.agg.values(s))
                        .collect()
                };
                let pivot = matches!(
                    grouping,
                    Grouping::Time {
                        series: Some(_),
                        pivot: true,
                        ..
                    }
                );
                if !pivot {
                    let key_columns: Vec<String> = match grouping {
                        Grouping::All => Vec::new(),
                        Grouping::Fields(fs) => fs.clone(),
                        Grouping::Time { series, .. } => std::iter::once("_bucket".to_string())
                            .chain(series.clone())
                            .collect(),
                    };
                    let rows = entries
                        .iter()
                        .map(|(k, states)| {
                            fields::row(
                                key_columns
                                    .iter()
                                    .cloned()
                                    .zip(k.iter().map(Key::value))
                                    .chain(
                                        agg_columns.iter().cloned().zip(aggregate_values(states)),
                                    ),
                            )
                        })
                        .collect();
                    return (rows, [key_columns, agg_columns].concat(), warning);
                }
                {
                    // One row per bucket; a column per series value (and aggregate).
                    let mut by_bucket: BTreeMap<Key, Vec<(String, Value)>> = BTreeMap::new();
                    let mut series_columns: Vec<String> = Vec::new();
                    for (k, states) in &entries {
                        let (Some(bucket), Some(s)) = (k.first(), k.get(1)) else {
                            continue;
                        };
                        let label = s.value().to_text();
                        let row = by_bucket.entry(bucket.clone()).or_default();
                        for (col, v) in agg_columns.iter().zip(aggregate_values(states)) {
                            let name = if agg_columns.len() == 1 {
                                label.clone()
                            } else {
                                format!("{label}{col}")
                            };
                            if !series_columns.contains(&name) {
                                series_columns.push(name.clone());
                            }
                            row.push((name, v));
                        }
                    }
                    series_columns.sort();
                    let rows = by_bucket
                        .into_iter()
                        .map(|(b, values)| {
                            fields::row(
                                std::iter::once(("_bucket".to_string(), b.value())).chain(values),
                            )
                        })
                        .collect();
                    let columns = std::iter::once("_bucket".to_string())
                        .chain(series_columns)
                        .collect();
                    (rows, columns, warning)
                }
            }
            (
                Collect::Histogram {
                    buckets, min, max, ..
                },
                Collected::Values(q),
            ) => (
                histogram_rows(&q, *buckets, *min, *max),
                ["_lower", "_upper", "_count"].map(String::from).to_vec(),
                None,
            ),
            (
                Collect::Rows {
                    order,
                    limit,
                    select,
                },
                Collected::Rows(mut kept),
            ) => {
                kept.trim(order, *limit);
                let warning = kept.cut.then(|| {
                    format!(
                        "the rows were cut at {} to keep the answer within its memory budget of {} MiB; ask for fewer rows, or fewer fields with select() or table()",
                        kept.rows.len(),
                        MAX_ANSWER_BYTES >> 20
                    )
                });
                let mut rows = kept.rows;
                if let Some(names) = select {
                    let step = Step::Select(names.clone());
                    for r in &mut rows {
                        step.apply(r);
                    }
                    return (rows, names.clone(), warning);
                }
                (rows, Vec::new(), warning)
            }
            _ => (Vec::new(), Vec::new(), None),
        }
    }
}

/// The rows of a histogram: `buckets` of equal width over `[min, max]` (the values' own range
/// where not given); values outside it are left out. Values are binned by the sketch, within
/// 1 % of their value.
fn histogram_rows(q: &Quantiles, buckets: usize, min: Option<f64>, max: Option<f64>) -> Vec<Event> {
    let Some((low, high)) = q.range() else {
        return Vec::new();
    };
    let (low, high) = (min.unwrap_or(low), max.unwrap_or(high));
    let width = match (high - low) / buckets as f64 {
        w if w > 0.0 && w.is_finite() => w,
        // One value: one bucket holds it.
        _ => 1.0,
    };
    let mut counts = vec![0u64; buckets];
    for (value, n) in q.buckets() {
        if value < low || value > high {
            continue;
        }
        let i = (((value - low) / width) as usize).min(buckets - 1);
        counts[i] += n;
    }
    counts
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            fields::row([
                ("_lower".to_string(), expr::number(low + i as f64 * width)),
                (
                    "_upper".to_string(),
                    expr::number(low + (i + 1) as f64 * width),
                ),
                ("_count".to_string(), Value::Int(n as i64)),
            ])
        })
        .collect()
}

fn sort_rows(rows: &mut Vec<Event>, order: &Option<Order>) {
    let Some(order) = order else {
        return;
    };
    let key = |e: &Event| -> (Option<f64>, String) {
        match fields::get(e, &order.field) {
            Some(v) => (v.as_f64(), v.to_text()),
            None => (None, String::new()),
        }
    };
    // Each row's key is made once, not at every comparison.
    let mut keyed: Vec<_> = std::mem::take(rows)
        .into_iter()
        .map(|e| (key(&e), e))
        .collect();
    keyed.sort_by(|(ka, a), (kb, b)| {
        // Numbers before text, missing last; ties by time then id, so results are stable.
        let ord = match (&ka.0, &kb.0) {
            (Some(x), Some(y)) => x.total_cmp(y),
            _ => ka.1.cmp(&kb.1),
        };
        let ord = if order.descending { ord.reverse() } else { ord };
        ord.then(b.timestamp.cmp(&a.timestamp))
            .then(a.id.cmp(&b.id))
    });
    rows.extend(keyed.into_iter().map(|(_, e)| e));
}

/// A compiled query: per-event steps up to a collecting stage, then the rest of the query
/// over the collected rows.
#[derive(Debug, Clone)]
pub struct Program {
    /// Per-event steps before the collecting stage.
    pub steps: Vec<Step>,
    /// The collecting stage (the default: the newest events).
    pub collect: Collect,
    /// Whether `collect` was written by the user (else the result is a list of events).
    pub explicit: bool,
    /// What runs on the collected rows.
    pub then: Option<Box<Program>>,
}

impl Program {
    /// The event as the per-event steps leave it, or `None` if they drop it. Leading filters
    /// read `e` in place: only an event that passes them is copied.
    pub fn process(&self, e: &Event) -> Option<Event> {
        let leading = self
            .steps
            .iter()
            .take_while(|s| matches!(s, Step::Filter(_)))
            .count();
        let passes = self.steps[..leading].iter().all(|s| match s {
            Step::Filter(f) => f.matches(e),
            _ => true,
        });
        if !passes {
            return None;
        }
        let mut e = e.clone();
        self.steps[leading..]
            .iter()
            .all(|s| s.apply(&mut e))
            .then_some(e)
    }

    /// Runs the per-event steps over `e` and adds it to `state` if it passes them all.
    pub fn feed(&self, state: &mut State, mut e: Event) {
        if self.steps.iter().all(|s| s.apply(&mut e)) {
            self.collect.add(state, e);
        }
    }

    /// The parts of events the program reads before collecting (what a block must build).
    pub fn parts(&self) -> Parts {
        let mut parts = Parts {
            raw: false,
            tags: false,
            fields: false,
        };
        for step in &self.steps {
            match step {
                Step::Filter(c) => c.note_reads(&mut parts),
                _ => return Parts::ALL,
            }
        }
        match &self.collect {
            Collect::Rows { .. } => return Parts::ALL,
            Collect::Histogram { field, .. } => fields::note_read(&mut parts, field),
            Collect::Aggregate {
                grouping, outputs, ..
            } => {
                match grouping {
                    Grouping::All => {}
                    Grouping::Fields(names) => {
                        names.iter().for_each(|n| fields::note_read(&mut parts, n))
                    }
                    Grouping::Time { series, .. } => {
                        series.iter().for_each(|n| fields::note_read(&mut parts, n))
                    }
                }
                for o in outputs {
                    if let Some(name) = o.agg.field() {
                        fields::note_read(&mut parts, name);
                    }
                }
            }
        }
        parts
    }

    /// Takes the conditions on text out of the leading filters: they can be decided for a
    /// whole block at once (see [`crate::blockwise`]). Returns them (if any) and the program
    /// without them.
    pub fn split_text_filter(&self) -> (Option<Compiled>, Program) {
        let mut text: Vec<Compiled> = Vec::new();
        let mut steps = Vec::new();
        let mut leading = true;
        for step in &self.steps {
            match step {
                Step::Filter(c) if leading => {
                    for part in c.conjuncts() {
                        if blockwise::text_only(part) {
                            text.push(part.clone());
                        } else {
                            steps.push(Step::Filter(part.clone()));
                        }
                    }
                }
                other => {
                    leading = false;
                    steps.push(other.clone());
                }
            }
        }
        let text = match text.len() {
            0 | 1 => text.pop(),
            _ => Some(Compiled::And(text)),
        };
        (
            text,
            Program {
                steps,
                ..self.clone()
            },
        )
    }
}

/// Compiles a parsed query; `limit` is the default number of events or rows returned.
pub fn compile(q: &Query, limit: usize) -> Result<Program, QueryError> {
    compile_stages(&q.stages, limit, 0)
}

/// `collected`: the collecting stages before these, whose rows they run over (keeping their
/// order unless they sort). Each one is a level of the program, so there are at most
/// [`MAX_NESTING`] of them.
fn compile_stages(stages: &[Stage], limit: usize, collected: usize) -> Result<Program, QueryError> {
    let after_collect = collected > 0;
    // Events come newest first; collected rows as they were collected.
    let by_time = |descending| {
        (!after_collect).then(|| Order {
            field: "@timestamp".into(),
            descending,
        })
    };
    let mut steps = Vec::new();
    for (i, stage) in stages.iter().enumerate() {
        let collect = match stage {
            Stage::Filter(f) => {
                steps.push(Step::Filter(filter::compile(f)?));
                continue;
            }
            Stage::Assign { field, expr, .. } => {
                expr::check(expr)?;
                steps.push(Step::Assign(field.clone(), expr.clone()));
                continue;
            }
            Stage::Call(c) => match compile_call(c, &mut steps, limit, &by_time)? {
                Some(_) if collected >= MAX_NESTING => {
                    return Err(QueryError::new(
                        format!("a query may have at most {MAX_NESTING} collecting stages (aggregates, sorts, head, tail, table)"),
                        c.span,
                    ))
                }
                Some(collect) => collect,
                None => continue,
            },
        };
        let rest = &stages[i + 1..];
        let mut then = match rest.is_empty() {
            true => None,
            false => Some(Box::new(compile_stages(rest, limit, collected + 1)?)),
        };
        if let Stage::Call(c) = stage {
            if c.name == "top" {
                // top = count per value, then the most frequent first.
                then = Some(Box::new(Program {
                    steps: Vec::new(),
                    collect: Collect::Rows {
                        order: Some(Order {
                            field: "_count".into(),
                            descending: true,
                        }),
                        limit: bounded_limit(c, 10, MAX_ROWS, "rows")?,
                        select: None,
                    },
                    explicit: true,
                    then,
                }));
            }
        }
        return Ok(Program {
            steps,
            collect,
            explicit: true,
            then,
        });
    }
    Ok(Program {
        steps,
        collect: Collect::Rows {
            order: by_time(true),
            limit,
            select: None,
        },
        explicit: false,
        then: None,
    })
}

/// Arguments of a call, by name or position.
struct Args<'a> {
    call: &'a Call,
}

impl<'a> Args<'a> {
    fn named(&self, name: &str) -> Option<&'a Arg> {
        self.call
            .args
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
    }

    /// The argument named `name`, or the `i`-th unnamed one.
    fn get(&self, name: &str, i: usize) -> Option<&'a Arg> {
        self.named(name)
            .or_else(|| self.call.args.iter().filter(|a| a.name.is_none()).nth(i))
    }

    fn check_names(&self, allowed: &[&str]) -> Result<(), QueryError> {
        for a in &self.call.args {
            if let Some(n) = &a.name {
                if !allowed.contains(&n.as_str()) {
                    return Err(QueryError::new(
                        format!("{}() has no parameter {n}", self.call.name),
                        a.span,
                    )
                    .hint(if allowed.is_empty() {
                        "it takes no named parameters".to_string()
                    } else {
                        format!("its parameters: {}", allowed.join(", "))
                    }));
                }
            }
        }
        Ok(())
    }
}

/// A field name written as a bare word or a quoted string.
fn field_name(v: &ArgValue) -> Result<String, QueryError> {
    match v {
        ArgValue::Expr(Expr::Field(f, _) | Expr::Str(f, _)) => Ok(f.clone()),
        other => Err(QueryError::new("expected a field name", other.span())),
    }
}

/// One field name or a list of them.
fn field_names(v: &ArgValue) -> Result<Vec<String>, QueryError> {
    match v {
        ArgValue::List(items, _) => items.iter().map(field_name).collect(),
        other => Ok(vec![field_name(other)?]),
    }
}

fn required_field(c: &Call, name: &str) -> Result<String, QueryError> {
    match (Args { call: c }).get(name, 0) {
        Some(a) => field_name(&a.value),
        None => Err(
            QueryError::new(format!("{}() needs a field", c.name), c.span)
                .hint(format!("for example: {}(latency)", c.name)),
        ),
    }
}

fn number_of(v: &ArgValue) -> Option<f64> {
    match v {
        ArgValue::Expr(Expr::Number(n, _)) => Some(*n),
        _ => None,
    }
}

fn int_arg(c: &Call, name: &str, default: usize) -> Result<usize, QueryError> {
    match (Args { call: c }).named(name) {
        None => Ok(default),
        Some(a) => match number_of(&a.value) {
            Some(n) if n >= 1.0 && n.fract() == 0.0 => Ok(n as usize),
            _ => Err(QueryError::new(
                format!("{name} must be a whole number of at least 1"),
                a.value.span(),
            )),
        },
    }
}

/// `limit=` (or `default`) within the memory bound `max` of the stage.
fn bounded_limit(c: &Call, default: usize, max: usize, what: &str) -> Result<usize, QueryError> {
    let n = int_arg(c, "limit", default)?;
    if n > max {
        return Err(QueryError::new(
            format!("limit may be at most {max} {what}"),
            c.span,
        ));
    }
    Ok(n)
}

/// Whether `name=true` is given.
fn flag_arg(c: &Call, name: &str) -> bool {
    (Args { call: c })
        .named(name)
        .is_some_and(|a| matches!(&a.value, ArgValue::Expr(Expr::Field(t, _)) if t == "true"))
}

fn text_arg(c: &Call, name: &str) -> Result<Option<String>, QueryError> {
    match (Args { call: c }).named(name) {
        None => Ok(None),
        Some(a) => field_name(&a.value).map(Some),
    }
}

fn span_arg(c: &Call, name: &str) -> Result<Option<i64>, QueryError> {
    let Some(a) = (Args { call: c }).named(name) else {
        return Ok(None);
    };
    let text = match &a.value {
        ArgValue::Expr(Expr::Field(t, _) | Expr::Str(t, _)) => t.clone(),
        other => {
            return Err(QueryError::new(
                "expected a span like 5m or 1h",
                other.span(),
            ))
        }
    };
    match eddy_event::units::parse_duration(&text) {
        Ok(d) if !d.is_zero() => Ok(Some(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))),
        _ => Err(QueryError::new(
            format!("{text:?} is not a span; write one like 30s, 5m or 1h"),
            a.value.span(),
        )),
    }
}

/// Compiles an aggregate call (`count()`, `avg(x)`, ...) into its output.
fn compile_agg(c: &Call) -> Result<Output, QueryError> {
    let args = Args { call: c };
    let name = text_arg(c, "as")?;
    let agg = match c.name.as_str() {
        "count" => {
            args.check_names(&["field", "distinct", "as"])?;
            let field = args
                .get("field", 0)
                .map(|a| field_name(&a.value))
                .transpose()?;
            let distinct = flag_arg(c, "distinct");
            match (field, distinct) {
                (Some(f), true) => Agg::Distinct(f),
                (None, true) => {
                    return Err(QueryError::new(
                        "count(distinct=true) needs a field",
                        c.span,
                    ))
                }
                (f, false) => Agg::Count(f),
            }
        }
        "countDistinct" => {
            args.check_names(&["field", "as"])?;
            Agg::Distinct(required_field(c, "field")?)
        }
        "sum" | "avg" | "min" | "max" => {
            args.check_names(&["field", "as"])?;
            let f = required_field(c, "field")?;
            match c.name.as_str() {
                "sum" => Agg::Sum(f),
                "avg" => Agg::Avg(f),
                "min" => Agg::Min(f),
                _ => Agg::Max(f),
            }
        }
        "percentile" => {
            args.check_names(&["field", "percentiles", "as"])?;
            let f = required_field(c, "field")?;
            let ps = match args.named("percentiles") {
                None => vec![50.0, 75.0, 99.0],
                Some(a) => {
                    let items = match &a.value {
                        ArgValue::List(items, _) => items.clone(),
                        other => vec![other.clone()],
                    };
                    items
                        .iter()
                        .map(|i| match number_of(i) {
                            Some(p) if (0.0..=100.0).contains(&p) => Ok(p),
                            _ => Err(QueryError::new(
                                "a percentile is a number from 0 to 100",
                                i.span(),
                            )),
                        })
                        .collect::<Result<_, _>>()?
                }
            };
            Agg::Percentile(f, ps)
        }
        "boxplot" => {
            args.check_names(&["field", "as"])?;
            Agg::Boxplot(required_field(c, "field")?)
        }
        _ => {
            return Err(unknown_function(
                c,
                &[
                    "count",
                    "countDistinct",
                    "sum",
                    "avg",
                    "min",
                    "max",
                    "percentile",
                    "boxplot",
                ],
            ))
        }
    };
    Ok(Output { agg, name })
}

/// The aggregates of `function=` (one call or a list), or `count()` by default.
fn function_arg(c: &Call) -> Result<Vec<Output>, QueryError> {
    let Some(a) = (Args { call: c }).named("function") else {
        return Ok(vec![Output {
            agg: Agg::Count(None),
            name: None,
        }]);
    };
    let items = match &a.value {
        ArgValue::List(items, _) => items.clone(),
        other => vec![other.clone()],
    };
    items
        .iter()
        .map(|i| match i {
            ArgValue::Expr(Expr::Call(call)) => compile_agg(call),
            other => Err(QueryError::new(
                "function= takes an aggregate such as count() or a list of them",
                other.span(),
            )),
        })
        .collect()
}

/// Compiles a function stage: either a per-event step (pushed onto `steps`) or a collecting
/// stage (returned).
fn compile_call(
    c: &Call,
    steps: &mut Vec<Step>,
    limit: usize,
    by_time: &dyn Fn(bool) -> Option<Order>,
) -> Result<Option<Collect>, QueryError> {
    let args = Args { call: c };
    let group_limit = |default| bounded_limit(c, default, MAX_GROUPS, "groups");
    let row_limit = |default| bounded_limit(c, default, MAX_ROWS, "rows");
    Ok(Some(match c.name.as_str() {
        "count" | "countDistinct" | "sum" | "avg" | "min" | "max" | "percentile" | "boxplot" => {
            Collect::Aggregate {
                grouping: Grouping::All,
                outputs: vec![compile_agg(c)?],
                limit: 1,
            }
        }
        "stats" => {
            args.check_names(&["function"])?;
            let mut outputs = match args.named("function") {
                Some(_) => function_arg(c)?,
                None => Vec::new(),
            };
            for a in c.args.iter().filter(|a| a.name.is_none()) {
                let items = match &a.value {
                    ArgValue::List(items, _) => items.clone(),
                    other => vec![other.clone()],
                };
                for i in items {
                    match i {
                        ArgValue::Expr(Expr::Call(call)) => outputs.push(compile_agg(&call)?),
                        other => {
                            return Err(QueryError::new(
                                "stats() takes aggregates such as [count(), avg(x)]",
                                other.span(),
                            ))
                        }
                    }
                }
            }
            if outputs.is_empty() {
                return Err(QueryError::new("stats() needs aggregates", c.span)
                    .hint("for example: stats([count(), avg(latency)])"));
            }
            Collect::Aggregate {
                grouping: Grouping::All,
                outputs,
                limit: 1,
            }
        }
        "groupBy" => {
            args.check_names(&["field", "function", "limit"])?;
            let Some(f) = args.get("field", 0) else {
                return Err(
                    QueryError::new("groupBy() needs a field or a list of fields", c.span)
                        .hint("for example: groupBy([host, method], function=count())"),
                );
            };
            Collect::Aggregate {
                grouping: Grouping::Fields(field_names(&f.value)?),
                outputs: function_arg(c)?,
                limit: group_limit(DEFAULT_GROUP_LIMIT)?,
            }
        }
        "top" => {
            args.check_names(&["field", "limit"])?;
            let Some(f) = args.get("field", 0) else {
                return Err(QueryError::new("top() needs a field", c.span));
            };
            Collect::Aggregate {
                grouping: Grouping::Fields(field_names(&f.value)?),
                outputs: vec![Output {
                    agg: Agg::Count(None),
                    name: None,
                }],
                limit: MAX_GROUPS,
            }
        }
        "timechart" | "bucket" => {
            args.check_names(&["span", "function", "series", "field", "limit"])?;
            let span = span_arg(c, "span")?.unwrap_or(60_000_000_000);
            let series = match args.named("series").or_else(|| args.named("field")) {
                Some(a) => Some(field_name(&a.value)?),
                None => None,
            };
            Collect::Aggregate {
                grouping: Grouping::Time {
                    span,
                    series,
                    pivot: c.name == "timechart",
                },
                outputs: function_arg(c)?,
                limit: group_limit(DEFAULT_GROUP_LIMIT)?,
            }
        }
        "sort" => {
            args.check_names(&["field", "order", "limit"])?;
            let field = match args.get("field", 0) {
                Some(a) => field_name(&a.value)?,
                None => "@timestamp".into(),
            };
            let descending = match text_arg(c, "order")?.as_deref() {
                None | Some("desc" | "descending") => true,
                Some("asc" | "ascending") => false,
                Some(other) => {
                    return Err(QueryError::new(
                        format!("order is asc or desc, not {other:?}"),
                        c.span,
                    ))
                }
            };
            Collect::Rows {
                order: Some(Order { field, descending }),
                limit: row_limit(DEFAULT_LIMIT)?,
                select: None,
            }
        }
        "head" | "tail" => {
            args.check_names(&["limit"])?;
            let n = match args.get("limit", 0) {
                Some(a) => match number_of(&a.value) {
                    Some(n) if n >= 1.0 && n.fract() == 0.0 && n as usize <= MAX_ROWS => n as usize,
                    _ => {
                        return Err(QueryError::new(
                            format!(
                                "{}() takes a whole number of rows from 1 to {MAX_ROWS}",
                                c.name
                            ),
                            a.span,
                        ))
                    }
                },
                None => DEFAULT_LIMIT,
            };
            Collect::Rows {
                // tail over collected rows: the last ones, which is the same order reversed.
                order: match c.name.as_str() {
                    "tail" => Some(Order {
                        field: "@timestamp".into(),
                        descending: true,
                    }),
                    _ => by_time(false),
                },
                limit: n,
                select: None,
            }
        }
        "table" => {
            args.check_names(&["fields", "limit"])?;
            let Some(f) = args.get("fields", 0) else {
                return Err(QueryError::new("table() needs a list of fields", c.span));
            };
            Collect::Rows {
                order: by_time(true),
                limit: row_limit(limit)?,
                select: Some(field_names(&f.value)?),
            }
        }
        "select" | "drop" => {
            args.check_names(&["fields"])?;
            let Some(f) = args.get("fields", 0) else {
                return Err(QueryError::new(
                    format!("{}() needs a list of fields", c.name),
                    c.span,
                ));
            };
            let names = field_names(&f.value)?;
            steps.push(match c.name.as_str() {
                "select" => Step::Select(names),
                _ => Step::Drop(names),
            });
            return Ok(None);
        }
        "rename" => {
            args.check_names(&["field", "as"])?;
            let (Some(from), Some(to)) = (args.get("field", 0), args.get("as", 1)) else {
                return Err(QueryError::new("rename() needs a field and as=", c.span)
                    .hint("for example: rename(field=status, as=code)"));
            };
            steps.push(Step::Rename(vec![(
                field_name(&from.value)?,
                field_name(&to.value)?,
            )]));
            return Ok(None);
        }
        "eval" => {
            for a in &c.args {
                let (Some(name), ArgValue::Expr(e)) = (&a.name, &a.value) else {
                    return Err(QueryError::new(
                        "eval() takes assignments: eval(field = expression)",
                        a.span,
                    ));
                };
                expr::check(e)?;
                steps.push(Step::Assign(name.clone(), e.clone()));
            }
            return Ok(None);
        }
        "histogram" => {
            args.check_names(&["field", "buckets", "min", "max"])?;
            let buckets = int_arg(c, "buckets", 10)?;
            if buckets > 10_000 {
                return Err(QueryError::new("buckets may be at most 10000", c.span));
            }
            let bound = |name| match args.named(name) {
                None => Ok(None),
                Some(a) => number_of(&a.value).map(Some).ok_or_else(|| {
                    QueryError::new(format!("{name} must be a number"), a.value.span())
                }),
            };
            Collect::Histogram {
                field: required_field(c, "field")?,
                buckets,
                min: bound("min")?,
                max: bound("max")?,
            }
        }
        "parseJson" | "kvParse" => {
            args.check_names(&["field", "prefix", "override"])?;
            let field = match args.get("field", 0) {
                Some(a) => field_name(&a.value)?,
                None => "@rawstring".into(),
            };
            let overwrite = flag_arg(c, "override");
            steps.push(Step::Parse {
                field,
                parser: match c.name.as_str() {
                    "parseJson" => Parser::Json,
                    _ => Parser::Kv,
                },
                prefix: text_arg(c, "prefix")?.unwrap_or_default(),
                // A JSON object parsed on purpose wins; key=value pairs found in passing do not.
                overwrite: overwrite || c.name == "parseJson",
            });
            return Ok(None);
        }
        "format" => {
            args.check_names(&["format", "field", "as"])?;
            let (text, span) = match args.get("format", 0).map(|a| &a.value) {
                Some(ArgValue::Expr(Expr::Str(t, span))) => (t.clone(), *span),
                _ => return Err(
                    QueryError::new("format() needs a format string", c.span).hint(
                        "for example: format(\"%s took %d ms\", field=[method, latency], as=line)",
                    ),
                ),
            };
            let pieces = format::parse(&text, span)?;
            let names = match args.get("field", 1) {
                Some(a) => field_names(&a.value)?,
                None => Vec::new(),
            };
            if names.len() != format::placeholders(&pieces) {
                return Err(QueryError::new(
                    format!(
                        "the format has {} placeholders but {} fields are given",
                        format::placeholders(&pieces),
                        names.len()
                    ),
                    c.span,
                ));
            }
            steps.push(Step::Format {
                format: pieces,
                fields: names,
                into: text_arg(c, "as")?.unwrap_or_else(|| "_format".into()),
            });
            return Ok(None);
        }
        "regex" => {
            args.check_names(&["regex", "field"])?;
            let regex = match args.get("regex", 0).map(|a| &a.value) {
                Some(ArgValue::Expr(Expr::Str(p, span))) => filter::compile_regex(
                    &crate::syntax::RegexLit {
                        pattern: p.clone(),
                        flags: String::new(),
                    },
                    *span,
                )?,
                Some(ArgValue::Regex(r, span)) => filter::compile_regex(r, *span)?,
                _ => {
                    return Err(QueryError::new(
                        "regex() needs a pattern with named groups",
                        c.span,
                    )
                    .hint("for example: regex(\"user=(?<user>\\\\w+)\")"))
                }
            };
            let field = text_arg(c, "field")?.unwrap_or_else(|| "@rawstring".into());
            steps.push(Step::Extract { field, regex });
            return Ok(None);
        }
        _ => return Err(unknown_function(c, STAGE_FUNCTIONS)),
    }))
}

/// The rows' columns when the collecting stage does not name them (events): the standard
/// fields, tags and fields in name order.
pub fn event_columns(rows: &[Event]) -> Vec<String> {
    let mut tags = std::collections::BTreeSet::new();
    let mut names = std::collections::BTreeSet::new();
    for r in rows {
        tags.extend(r.tags.keys().map(|k| format!("#{k}")));
        names.extend(r.fields.keys().cloned());
    }
    let mut cols = vec!["@timestamp".to_string()];
    if rows.iter().any(|r| r.raw.is_some()) {
        cols.push("@rawstring".to_string());
    }
    cols.extend(tags);
    cols.extend(names);
    cols
}

/// A row of the result: the named values of an event.
pub fn row_values(e: &Event, columns: &[String]) -> BTreeMap<String, Value> {
    columns
        .iter()
        .filter_map(|c| fields::get(e, c).map(|v| (c.clone(), v.into_owned())))
        .collect()
}
