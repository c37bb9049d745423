// Repositories (ingest rate, events, bytes on disk, compression, retention), the schema
// registry's subjects and versions with compatibility verdicts, and the pipelines with their lag.
import { useEffect, useRef, useState } from "preact/hooks";
import { call } from "./api";

interface RepoInfo {
  name: string;
  partitions: number;
  events: number;
  bus_bytes: number;
  retention: string | null;
  retention_size: string | null;
  store: { segments: number; events: number; raw_bytes: number; bytes_on_disk: number; ratio: number };
}

interface VersionInfo {
  version: number;
  id: number;
  schemaType?: string;
  verdict?: { is_compatible: boolean; messages?: string[] } | { error: string };
}

interface Subject {
  name: string;
  mode: string;
  versions: VersionInfo[];
}

interface Pipeline {
  name: string;
  config: { from: string; query: string };
  status: { read: number; delivered: number; failures: number; error: string | null };
  lag?: number | null;
}

export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

async function subjects(): Promise<Subject[]> {
  const base = "/api/v1/registry";
  const names = await call<string[]>("GET", `${base}/subjects`);
  const global = await call<{ compatibilityLevel: string }>("GET", `${base}/config`).catch(() => ({ compatibilityLevel: "?" }));
  return Promise.all(
    names.map(async (name) => {
      const s = encodeURIComponent(name);
      const mode = await call<{ compatibilityLevel: string }>("GET", `${base}/config/${s}`).catch(() => global);
      const numbers = await call<number[]>("GET", `${base}/subjects/${s}/versions`);
      const versions: VersionInfo[] = [];
      for (const v of numbers) {
        const info = await call<{ version: number; id: number; schema: string; schemaType?: string }>("GET", `${base}/subjects/${s}/versions/${v}`);
        const out: VersionInfo = { version: info.version, id: info.id, schemaType: info.schemaType };
        const previous = numbers[numbers.indexOf(v) - 1];
        if (previous !== undefined) {
          // Each version checked against the one before it, under the subject's mode.
          out.verdict = await call<{ is_compatible: boolean; messages?: string[] }>(
            "POST",
            `${base}/compatibility/subjects/${s}/versions/${previous}?verbose=true`,
            { schema: info.schema, schemaType: info.schemaType },
          ).catch((e) => ({ error: (e as Error).message }));
        }
        versions.push(out);
      }
      return { name, mode: mode.compatibilityLevel, versions };
    }),
  );
}

export function RepositoriesPage() {
  const [repos, setRepos] = useState<RepoInfo[]>([]);
  const [rates, setRates] = useState<Record<string, number>>({});
  const [subs, setSubs] = useState<Subject[] | null>(null);
  const [pipes, setPipes] = useState<Pipeline[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const last = useRef<{ at: number; events: Record<string, number> } | null>(null);

  useEffect(() => {
    const load = () =>
      call<{ repositories: RepoInfo[] }>("GET", "/api/v1/repositories")
        .then((r) => {
          const now = performance.now();
          const events = Object.fromEntries(r.repositories.map((x) => [x.name, x.events]));
          // The ingest rate: events acknowledged between two looks, over the time between them.
          if (last.current) {
            const secs = (now - last.current.at) / 1000;
            setRates(Object.fromEntries(r.repositories.map((x) => [x.name, Math.max(0, (x.events - (last.current!.events[x.name] ?? x.events)) / secs)])));
          }
          last.current = { at: now, events };
          setRepos(r.repositories);
        })
        .catch((e) => setError(e.message));
    load();
    subjects().then(setSubs).catch((e) => setError(e.message));
    call<{ pipelines: Pipeline[] }>("GET", "/api/v1/pipelines").then((p) => setPipes(p.pipelines)).catch(() => setPipes([]));
    const timer = setInterval(load, 2000);
    return () => clearInterval(timer);
  }, []);

  return (
    <div class="page">
      <h2>Repositories</h2>
      {error && <p class="error" role="alert">{error}</p>}
      <table class="rows" id="repositories-table">
        <thead>
          <tr>
            <th>name</th><th>ingest rate</th><th>events</th><th>bytes on disk (bus + store)</th><th>stored events</th><th>compression</th><th>retention</th><th>partitions</th>
          </tr>
        </thead>
        <tbody>
          {repos.map((r) => (
            <tr>
              <td><a href={`#/search?repo=${encodeURIComponent(r.name)}&q=&start=1h`}>{r.name}</a></td>
              <td class="num">{rates[r.name] === undefined ? "measuring…" : `${rates[r.name].toFixed(1)} events/s`}</td>
              <td class="num">{r.events.toLocaleString()}</td>
              <td class="num">{bytes(r.bus_bytes)} + {bytes(r.store.bytes_on_disk)}</td>
              <td class="num">{r.store.events.toLocaleString()} in {r.store.segments} segments</td>
              <td class="num">{r.store.ratio ? `${r.store.ratio.toFixed(1)}×` : "–"}</td>
              <td>{[r.retention ?? "forever", r.retention_size].filter(Boolean).join(", ")}</td>
              <td class="num">{r.partitions}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2>Schema registry</h2>
      {subs === null ? <p class="muted">loading…</p> : subs.length === 0 ? <p class="muted">No subjects registered.</p> : (
        <table class="rows" id="subjects">
          <thead><tr><th>subject</th><th>mode</th><th>version</th><th>id</th><th>type</th><th>against the version before</th></tr></thead>
          <tbody>
            {subs.flatMap((s) =>
              s.versions.map((v, i) => (
                <tr>
                  <td>{i === 0 ? s.name : ""}</td>
                  <td>{i === 0 ? s.mode : ""}</td>
                  <td class="num">{v.version}</td>
                  <td class="num">{v.id}</td>
                  <td>{v.schemaType ?? "AVRO"}</td>
                  <td>
                    {!v.verdict ? "first version" : "error" in v.verdict ? <span class="error">{v.verdict.error}</span> : v.verdict.is_compatible ? <span class="ok">compatible</span> : (
                      <span class="warn">incompatible: {(v.verdict.messages ?? []).join("; ")}</span>
                    )}
                  </td>
                </tr>
              )),
            )}
          </tbody>
        </table>
      )}
      <h2>Pipelines</h2>
      {pipes === null ? <p class="muted">loading…</p> : pipes.length === 0 ? <p class="muted">No pipelines.</p> : (
        <table class="rows" id="pipelines">
          <thead><tr><th>name</th><th>from</th><th>query</th><th>read</th><th>delivered</th><th>failures</th><th>lag (events)</th><th>error</th></tr></thead>
          <tbody>
            {pipes.map((p) => (
              <tr>
                <td>{p.name}</td><td>{p.config.from}</td><td><code>{p.config.query}</code></td>
                <td class="num">{p.status.read}</td><td class="num">{p.status.delivered}</td><td class="num">{p.status.failures}</td>
                <td class="num">{p.lag ?? "–"}</td><td>{p.status.error ?? ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
