//! The README's promises checked against the repository and the real binary: its links lead
//! somewhere, and its examples do what it says.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn readme() -> String {
    std::fs::read_to_string(repository_root().join("README.md")).unwrap()
}

/// The targets of the Markdown links `[text](target)` in `text`.
fn link_targets(text: &str) -> Vec<String> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(target, _)| target.to_string()))
        .collect()
}

#[test]
fn readme_links_point_to_files_inside_the_repository() {
    let root = repository_root().canonicalize().unwrap();
    for doc in [
        "README.md",
        "docs/architecture.md",
        "docs/query-language.md",
    ] {
        let path = root.join(doc);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for target in link_targets(&text) {
            if target.starts_with("http") || target.starts_with('#') {
                continue;
            }
            let file = target.split('#').next().unwrap();
            let resolved = path.parent().unwrap().join(file);
            let resolved = resolved
                .canonicalize()
                .unwrap_or_else(|e| panic!("{doc}: link {target} leads nowhere: {e}"));
            assert!(
                resolved.starts_with(&root),
                "{doc}: link {target} points outside the repository"
            );
        }
    }
}

#[test]
fn readme_statsd_example_delivers_every_datagram() {
    let line = readme()
        .lines()
        .find(|l| l.contains("8125") && l.contains("# statsd"))
        .unwrap()
        .to_string();
    let sends = line.split("for i in ").nth(1).map_or(1, |rest| {
        rest.split(';').next().unwrap().split_whitespace().count()
    });
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = receiver.local_addr().unwrap().port().to_string();
    let command = line.replace("8125", &port);
    // Ten runs, as a user would repeat it; every datagram must arrive.
    for _ in 0..10 {
        let status = std::process::Command::new("bash")
            .args(["-c", &command])
            .status()
            .unwrap();
        assert!(status.success(), "{command}");
    }
    let mut buf = [0u8; 1024];
    for n in 0..10 * sends {
        let (len, _) = receiver
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("datagram {n} of {} never came: {e}", 10 * sends));
        assert_eq!(&buf[..len], b"checkout.orders:1|c|#region:eu\n");
    }
}

/// The first ratio (`2.53×`) in `eddy store ratio`'s table: the main repository's RATIO.
fn first_ratio(table: &str) -> f64 {
    table
        .split_whitespace()
        .find_map(|w| w.strip_suffix('×')?.parse().ok())
        .unwrap_or(0.0)
}

/// The lines of the README's quick start: the block after "Then, from another shell".
fn quick_start_lines() -> Vec<String> {
    let readme = readme();
    let after = readme.split("Then, from another shell").nth(1).unwrap();
    let block = after.split("```sh\n").nth(1).unwrap();
    let block = block.split("```").next().unwrap();
    block.lines().map(str::to_string).collect()
}

#[test]
fn readme_quick_start_searches_what_it_sent_and_explains_the_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("eddy-data");
    let eddy = env!("CARGO_BIN_EXE_eddy");
    let mut server = std::process::Command::new(eddy)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("EDDY_DATA_DIR", &data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let host = url.strip_prefix("http://").unwrap().to_string();

    let mut outputs = Vec::new();
    for command in quick_start_lines() {
        // As written, but with this build, this server, and less data (debug builds are slow).
        let command = command
            .replace("./target/release/eddy", eddy)
            .replace("localhost:7280", &host)
            .replace("--size 20MiB", "--size 2MiB");
        let run = || {
            std::process::Command::new("bash")
                .args(["-c", &command])
                .env("EDDY_DATA_DIR", &data)
                .env("EDDY_URL", &url)
                .output()
                .unwrap()
        };
        let mut out = run();
        // The digest writes what it holds compressed once the bus is quiet for a moment: the
        // ratio is there seconds after the last send, as the README says.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while command.contains("store ratio")
            && first_ratio(&String::from_utf8_lossy(&out.stdout)) == 0.0
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(200));
            out = run();
        }
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        outputs.push((command, String::from_utf8(out.stdout).unwrap()));
    }
    let output_of = |what: &str| {
        outputs
            .iter()
            .find(|(c, _)| c.contains(what))
            .map(|(_, o)| o.clone())
            .unwrap_or_else(|| panic!("the quick start has no `{what}`"))
    };
    let search = output_of("search");
    let count: u64 = search
        .lines()
        .filter_map(|l| l.split_whitespace().last()?.parse().ok())
        .next()
        .unwrap_or(0);
    assert!(count > 0, "`eddy search` found nothing: {search}");
    // The generated JSON's fields, listed from the work in progress.
    let fields = output_of("eddy fields");
    let listed: Vec<&str> = fields
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        fields.starts_with("FIELD") && listed.contains(&"level") && listed.contains(&"service"),
        "`eddy fields` lists no fields: {fields}"
    );
    // A fresh store has sealed nothing; the ratio says so, and what is in progress, and
    // counts what the work in progress holds compressed.
    let ratio = output_of("store ratio");
    assert!(
        ratio.contains("in work in progress") && ratio.contains("segment_age"),
        "{ratio}"
    );
    assert!(
        first_ratio(&ratio) > 1.0,
        "`eddy store ratio` shows no compression: {ratio}"
    );
    server.kill().unwrap();
    server.wait().unwrap();
}
