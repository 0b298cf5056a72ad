import { useEffect, useState } from "react";
import { api, enc, myRole, searchAll, type Deployment, type Telemetry } from "../api";
import { Link, Show, WorkspaceTabs } from "../components";
import { formatTime } from "../format";
import { TimeChart } from "../MetricChart";
import { principal } from "../principal";
import { useData } from "../useData";

const POLL_MS = 5000;

export function DeploymentsPage({ workspace }: { workspace: string }) {
  const deployments = useData(() => searchAll<Deployment>(`workspaces/${enc(workspace)}/deployments:search`), [workspace]);
  return (
    <>
      <div className="aml-crumbs"><Link to={{ page: "workspaces" }}>Workspaces</Link><span>{workspace}</span></div>
      <h1>{workspace}</h1>
      <WorkspaceTabs workspace={workspace} active="deployments" />
      <Show loaded={deployments}>
        {(items) => items.length === 0 ? <p className="aml-muted">No deployment yet.</p> : (
          <table className="aml-table" data-testid="deployments">
            <thead><tr><th>Deployment</th><th>State</th><th>Target</th><th>Image</th><th>Replicas</th><th>Requests</th><th>Scoring URI</th></tr></thead>
            <tbody>
              {items.map((d) => (
                <tr key={d.name} data-deployment={d.name}>
                  <td><Link to={{ page: "deployment", workspace, name: d.name }}>{d.name}</Link></td>
                  <td><span className={`aml-status ${d.state}`}>{d.state}</span></td>
                  <td>{d.target}</td>
                  <td>{d.serving_image_id ?? d.image_id}</td>
                  <td>{(d.runtime.replicas ?? []).filter((r) => r.ready && !r.draining).length}</td>
                  <td>{d.runtime.telemetry?.requests ?? 0}</td>
                  <td><code>{d.scoring_uri}</code></td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Show>
    </>
  );
}

function TelemetryCharts({ telemetry }: { telemetry: Telemetry }) {
  const history = telemetry.history ?? [];
  const times = history.map((point) => point.t);
  return (
    <>
      <dl className="aml-kv" data-testid="telemetry">
        <dt>Requests</dt><dd>{telemetry.requests ?? 0}</dd>
        <dt>Server errors</dt><dd>{telemetry.errors ?? 0}</dd>
        <dt>Client errors</dt><dd>{telemetry.client_errors ?? 0}</dd>
        <dt>Latency p50 / p99</dt><dd>{telemetry.latency_ms ? `${telemetry.latency_ms.p50} / ${telemetry.latency_ms.p99} ms` : ""}</dd>
      </dl>
      {history.length > 1 && (
        <div className="aml-charts">
          <TimeChart name="requests" steps={times} values={history.map((p) => p.requests)} />
          <TimeChart name="errors" steps={times} values={history.map((p) => p.errors)} />
          <TimeChart name="p50 latency (ms)" steps={times} values={history.map((p) => p.p50)} />
          <TimeChart name="p99 latency (ms)" steps={times} values={history.map((p) => p.p99)} />
        </div>
      )}
    </>
  );
}

/** The keys: hidden until asked for, and offered only to Owners and Contributors (the service
 * refuses Readers both calls anyway). */
function Keys({ workspace, name }: { workspace: string; name: string }) {
  const [keys, setKeys] = useState<{ primary: string; secondary: string } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const path = `workspaces/${enc(workspace)}/deployments/${enc(name)}/keys`;
  const run = async (call: () => Promise<void>) => {
    setError(null);
    try { await call(); } catch (failure) { setError((failure as Error).message); }
  };
  const reveal = () => run(async () => setKeys(await api(path)));
  const regenerate = () => run(async () => {
    await api(`${path}/primary:regenerate`, { method: "POST" });
    setKeys(await api(path));
  });
  return (
    <div data-testid="keys">
      {keys ? (
        <dl className="aml-kv">
          <dt>Primary</dt><dd><code data-testid="primary-key">{keys.primary}</code></dd>
          <dt>Secondary</dt><dd><code>{keys.secondary}</code></dd>
        </dl>
      ) : <p className="aml-muted">Keys hidden.</p>}
      <button className="aml-button" data-testid="show-keys" onClick={() => void reveal()}>Show keys</button>{" "}
      <button className="aml-button" data-testid="regenerate-key" onClick={() => void regenerate()}>Regenerate primary key</button>
      {error && <p className="aml-error" role="alert">{error}</p>}
    </div>
  );
}

async function loadDeployment(workspace: string, name: string) {
  const path = `workspaces/${enc(workspace)}/deployments/${enc(name)}`;
  const [deployment, logs, role] = await Promise.all([
    api<Deployment>(path),
    api<{ text: string }>(`${path}/logs`, { query: { tail: "100" } }).catch(() => ({ text: "" })),
    myRole(workspace, principal()),
  ]);
  return { deployment, logs: logs.text, role };
}

export function DeploymentPage({ workspace, name }: { workspace: string; name: string }) {
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const timer = window.setInterval(() => setTick((n) => n + 1), POLL_MS); // telemetry every 10 s on the supervisor
    return () => window.clearInterval(timer);
  }, []);
  const loaded = useData(() => loadDeployment(workspace, name), [workspace, name, tick]);
  return (
    <>
      <div className="aml-crumbs">
        <Link to={{ page: "workspaces" }}>Workspaces</Link>
        <Link to={{ page: "deployments", workspace }}>{workspace}</Link>
        <span>{name}</span>
      </div>
      <Show loaded={loaded}>
        {({ deployment: d, logs, role }) => (
          <>
            <h1>{d.name} <span className={`aml-status ${d.state}`} data-testid="deployment-state">{d.state}</span></h1>
            <dl className="aml-kv" data-testid="deployment-metadata">
              <dt>Target</dt><dd>{d.target}</dd>
              <dt>Image</dt><dd><Link to={{ page: "images", workspace }}>{d.image_id}</Link>{d.serving_image_id && d.serving_image_id !== d.image_id ? ` (serving ${d.serving_image_id})` : ""}</dd>
              <dt>Replicas</dt><dd data-testid="replicas">{(d.runtime.replicas ?? []).filter((r) => r.ready && !r.draining).length} ready of {(d.runtime.replicas ?? []).length}</dd>
              <dt>Scoring URI</dt><dd><code data-testid="scoring-uri">{d.scoring_uri}</code></dd>
              <dt>Created</dt><dd>{formatTime(d.created_at)} by {d.created_by}</dd>
              {d.error && (<><dt>Error</dt><dd className="aml-error">{d.error}</dd></>)}
            </dl>
            {(role === "Owner" || role === "Contributor") && (<><h2>Keys</h2><Keys workspace={workspace} name={name} /></>)}
            <h2>Telemetry</h2>
            <TelemetryCharts telemetry={d.runtime.telemetry ?? {}} />
            <h2>Recent logs</h2>
            {logs ? <pre className="aml-log" data-testid="deployment-log">{logs}</pre> : <p className="aml-muted">No log on this machine.</p>}
          </>
        )}
      </Show>
    </>
  );
}
