//! A notice as text, for the channels that carry text (Slack, email, IRC): a rule's `template`
//! with `{placeholders}` filled from the notice. The first line is the title (Slack's text, the
//! mail's subject).
//!
//! Placeholders: `{status}` (`firing`, `resolved`, `silence_expired`), `{STATUS}` (upper case),
//! `{alert}`, `{labels}` (`host=web-1 dc=eu`), `{value}`, `{condition}`, `{history}` (how often
//! this alert fired before and how the last one ended), `{events}` (the top matching events,
//! one line each: the raw line where there is one), `{at}` and `{since}` (RFC 3339). Anything
//! else in braces is left as written.

use super::channel::label_text;
use super::Notice;

/// The template used when a rule sets none.
pub const DEFAULT: &str = "[{STATUS}] {alert} {labels}: {value} ({condition})\n{history}\n{events}";

/// The text of `notice`: `template` filled from it, or for a notification group's message a
/// title line (`[FIRING] errors dc=eu: 3 notices`) and each notice it carries filled in.
pub fn render_notice(template: &str, notice: &Notice) -> String {
    if notice.alerts.is_empty() {
        return render(template, notice);
    }
    let mut out = format!(
        "[{}] {} {}: {} notices",
        notice.status.to_uppercase(),
        notice.alert,
        fill("labels", notice).unwrap_or_default(),
        notice.alerts.len()
    );
    for member in &notice.alerts {
        out.push('\n');
        out.push_str(&render(template, member));
    }
    out
}

/// `template` filled from `notice`.
pub fn render(template: &str, notice: &Notice) -> String {
    let mut out = String::with_capacity(template.len() + 128);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => match fill(&after[..close], notice) {
                Some(text) => {
                    out.push_str(&text);
                    rest = &after[close + 1..];
                }
                None => {
                    out.push('{');
                    rest = after;
                }
            },
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    // A placeholder that was empty leaves no blank line behind.
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    lines.join("\n")
}

fn fill(name: &str, n: &Notice) -> Option<String> {
    Some(match name {
        "status" => n.status.clone(),
        "STATUS" => n.status.to_uppercase(),
        "alert" => n.alert.clone(),
        "labels" => n
            .group
            .iter()
            .map(|(k, v)| format!("{k}={}", label_text(v)))
            .collect::<Vec<_>>()
            .join(" "),
        "value" => n.value.map_or("no data".into(), |v| format!("{v}")),
        "condition" => n.condition.clone(),
        "history" => history(n),
        "events" => n
            .events
            .iter()
            .map(|e| format!("  {}", event_line(e)))
            .collect::<Vec<_>>()
            .join("\n"),
        "at" => rfc3339(n.at),
        "since" => rfc3339(n.since),
        _ => return None,
    })
}

/// The rule's memory in words.
fn history(n: &Notice) -> String {
    let muted = n
        .muted
        .as_deref()
        .map_or(String::new(), |m| format!(" (muted: {m})"));
    match (n.fired_before, n.previous_ended.as_deref()) {
        (0, _) => format!("first time this alert fired{muted}"),
        (k, ended) => format!(
            "fired {k} time{} before, the last one ended {}{muted}",
            if k == 1 { "" } else { "s" },
            ended.unwrap_or("resolved")
        ),
    }
}

/// An event in one line: its raw line if it has one, else its fields.
fn event_line(e: &serde_json::Value) -> String {
    match e.get("@rawstring").and_then(|r| r.as_str()) {
        Some(raw) => raw.to_string(),
        None => e
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| k.as_str() != "@timestamp")
                    .map(|(k, v)| format!("{k}={}", label_text(v)))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default(),
    }
}

fn rfc3339(ns: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(u64::try_from(ns).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn notice() -> Notice {
        Notice {
            id: uuid::Uuid::nil(),
            alert: "errors".into(),
            status: "firing".into(),
            group: json!({"host": "web-1"}).as_object().unwrap().clone(),
            value: Some(14.0),
            condition: "_count > 10".into(),
            at: 0,
            since: 0,
            fired_before: 2,
            previous_ended: Some("silenced".into()),
            muted: None,
            note: None,
            events: vec![
                json!({"@rawstring": "GET /a 500", "status": 500}),
                json!({"@timestamp": 1, "host": "web-1", "status": 503}),
            ],
            alerts: Vec::new(),
        }
    }

    #[test]
    fn a_group_message_has_a_title_and_each_notice_it_carries() {
        let mut one = notice();
        one.events.clear();
        one.previous_ended = None;
        one.fired_before = 0;
        let mut group = one.clone();
        group.group = json!({"dc": "eu"}).as_object().unwrap().clone();
        group.alerts = vec![one.clone(), one];
        assert_eq!(
            render_notice("{alert} {labels}", &group),
            "[FIRING] errors dc=eu: 2 notices\nerrors host=web-1\nerrors host=web-1"
        );
    }

    #[test]
    fn the_default_message_names_the_group_the_history_and_the_causing_lines() {
        assert_eq!(
            render(DEFAULT, &notice()),
            "[FIRING] errors host=web-1: 14 (_count > 10)\n\
             fired 2 times before, the last one ended silenced\n  GET /a 500\n  host=web-1 status=503"
        );
    }

    #[test]
    fn unknown_or_unclosed_braces_stay_as_written() {
        assert_eq!(
            render("{alert} {nope} {json:1} {", &notice()),
            "errors {nope} {json:1} {"
        );
    }
}
