//! TLS on every door of the real binary (issue 26): HTTPS with `curl --cacert`, the served
//! certificate as `openssl s_client` sees it, syslog over TLS (RFC 5425) with `openssl
//! s_client` as the sender (util-linux's `logger` has no TLS), certificate files rotated under
//! an open connection, mutual TLS, the rule that refuses tokens on a public plaintext door,
//! and 500 slow TLS clients beside a normal one.
//!
//! Certificates are made per test with rcgen under a temporary directory; nothing is committed.
//! Every wait is bounded by a count or a generous deadline, never by a measured time.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{output_with_stdin, stored_events, wait_for, Server, TOKEN};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A certificate authority that issues certificates into a directory.
struct Authority {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate, PEM, written to `<name>.pem`.
    pem_path: PathBuf,
    pem: String,
}

/// An issued certificate: its files and its DER bytes (what a client sees).
struct Issued {
    cert: PathBuf,
    key: PathBuf,
    der: Vec<u8>,
}

impl Authority {
    fn new(dir: &Path, name: &str) -> Authority {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("eddy test {name}"));
        let cert = params.self_signed(&key).unwrap();
        let pem_path = dir.join(format!("{name}.pem"));
        std::fs::write(&pem_path, cert.pem()).unwrap();
        Authority {
            dir: dir.to_path_buf(),
            issuer: Issuer::new(params, key),
            pem_path,
            pem: cert.pem(),
        }
    }

    /// A certificate for `localhost` and 127.0.0.1, written to `<name>.pem` and `<name>.key`.
    fn issue(&self, name: &str) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let issued = Issued {
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}.key")),
            der: cert.der().to_vec(),
        };
        std::fs::write(&issued.cert, cert.pem()).unwrap();
        std::fs::write(&issued.key, key.serialize_pem()).unwrap();
        issued
    }
}

/// Replaces `to` by `from`'s bytes at once (a rename), as certificate tools do.
fn replace(from: &Path, to: &Path) {
    let staged = to.with_extension("new");
    std::fs::copy(from, &staged).unwrap();
    std::fs::rename(&staged, to).unwrap();
}

fn tls_config(served: &Issued, extra: &str) -> String {
    format!(
        "[tls]\ncert = {:?}\nkey = {:?}\nreload_interval = \"100ms\"\n{extra}",
        served.cert, served.key
    )
}

fn addr(server: &Server) -> SocketAddr {
    server
        .url
        .strip_prefix("https://")
        .unwrap()
        .parse()
        .unwrap()
}

/// `curl -sS --cacert <ca>` with `args`; its output.
fn curl<S: AsRef<std::ffi::OsStr>>(ca: &Path, args: &[S]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "60", "--cacert", ca.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// The value of one metric line, read over HTTPS.
fn metric(server: &Server, ca: &Path, series: &str) -> f64 {
    let out = curl(ca, &[&format!("{}/metrics", server.url)]);
    text(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn ingest_with_curl(server: &Server, ca: &Path, body: &str) -> serde_json::Value {
    let out = curl(
        ca,
        &[
            "-H",
            "content-type: application/x-ndjson",
            "--data-binary",
            body,
            &format!("{}/api/v1/ingest/main", server.url),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits until `count()` over all of `main` is `events`, querying with curl over HTTPS.
fn wait_for_count(server: &Server, ca: &Path, events: u64) {
    let query =
        r#"{"query":"count()","start":"1970-01-01T00:00:00Z","end":"2200-01-01T00:00:00Z"}"#;
    let url = format!("{}/api/v1/repositories/main/query", server.url);
    wait_for(
        &format!("{events} events found by a query over HTTPS"),
        || {
            let out = curl(
                ca,
                &["-H", "content-type: application/json", "-d", query, &url],
            );
            let answer: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            (answer["rows"][0]["_count"] == events).then_some(())
        },
    );
}

/// A rustls client trusting `ca` only.
fn client(ca: &Authority) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection to `addr`, its handshake complete.
fn connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> TlsStream {
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config.clone(), name).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut stream = StreamOwned::new(conn, sock);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).unwrap();
    }
    stream
}

/// The certificate the server presented on `stream`.
fn served(stream: &TlsStream) -> Vec<u8> {
    stream.conn.peer_certificates().unwrap()[0].to_vec()
}

/// The certificate a new connection to `addr` is served.
fn served_to_new_connection(addr: SocketAddr, config: &Arc<ClientConfig>) -> Vec<u8> {
    served(&connect(addr, config))
}

/// Sends one HTTP/1.1 request on a kept-alive stream and reads its answer: (status, body).
fn request(stream: &mut TlsStream, method: &str, path: &str, body: &str) -> (u16, String) {
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/x-ndjson\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    stream.flush().unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the connection closed: {}", text(&got));
        got.extend_from_slice(&buf[..n]);
        let all = text(&got);
        let Some((head, rest)) = all.split_once("\r\n\r\n") else {
            continue;
        };
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap();
        if rest.len() >= length {
            let status = head.split(' ').nth(1).unwrap().parse().unwrap();
            return (status, rest[..length].to_string());
        }
    }
}

/// Frames for syslog over TLS (RFC 5425): `<length> <message>`.
fn octet_counted(messages: &[&str]) -> String {
    messages
        .iter()
        .map(|m| format!("{} {m}", m.len()))
        .collect()
}

#[test]
fn https_ingest_and_query_with_curl_syslog_over_tls_and_the_certificate_openssl_sees() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new(dir.path(), "ca");
    let cert = ca.issue("server");
    let server = Server::start_with(
        dir.path(),
        &format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[repositories.main]\n\
             [[tcp]]\nlisten = \"127.0.0.1:0\"\nparser = \"syslog\"\n\
             [[tcp]]\nlisten = \"127.0.0.1:0\"\ntls = false\n{}",
            tls_config(&cert, "")
        ),
    );
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let (syslog, plain) = (server.tcp[0], server.tcp[1]);

    // HTTPS: ingest and query with curl, trusting only the test's authority.
    let answer = ingest_with_curl(&server, &ca.pem_path, "{\"a\":1}\n{\"a\":2}\n");
    assert_eq!(answer["events"], 2, "{answer}");
    wait_for_count(&server, &ca.pem_path, 2);

    // openssl sees the certificate the files hold, verified against the authority.
    let out = output_with_stdin(
        {
            let mut c = Command::new("openssl");
            c.args(["s_client", "-connect", &server.url["https://".len()..]])
                .args(["-servername", "localhost", "-verify_return_error"])
                .args(["-CAfile", ca.pem_path.to_str().unwrap()]);
            c
        },
        "",
    );
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{shown}\n{}", text(&out.stderr));
    assert!(shown.contains("Verify return code: 0 (ok)"), "{shown}");
    let pem = std::fs::read_to_string(&cert.cert).unwrap();
    let squeeze = |s: &str| s.split_whitespace().collect::<String>();
    assert!(
        squeeze(&shown).contains(&squeeze(&pem)),
        "openssl was served another certificate:\n{shown}"
    );

    // Syslog over TLS: octet-counted frames from openssl s_client; and a plain line on the
    // listener that opted out.
    let frames = octet_counted(&[
        "<34>1 2026-12-02T10:00:00Z web-1 app - - - first over tls",
        "<13>1 2026-12-02T10:00:01Z web-1 app - - - second over tls\nwith a newline inside",
    ]);
    let mut sender = Command::new("openssl");
    sender
        .args(["s_client", "-connect", &syslog.to_string()])
        .args(["-servername", "localhost", "-verify_return_error", "-quiet"])
        .args(["-no_ign_eof", "-CAfile", ca.pem_path.to_str().unwrap()]);
    let out = output_with_stdin(sender, &frames);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut line = TcpStream::connect(plain).unwrap();
    line.write_all(b"{\"plain\":true}\n").unwrap();
    drop(line);
    wait_for_count(&server, &ca.pem_path, 5);

    // Plain HTTP to the HTTPS door is a failed handshake, counted; never an answer in clear.
    let mut clear = TcpStream::connect(addr(&server)).unwrap();
    clear
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    clear
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut reply = Vec::new();
    let _ = clear.read_to_end(&mut reply);
    assert!(!text(&reply).contains("200 OK"), "{}", text(&reply));
    let failures = format!(
        r#"eddy_ingest_tls_handshake_failures_total{{door="http",listener="{}"}}"#,
        addr(&server)
    );
    wait_for("the failed handshake counted", || {
        (metric(&server, &ca.pem_path, &failures) >= 1.0).then_some(())
    });
    server.stop();

    let raws: Vec<String> = stored_events(dir.path(), "main")
        .into_iter()
        .filter_map(|e| e.raw)
        .collect();
    assert!(
        raws.iter()
            .any(|r| r.ends_with("second over tls\nwith a newline inside")),
        "{raws:?}"
    );
    assert!(
        raws.iter().any(|r| r.ends_with("first over tls")),
        "{raws:?}"
    );
}

#[test]
fn rotated_certificate_files_reach_new_connections_while_an_open_one_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new(dir.path(), "ca");
    let first = ca.issue("first");
    let second = ca.issue("second");
    let served_cert = ca.issue("served");
    replace(&first.cert, &served_cert.cert);
    replace(&first.key, &served_cert.key);
    let server = Server::start_with(
        dir.path(),
        &format!(
            "[http]\nlisten = \"127.0.0.1:0\"\nheader_read_timeout = \"600s\"\n[repositories.main]\n{}",
            tls_config(&served_cert, "")
        ),
    );
    let addr = addr(&server);
    let config = client(&ca);
    let mut open = connect(addr, &config);
    assert_eq!(served(&open), first.der, "the first certificate is served");
    assert_eq!(
        request(&mut open, "GET", "/health", ""),
        (200, "ok\n".into())
    );

    // A broken certificate file is refused and counted; the first certificate stays.
    std::fs::write(&served_cert.cert, "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
    let refused = r#"eddy_ingest_tls_reloads_total{outcome="refused"}"#;
    wait_for("the broken file refused", || {
        (metric(&server, &ca.pem_path, refused) >= 1.0).then_some(())
    });
    assert_eq!(served_to_new_connection(addr, &config), first.der);

    // The second certificate and its key, each replaced at once: new connections get it.
    replace(&second.key, &served_cert.key);
    replace(&second.cert, &served_cert.cert);
    wait_for("new connections served the second certificate", || {
        (served_to_new_connection(addr, &config) == second.der).then_some(())
    });
    let reloaded = r#"eddy_ingest_tls_reloads_total{outcome="reloaded"}"#;
    assert!(metric(&server, &ca.pem_path, reloaded) >= 1.0);

    // The connection opened before the rotation still works, on its first certificate.
    assert_eq!(served(&open), first.der);
    let (status, body) = request(
        &mut open,
        "POST",
        "/api/v1/ingest/main",
        "{\"over\":\"the old connection\"}\n",
    );
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"duplicates":0,"events":1}"#)
    );
    let answer = ingest_with_curl(&server, &ca.pem_path, "{\"over\":\"curl\"}\n");
    assert_eq!(answer["events"], 1, "{answer}");
    drop(open);
    server.stop();
}

#[test]
fn mutual_tls_refuses_clients_without_a_certificate_from_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new(dir.path(), "ca");
    let cert = ca.issue("server");
    let clients = Authority::new(dir.path(), "client-ca");
    let node = clients.issue("node-1");
    let strangers = Authority::new(dir.path(), "stranger-ca");
    let stranger = strangers.issue("stranger");
    let server = Server::start_with(
        dir.path(),
        &format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[repositories.main]\n\
             [[tcp]]\nlisten = \"127.0.0.1:0\"\n{}",
            tls_config(&cert, &format!("client_ca = {:?}\n", clients.pem_path))
        ),
    );
    let health = format!("{}/health", server.url);
    // curl's arguments to present `issued`'s certificate, then `url`.
    let presenting = |issued: &Issued, url: &str| {
        [
            "--cert".to_string(),
            issued.cert.display().to_string(),
            "--key".to_string(),
            issued.key.display().to_string(),
            url.to_string(),
        ]
    };

    let none = curl(&ca.pem_path, &[&health]);
    assert!(
        !none.status.success(),
        "served without a client certificate"
    );
    let foreign = curl(&ca.pem_path, &presenting(&stranger, &health));
    assert!(
        !foreign.status.success(),
        "served a certificate from another authority"
    );
    let own = curl(&ca.pem_path, &presenting(&node, &health));
    assert!(own.status.success(), "{}", text(&own.stderr));
    assert_eq!(text(&own.stdout), "ok\n");

    // The TCP listener asks the same: openssl with the node's certificate sends a line.
    let mut sender = Command::new("openssl");
    sender
        .args(["s_client", "-connect", &server.tcp[0].to_string()])
        .args(["-servername", "localhost", "-verify_return_error", "-quiet"])
        .args(["-no_ign_eof", "-CAfile", ca.pem_path.to_str().unwrap()])
        .args(["-cert", node.cert.to_str().unwrap()])
        .args(["-key", node.key.to_str().unwrap()]);
    let out = output_with_stdin(sender, "{\"from\":\"node-1\"}\n");
    assert!(out.status.success(), "{}", text(&out.stderr));

    let metrics_args = presenting(&node, &format!("{}/metrics", server.url));
    let failures = format!(
        r#"eddy_ingest_tls_handshake_failures_total{{door="http",listener="{}"}}"#,
        addr(&server)
    );
    let events = r#"eddy_ingest_events_total{door="tcp",repository="main"}"#;
    wait_for("the refused handshakes and the TCP line counted", || {
        let out = text(&curl(&ca.pem_path, &metrics_args).stdout);
        let value = |series: &str| {
            out.lines()
                .find_map(|l| {
                    l.strip_prefix(series)?
                        .strip_prefix(' ')?
                        .parse::<f64>()
                        .ok()
                })
                .unwrap_or(0.0)
        };
        (value(&failures) >= 2.0 && value(events) >= 1.0).then_some(())
    });
    server.stop();
}

/// `eddy serve --config` with `config`: its exit status and stderr, or `None` if it was still
/// serving after a minute (then it is killed).
fn serve_exit(dir: &Path, config: &str) -> Option<(bool, String)> {
    let path = dir.join("refused.toml");
    std::fs::write(
        &path,
        format!("data_dir = {:?}\n{config}", dir.join("refused-data")),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["serve", "--config", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return Some((status.success(), err));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    None
}

#[test]
fn tokens_on_a_public_door_without_tls_refuse_to_start_unless_allow_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let exposed =
        format!("[http]\nlisten = \"0.0.0.0:0\"\n[repositories.main]\ntokens = [\"{TOKEN}\"]\n");
    let (ok, err) = serve_exit(dir.path(), &exposed).expect("eddy serve started");
    assert!(!ok, "eddy serve exited 0: {err}");
    assert!(err.contains("tls.allow_insecure = true"), "{err}");
    assert!(err.contains("repositories.main.tokens"), "{err}");
    assert!(err.contains("http.listen = 0.0.0.0:0"), "{err}");
    assert!(!err.contains(TOKEN), "the token is printed: {err}");

    // A [[tcp]] listener in clear on a public address is refused the same way.
    let listener = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\nadmin_tokens = [\"{TOKEN}\"]\n[repositories.main]\n\
         [[tcp]]\nlisten = \"0.0.0.0:0\"\n"
    );
    let (ok, err) = serve_exit(dir.path(), &listener).expect("eddy serve started");
    assert!(!ok && err.contains("tcp[0].listen = 0.0.0.0:0"), "{err}");
    assert!(err.contains("http.admin_tokens"), "{err}");

    // Accepting the risk in so many words, it starts.
    let insecure = Server::start_with(
        dir.path(),
        &format!("{exposed}[tls]\nallow_insecure = true\n"),
    );
    assert!(
        insecure.url.starts_with("http://0.0.0.0:"),
        "{}",
        insecure.url
    );
    insecure.stop();

    // With TLS it starts without the escape hatch.
    let ca = Authority::new(dir.path(), "ca");
    let cert = ca.issue("server");
    let secure = Server::start_with(dir.path(), &format!("{exposed}{}", tls_config(&cert, "")));
    assert!(secure.url.starts_with("https://0.0.0.0:"), "{}", secure.url);
    secure.stop();
}

/// Slow TLS clients of each kind, held open beside a normal client.
const HALF_HELLOS: usize = 250;
const DRIBBLERS: usize = 250;

#[test]
fn five_hundred_slow_tls_clients_do_not_stop_a_normal_client_from_ingesting_and_querying() {
    // 500 client sockets here and 500 in the server: far under the usual 1024+ descriptors
    // a process may open (the test machine allows 20000).
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new(dir.path(), "ca");
    let cert = ca.issue("server");
    let server = Server::start_with(
        dir.path(),
        &format!(
            "[http]\nlisten = \"127.0.0.1:0\"\nheader_read_timeout = \"20s\"\n[repositories.main]\n{}",
            tls_config(&cert, "handshake_timeout = \"20s\"\n")
        ),
    );
    let addr = addr(&server);
    let config = client(&ca);
    let ready = Arc::new(AtomicUsize::new(0));
    let spawn = |f: Box<dyn FnOnce() -> bool + Send>| {
        std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(f)
            .unwrap()
    };
    let mut slow = Vec::new();
    // Half a TLS hello: a record header announcing 512 bytes, and 5 of them.
    for _ in 0..HALF_HELLOS {
        let ready = ready.clone();
        slow.push(spawn(Box::new(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03])
                .unwrap();
            ready.fetch_add(1, Ordering::SeqCst);
            s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
            let mut buf = [0u8; 256];
            // Cut by the server: an alert and/or the end of the stream, never a timeout here.
            loop {
                match s.read(&mut buf) {
                    Ok(0) => return true,
                    Ok(_) => continue,
                    Err(e) => {
                        return !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
                    }
                }
            }
        })));
    }
    // Handshake done, then headers one byte every 100 ms (30 s of them: past the timeout).
    let header = format!(
        "POST /api/v1/ingest/main HTTP/1.1\r\nhost: localhost\r\nx-pad: {}\r\n\r\n",
        "a".repeat(240)
    );
    for _ in 0..DRIBBLERS {
        let (ready, config, header) = (ready.clone(), config.clone(), header.clone());
        slow.push(spawn(Box::new(move || {
            let mut s = connect(addr, &config);
            ready.fetch_add(1, Ordering::SeqCst);
            for b in header.bytes() {
                if s.write_all(&[b]).and_then(|()| s.flush()).is_err() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let mut buf = [0u8; 256];
            matches!(s.read(&mut buf), Ok(0) | Err(_))
                && s.sock.read(&mut buf).map_or(true, |n| n == 0)
        })));
    }
    wait_for("every slow client connected", || {
        (ready.load(Ordering::SeqCst) == HALF_HELLOS + DRIBBLERS).then_some(())
    });
    let open = format!(r#"eddy_ingest_tcp_connections{{door="http",listener="{addr}"}}"#);
    let held = metric(&server, &ca.pem_path, &open);

    // The normal client, meanwhile: ingest over HTTPS and find the events with a query.
    let started = Instant::now();
    let body: String = (0..100)
        .map(|i| format!("{{\"i\":{i},\"msg\":\"normal client\"}}\n"))
        .collect();
    let answer = ingest_with_curl(&server, &ca.pem_path, &body);
    assert_eq!(answer["events"], 100, "{answer}");
    let ingested = started.elapsed();
    wait_for_count(&server, &ca.pem_path, 100);
    let queried = started.elapsed();
    println!(
        "with {held} connections open ({HALF_HELLOS} half hellos, {DRIBBLERS} dribbling headers): \
         ingest answered in {ingested:?}, the query found the events after {queried:?}"
    );

    let cut = slow
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|cut| *cut)
        .count();
    assert_eq!(cut, HALF_HELLOS + DRIBBLERS, "every slow client is cut");
    let handshake = metric(
        &server,
        &ca.pem_path,
        r#"eddy_ingest_timed_out_requests_total{door="http",phase="handshake"}"#,
    );
    let headers = metric(
        &server,
        &ca.pem_path,
        r#"eddy_ingest_timed_out_requests_total{door="http",phase="headers"}"#,
    );
    assert!(
        handshake >= HALF_HELLOS as f64,
        "handshakes cut: {handshake}"
    );
    assert!(
        handshake + headers >= (HALF_HELLOS + DRIBBLERS) as f64,
        "handshakes cut {handshake}, headers cut {headers}"
    );
    server.stop();
}

#[test]
fn the_eddy_clients_trust_a_private_authority_with_cacert_and_refuse_the_server_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new(dir.path(), "ca");
    let cert = ca.issue("server");
    let server = Server::start_with(
        dir.path(),
        &format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[repositories.main]\n{}",
            tls_config(&cert, "")
        ),
    );
    let lines = dir.path().join("lines.ndjson");
    std::fs::write(&lines, "{\"via\":\"eddy send\"}\n{\"via\":\"eddy send\"}\n").unwrap();
    let eddy = |args: &[&str], cacert: Option<&Path>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_eddy"));
        command
            .args(args)
            .args(["--url", &server.url, "-r", "main"])
            .env_remove("EDDY_CACERT");
        if let Some(path) = cacert {
            command.arg("--cacert").arg(path);
        }
        command.output().unwrap()
    };
    let send = [
        "send",
        "--quiet",
        lines.to_str().unwrap(),
        "--parser",
        "json",
    ];

    // The public roots do not hold the test's authority: refused, and said why.
    let refused = eddy(&send, None);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(text(&refused.stderr).contains("--cacert"), "{refused:?}");

    // With --cacert: send, search and the live query over wss.
    let sent = eddy(&send, Some(&ca.pem_path));
    assert!(sent.status.success(), "{sent:?}");
    wait_for("the two events searchable with eddy search", || {
        let out = eddy(&["search", "--json", "count()"], Some(&ca.pem_path));
        assert!(out.status.success(), "{out:?}");
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (answer["rows"][0]["_count"] == 2).then_some(())
    });
    let tail = eddy(
        &["tail", "--count", "1", "--json", "via=\"eddy send\""],
        Some(&ca.pem_path),
    );
    assert!(tail.status.success(), "{tail:?}");
    assert!(text(&tail.stdout).contains("eddy send"), "{tail:?}");
    let untrusted_tail = eddy(&["tail", "--count", "1", "count()"], None);
    assert!(!untrusted_tail.status.success(), "{untrusted_tail:?}");

    // A --cacert that holds no certificate is a usage error naming the file.
    let not_pem = eddy(&["search", "count()"], Some(&cert.key));
    assert_eq!(not_pem.status.code(), Some(2), "{not_pem:?}");
    assert!(text(&not_pem.stderr).contains("server.key"), "{not_pem:?}");
    server.stop();
}
