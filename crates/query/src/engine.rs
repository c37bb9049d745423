//! The operators: a query compiles (see [`crate::compile`]) into stages that transform events
//! one at a time (filters, assignments, extraction, renaming) up to its first *collecting*
//! stage (an aggregate, sort, head, tail, table), whose state is mergeable: each thread (and
//! later each live window or machine) fills its own, and the states are merged before the rest
//! of the query runs over the collected rows. Rows are events with only fields, so every stage
//! works on both.

use std::collections::{BTreeMap, HashMap};

use regex::Regex;

use eddy_event::{Event, Parser, Value, ValueRef};
use eddy_store::Parts;

use crate::blockwise;
use crate::expr;
use crate::fields;
use crate::filter::Compiled;
use crate::format::{render, FormatPiece};
use crate::sketch::{Distinct, Quantiles};
use crate::syntax::Expr;

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

    /// Applies the step; `false` drops the event. A step that may change the fields leaves
    /// them no longer what the event's parser makes of its text, so the event loses its parser
    /// (whoever stores it then keeps its fields as they are, see `eddy_event::codec`).
    pub fn apply(&self, e: &mut Event) -> bool {
        if !matches!(self, Step::Filter(_)) {
            e.parsed_by = None;
        }
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
    /// `last(field)`: the value of the event with the latest time (see [`Picked`]).
    Last(String),
    /// `first(field)`: the value of the event with the earliest time.
    First(String),
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
    /// The aggregate.
    pub(crate) agg: Agg,
    /// `as=`, else the function's default (`_count`, `_sum`, ...).
    pub(crate) name: Option<String>,
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
                Agg::Last(_) => "_last",
                Agg::First(_) => "_first",
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
pub(crate) enum AggState {
    Count(u64),
    Distinct(Box<Distinct>),
    Sum {
        sum: f64,
        n: u64,
    },
    Min(Option<f64>),
    Max(Option<f64>),
    Quantiles(Box<Quantiles>),
    /// `last()` (`latest: true`) or `first()`.
    Pick {
        latest: bool,
        picked: Option<Picked>,
    },
}

/// The value `last()` or `first()` keeps: that of the event latest (earliest) by time, ties
/// broken by the larger (smaller) event id, so that any order of adding and merging keeps the
/// same event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Picked {
    pub(crate) timestamp: i64,
    pub(crate) id: u128,
    pub(crate) value: Value,
}

impl Picked {
    /// Whether `self` is to be kept over `other`.
    fn wins_over(&self, other: &Picked, latest: bool) -> bool {
        let order = (self.timestamp, self.id).cmp(&(other.timestamp, other.id));
        match latest {
            true => order.is_gt(),
            false => order.is_lt(),
        }
    }
}

/// Keeps `offered` in `picked` if it wins over what is there.
fn pick(picked: &mut Option<Picked>, offered: Picked, latest: bool) {
    if picked.as_ref().is_none_or(|p| offered.wins_over(p, latest)) {
        *picked = Some(offered);
    }
}

impl Agg {
    /// The field it reads, if any.
    pub(crate) fn field(&self) -> Option<&str> {
        match self {
            Agg::Count(f) => f.as_deref(),
            Agg::Distinct(f)
            | Agg::Sum(f)
            | Agg::Avg(f)
            | Agg::Min(f)
            | Agg::Max(f)
            | Agg::Percentile(f, _)
            | Agg::Boxplot(f)
            | Agg::Last(f)
            | Agg::First(f) => Some(f),
        }
    }

    /// Whether it needs each event's time and id, not only its value (no column path then).
    pub(crate) fn needs_event(&self) -> bool {
        matches!(self, Agg::Last(_) | Agg::First(_))
    }

    pub(crate) fn state(&self) -> AggState {
        match self {
            Agg::Count(_) => AggState::Count(0),
            Agg::Distinct(_) => AggState::Distinct(Box::default()),
            Agg::Sum(_) | Agg::Avg(_) => AggState::Sum { sum: 0.0, n: 0 },
            Agg::Min(_) => AggState::Min(None),
            Agg::Max(_) => AggState::Max(None),
            Agg::Percentile(..) | Agg::Boxplot(_) => AggState::Quantiles(Box::default()),
            Agg::Last(_) => AggState::Pick {
                latest: true,
                picked: None,
            },
            Agg::First(_) => AggState::Pick {
                latest: false,
                picked: None,
            },
        }
    }

    fn add(&self, s: &mut AggState, e: &Event) {
        let value = self.field().and_then(|f| fields::get(e, f));
        if let AggState::Pick { latest, picked } = s {
            if let Some(v) = value {
                let offered = Picked {
                    timestamp: e.timestamp,
                    id: e.id.as_u128(),
                    value: v.into_owned(),
                };
                pick(picked, offered, *latest);
            }
            return;
        }
        self.add_value(s, value.as_deref().map(ValueRef::from));
    }

    /// Adds an event whose value of [`Agg::field`] is `v` (`None`: it has none).
    pub(crate) fn add_value(&self, s: &mut AggState, v: Option<ValueRef<'_>>) {
        let number = || v.and_then(ValueRef::as_f64);
        match (self, s) {
            (Agg::Count(None), AggState::Count(n)) => *n += 1,
            (Agg::Count(Some(_)), AggState::Count(n)) => *n += u64::from(v.is_some()),
            (Agg::Distinct(_), AggState::Distinct(d)) => {
                if let Some(v) = v {
                    with_text(v, |t| d.add(t))
                }
            }
            (Agg::Sum(_) | Agg::Avg(_), AggState::Sum { sum, n }) => {
                if let Some(x) = number() {
                    *sum += x;
                    *n += 1;
                }
            }
            (Agg::Min(_), AggState::Min(m)) => *m = extreme(*m, number(), f64::min),
            (Agg::Max(_), AggState::Max(m)) => *m = extreme(*m, number(), f64::max),
            (Agg::Percentile(..) | Agg::Boxplot(_), AggState::Quantiles(q)) => {
                if let Some(x) = number() {
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
            (_, AggState::Pick { picked, .. }) => {
                vec![picked.as_ref().map_or(Value::Null, |p| p.value.clone())]
            }
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
            AggState::Pick {
                picked:
                    Some(Picked {
                        value: Value::Str(t),
                        ..
                    }),
                ..
            } => 32 + t.len(),
            _ => 0,
        }
    }

    fn merge(&mut self, other: AggState) {
        match (self, other) {
            // Saturating: a peer's partial state (see `crate::partial`) must not overflow.
            (AggState::Count(a), AggState::Count(b)) => *a = a.saturating_add(b),
            (AggState::Distinct(a), AggState::Distinct(b)) => a.merge(&b),
            (AggState::Sum { sum, n }, AggState::Sum { sum: s2, n: n2 }) => {
                *sum += s2;
                *n = n.saturating_add(n2);
            }
            (AggState::Min(a), AggState::Min(b)) => *a = extreme(*a, b, f64::min),
            (AggState::Max(a), AggState::Max(b)) => *a = extreme(*a, b, f64::max),
            (AggState::Quantiles(a), AggState::Quantiles(b)) => a.merge(&b),
            (
                AggState::Pick { latest, picked },
                AggState::Pick {
                    picked: Some(theirs),
                    ..
                },
            ) => pick(picked, theirs, *latest),
            _ => {}
        }
    }
}

/// Calls `f` with a value's text, as [`Value::to_text`] writes it (without allocating for
/// texts and integers).
pub(crate) fn with_text<R>(v: ValueRef<'_>, f: impl FnOnce(&str) -> R) -> R {
    match v {
        ValueRef::Str(s) => f(s),
        ValueRef::Int(i) => f(itoa::Buffer::new().format(i)),
        ValueRef::Bool(b) => f(if b { "true" } else { "false" }),
        ValueRef::Null => f("null"),
        ValueRef::Float(x) => f(&x.to_string()),
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
pub(crate) enum Key {
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
        Key::of_ref(v.into())
    }

    /// The key of a value.
    pub(crate) fn of_ref(v: ValueRef<'_>) -> Key {
        match v {
            ValueRef::Int(i) => Key::Int(i),
            other => with_text(other, |t| Key::Text(t.to_string())),
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
    /// The field ordered by.
    pub(crate) field: String,
    /// Largest first.
    pub(crate) descending: bool,
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
pub struct State(pub(crate) Collected);

#[derive(Debug, Clone)]
pub(crate) enum Collected {
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
pub(crate) struct KeptRows {
    pub(crate) rows: Vec<Event>,
    /// Their [`approx_event_bytes`], summed.
    pub(crate) bytes: usize,
    /// Whether rows within the limit were dropped for the memory budget.
    pub(crate) cut: bool,
}

impl KeptRows {
    pub(crate) fn push(&mut self, e: Event) {
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

    /// Merges groups filled apart (from a block's columns) into `state`.
    pub(crate) fn merge_groups(&self, state: &mut State, groups: HashMap<Vec<Key>, Vec<AggState>>) {
        let other = State(Collected::Groups {
            groups,
            overflowed: false,
        });
        self.merge(state, other);
    }

    /// Merges values gathered apart (from a block's column) into a histogram's `state`.
    pub(crate) fn merge_values(&self, state: &mut State, values: Quantiles) {
        self.merge(state, State(Collected::Values(Box::new(values))));
    }

    /// Drops what finishing `state` would drop anyway (rows past the limit, which a state
    /// keeps up to twice of between trims), so that a partial answer travels no more.
    pub(crate) fn trim(&self, state: &mut State) {
        if let (Collect::Rows { order, limit, .. }, Collected::Rows(kept)) = (self, &mut state.0) {
            kept.trim(order, *limit);
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

    /// The fields the program reads before collecting, when only some (`None`: any field,
    /// e.g. for rows or per-event steps): what a block with field columns must decompress.
    pub fn fields_read(&self) -> Option<Vec<String>> {
        let mut names = Vec::new();
        for step in &self.steps {
            match step {
                Step::Filter(c) => c.fields_read(&mut names),
                _ => return None,
            }
        }
        match &self.collect {
            Collect::Rows { .. } => return None,
            Collect::Histogram { field, .. } => names.push(field.clone()),
            Collect::Aggregate {
                grouping, outputs, ..
            } => {
                match grouping {
                    Grouping::All => {}
                    Grouping::Fields(fs) => names.extend(fs.iter().cloned()),
                    Grouping::Time { series, .. } => names.extend(series.iter().cloned()),
                }
                names.extend(
                    outputs
                        .iter()
                        .filter_map(|o| o.agg.field().map(str::to_string)),
                );
            }
        }
        names.sort();
        names.dedup();
        Some(names)
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
