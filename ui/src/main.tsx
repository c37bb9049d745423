// The page: a hash router over the search page, dashboards and repositories, and the token
// prompt (the token lives in this tab's sessionStorage only).
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { repositories, setToken, token, whenAuthNeeded } from "./api";
import { DashboardList, DashboardView } from "./dashboards";
import { RepositoriesPage } from "./repositories";
import { SearchPage, parseSearch } from "./search";
import "./style.css";

function route(): { page: string; arg: string; params: URLSearchParams } {
  const h = location.hash.replace(/^#\/?/, "");
  const [path, query] = h.split("?", 2);
  const [page, ...rest] = path.split("/");
  return { page: page || "search", arg: rest.join("/"), params: new URLSearchParams(query ?? "") };
}

function TokenPrompt({ why, onDone }: { why: string; onDone: () => void }) {
  const [value, setValue] = useState("");
  return (
    <div class="modal" role="dialog" aria-label="token">
      <form onSubmit={(e) => { e.preventDefault(); setToken(value.trim() || null); onDone(); }}>
        <h3>A token is needed</h3>
        <p class="muted">{why}</p>
        <p>It is kept for this browser tab's session only.</p>
        <input id="token" type="password" autoFocus value={value} onInput={(e) => setValue((e.target as HTMLInputElement).value)} />
        <button class="primary" type="submit">Use token</button>
      </form>
    </div>
  );
}

function App() {
  const [r, setR] = useState(route());
  const [generation, setGeneration] = useState(0);
  const [nav, setNav] = useState(0);
  const [auth, setAuth] = useState<string | null>(null);
  const [repos, setRepos] = useState<string[]>([]);
  useEffect(() => {
    // Every navigation (a link, back, a pasted URL) opens the page afresh; the search page's own
    // pushState (a query run) fires no hashchange, so it keeps its state.
    const onHash = () => {
      setR(route());
      setNav((n) => n + 1);
    };
    window.addEventListener("hashchange", onHash);
    whenAuthNeeded((why) => setAuth(why));
    repositories().then(setRepos);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);
  const tab = (page: string, href: string, label: string) => <a class={r.page === page ? "active" : ""} href={href}>{label}</a>;
  let body;
  if (r.page === "dashboards" && r.arg) body = <DashboardView id={r.arg} />;
  else if (r.page === "dashboards") body = <DashboardList />;
  else if (r.page === "repositories") body = <RepositoriesPage />;
  else body = <SearchPage initial={parseSearch(r.params)} repositories={repos} />;
  return (
    <>
      <nav>
        <strong>eddy</strong>
        {tab("search", "#/search", "Search")}
        {tab("dashboards", "#/dashboards", "Dashboards")}
        {tab("repositories", "#/repositories", "Repositories")}
        <span class="spacer" />
        {token() ? <button class="small" onClick={() => { setToken(null); setGeneration(generation + 1); }}>forget token</button> : null}
      </nav>
      <main key={`${r.page}/${r.arg}/${nav}/${generation}`}>{body}</main>
      {auth !== null && <TokenPrompt why={auth} onDone={() => { setAuth(null); setGeneration(generation + 1); repositories().then(setRepos); }} />}
    </>
  );
}

render(<App />, document.getElementById("app")!);
