import { enc, listAll, type Experiment } from "../api";
import { Link, Show, WorkspaceTabs } from "../components";
import { formatTime } from "../format";
import { useData } from "../useData";

export function ExperimentsPage({ workspace }: { workspace: string }) {
  const experiments = useData(() => listAll<Experiment>(`workspaces/${enc(workspace)}/experiments`), [workspace]);
  return (
    <>
      <div className="aml-crumbs"><Link to={{ page: "workspaces" }}>Workspaces</Link><span>{workspace}</span></div>
      <h1>{workspace}</h1>
      <WorkspaceTabs workspace={workspace} active="experiments" />
      <Show loaded={experiments}>
        {(items) =>
          items.length === 0 ? (
            <p className="aml-muted">No experiment yet.</p>
          ) : (
            <table className="aml-table" data-testid="experiments">
              <thead><tr><th>Experiment</th><th>Created</th></tr></thead>
              <tbody>
                {items.map((exp) => (
                  <tr key={exp.name}>
                    <td><Link to={{ page: "runs", workspace, experiment: exp.name }}>{exp.name}</Link></td>
                    <td>{formatTime(exp.created_at)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )
        }
      </Show>
    </>
  );
}
