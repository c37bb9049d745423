//! The aggregating stages (`count()` … `boxplot()`, `last()`, `first()`, `stats`, `groupBy`, `top`, `timechart`,
//! `bucket`, `histogram`) and the aggregates they compute.

use crate::engine::{Agg, Collect, Grouping, Output, DEFAULT_GROUP_LIMIT, MAX_GROUPS};
use crate::syntax::{ArgValue, Call, Expr, QueryError};

use super::args::{
    bounded_limit, field_name, field_names, flag_arg, int_arg, number_of, required_field, span_arg,
    text_arg, Args,
};

/// A single aggregate over all events: `count()`, `avg(latency)`, ...
pub(super) fn single(c: &Call) -> Result<Collect, QueryError> {
    Ok(Collect::Aggregate {
        grouping: Grouping::All,
        outputs: vec![compile_agg(c)?],
        limit: 1,
    })
}

/// `stats([count(), avg(x)])`: several aggregates over all events.
pub(super) fn stats(c: &Call) -> Result<Collect, QueryError> {
    let args = Args { call: c };
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
    Ok(Collect::Aggregate {
        grouping: Grouping::All,
        outputs,
        limit: 1,
    })
}

/// `groupBy(fields, function=…)`: aggregates per group of field values.
pub(super) fn group_by(c: &Call) -> Result<Collect, QueryError> {
    let args = Args { call: c };
    args.check_names(&["field", "function", "limit"])?;
    let Some(f) = args.get("field", 0) else {
        return Err(
            QueryError::new("groupBy() needs a field or a list of fields", c.span)
                .hint("for example: groupBy([host, method], function=count())"),
        );
    };
    Ok(Collect::Aggregate {
        grouping: Grouping::Fields(field_names(&f.value)?),
        outputs: function_arg(c)?,
        limit: group_limit(c)?,
    })
}

/// `top(field)`: the count per value (the most frequent first is the stage after it).
pub(super) fn top(c: &Call) -> Result<Collect, QueryError> {
    let args = Args { call: c };
    args.check_names(&["field", "limit"])?;
    let Some(f) = args.get("field", 0) else {
        return Err(QueryError::new("top() needs a field", c.span));
    };
    Ok(Collect::Aggregate {
        grouping: Grouping::Fields(field_names(&f.value)?),
        outputs: vec![Output {
            agg: Agg::Count(None),
            name: None,
        }],
        limit: MAX_GROUPS,
    })
}

/// `timechart(span=…)` and `bucket(span=…)`: aggregates per time bucket (and series).
pub(super) fn time_buckets(c: &Call) -> Result<Collect, QueryError> {
    let args = Args { call: c };
    args.check_names(&["span", "function", "series", "field", "limit"])?;
    let span = span_arg(c, "span")?.unwrap_or(60_000_000_000);
    let series = match args.named("series").or_else(|| args.named("field")) {
        Some(a) => Some(field_name(&a.value)?),
        None => None,
    };
    Ok(Collect::Aggregate {
        grouping: Grouping::Time {
            span,
            series,
            pivot: c.name == "timechart",
        },
        outputs: function_arg(c)?,
        limit: group_limit(c)?,
    })
}

/// `histogram(field, buckets=n)`: counts per bucket of equal width.
pub(super) fn histogram(c: &Call) -> Result<Collect, QueryError> {
    let args = Args { call: c };
    args.check_names(&["field", "buckets", "min", "max"])?;
    let buckets = int_arg(c, "buckets", 10)?;
    if buckets > 10_000 {
        return Err(QueryError::new("buckets may be at most 10000", c.span));
    }
    let bound = |name| match args.named(name) {
        None => Ok(None),
        Some(a) => number_of(&a.value)
            .map(Some)
            .ok_or_else(|| QueryError::new(format!("{name} must be a number"), a.value.span())),
    };
    Ok(Collect::Histogram {
        field: required_field(c, "field")?,
        buckets,
        min: bound("min")?,
        max: bound("max")?,
    })
}

/// `limit=` of a grouping stage, within the memory bound on groups.
fn group_limit(c: &Call) -> Result<usize, QueryError> {
    bounded_limit(c, DEFAULT_GROUP_LIMIT, MAX_GROUPS, "groups")
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
        "last" | "first" => {
            args.check_names(&["field", "as"])?;
            let f = required_field(c, "field")?;
            match c.name.as_str() {
                "last" => Agg::Last(f),
                _ => Agg::First(f),
            }
        }
        _ => {
            return Err(QueryError::unknown_function(
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
                    "last",
                    "first",
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
