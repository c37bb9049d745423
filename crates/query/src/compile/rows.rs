//! The stages that keep rows in an order: `sort`, `head`, `tail` and `table`.

use crate::engine::{Collect, Order, DEFAULT_LIMIT, MAX_ROWS};
use crate::syntax::{Call, QueryError};

use super::args::{bounded_limit, field_name, field_names, number_of, text_arg, Args};

/// `sort(field, order=…)`.
pub(super) fn sort(c: &Call) -> Result<Collect, QueryError> {
    let args = Args { call: c };
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
    Ok(Collect::Rows {
        order: Some(Order { field, descending }),
        limit: row_limit(c, DEFAULT_LIMIT)?,
        select: None,
    })
}

/// `head(n)` and `tail(n)`; `by_time` is the order of the rows they run over.
pub(super) fn head_or_tail(
    c: &Call,
    by_time: &dyn Fn(bool) -> Option<Order>,
) -> Result<Collect, QueryError> {
    let args = Args { call: c };
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
    Ok(Collect::Rows {
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
    })
}

/// `table([fields])`: the newest rows (`limit` unless told), with only these fields.
pub(super) fn table(
    c: &Call,
    limit: usize,
    by_time: &dyn Fn(bool) -> Option<Order>,
) -> Result<Collect, QueryError> {
    let args = Args { call: c };
    args.check_names(&["fields", "limit"])?;
    let Some(f) = args.get("fields", 0) else {
        return Err(QueryError::new("table() needs a list of fields", c.span));
    };
    Ok(Collect::Rows {
        order: by_time(true),
        limit: row_limit(c, limit)?,
        select: Some(field_names(&f.value)?),
    })
}

/// `limit=` of a row stage, within the memory bound on rows.
fn row_limit(c: &Call, default: usize) -> Result<usize, QueryError> {
    bounded_limit(c, default, MAX_ROWS, "rows")
}
