//! A deterministic generator of realistic machine data: the same seed and size give the same
//! bytes on every machine (the RNG is ChaCha-based `StdRng`, pinned by `Cargo.lock`).
//!
//! Three kinds, each one line per event:
//! - [`Kind::Access`]: web access logs in Apache/Nginx combined log format;
//! - [`Kind::Json`]: JSON application logs (service, level, message templates with varying
//!   parameters, trace ids, long-tailed latencies, high-cardinality user ids);
//! - [`Kind::Statsd`]: StatsD metric lines (counters, gauges, timers, sets, sample rates, tags).
//!
//! Values are skewed the way real ones are (Zipf-distributed clients, paths and users; log-normal
//! sizes and latencies; rare errors), so compression ratios and search times mean something.
//! A few *needles* — rare strings at known places — are planted, and every [`Probe`] (a literal
//! or a regular expression a benchmark searches for) is counted on the generated lines
//! themselves, so a search's result can be checked, not just timed.

use std::io::Write;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Zipf};
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

/// Which data to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Combined-log-format web access logs.
    Access,
    /// JSON application logs.
    Json,
    /// StatsD metric lines.
    Statsd,
}

impl Kind {
    /// All kinds, in report order.
    pub const ALL: [Kind; 3] = [Kind::Access, Kind::Json, Kind::Statsd];

    /// Short name, also the data file's stem.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Access => "access",
            Kind::Json => "json",
            Kind::Statsd => "statsd",
        }
    }

    /// What a benchmark searches for in this kind of data.
    pub fn probes(self) -> Vec<Probe> {
        let p = |name: &str, pattern: &str, regex: bool, ignore_case: bool| Probe {
            name: name.to_string(),
            pattern: pattern.to_string(),
            regex,
            ignore_case,
            count: 0,
        };
        match self {
            Kind::Access => vec![
                p("rare literal (needle)", NEEDLE, false, false),
                p("one in a million (needle)", RARE_NEEDLE, false, false),
                p("rare client ip", "203.0.113.77", false, false),
                p("common literal", "GET", false, false),
                p("5xx status (regex)", r#"" 5[0-9][0-9] "#, true, false),
                p(
                    "api version path (regex)",
                    r"/api/v[0-9]+/orders/[0-9]+",
                    true,
                    false,
                ),
            ],
            Kind::Json => vec![
                p("rare literal (needle)", NEEDLE, false, false),
                p("one in a million (needle)", RARE_NEEDLE, false, false),
                p("error level", r#""level":"ERROR""#, false, false),
                p("time ?out, any case (regex)", "time ?out", true, true),
                p(
                    "slow request (regex)",
                    r#""latency_ms":[0-9]{4,}"#,
                    true,
                    false,
                ),
            ],
            Kind::Statsd => vec![
                p("rare literal (needle)", NEEDLE, false, false),
                p("one in a million (needle)", RARE_NEEDLE, false, false),
                p("timers (regex)", r"\|ms(\||$)", true, false),
                p("tagged service web", "service:web", false, false),
            ],
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Kind, String> {
        match s {
            "access" => Ok(Kind::Access),
            "json" => Ok(Kind::Json),
            "statsd" => Ok(Kind::Statsd),
            other => Err(format!(
                "unknown data kind {other:?}; expected access, json or statsd"
            )),
        }
    }
}

/// The rare string planted in every kind of data (one line in 49,999).
pub const NEEDLE: &str = "needle-7f3a9c";

/// The rarer string planted in every kind of data: one line in a million.
pub const RARE_NEEDLE: &str = "pinprick4e1f0b";

/// A search for lines matching a literal or a regular expression, with the number of lines the
/// generator produced that match it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// What the probe stands for in the report.
    pub name: String,
    /// The literal or regular expression.
    pub pattern: String,
    /// `pattern` is a regular expression (else a literal).
    pub regex: bool,
    /// Match without regard to case.
    pub ignore_case: bool,
    /// Lines of the generated data that match.
    pub count: u64,
}

/// What was generated: sizes and the true count of every probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The kind of data.
    pub kind: Kind,
    /// The seed.
    pub seed: u64,
    /// Lines (events) written.
    pub lines: u64,
    /// Bytes written, newlines included.
    pub bytes: u64,
    /// Probes with their true counts.
    pub probes: Vec<Probe>,
}

const SERVICES: [&str; 8] = [
    "web",
    "api",
    "auth",
    "payments",
    "search",
    "orders",
    "inventory",
    "mailer",
];
const REGIONS: [&str; 4] = ["eu-west-1", "us-east-1", "us-west-2", "ap-south-1"];
const METHODS: [(&str, u32); 5] = [
    ("GET", 80),
    ("POST", 12),
    ("PUT", 4),
    ("DELETE", 2),
    ("HEAD", 2),
];
const STATUSES: [(u16, u32); 8] = [
    (200, 850),
    (304, 50),
    (404, 45),
    (301, 20),
    (302, 10),
    (401, 10),
    (500, 10),
    (503, 5),
];
const AGENTS: [&str; 8] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "curl/8.5.0",
    "Go-http-client/2.0",
    "python-requests/2.31.0",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
];
const LEVELS: [(&str, u32); 4] = [("INFO", 800), ("DEBUG", 120), ("WARN", 55), ("ERROR", 25)];

fn weighted<T: Copy>(rng: &mut StdRng, table: &[(T, u32)]) -> T {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total);
    for &(v, w) in table {
        if x < w {
            return v;
        }
        x -= w;
    }
    table[table.len() - 1].0
}

/// The generator's state: an RNG and the skewed distributions it draws from.
struct Source {
    rng: StdRng,
    clients: Zipf<f64>,
    paths: Zipf<f64>,
    users: Zipf<f64>,
    bytes: LogNormal<f64>,
    latency: LogNormal<f64>,
    /// Event time, ns since the epoch; advances by a random gap per line.
    now_ns: i64,
    line: u64,
}

fn dist<T>(d: std::result::Result<T, impl std::fmt::Display>) -> T {
    // The parameters are constants known to be valid.
    d.unwrap_or_else(|e| panic!("invalid distribution parameters: {e}"))
}

/// Where the benchmarks' data starts (2026-11-01T00:00:00Z), so it is the same on every run.
pub const BENCH_START_NS: i64 = 1_793_491_200_000_000_000;

impl Source {
    fn new(kind: Kind, seed: u64, start_ns: i64) -> Source {
        let seed = seed ^ (kind as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Source {
            rng: StdRng::seed_from_u64(seed),
            clients: dist(Zipf::new(20_000.0, 1.1)),
            paths: dist(Zipf::new(5_000.0, 1.2)),
            users: dist(Zipf::new(2_000_000.0, 1.05)),
            bytes: dist(LogNormal::new(8.0, 1.5)),
            latency: dist(LogNormal::new(3.0, 1.1)),
            now_ns: start_ns,
            line: 0,
        }
    }

    fn tick(&mut self) {
        self.now_ns += self.rng.random_range(0..2_000_000);
        self.line += 1;
    }

    /// Needles sit at fixed, sparse line numbers, so every data set of 100k+ lines has some.
    fn needle_here(&self) -> bool {
        self.line % 49_999 == 1_234
    }

    /// The rare needle: one line in a million, the first early enough for small data sets.
    fn rare_needle_here(&self) -> bool {
        self.line % 1_000_000 == 77_777
    }

    fn ip(&mut self) -> String {
        let n = self.clients.sample(&mut self.rng) as u32;
        if n == 7 && self.rng.random_range(0..50) == 0 {
            return "203.0.113.77".to_string(); // a rare, searchable client
        }
        let h = n.wrapping_mul(2_654_435_761);
        format!(
            "{}.{}.{}.{}",
            10 + h % 200,
            (h >> 8) % 256,
            (h >> 16) % 256,
            1 + (h >> 24) % 254
        )
    }

    fn path(&mut self) -> String {
        let n = self.paths.sample(&mut self.rng) as u64;
        match n % 10 {
            0 => "/".to_string(),
            1 => format!("/api/v{}/orders/{}", 1 + n % 3, n * 7919 % 100_000),
            2 => format!("/api/v2/users/{}/profile", n * 104_729 % 1_000_000),
            3 => format!(
                "/static/js/app.{:08x}.js",
                n * 2_654_435_761 % u64::from(u32::MAX)
            ),
            4 => format!("/products/{}?ref=home&page={}", n, n % 9),
            5 => "/health".to_string(),
            6 => format!("/search?q=item{}&sort=price", n % 1000),
            7 => format!("/images/p/{}.jpg", n),
            8 => "/api/v1/cart".to_string(),
            _ => format!("/blog/{}-release-notes", 2000 + n % 27),
        }
    }

    fn timestamp_clf(&self) -> String {
        // 01/Nov/2026:00:00:00 +0000
        let secs = self.now_ns.div_euclid(1_000_000_000);
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
        let iso = humantime::format_rfc3339_seconds(t).to_string(); // 2026-11-01T00:00:00Z
        let months = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let month: usize = iso[5..7].parse().unwrap_or(1);
        format!(
            "{}/{}/{}:{} +0000",
            &iso[8..10],
            months[month.saturating_sub(1) % 12],
            &iso[0..4],
            &iso[11..19]
        )
    }

    fn line(&mut self, kind: Kind) -> String {
        match kind {
            Kind::Access => self.access_line(),
            Kind::Json => self.json_line(),
            Kind::Statsd => self.statsd_line(),
        }
    }

    fn timestamp_iso(&self) -> String {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(self.now_ns as u64);
        humantime::format_rfc3339_millis(t).to_string()
    }

    fn access_line(&mut self) -> String {
        let ip = self.ip();
        let user = if self.rng.random_range(0..10) == 0 {
            format!("user{}", self.users.sample(&mut self.rng) as u64)
        } else {
            "-".to_string()
        };
        let method = weighted(&mut self.rng, &METHODS);
        let mut path = self.path();
        if self.needle_here() {
            path = format!("/download/{NEEDLE}.tar.gz");
        } else if self.rare_needle_here() {
            path = format!("/download/{RARE_NEEDLE}.tar.gz");
        }
        let status = weighted(&mut self.rng, &STATUSES);
        let bytes = if status == 304 {
            0
        } else {
            self.bytes.sample(&mut self.rng) as u64
        };
        let referer = if self.rng.random_range(0..3) == 0 {
            "-".to_string()
        } else {
            format!("https://www.example.com{}", self.path())
        };
        let agent = AGENTS[(self.clients.sample(&mut self.rng) as usize) % AGENTS.len()];
        format!(
            "{ip} - {user} [{}] \"{method} {path} HTTP/1.1\" {status} {bytes} \"{referer}\" \"{agent}\"",
            self.timestamp_clf()
        )
    }

    fn json_line(&mut self) -> String {
        let service = SERVICES[self.rng.random_range(0..SERVICES.len())];
        let level = weighted(&mut self.rng, &LEVELS);
        let user = self.users.sample(&mut self.rng) as u64;
        let latency = self.latency.sample(&mut self.rng);
        let order = self.rng.random_range(100_000..999_999);
        let host = format!("{service}-{}", self.rng.random_range(1..13));
        let message = if self.needle_here() {
            format!("replayed dead letter {NEEDLE} for order {order}")
        } else if self.rare_needle_here() {
            format!("replayed dead letter {RARE_NEEDLE} for order {order}")
        } else {
            match (level, self.rng.random_range(0..6)) {
                ("ERROR", 0) => format!("payment declined: card expired for order {order}"),
                ("ERROR", 1) => format!(
                    "Timeout after {:.0}ms calling {}",
                    latency * 10.0,
                    SERVICES[order % 8]
                ),
                ("ERROR", 2) => format!("connection reset by peer ({}:5432)", host),
                ("ERROR", _) => format!(
                    "unhandled exception in handler: index {} out of range",
                    order % 64
                ),
                ("WARN", 0) => format!(
                    "slow query took {:.0}ms: SELECT * FROM orders WHERE id = {order}",
                    latency * 20.0
                ),
                ("WARN", 1) => format!("request time out, retrying ({}/3)", order % 3 + 1),
                ("WARN", _) => format!("cache miss for key user:{user}:cart"),
                ("DEBUG", _) => format!(
                    "resolved {} to {} in {:.2}ms",
                    host,
                    self.ip(),
                    latency / 10.0
                ),
                (_, 0) => format!("user {user} logged in from {}", self.ip()),
                (_, 1) => format!(
                    "order {order} created total={}.{:02} EUR",
                    order % 500,
                    order % 100
                ),
                (_, 2) => format!("GET {} completed in {:.0}ms", self.path(), latency),
                (_, 3) => format!("sent confirmation email to user {user}"),
                (_, 4) => format!(
                    "inventory reserved for order {order}: {} items",
                    order % 7 + 1
                ),
                _ => format!("session refreshed for user {user}"),
            }
        };
        let trace: u128 = self.rng.random();
        let span: u64 = self.rng.random();
        format!(
            "{{\"@timestamp\":\"{}\",\"service\":\"{service}\",\"host\":\"{host}\",\"region\":\"{}\",\"level\":\"{level}\",\"message\":{},\"trace_id\":\"{trace:032x}\",\"span_id\":\"{span:016x}\",\"user_id\":\"u{user}\",\"latency_ms\":{:.0}}}",
            self.timestamp_iso(),
            REGIONS[(user % 4) as usize],
            serde_json::Value::String(message),
            latency,
        )
    }

    fn statsd_line(&mut self) -> String {
        let service = SERVICES[(self.paths.sample(&mut self.rng) as usize) % SERVICES.len()];
        let region = REGIONS[self.rng.random_range(0..REGIONS.len())];
        if self.needle_here() {
            return format!("deploy.{NEEDLE}:1|c|#service:{service},region:{region}");
        }
        if self.rare_needle_here() {
            return format!("deploy.{RARE_NEEDLE}:1|c|#service:{service},region:{region}");
        }
        match self.rng.random_range(0..10) {
            0..=3 => format!(
                "http.requests:1|c|@0.{}|#service:{service},region:{region},status:{}",
                self.rng.random_range(1..10),
                weighted(&mut self.rng, &STATUSES)
            ),
            4..=6 => format!(
                "http.latency:{:.0}|ms|#service:{service},region:{region}",
                self.latency.sample(&mut self.rng)
            ),
            7 => format!(
                "queue.depth:{}|g|#service:{service}",
                self.rng.random_range(0..5000)
            ),
            8 => format!(
                "users.active:u{}|s|#service:{service}",
                self.users.sample(&mut self.rng) as u64
            ),
            _ => format!("db.pool.in_use:{}|g", self.rng.random_range(0..64)),
        }
    }
}

/// Compiled probes: what counts a generated line as a match.
struct Matchers(Vec<regex::Regex>);

impl Matchers {
    fn new(probes: &[Probe]) -> Result<Matchers> {
        let mut out = Vec::with_capacity(probes.len());
        for p in probes {
            let body = if p.regex {
                p.pattern.clone()
            } else {
                regex::escape(&p.pattern)
            };
            let re = regex::RegexBuilder::new(&body)
                .case_insensitive(p.ignore_case)
                .build()
                .map_err(|e| Error::Invalid(format!("probe {:?}: {e}", p.name)))?;
            out.push(re);
        }
        Ok(Matchers(out))
    }
}

/// Writes about `target_bytes` of `kind` data (whole lines) to `out`, its times starting at
/// [`BENCH_START_NS`], and returns its manifest.
pub fn generate(
    kind: Kind,
    seed: u64,
    target_bytes: u64,
    out: &mut impl Write,
) -> Result<Manifest> {
    generate_from(kind, seed, target_bytes, BENCH_START_NS, out)
}

/// How far after its start the last event of `kind` data of `seed` and `target_bytes` lies
/// (ns), found by generating it without writing: a start of now minus this ends the data now.
pub fn time_span_ns(kind: Kind, seed: u64, target_bytes: u64) -> i64 {
    let mut source = Source::new(kind, seed, 0);
    let mut bytes = 0;
    while bytes < target_bytes {
        source.tick();
        bytes += source.line(kind).len() as u64 + 1;
    }
    source.now_ns
}

/// [`generate`] with the event times starting at `start_ns` (ns since the epoch); the lines
/// differ only in their times.
pub fn generate_from(
    kind: Kind,
    seed: u64,
    target_bytes: u64,
    start_ns: i64,
    out: &mut impl Write,
) -> Result<Manifest> {
    let mut probes = kind.probes();
    let matchers = Matchers::new(&probes)?;
    let mut source = Source::new(kind, seed, start_ns);
    let mut manifest = Manifest {
        kind,
        seed,
        lines: 0,
        bytes: 0,
        probes: Vec::new(),
    };
    while manifest.bytes < target_bytes {
        source.tick();
        let line = source.line(kind);
        for (probe, re) in probes.iter_mut().zip(&matchers.0) {
            if re.is_match(&line) {
                probe.count += 1;
            }
        }
        out.write_all(line.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .context(|| "writing generated data".to_string())?;
        manifest.lines += 1;
        manifest.bytes += line.len() as u64 + 1;
    }
    manifest.probes = probes;
    Ok(manifest)
}

/// Where [`generate_file`] keeps the manifest of `kind` data in `dir`.
pub fn manifest_path(dir: &std::path::Path, kind: Kind) -> std::path::PathBuf {
    dir.join(format!("{}.manifest.json", kind.name()))
}

/// Generates `kind` data into `dir/<kind>.log` with its manifest beside it as
/// `dir/<kind>.manifest.json`; reuses an existing file made with the same seed and size.
pub fn generate_file(
    dir: &std::path::Path,
    kind: Kind,
    seed: u64,
    target_bytes: u64,
) -> Result<(std::path::PathBuf, Manifest)> {
    let data = dir.join(format!("{}.log", kind.name()));
    let manifest_path = manifest_path(dir, kind);
    if let (Ok(text), Ok(meta)) = (
        std::fs::read_to_string(&manifest_path),
        std::fs::metadata(&data),
    ) {
        if let Ok(m) = serde_json::from_str::<Manifest>(&text) {
            let same_size = m.bytes >= target_bytes && m.bytes < target_bytes + 64 * 1024;
            if m.seed == seed
                && same_size
                && meta.len() == m.bytes
                && m.probes.len() == kind.probes().len()
            {
                return Ok((data, m));
            }
        }
    }
    std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    let file = std::fs::File::create(&data).context(|| format!("creating {}", data.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let manifest = generate(kind, seed, target_bytes, &mut w)?;
    w.flush()
        .context(|| format!("writing {}", data.display()))?;
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Invalid(e.to_string()))?;
    std::fs::write(&manifest_path, json)
        .context(|| format!("writing {}", manifest_path.display()))?;
    Ok((data, manifest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen(kind: Kind, seed: u64, bytes: u64) -> (Vec<u8>, Manifest) {
        let mut out = Vec::new();
        let m = generate(kind, seed, bytes, &mut out).unwrap();
        (out, m)
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        for kind in Kind::ALL {
            let (a, ma) = gen(kind, 1, 200_000);
            let (b, _) = gen(kind, 1, 200_000);
            let (c, _) = gen(kind, 2, 200_000);
            assert_eq!(a, b, "{kind:?} is not deterministic");
            assert_ne!(a, c);
            assert_eq!(ma.bytes, a.len() as u64);
            assert_eq!(ma.lines, a.iter().filter(|&&b| b == b'\n').count() as u64);
        }
    }

    #[test]
    fn probe_counts_are_true_and_needles_are_rare_but_present() {
        for kind in Kind::ALL {
            let (data, m) = gen(kind, 7, 30_000_000);
            let text = String::from_utf8(data).unwrap();
            let needle = m.probes.iter().find(|p| p.pattern == NEEDLE).unwrap();
            let by_hand = text.lines().filter(|l| l.contains(NEEDLE)).count() as u64;
            assert_eq!(needle.count, by_hand);
            assert!(
                needle.count >= 1 && needle.count * 10_000 < m.lines,
                "{kind:?}: {}",
                needle.count
            );
            for p in &m.probes {
                assert!(p.count > 0, "{kind:?} probe {} never matches", p.name);
            }
        }
    }

    #[test]
    fn json_lines_parse_and_access_lines_have_the_combined_shape() {
        let (data, _) = gen(Kind::Json, 3, 100_000);
        for line in String::from_utf8(data).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v["latency_ms"].is_number() && v["trace_id"].as_str().unwrap().len() == 32);
        }
        let re = regex::Regex::new(
            r#"^\S+ - \S+ \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000\] "[A-Z]+ \S+ HTTP/1\.1" \d{3} \d+ "[^"]*" "[^"]*"$"#,
        )
        .unwrap();
        let (data, _) = gen(Kind::Access, 3, 100_000);
        for line in String::from_utf8(data).unwrap().lines() {
            assert!(re.is_match(line), "{line}");
        }
    }

    #[test]
    fn distributions_are_skewed_like_real_data() {
        let (data, m) = gen(Kind::Access, 5, 5_000_000);
        let text = String::from_utf8(data).unwrap();
        let mut per_ip = std::collections::HashMap::new();
        for l in text.lines() {
            *per_ip.entry(l.split(' ').next().unwrap()).or_insert(0u64) += 1;
        }
        let mut counts: Vec<u64> = per_ip.values().copied().collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top10: u64 = counts.iter().take(10).sum();
        assert!(
            top10 * 5 > m.lines,
            "the top 10 clients make over 20% of traffic"
        );
        assert!(
            counts.len() > 1000,
            "and there is a long tail of {} clients",
            counts.len()
        );
    }
}
