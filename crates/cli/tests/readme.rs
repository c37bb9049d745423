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
