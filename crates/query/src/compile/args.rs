//! Reading a call's arguments: by name or position, as field names, numbers, flags and spans,
//! with an error at the argument that is wrong.

use crate::syntax::{Arg, ArgValue, Call, Expr, QueryError};

/// Arguments of a call, by name or position.
pub(super) struct Args<'a> {
    pub(super) call: &'a Call,
}

impl<'a> Args<'a> {
    pub(super) fn named(&self, name: &str) -> Option<&'a Arg> {
        self.call
            .args
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
    }

    /// The argument named `name`, or the `i`-th unnamed one.
    pub(super) fn get(&self, name: &str, i: usize) -> Option<&'a Arg> {
        self.named(name)
            .or_else(|| self.call.args.iter().filter(|a| a.name.is_none()).nth(i))
    }

    pub(super) fn check_names(&self, allowed: &[&str]) -> Result<(), QueryError> {
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
pub(super) fn field_name(v: &ArgValue) -> Result<String, QueryError> {
    match v {
        ArgValue::Expr(Expr::Field(f, _) | Expr::Str(f, _)) => Ok(f.clone()),
        other => Err(QueryError::new("expected a field name", other.span())),
    }
}

/// One field name or a list of them.
pub(super) fn field_names(v: &ArgValue) -> Result<Vec<String>, QueryError> {
    match v {
        ArgValue::List(items, _) => items.iter().map(field_name).collect(),
        other => Ok(vec![field_name(other)?]),
    }
}

pub(super) fn required_field(c: &Call, name: &str) -> Result<String, QueryError> {
    match (Args { call: c }).get(name, 0) {
        Some(a) => field_name(&a.value),
        None => Err(
            QueryError::new(format!("{}() needs a field", c.name), c.span)
                .hint(format!("for example: {}(latency)", c.name)),
        ),
    }
}

pub(super) fn number_of(v: &ArgValue) -> Option<f64> {
    match v {
        ArgValue::Expr(Expr::Number(n, _)) => Some(*n),
        _ => None,
    }
}

pub(super) fn int_arg(c: &Call, name: &str, default: usize) -> Result<usize, QueryError> {
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
pub(super) fn bounded_limit(
    c: &Call,
    default: usize,
    max: usize,
    what: &str,
) -> Result<usize, QueryError> {
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
pub(super) fn flag_arg(c: &Call, name: &str) -> bool {
    (Args { call: c })
        .named(name)
        .is_some_and(|a| matches!(&a.value, ArgValue::Expr(Expr::Field(t, _)) if t == "true"))
}

pub(super) fn text_arg(c: &Call, name: &str) -> Result<Option<String>, QueryError> {
    match (Args { call: c }).named(name) {
        None => Ok(None),
        Some(a) => field_name(&a.value).map(Some),
    }
}

pub(super) fn span_arg(c: &Call, name: &str) -> Result<Option<i64>, QueryError> {
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
