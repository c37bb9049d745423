//! The compiler: a parsed [`Query`] becomes a [`Program`] of the engine's operators. Filters
//! and per-event function stages become [`Step`]s, up to the first collecting stage (a
//! [`Collect`]); the stages after it compile into the program run over the collected rows.
//! Each family of functions compiles in its own module: `aggregate`, `rows` (ordered rows) and
//! `per_event` (steps), over the call's arguments as `args` reads them.

mod aggregate;
mod args;
mod per_event;
mod rows;

use crate::engine::{Collect, Order, Program, Step, MAX_ROWS};
use crate::expr;
use crate::filter;
use crate::syntax::{Call, Query, QueryError, Stage, MAX_NESTING};

use args::bounded_limit;

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
    "last",
    "first",
];

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

/// Compiles a function stage: either per-event steps (pushed onto `steps`) or a collecting
/// stage (returned).
fn compile_call(
    c: &Call,
    steps: &mut Vec<Step>,
    limit: usize,
    by_time: &dyn Fn(bool) -> Option<Order>,
) -> Result<Option<Collect>, QueryError> {
    let collect = match c.name.as_str() {
        "count" | "countDistinct" | "sum" | "avg" | "min" | "max" | "percentile" | "boxplot"
        | "last" | "first" => aggregate::single(c)?,
        "stats" => aggregate::stats(c)?,
        "groupBy" => aggregate::group_by(c)?,
        "top" => aggregate::top(c)?,
        "timechart" | "bucket" => aggregate::time_buckets(c)?,
        "histogram" => aggregate::histogram(c)?,
        "sort" => rows::sort(c)?,
        "head" | "tail" => rows::head_or_tail(c, by_time)?,
        "table" => rows::table(c, limit, by_time)?,
        _ => {
            steps.extend(compile_steps(c)?);
            return Ok(None);
        }
    };
    Ok(Some(collect))
}

/// Compiles a per-event function stage into its steps.
fn compile_steps(c: &Call) -> Result<Vec<Step>, QueryError> {
    let step = match c.name.as_str() {
        "select" | "drop" => per_event::select_or_drop(c)?,
        "rename" => per_event::rename(c)?,
        "eval" => return per_event::eval(c),
        "parseJson" | "kvParse" => per_event::parse_text(c)?,
        "format" => per_event::format_fields(c)?,
        "regex" => per_event::extract(c)?,
        _ => return Err(QueryError::unknown_function(c, STAGE_FUNCTIONS)),
    };
    Ok(vec![step])
}
