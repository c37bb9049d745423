#!/usr/bin/env python3
"""ClickHouse (embedded, via chDB) as a peer on eddy's benchmark data.

Usage: clickhouse.py WORKDIR RUNS MANIFEST.json:DATA.log [...]
Prints one JSON object: the ClickHouse version and, per data file, the bulk-ingest rate into a
MergeTree table of raw lines, the stored size under LZ4 (ClickHouse's default) and ZSTD(3), and
for each probe of the manifest the time of a brute-force count over the stored table. Every count
is checked against the generator's; a mismatch is an error (exit 1), never a reported number.
"""
import json
import shutil
import sys
import time

from chdb import session


def sql_string(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def condition(probe):
    pattern = probe["pattern"]
    if probe["regex"]:
        re = ("(?i)" if probe["ignore_case"] else "") + pattern
        return f"match(line, {sql_string(re)})"
    fn = "positionCaseInsensitive" if probe["ignore_case"] else "position"
    return f"{fn}(line, {sql_string(pattern)}) > 0"


def scalar(s, query):
    return s.query(query, "CSV").data().strip().strip('"')


def main():
    workdir, runs, pairs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    shutil.rmtree(workdir, ignore_errors=True)
    s = session.Session(workdir)
    out = {"version": scalar(s, "SELECT version()"), "kinds": []}
    for pair in pairs:
        manifest_path, data_path = pair.split(":", 1)
        with open(manifest_path) as f:
            manifest = json.load(f)
        kind = manifest["kind"]
        result = {"kind": kind, "bytes": manifest["bytes"], "lines": manifest["lines"], "probes": []}
        for codec in ["LZ4", "ZSTD(3)"]:
            table = f"{kind}_{'lz4' if codec == 'LZ4' else 'zstd'}"
            s.query(f"DROP TABLE IF EXISTS {table}")
            s.query(f"CREATE TABLE {table} (line String CODEC({codec})) ENGINE = MergeTree ORDER BY tuple()")
            start = time.perf_counter()
            s.query(f"INSERT INTO {table} SELECT line FROM file({sql_string(data_path)}, 'LineAsString')")
            s.query(f"OPTIMIZE TABLE {table} FINAL")
            secs = time.perf_counter() - start
            stored = int(scalar(s, f"SELECT sum(data_compressed_bytes) FROM system.parts WHERE table = '{table}' AND active"))
            rows = int(scalar(s, f"SELECT count() FROM {table}"))
            if rows != manifest["lines"]:
                sys.exit(f"ClickHouse stored {rows} lines of {data_path}, the file has {manifest['lines']}")
            result[codec] = {"ingest_seconds": secs, "stored_bytes": stored}
        for probe in manifest["probes"]:
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                # The query condition cache would let repeated runs skip granules: a brute-force
                # scan each time is the comparison that means something.
                got = int(scalar(
                    s,
                    f"SELECT count() FROM {kind}_lz4 WHERE {condition(probe)} "
                    "SETTINGS use_query_condition_cache = 0, use_query_cache = 0",
                ))
                times.append(time.perf_counter() - start)
                if got != probe["count"]:
                    sys.exit(f"ClickHouse counted {got} lines for {probe['pattern']!r} in {kind}, the truth is {probe['count']}")
            result["probes"].append({"name": probe["name"], "count": probe["count"], "seconds": times})
        out["kinds"].append(result)
    s.close()
    shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
