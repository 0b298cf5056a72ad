import { listAll, type Workspace } from "../api";
import { Link, Show } from "../components";
import { formatTime } from "../format";
import { useData } from "../useData";

export function WorkspacesPage() {
  // The service lists only the workspaces the caller holds a role on.
  const workspaces = useData(() => listAll<Workspace>("workspaces"), []);
  return (
    <>
      <h1>Workspaces</h1>
      <Show loaded={workspaces}>
        {(items) =>
          items.length === 0 ? (
            <p className="aml-muted">You have a role on no workspace.</p>
          ) : (
            <table className="aml-table" data-testid="workspaces">
              <thead>
                <tr><th>Name</th><th>Description</th><th>Created by</th><th>Created</th></tr>
              </thead>
              <tbody>
                {items.map((ws) => (
                  <tr key={ws.name}>
                    <td><Link to={{ page: "experiments", workspace: ws.name }}>{ws.name}</Link></td>
                    <td>{ws.description}</td>
                    <td>{ws.created_by}</td>
                    <td>{formatTime(ws.created_at)}</td>
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
