//! The per-event function stages: `select`, `drop`, `rename`, `eval`, `parseJson`, `kvParse`,
//! `format` and `regex`.

use eddy_event::Parser;

use crate::engine::Step;
use crate::expr;
use crate::filter;
use crate::format;
use crate::syntax::{ArgValue, Call, Expr, QueryError, RegexLit};

use super::args::{field_name, field_names, flag_arg, text_arg, Args};

/// `select([fields])` keeps only these fields, `drop([fields])` removes them.
pub(super) fn select_or_drop(c: &Call) -> Result<Step, QueryError> {
    let args = Args { call: c };
    args.check_names(&["fields"])?;
    let Some(f) = args.get("fields", 0) else {
        return Err(QueryError::new(
            format!("{}() needs a list of fields", c.name),
            c.span,
        ));
    };
    let names = field_names(&f.value)?;
    Ok(match c.name.as_str() {
        "select" => Step::Select(names),
        _ => Step::Drop(names),
    })
}

/// `rename(field=…, as=…)`.
pub(super) fn rename(c: &Call) -> Result<Step, QueryError> {
    let args = Args { call: c };
    args.check_names(&["field", "as"])?;
    let (Some(from), Some(to)) = (args.get("field", 0), args.get("as", 1)) else {
        return Err(QueryError::new("rename() needs a field and as=", c.span)
            .hint("for example: rename(field=status, as=code)"));
    };
    Ok(Step::Rename(vec![(
        field_name(&from.value)?,
        field_name(&to.value)?,
    )]))
}

/// `eval(a = …, b = …)`: one assignment step per field, in order.
pub(super) fn eval(c: &Call) -> Result<Vec<Step>, QueryError> {
    let mut steps = Vec::new();
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
    Ok(steps)
}

/// `parseJson(field)` and `kvParse(field)`: the fields found in a field's text.
pub(super) fn parse_text(c: &Call) -> Result<Step, QueryError> {
    let args = Args { call: c };
    args.check_names(&["field", "prefix", "override"])?;
    let field = match args.get("field", 0) {
        Some(a) => field_name(&a.value)?,
        None => "@rawstring".into(),
    };
    let overwrite = flag_arg(c, "override");
    Ok(Step::Parse {
        field,
        parser: match c.name.as_str() {
            "parseJson" => Parser::Json,
            _ => Parser::Kv,
        },
        prefix: text_arg(c, "prefix")?.unwrap_or_default(),
        // A JSON object parsed on purpose wins; key=value pairs found in passing do not.
        overwrite: overwrite || c.name == "parseJson",
    })
}

/// `format("…", field=[…], as=…)`: a field set to a printf-style format of fields.
pub(super) fn format_fields(c: &Call) -> Result<Step, QueryError> {
    let args = Args { call: c };
    args.check_names(&["format", "field", "as"])?;
    let (text, span) = match args.get("format", 0).map(|a| &a.value) {
        Some(ArgValue::Expr(Expr::Str(t, span))) => (t.clone(), *span),
        _ => {
            return Err(QueryError::new("format() needs a format string", c.span)
                .hint("for example: format(\"%s took %d ms\", field=[method, latency], as=line)"))
        }
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
    Ok(Step::Format {
        format: pieces,
        fields: names,
        into: text_arg(c, "as")?.unwrap_or_else(|| "_format".into()),
    })
}

/// `regex("…(?<name>…)…", field=…)`: fields from a pattern's named groups.
pub(super) fn extract(c: &Call) -> Result<Step, QueryError> {
    let args = Args { call: c };
    args.check_names(&["regex", "field"])?;
    let regex = match args.get("regex", 0).map(|a| &a.value) {
        Some(ArgValue::Expr(Expr::Str(p, span))) => filter::compile_regex(
            &RegexLit {
                pattern: p.clone(),
                flags: String::new(),
            },
            *span,
        )?,
        Some(ArgValue::Regex(r, span)) => filter::compile_regex(r, *span)?,
        _ => {
            return Err(
                QueryError::new("regex() needs a pattern with named groups", c.span)
                    .hint("for example: regex(\"user=(?<user>\\\\w+)\")"),
            )
        }
    };
    let field = text_arg(c, "field")?.unwrap_or_else(|| "@rawstring".into());
    Ok(Step::Extract { field, regex })
}
