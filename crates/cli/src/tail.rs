//! `eddy tail '<query>'`: a live query in the terminal over the server's websocket. Events are
//! printed as they match; an aggregate is a table redrawn when it changes (on a terminal; else
//! printed again, followed by a blank line).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::TcpStream;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use eddy_event::Value;
use eddy_server::query::cell_text;
use tungstenite::client::IntoClientRequest;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

#[derive(Debug, Args)]
pub struct TailArgs {
    /// The query, e.g. `status>=500` or `groupBy(host, function=count())`.
    query: String,
    #[command(flatten)]
    from: crate::search::Repository,
    /// The sliding window the query runs over (it starts complete, from history).
    #[arg(long, default_value = "15m")]
    window: String,
    /// Time between two updates of an aggregate.
    #[arg(long, default_value = "1s")]
    interval: String,
    /// Rows kept at most.
    #[arg(long, default_value_t = 200)]
    limit: usize,
    /// Print every message as it comes, one JSON object per line.
    #[arg(long)]
    json: bool,
    /// Stop after this many messages (the first snapshot counts).
    #[arg(long)]
    count: Option<u64>,
}

/// The websocket URL of a live query.
fn live_url(args: &TailArgs) -> anyhow::Result<String> {
    let base = args.from.url.trim_end_matches('/');
    let base = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        bail!("--url {base}: expected http://… or https://…");
    };
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", &args.query)
        .append_pair("window", &args.window)
        .append_pair("interval", &args.interval)
        .append_pair("limit", &args.limit.to_string())
        .finish();
    let repository: String =
        form_urlencoded::byte_serialize(args.from.repository.as_bytes()).collect();
    Ok(format!(
        "{base}/api/v1/repositories/{repository}/live?{query}"
    ))
}

fn connect(
    args: &TailArgs,
) -> anyhow::Result<Result<WebSocket<MaybeTlsStream<TcpStream>>, ExitCode>> {
    let url = live_url(args)?;
    let mut request = url
        .as_str()
        .into_client_request()
        .with_context(|| format!("not a websocket URL: {url}"))?;
    if let Some(token) = &args.from.token {
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse()?);
    }
    match open(request)? {
        Ok((socket, _)) => Ok(Ok(socket)),
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let answer: serde_json::Value =
                serde_json::from_str(&body).unwrap_or(serde_json::json!({ "error": body }));
            if let Some(rendered) = answer["rendered"].as_str() {
                eprintln!("{rendered}");
                return Ok(Err(ExitCode::from(2)));
            }
            bail!(
                "the server answered {}: {}",
                response.status(),
                answer["error"].as_str().unwrap_or("(no message)")
            )
        }
        Err(e) => Err(e).with_context(|| format!("cannot reach {}", args.from.url)),
    }
}

type Opened = Result<
    (
        WebSocket<MaybeTlsStream<TcpStream>>,
        tungstenite::handshake::client::Response,
    ),
    tungstenite::Error,
>;

/// Opens the websocket: over TLS with the `--cacert` roots when given, else as tungstenite
/// does (the public roots for `wss://`).
fn open(request: tungstenite::handshake::client::Request) -> anyhow::Result<Opened> {
    let roots = match crate::client::ca_roots()? {
        Some(roots) if request.uri().scheme_str() == Some("wss") => roots,
        _ => return Ok(tungstenite::connect(request)),
    };
    let host = request.uri().host().unwrap_or_default().to_string();
    let port = request.uri().port_u16().unwrap_or(443);
    let stream = TcpStream::connect((host.trim_matches(['[', ']']), port))
        .with_context(|| format!("cannot reach {host}:{port}"))?;
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tungstenite::Connector::Rustls(std::sync::Arc::new(config));
    Ok(
        tungstenite::client_tls_with_config(request, stream, None, Some(connector)).map_err(|e| {
            match e {
                tungstenite::HandshakeError::Failure(e) => e,
                tungstenite::HandshakeError::Interrupted(_) => {
                    tungstenite::Error::Io(std::io::ErrorKind::WouldBlock.into())
                }
            }
        }),
    )
}

pub fn run(args: &TailArgs) -> anyhow::Result<ExitCode> {
    let mut socket = match connect(args)? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let terminal = std::io::stdout().is_terminal();
    let mut seen = 0u64;
    while args.count.is_none_or(|n| seen < n) {
        let text = match socket.read().context("the live query broke off")? {
            Message::Text(t) => t,
            Message::Close(frame) => {
                let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                bail!("the server closed the live query {reason}");
            }
            _ => continue,
        };
        seen += 1;
        if args.json {
            println!("{}", text.as_str());
            continue;
        }
        let message: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("not a JSON message: {text}"))?;
        match message["type"].as_str() {
            Some("events") => print_events(&message)?,
            Some("snapshot" | "update") if message["events"] == true => print_events(&message)?,
            Some("snapshot" | "update") => print_table(&message, terminal)?,
            Some("skipped") => eprintln!(
                "warning: this terminal fell behind; {} updates skipped",
                message["frames"]
            ),
            Some("stopped") => {
                eprintln!(
                    "the live query stopped: {}",
                    message["reason"].as_str().unwrap_or("(no reason)")
                );
                return Ok(ExitCode::FAILURE);
            }
            _ => {}
        }
    }
    let _ = socket.close(None);
    Ok(ExitCode::SUCCESS)
}

type Row = BTreeMap<String, Value>;

fn rows_of(message: &serde_json::Value) -> anyhow::Result<(Vec<String>, Vec<Row>)> {
    Ok((
        serde_json::from_value(message["columns"].clone())?,
        serde_json::from_value(message["rows"].clone())?,
    ))
}

/// Events, oldest first: the time and the raw text (or the fields where there is none).
fn print_events(message: &serde_json::Value) -> anyhow::Result<()> {
    let (_, mut rows) = rows_of(message)?;
    rows.reverse();
    let mut out = std::io::stdout().lock();
    for row in rows {
        let time = cell_text("@timestamp", row.get("@timestamp"));
        let text = match row.get("@rawstring") {
            Some(raw) => raw.to_text(),
            None => row
                .iter()
                .filter(|(k, _)| !k.starts_with('@'))
                .map(|(k, v)| format!("{k}={}", v.to_text()))
                .collect::<Vec<_>>()
                .join(" "),
        };
        writeln!(out, "{time} {text}")?;
    }
    Ok(())
}

/// An aggregate's answer as a table, redrawn in place on a terminal.
fn print_table(message: &serde_json::Value, terminal: bool) -> anyhow::Result<()> {
    let (columns, rows) = rows_of(message)?;
    if terminal {
        // Home and clear: the table replaces the last one.
        print!("\x1b[H\x1b[2J");
    }
    crate::search::print_table(&columns, &rows)?;
    let window = &message["window"];
    let bound = |k: &str| window[k].as_i64().map(eddy_event::units::format_time);
    if let (Some(start), Some(end)) = (bound("start"), bound("end")) {
        println!("window {start} – {end}; {} rows", rows.len());
    }
    if !terminal {
        println!();
    }
    for w in message["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", w.as_str().unwrap_or_default());
    }
    std::io::stdout().flush()?;
    Ok(())
}
