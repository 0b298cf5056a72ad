import { api, enc, type Model, type Page } from "../api";
import { Chips, Link, Show, WorkspaceTabs } from "../components";
import { formatTime } from "../format";
import { useData } from "../useData";

async function allVersions(workspace: string): Promise<Map<string, Model[]>> {
  const versions: Model[] = [];
  let cursor: string | null = null;
  do {
    const page: Page<Model> = await api<Page<Model>>(`workspaces/${enc(workspace)}/models:search`, {
      method: "POST", body: {}, query: cursor ? { cursor } : {},
    });
    versions.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  const byName = new Map<string, Model[]>();
  for (const version of versions) byName.set(version.name, [...(byName.get(version.name) ?? []), version]);
  return new Map([...byName.entries()].sort(([a], [b]) => a.localeCompare(b)));
}

export function ModelsPage({ workspace }: { workspace: string }) {
  const models = useData(() => allVersions(workspace), [workspace]);
  return (
    <>
      <div className="aml-crumbs"><Link to={{ page: "workspaces" }}>Workspaces</Link><span>{workspace}</span></div>
      <h1>{workspace}</h1>
      <WorkspaceTabs workspace={workspace} active="models" />
      <Show loaded={models}>
        {(byName) =>
          byName.size === 0 ? (
            <p className="aml-muted">No model registered yet.</p>
          ) : (
            <table className="aml-table" data-testid="models">
              <thead>
                <tr><th>Model</th><th>Version</th><th>Tags</th><th>From run</th><th>Registered by</th><th>Registered</th></tr>
              </thead>
              <tbody>
                {[...byName.entries()].flatMap(([name, versions]) =>
                  versions.map((model, index) => (
                    <tr key={model.name + ":" + model.version} data-model={`${model.name}:${model.version}`}>
                      <td>{index === 0 ? <strong>{name}</strong> : ""}</td>
                      <td><Link to={{ page: "model", workspace, name: model.name, version: String(model.version) }}>{model.version}</Link></td>
                      <td><Chips values={model.tags} /></td>
                      <td>{model.run_id ? <Link to={{ page: "run", workspace, runId: model.run_id }}>{model.run_id.slice(0, 8)}</Link> : ""}</td>
                      <td>{model.created_by}</td>
                      <td>{formatTime(model.created_at)}</td>
                    </tr>
                  )),
                )}
              </tbody>
            </table>
          )
        }
      </Show>
    </>
  );
}
