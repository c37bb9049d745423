#!/usr/bin/env python3
"""ClickHouse (embedded, via chDB) with the benchmark's fields as its natural typed columns.

Usage: clickhouse_fields.py WORKDIR RUNS SPEC.json
SPEC.json: {"threads": N,
            "tables": [{"kind": "access"|"json", "data": PATH, "lines": N}],
            "queries": [{"id": ID, "sql": SQL, "reference": SQL or null}]}

Each data file is loaded once into a MergeTree table ordered by time, LZ4 (ClickHouse's
default), named after its kind:

- `access`, the access log's fields extracted once at load (a regex over each line):
  timestamp DateTime, client IPv4, user String ('' for '-'), method LowCardinality(String),
  url String, protocol LowCardinality(String), status UInt16, bytes UInt64, referer String,
  user_agent LowCardinality(String);
- `json`, the JSON lines read as JSONEachRow into typed columns: timestamp DateTime64(3),
  service, host, region, level LowCardinality(String), message, trace_id, span_id, user_id
  String, latency_ms UInt32.

A table that does not hold every line of its file is an error (exit 1). Then each query runs
once untimed (caches and page cache warm, as for eddy), then RUNS times timed, with ClickHouse's
query cache and query condition cache off and max_threads as the spec says; its `reference`, if any, runs once untimed (an exact
answer to check approximations against). Prints one JSON object: the version, per table the load
time and stored bytes, per query its rows (JSONCompact) and times.
"""
import json
import shutil
import sys
import time

from chdb import session

ACCESS = """CREATE TABLE access (
    timestamp DateTime('UTC'),
    client IPv4,
    user String,
    method LowCardinality(String),
    url String,
    protocol LowCardinality(String),
    status UInt16,
    bytes UInt64,
    referer String,
    user_agent LowCardinality(String)
) ENGINE = MergeTree ORDER BY timestamp"""

# The combined log format, as gen.rs writes it; a line it does not match fails the load.
ACCESS_LINE = r'^(\S+) \S+ (\S+) \[([^\]]+)\] "(\S+) (\S+) (\S+)" (\d{3}) (\d+|-) "([^"]*)" "([^"]*)"$'

ACCESS_LOAD = """INSERT INTO access
SELECT parseDateTime(g[3], '%d/%b/%Y:%H:%i:%s %z', 'UTC'), toIPv4(g[1]), if(g[2] = '-', '', g[2]),
       g[4], g[5], g[6], toUInt16(g[7]), if(g[8] = '-', 0, toUInt64(g[8])), if(g[9] = '-', '', g[9]), g[10]
FROM (SELECT extractGroups(line, {regex}) AS g FROM file({path}, 'LineAsString'))
WHERE length(g) = 10"""

JSON = """CREATE TABLE json (
    timestamp DateTime64(3, 'UTC'),
    service LowCardinality(String),
    host LowCardinality(String),
    region LowCardinality(String),
    level LowCardinality(String),
    message String,
    trace_id String,
    span_id String,
    user_id String,
    latency_ms UInt32
) ENGINE = MergeTree ORDER BY timestamp"""

JSON_LOAD = """INSERT INTO json
SELECT parseDateTime64BestEffort(`@timestamp`, 3, 'UTC'), service, host, region, level, message,
       trace_id, span_id, user_id, latency_ms
FROM file({path}, 'JSONEachRow', '`@timestamp` String, service String, host String, region String,
     level String, message String, trace_id String, span_id String, user_id String, latency_ms UInt32')"""

NO_CACHE = " SETTINGS use_query_cache = 0, use_query_condition_cache = 0"


def sql_string(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def rows(s, query, threads):
    settings = f"{NO_CACHE}, max_threads = {threads}, output_format_json_quote_64bit_integers = 0"
    text = s.query(query + settings, "JSONCompact").data()
    return json.loads(text)["data"]


def scalar(s, query):
    return s.query(query, "CSV").data().strip().strip('"')


def load(s, table):
    kind, path = table["kind"], table["data"]
    if kind == "access":
        create, insert = ACCESS, ACCESS_LOAD.format(regex=sql_string(ACCESS_LINE), path=sql_string(path))
    elif kind == "json":
        create, insert = JSON, JSON_LOAD.format(path=sql_string(path))
    else:
        sys.exit(f"no typed table for {kind} data")
    s.query(f"DROP TABLE IF EXISTS {kind}")
    s.query(create)
    start = time.perf_counter()
    s.query(insert)
    s.query(f"OPTIMIZE TABLE {kind} FINAL")
    secs = time.perf_counter() - start
    stored = int(scalar(s, f"SELECT sum(data_compressed_bytes) FROM system.parts WHERE table = '{kind}' AND active"))
    count = int(scalar(s, f"SELECT count() FROM {kind}"))
    if count != table["lines"]:
        sys.exit(f"ClickHouse's {kind} table holds {count} rows, {path} has {table['lines']} lines")
    return {"kind": kind, "load_seconds": secs, "stored_bytes": stored}


def main():
    workdir, runs, spec_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(spec_path) as f:
        spec = json.load(f)
    shutil.rmtree(workdir, ignore_errors=True)
    s = session.Session(workdir)
    out = {"version": scalar(s, "SELECT version()"), "tables": [], "queries": []}
    for table in spec["tables"]:
        out["tables"].append(load(s, table))
    threads = int(spec["threads"])
    for q in spec["queries"]:
        got = rows(s, q["sql"], threads)
        times = []
        for _ in range(max(runs, 1)):
            start = time.perf_counter()
            got = rows(s, q["sql"], threads)
            times.append(time.perf_counter() - start)
        reference = rows(s, q["reference"], threads) if q.get("reference") else None
        out["queries"].append({"id": q["id"], "rows": got, "reference": reference, "seconds": times})
    s.close()
    shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
