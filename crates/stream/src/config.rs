//! The settings of live queries (`[live]`) and pipelines (`[pipelines.<name>]`), sections of
//! `eddy serve`'s configuration file.

use std::time::Duration;

use eddy_event::units;
use serde::Deserialize;

use crate::sink::{
    Sink, SinkPlan, DEFAULT_BUFFER_EVENTS, DEFAULT_BUFFER_TIME, DEFAULT_MAX_BACKOFF,
};

/// A pipeline: `[pipelines.errors]` with `from`, `query` and `[[pipelines.errors.sinks]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// The repository whose events it reads.
    pub from: String,
    /// The query each event goes through (filters, `eval`, … or an aggregate).
    pub query: String,
    /// Where a new pipeline starts reading: `end` (events from now on) or `beginning`.
    #[serde(default = "pipeline_start")]
    pub start: String,
    /// For an aggregating query: the rollup window (`1m`); each window's rows go to the sinks
    /// when it closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// How long a window stays open after its end for late events.
    #[serde(default = "pipeline_lateness")]
    pub lateness: String,
    /// Closed windows kept for `GET /api/v1/pipelines/{name}` (a ring buffer).
    #[serde(default = "pipeline_keep")]
    pub keep: usize,
    /// A field whose value picks the sinks: a sink with `on = "<value>"` takes the events with
    /// that value; sinks without `on` take every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// Where the results go.
    pub sinks: Vec<SinkConfig>,
}

fn pipeline_start() -> String {
    "end".into()
}

fn pipeline_lateness() -> String {
    "5s".into()
}

fn pipeline_keep() -> usize {
    10
}

/// One of a pipeline's outputs: exactly one of `repository`, `topic`, `webhook`, `websocket`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkConfig {
    /// Store into this repository (de-duplicated by the events' ids).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Append to this bus topic (rebroadcast), created if needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// POST JSON arrays to this URL, retried with back-off until it answers 2xx.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// Push to the websocket channel of this name (`GET /api/v1/channels/{name}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub websocket: Option<String>,
    /// With the pipeline's `split`: only events whose split field has this value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on: Option<String>,
    /// Deliver once this many events are waiting (1: each at once; 500 by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffer_events: Option<usize>,
    /// … or once the oldest waiting event has waited this long.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffer_time: Option<String>,
    /// The longest wait between two attempts of a failing delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_backoff: Option<String>,
}

/// Where a new pipeline starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Events from now on.
    End,
    /// The oldest events the bus still holds.
    Beginning,
}

/// A pipeline's settings, checked and typed.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelinePlan {
    /// Where it starts reading when it has committed nothing.
    pub start: Start,
    /// The rollup window of an aggregating query.
    pub window: Option<Duration>,
    /// How long a window stays open after its end for late events.
    pub lateness: Duration,
    /// Its outputs.
    pub sinks: Vec<SinkPlan>,
}

impl PipelineConfig {
    /// Every problem with the pipeline `name` (empty: none).
    pub fn problems(&self, name: &str) -> Vec<String> {
        self.plan(name).err().unwrap_or_default()
    }

    /// The checked settings of the pipeline `name`, or every problem with them, each naming
    /// the pipeline.
    pub fn plan(&self, name: &str) -> Result<PipelinePlan, Vec<String>> {
        let mut problems = Vec::new();
        let mut say = |p: String| problems.push(format!("pipeline {name:?}: {p}"));
        let aggregates = match eddy_query::prepare(&self.query, 1) {
            Ok(p) => p.program.explicit,
            Err(e) => {
                say(format!("query: {}", e.render(&self.query)));
                false
            }
        };
        let mut window = None;
        match (&self.window, aggregates) {
            (None, true) => {
                say("the query aggregates: give it a rollup window, e.g. window = \"1m\"".into())
            }
            (Some(_), false) => {
                say("window is for aggregating queries; this one passes events on".into())
            }
            (Some(w), true) => match humantime::parse_duration(w) {
                Ok(d) if d >= Duration::from_secs(1) => window = Some(d),
                _ => say(format!("window = {w:?} is not a duration of at least 1s")),
            },
            (None, false) => {}
        }
        let lateness = humantime::parse_duration(&self.lateness).unwrap_or_else(|_| {
            say(format!("lateness = {:?} is not a duration", self.lateness));
            Duration::ZERO
        });
        let start = match self.start.as_str() {
            "end" => Start::End,
            "beginning" => Start::Beginning,
            other => {
                say(format!(
                    "start = {other:?}: expected \"end\" or \"beginning\""
                ));
                Start::End
            }
        };
        if self.keep == 0 || self.keep > 10_000 {
            say(format!("keep = {} must be between 1 and 10000", self.keep));
        }
        if self.sinks.is_empty() {
            say("no sinks: add [[pipelines.NAME.sinks]] with repository, topic, webhook or websocket".into());
        }
        let mut sinks = Vec::new();
        for (i, config) in self.sinks.iter().enumerate() {
            let mut say = |p: String| say(format!("sink {}: {p}", i + 1));
            match config.plan(&self.from, self.split.is_some()) {
                Ok(plan) => sinks.push(plan),
                Err(problems) => problems.into_iter().for_each(&mut say),
            }
        }
        if problems.is_empty() {
            Ok(PipelinePlan {
                start,
                window,
                lateness,
                sinks,
            })
        } else {
            Err(problems)
        }
    }
}

impl SinkConfig {
    /// The checked sink of a pipeline reading `from`, or its problems.
    fn plan(&self, from: &str, split: bool) -> Result<SinkPlan, Vec<String>> {
        let mut problems = Vec::new();
        let targets = [
            self.repository.clone().map(Sink::Repository),
            self.topic.clone().map(Sink::Topic),
            self.webhook.clone().map(Sink::Webhook),
            self.websocket.clone().map(Sink::Websocket),
        ];
        let mut targets = targets.into_iter().flatten();
        let sink = match (targets.next(), targets.next()) {
            (Some(sink), None) => Some(sink),
            _ => {
                problems
                    .push("give exactly one of repository, topic, webhook, websocket".to_string());
                None
            }
        };
        if let Some(url) = &self.webhook {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                problems.push(format!("webhook {url:?} is not an http(s) URL"));
            }
        }
        if self.repository.as_deref() == Some(from) {
            problems.push(format!("writing into {from:?}, the repository it reads, would feed it its own output forever"));
        }
        if self.on.is_some() && !split {
            problems.push("on = … needs the pipeline's split = \"field\"".to_string());
        }
        if self.buffer_events == Some(0) {
            problems.push("buffer_events must be at least 1".to_string());
        }
        let mut duration = |what: &str, text: &Option<String>, default: Duration| match text {
            None => default,
            Some(d) => humantime::parse_duration(d).unwrap_or_else(|_| {
                problems.push(format!("{what} = {d:?} is not a duration"));
                default
            }),
        };
        let buffer_time = duration("buffer_time", &self.buffer_time, DEFAULT_BUFFER_TIME);
        let max_backoff = duration("max_backoff", &self.max_backoff, DEFAULT_MAX_BACKOFF);
        match sink {
            Some(sink) if problems.is_empty() => Ok(SinkPlan {
                sink,
                on: self.on.clone(),
                buffer_events: self.buffer_events.unwrap_or(DEFAULT_BUFFER_EVENTS),
                buffer_time,
                max_backoff,
            }),
            _ => Err(problems),
        }
    }
}

/// Live queries.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveConfig {
    /// A live query's state is bounded to this (`64MiB`); past it the query stops and its
    /// subscribers are told why.
    pub max_query_memory: String,
}

impl Default for LiveConfig {
    fn default() -> LiveConfig {
        LiveConfig {
            max_query_memory: "64MiB".into(),
        }
    }
}

impl LiveConfig {
    /// `max_query_memory` in bytes.
    pub fn max_query_bytes(&self) -> Result<usize, String> {
        units::parse_size(&self.max_query_memory)
            .map(|n| n as usize)
            .map_err(|e| format!("live.max_query_memory: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(toml_sinks: &str, window: Option<&str>) -> PipelineConfig {
        let query = if window.is_some() {
            "groupBy(host)"
        } else {
            "status>=500"
        };
        let window = window.map_or(String::new(), |w| format!("window = \"{w}\"\n"));
        toml::from_str(&format!(
            "from = \"main\"\nquery = \"{query}\"\n{window}{toml_sinks}"
        ))
        .unwrap()
    }

    #[test]
    fn a_checked_pipeline_has_its_durations_read_once_and_each_sink_typed() {
        let plan = pipeline(
            "lateness = \"2s\"\nstart = \"beginning\"\n[[sinks]]\nwebhook = \"http://127.0.0.1:9/x\"\nbuffer_time = \"50ms\"\nmax_backoff = \"3s\"\n[[sinks]]\nrepository = \"errors\"\nbuffer_events = 7\n",
            Some("1m"),
        )
        .plan("p")
        .unwrap();
        assert_eq!(plan.start, Start::Beginning);
        assert_eq!(plan.window, Some(Duration::from_secs(60)));
        assert_eq!(plan.lateness, Duration::from_secs(2));
        assert_eq!(
            plan.sinks,
            vec![
                SinkPlan {
                    sink: Sink::Webhook("http://127.0.0.1:9/x".into()),
                    on: None,
                    buffer_events: DEFAULT_BUFFER_EVENTS,
                    buffer_time: Duration::from_millis(50),
                    max_backoff: Duration::from_secs(3),
                },
                SinkPlan {
                    sink: Sink::Repository("errors".into()),
                    on: None,
                    buffer_events: 7,
                    buffer_time: DEFAULT_BUFFER_TIME,
                    max_backoff: DEFAULT_MAX_BACKOFF,
                },
            ]
        );
    }

    #[test]
    fn a_sink_naming_two_targets_or_a_bad_duration_is_a_problem_not_a_default() {
        let problems = pipeline(
            "[[sinks]]\ntopic = \"t\"\nwebsocket = \"w\"\n[[sinks]]\ntopic = \"t\"\nmax_backoff = \"later\"\n",
            None,
        )
        .plan("p")
        .unwrap_err();
        assert_eq!(
            problems,
            vec![
                "pipeline \"p\": sink 1: give exactly one of repository, topic, webhook, websocket"
                    .to_string(),
                "pipeline \"p\": sink 2: max_backoff = \"later\" is not a duration".to_string(),
            ]
        );
    }
}
