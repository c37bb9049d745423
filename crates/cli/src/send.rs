//! `eddy send`: ship lines from files or stdin to a running `eddy serve` over HTTP.
//!
//! Lines are batched (by count and bytes) and posted to `/api/v1/ingest/{repository}` with the
//! chosen parser, by a few senders at once. 429 and 503 answers and connection failures are
//! retried with exponential back-off (at least the server's `Retry-After`); a 400 stops with the
//! server's reasons mapped back to file and line. Files show a progress bar on a terminal.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::{output, units};

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Files to send, in order; `-` or none reads stdin. Each holds lines, or (with the json
    /// parser) a JSON array of events, sent element by element.
    files: Vec<PathBuf>,
    /// The server's base URL.
    #[arg(long, env = "EDDY_URL", default_value = "http://127.0.0.1:7280")]
    url: String,
    /// Repository to send to.
    #[arg(short, long, default_value = "main")]
    repository: String,
    /// Ingest token of the repository (sent as `Authorization: Bearer`).
    #[arg(long, env = "EDDY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How the server parses each line: json, kv, accesslog, syslog, statsd or none.
    #[arg(short, long, default_value = "json")]
    parser: String,
    /// Lines per request at most.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Bytes per request at most (a single longer line goes alone).
    #[arg(long, value_parser = units::parse_size, default_value = "4MiB")]
    batch_bytes: u64,
    /// Requests in flight at once (batches may then be stored out of order).
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Compress request bodies with gzip.
    #[arg(long)]
    gzip: bool,
    /// Attempts per batch on 429, 503 or a connection failure before giving up.
    #[arg(long, default_value_t = 10)]
    attempts: u32,
    /// Timeout of one request.
    #[arg(long, value_parser = units::parse_duration, default_value = "60s")]
    timeout: Duration,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// A batch and where its lines came from.
struct Batch {
    source: String,
    /// Lines of a text file, or elements of a JSON array.
    unit: &'static str,
    first_line: u64,
    body: Vec<u8>,
    lines: u64,
}

impl Batch {
    fn new(source: &str, unit: &'static str, first_line: u64) -> Batch {
        Batch {
            source: source.to_string(),
            unit,
            first_line,
            body: Vec::new(),
            lines: 0,
        }
    }

    /// Where item `n` (1-based) of this batch's input is, for messages.
    fn place(&self, n: u64) -> String {
        match self.unit {
            "line" => format!("{}:{n}", self.source),
            unit => format!("{} {unit} {n}", self.source),
        }
    }
}

/// Cuts items (lines, or JSON array elements as lines) into batches by count and bytes.
struct Batcher<'a, F: FnMut(Batch) -> bool> {
    args: &'a SendArgs,
    next_item: u64,
    batch: Batch,
    send: F,
}

impl<'a, F: FnMut(Batch) -> bool> Batcher<'a, F> {
    fn new(source: &str, unit: &'static str, args: &'a SendArgs, send: F) -> Self {
        Batcher {
            args,
            next_item: 1,
            batch: Batch::new(source, unit, 1),
            send,
        }
    }

    /// Sends the batch so far; false if sending has stopped.
    fn flush(&mut self) -> bool {
        if self.batch.lines == 0 {
            return true;
        }
        let next = Batch::new(&self.batch.source, self.batch.unit, self.next_item);
        let full = std::mem::replace(&mut self.batch, next);
        (self.send)(full)
    }

    /// Adds one item (a newline is added if missing); false if sending has stopped.
    fn push(&mut self, item: &[u8]) -> bool {
        // An item that would overflow the batch's bytes starts the next batch.
        if (self.batch.body.len() + item.len()) as u64 > self.args.batch_bytes && !self.flush() {
            return false;
        }
        self.batch.body.extend_from_slice(item);
        if item.last() != Some(&b'\n') {
            self.batch.body.push(b'\n');
        }
        self.batch.lines += 1;
        self.next_item += 1;
        if self.batch.lines as usize >= self.args.batch_size {
            return self.flush();
        }
        true
    }
}

/// Feeds the elements of a JSON array to `batcher`, one per line, without reading the whole
/// array into memory.
fn read_json_array<F: FnMut(Batch) -> bool>(
    reader: impl Read,
    batcher: &mut Batcher<'_, F>,
) -> anyhow::Result<()> {
    use serde::de::{Deserializer as _, SeqAccess, Visitor};
    struct Elements<'b, 'a, F: FnMut(Batch) -> bool>(&'b mut Batcher<'a, F>);
    impl<'de, F: FnMut(Batch) -> bool> Visitor<'de> for Elements<'_, '_, F> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON array of objects")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(raw) = seq.next_element::<Box<serde_json::value::RawValue>>()? {
                let text = raw.get();
                // NDJSON needs each event on one line: re-serialise pretty-printed elements.
                let line = if text.contains('\n') {
                    serde_json::from_str::<serde_json::Value>(text)
                        .map_err(serde::de::Error::custom)?
                        .to_string()
                } else {
                    text.to_string()
                };
                if !self.0.push(line.as_bytes()) {
                    return Ok(());
                }
            }
            Ok(())
        }
    }
    let mut de = serde_json::Deserializer::from_reader(reader);
    de.deserialize_seq(Elements(batcher))
        .with_context(|| format!("reading the JSON array in {}", batcher.batch.source))?;
    Ok(())
}

#[derive(Default)]
struct Totals {
    events: AtomicU64,
    duplicates: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

pub fn run(args: &SendArgs) -> anyhow::Result<ExitCode> {
    if args.batch_size == 0 || args.concurrency == 0 || args.attempts == 0 {
        bail!("--batch-size, --concurrency and --attempts must be at least 1");
    }
    let url = format!(
        "{}/api/v1/ingest/{}?parser={}",
        args.url.trim_end_matches('/'),
        args.repository,
        args.parser
    );
    let inputs: Vec<Option<PathBuf>> = if args.files.is_empty() {
        vec![None]
    } else {
        args.files
            .iter()
            .map(|f| (f.as_os_str() != "-").then(|| f.clone()))
            .collect()
    };
    let total_bytes: Option<u64> = inputs
        .iter()
        .map(|f| {
            f.as_ref()
                .and_then(|p| std::fs::metadata(p).ok())
                .map(|m| m.len())
        })
        .sum();
    let progress = progress_bar(total_bytes, args.quiet);

    let agent = crate::client::agent(Some(args.timeout));
    let totals = Arc::new(Totals::default());
    let failed = Arc::new(AtomicBool::new(false));
    let first_error: Arc<Mutex<Option<anyhow::Error>>> = Arc::default();
    let (tx, rx) = mpsc::sync_channel::<Batch>(args.concurrency);
    let rx = Arc::new(Mutex::new(rx));
    let started = Instant::now();
    let result = std::thread::scope(|scope| -> anyhow::Result<()> {
        for _ in 0..args.concurrency {
            let (rx, agent, url, totals, failed, first_error, progress) = (
                rx.clone(),
                agent.clone(),
                url.clone(),
                totals.clone(),
                failed.clone(),
                first_error.clone(),
                progress.clone(),
            );
            scope.spawn(move || loop {
                let next = rx
                    .lock()
                    .map_err(|_| ())
                    .and_then(|r| r.recv().map_err(|_| ()));
                let Ok(batch) = next else { return };
                if failed.load(Ordering::Relaxed) {
                    continue;
                }
                match post_with_retries(&agent, &url, args, &batch, &totals) {
                    Ok(()) => progress.inc(batch.body.len() as u64),
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        if let Ok(mut slot) = first_error.lock() {
                            slot.get_or_insert(e);
                        }
                    }
                }
            });
        }
        let read = read_batches(&inputs, args, |batch| {
            if failed.load(Ordering::Relaxed) {
                return false;
            }
            tx.send(batch).is_ok()
        });
        drop(tx);
        read
    });
    progress.finish_and_clear();
    if let Some(e) = first_error.lock().ok().and_then(|mut e| e.take()) {
        eprintln!(
            "stored before the failure: {} events",
            totals.events.load(Ordering::Relaxed)
        );
        return Err(e);
    }
    result?;
    let elapsed = started.elapsed().as_secs_f64();
    let events = totals.events.load(Ordering::Relaxed);
    let summary = serde_json::json!({
        "events": events,
        "duplicates": totals.duplicates.load(Ordering::Relaxed),
        "requests": totals.requests.load(Ordering::Relaxed),
        "retries": totals.retries.load(Ordering::Relaxed),
        "seconds": elapsed,
    });
    if args.json {
        output::json_line(&summary)?;
    } else if !args.quiet {
        eprintln!(
            "sent {events} events in {} requests ({} retried, {} duplicates dropped) in {elapsed:.2}s: {:.0} events/s",
            summary["requests"],
            summary["retries"],
            summary["duplicates"],
            events as f64 / elapsed.max(1e-9)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn progress_bar(total_bytes: Option<u64>, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    // indicatif draws nothing when stderr is not a terminal.
    match total_bytes {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "{bar:40} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {binary_bytes} sent, {binary_bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    }
}

/// Reads every input into batches and hands them to `send` (false: stop reading).
fn read_batches(
    inputs: &[Option<PathBuf>],
    args: &SendArgs,
    mut send: impl FnMut(Batch) -> bool,
) -> anyhow::Result<()> {
    for input in inputs {
        let (source, reader): (String, Box<dyn Read>) = match input {
            Some(path) => (
                path.display().to_string(),
                Box::new(File::open(path).with_context(|| format!("opening {}", path.display()))?),
            ),
            None => ("stdin".to_string(), Box::new(std::io::stdin().lock())),
        };
        let mut reader = BufReader::with_capacity(1 << 20, reader);
        // A JSON array (first non-blank byte `[`) is sent element by element.
        let first = loop {
            let buf = reader
                .fill_buf()
                .with_context(|| format!("reading {source}"))?;
            match buf.iter().position(|b| !b.is_ascii_whitespace()) {
                Some(i) => break Some(buf[i]),
                None if buf.is_empty() => break None,
                None => {
                    let n = buf.len();
                    reader.consume(n);
                }
            }
        };
        if first == Some(b'[') && args.parser == "json" {
            let mut batcher = Batcher::new(&source, "element", args, &mut send);
            read_json_array(reader, &mut batcher)?;
            if !batcher.flush() {
                return Ok(());
            }
            continue;
        }
        let mut batcher = Batcher::new(&source, "line", args, &mut send);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .with_context(|| format!("reading {source}"))?;
            if n == 0 {
                break;
            }
            if !batcher.push(&line) {
                return Ok(());
            }
        }
        if !batcher.flush() {
            return Ok(());
        }
    }
    Ok(())
}

/// Posts one batch, retrying what is worth retrying.
fn post_with_retries(
    agent: &ureq::Agent,
    url: &str,
    args: &SendArgs,
    batch: &Batch,
    totals: &Totals,
) -> anyhow::Result<()> {
    let body = if args.gzip {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&batch.body)?;
        gz.finish()?
    } else {
        batch.body.clone()
    };
    let place = format!(
        "{}-{}",
        batch.place(batch.first_line),
        batch.first_line + batch.lines - 1
    );
    for attempt in 1..=args.attempts {
        let mut req = agent
            .post(url)
            .header("Content-Type", "text/plain; charset=utf-8");
        if let Some(token) = &args.token {
            req = req.header("Authorization", &format!("Bearer {token}"));
        }
        if args.gzip {
            req = req.header("Content-Encoding", "gzip");
        }
        totals.requests.fetch_add(1, Ordering::Relaxed);
        let (retry_after, why) = match req.send(&body[..]) {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let text = resp.body_mut().read_to_string().unwrap_or_default();
                let answer: serde_json::Value =
                    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
                match status {
                    200 => {
                        let n = |k: &str| answer[k].as_u64().unwrap_or(0);
                        totals.events.fetch_add(n("events"), Ordering::Relaxed);
                        totals
                            .duplicates
                            .fetch_add(n("duplicates"), Ordering::Relaxed);
                        return Ok(());
                    }
                    429 | 503 => (retry_after, format!("{status}: {}", message(&answer))),
                    400 => {
                        let mut why = rejected_lines(batch, &answer);
                        if args.parser == "json" {
                            if let Some(parser) = suggest_parser(&batch.body) {
                                why.push_str(&format!(
                                    "\nhint: these lines are not JSON but look like {parser} lines: \
                                     try --parser {parser}"
                                ));
                            }
                        }
                        bail!("{why}")
                    }
                    _ => bail!(
                        "{place}: the server answered {status}: {}",
                        message(&answer)
                    ),
                }
            }
            Err(e) if crate::client::is_tls_failure(&e) => {
                bail!("{place}: {}", crate::client::tls_failure(&e))
            }
            Err(e) => (None, e.to_string()),
        };
        if attempt == args.attempts {
            bail!("{place}: giving up after {attempt} attempts; last: {why}");
        }
        totals.retries.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(backoff(attempt, retry_after));
    }
    unreachable!("the loop returns on its last attempt")
}

/// Exponential back-off from 100 ms, capped at 30 s, never below the server's `Retry-After`,
/// with jitter so that many senders do not come back at once.
fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exp = Duration::from_millis(100u64 << attempt.min(9)).min(Duration::from_secs(30));
    let base = exp.max(retry_after.unwrap_or_default());
    let jitter = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        % 1000) as f64
        / 1000.0;
    base.mul_f64(1.0 + 0.25 * jitter)
}

fn message(answer: &serde_json::Value) -> String {
    answer["error"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| answer.to_string())
}

/// The line format that reads every one of the first lines of `body` (with fields to show for
/// it), when JSON does not: what `--parser` to suggest.
fn suggest_parser(body: &[u8]) -> Option<&'static str> {
    use eddy_event::Parser;
    let text = String::from_utf8_lossy(body);
    let sample: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(20)
        .collect();
    if sample.is_empty() || sample.iter().all(|l| Parser::Json.parse(l, 0).is_ok()) {
        return None;
    }
    // Most specific first: kv reads much that is not meant as key=value.
    let candidates = [
        (Parser::Accesslog, "accesslog"),
        (Parser::Syslog, "syslog"),
        (Parser::Statsd, "statsd"),
        (Parser::Kv, "kv"),
    ];
    candidates.into_iter().find_map(|(parser, name)| {
        sample
            .iter()
            .all(|l| parser.parse(l, 0).is_ok_and(|e| !e.fields.is_empty()))
            .then_some(name)
    })
}

/// The server's list of bad lines, as `file:line: field: reason`.
fn rejected_lines(batch: &Batch, answer: &serde_json::Value) -> String {
    let mut out = format!(
        "{}: the server refused the batch starting here: {}",
        batch.place(batch.first_line),
        message(answer)
    );
    for bad in answer["lines"].as_array().into_iter().flatten() {
        let line = batch.first_line + bad["line"].as_u64().unwrap_or(1) - 1;
        out.push_str(&format!(
            "\n  {}: column {}{}: {}",
            batch.place(line),
            bad["column"],
            bad["field"]
                .as_str()
                .map(|f| format!(", field {f}"))
                .unwrap_or_default(),
            bad["reason"].as_str().unwrap_or("")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_suggests_the_parser_that_reads_lines_json_does_not() {
        let access = b"127.0.0.1 - - [10/Oct/2026:13:55:36 +0000] \"GET / HTTP/1.1\" 200 512 \"-\" \"curl/8\"\n";
        assert_eq!(suggest_parser(access), Some("accesslog"));
        let syslog = b"<34>1 2026-10-11T22:14:15.003Z host app 123 ID47 - hello\n";
        assert_eq!(suggest_parser(syslog), Some("syslog"));
        assert_eq!(
            suggest_parser(b"level=error msg=boom user=alice\n"),
            Some("kv")
        );
        assert_eq!(suggest_parser(b"{\"a\":1}\n"), None);
    }

    #[test]
    fn backoff_grows_is_capped_and_respects_retry_after() {
        assert!(backoff(1, None) >= Duration::from_millis(200));
        assert!(backoff(3, None) >= Duration::from_millis(800));
        assert!(backoff(30, None) <= Duration::from_millis(37_500));
        assert!(backoff(1, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
    }
}
