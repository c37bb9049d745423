//! Expressions of `eval` and `:=`: arithmetic on numbers, `+` on text concatenates, and a few
//! functions. A missing field or a failed operation gives no value (the field is not set).

use eddy_event::{Event, Value};

use crate::fields;
use crate::syntax::{ArgValue, BinOp, Call, Expr, QueryError};

/// Functions usable inside expressions.
pub const FUNCTIONS: &[&str] = &[
    "lower",
    "upper",
    "length",
    "concat",
    "round",
    "floor",
    "ceil",
    "abs",
    "sqrt",
    "now",
    "formatTime",
    "parseTime",
];

/// Checks an expression's functions and their argument counts.
pub fn check(e: &Expr) -> Result<(), QueryError> {
    match e {
        Expr::Number(..) | Expr::Str(..) | Expr::Field(..) => Ok(()),
        Expr::Neg(inner, _) => check(inner),
        Expr::Chain { first, rest, .. } => {
            check(first)?;
            rest.iter().try_for_each(|(_, e)| check(e))
        }
        Expr::Call(c) => {
            let arity = match c.name.as_str() {
                "now" => 0..=0,
                "concat" => 1..=64,
                "formatTime" => 1..=2,
                n if FUNCTIONS.contains(&n) => 1..=1,
                _ => {
                    return Err(QueryError::unknown_function(c, FUNCTIONS));
                }
            };
            if !arity.contains(&c.args.len()) {
                return Err(QueryError::new(
                    format!(
                        "{}() takes {} argument{}",
                        c.name,
                        if arity.start() == arity.end() {
                            arity.start().to_string()
                        } else {
                            format!("{} or more", arity.start())
                        },
                        if *arity.end() == 1 { "" } else { "s" }
                    ),
                    c.span,
                ));
            }
            if c.name == "formatTime" {
                if let Some(ArgValue::Expr(Expr::Str(f, span))) = c.args.first().map(|a| &a.value) {
                    check_time_format(f, *span)?;
                }
            }
            for a in &c.args {
                match &a.value {
                    ArgValue::Expr(e) => check(e)?,
                    other => return Err(QueryError::new("expected an expression", other.span())),
                }
            }
            Ok(())
        }
    }
}

/// Evaluates `e` over `event`.
pub fn eval(e: &Expr, event: &Event) -> Option<Value> {
    match e {
        Expr::Number(n, _) => Some(number(*n)),
        Expr::Str(s, _) => Some(Value::Str(s.clone())),
        Expr::Field(name, _) => fields::get(event, name).map(|v| v.into_owned()),
        Expr::Neg(inner, _) => eval(inner, event)?.as_f64().map(|x| number(-x)),
        Expr::Chain { first, rest, .. } => {
            rest.iter().try_fold(eval(first, event)?, |a, (op, b)| {
                binary(*op, a, eval(b, event)?)
            })
        }
        Expr::Call(c) => call(c, event),
    }
}

/// `a op b`: arithmetic, or `+` concatenating when either is text that is not a number.
fn binary(op: BinOp, a: Value, b: Value) -> Option<Value> {
    if let (BinOp::Add, Value::Str(_), _) | (BinOp::Add, _, Value::Str(_)) = (op, &a, &b) {
        if a.as_f64().is_none() || b.as_f64().is_none() {
            // Appended in place: a long chain of `+` costs its length, not its square.
            let mut text = match a {
                Value::Str(text) => text,
                other => other.to_text(),
            };
            text.push_str(&b.to_text());
            return Some(Value::Str(text));
        }
    }
    if let (Value::Int(x), Value::Int(y)) = (&a, &b) {
        let r = match op {
            BinOp::Add => x.checked_add(*y),
            BinOp::Sub => x.checked_sub(*y),
            BinOp::Mul => x.checked_mul(*y),
            BinOp::Rem => x.checked_rem(*y),
            BinOp::Div => None,
        };
        if let Some(r) = r {
            return Some(Value::Int(r));
        }
    }
    let (x, y) = (a.as_f64()?, b.as_f64()?);
    let r = match op {
        BinOp::Add => x + y,
        BinOp::Sub => x - y,
        BinOp::Mul => x * y,
        BinOp::Div => x / y,
        BinOp::Rem => x % y,
    };
    r.is_finite().then_some(Value::Float(r))
}

/// A number as a value: an integer when it is whole (and exactly representable), else a float.
pub fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9e15 {
        Value::Int(x as i64)
    } else {
        Value::Float(x)
    }
}

fn arg(c: &Call, i: usize, event: &Event) -> Option<Value> {
    match &c.args.get(i)?.value {
        ArgValue::Expr(e) => eval(e, event),
        _ => None,
    }
}

fn call(c: &Call, event: &Event) -> Option<Value> {
    let num = |i| arg(c, i, event).and_then(|v| v.as_f64());
    Some(match c.name.as_str() {
        "lower" => Value::Str(arg(c, 0, event)?.to_text().to_lowercase()),
        "upper" => Value::Str(arg(c, 0, event)?.to_text().to_uppercase()),
        "length" => Value::Int(arg(c, 0, event)?.to_text().chars().count() as i64),
        "concat" => Value::Str(
            (0..c.args.len())
                .filter_map(|i| arg(c, i, event))
                .map(|v| v.to_text())
                .collect(),
        ),
        "round" => number(num(0)?.round()),
        "floor" => number(num(0)?.floor()),
        "ceil" => number(num(0)?.ceil()),
        "abs" => number(num(0)?.abs()),
        "sqrt" => Value::Float(num(0)?.sqrt()),
        "now" => Value::Int(eddy_event::time::now_ns()),
        "formatTime" => {
            let format = arg(c, 0, event)?.to_text();
            let time = match c.args.len() {
                1 => event.timestamp,
                _ => eddy_event::time::parse_time_value(&arg(c, 1, event)?)?,
            };
            Value::Str(format_time(&format, time)?)
        }
        "parseTime" => Value::Int(eddy_event::time::parse_time_value(&arg(c, 0, event)?)?),
        _ => return None,
    })
}

/// `time` (ns since the epoch, UTC) in a strftime `format`; `None` for a bad format.
fn format_time(format: &str, time: i64) -> Option<String> {
    use std::fmt::Write;
    let t = chrono::DateTime::from_timestamp_nanos(time);
    let mut out = String::new();
    // A bad format makes the writer fail rather than the formatting panic.
    write!(out, "{}", t.format(format)).ok()?;
    Some(out)
}

fn check_time_format(format: &str, span: crate::syntax::Span) -> Result<(), QueryError> {
    use chrono::format::{Item, StrftimeItems};
    if StrftimeItems::new(format).any(|i| matches!(i, Item::Error)) {
        return Err(
            QueryError::new(format!("{format:?} is not a time format"), span)
                .hint("strftime: for example \"%Y-%m-%d %H:%M:%S\""),
        );
    }
    Ok(())
}
