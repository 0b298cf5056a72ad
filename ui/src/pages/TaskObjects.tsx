// The "ML objects" tab of Airflow's task instance and DAG run pages: the runs, model versions,
// images and deployments that task (or every task of the DAG run) created, in every workspace the
// user may read. Airflow passes the page's ids as props; the links open the workspace UI's pages
// at Airflow's /plugin/ml_workspace (a full navigation: that is another Airflow page).
import { api, enc, listAll, type Deployment, type Image, type Model, type Run, type Workspace } from "../api";
import { Show, Status } from "../components";
import { formatTime, runName } from "../format";
import { href, type Route } from "../router";
import { useData } from "../useData";

/** The props Airflow's UI gives a react_app on the task_instance and dag_run pages (URL params). */
export type TaskIds = { dagId?: string; runId?: string; taskId?: string; mapIndex?: string };

type Found = { runs: Run[]; models: Model[]; images: Image[]; deployments: Deployment[] };
type InWorkspace = Found & { workspace: string };

// The bundle is <base>/aml/ui/aml-ui.js; the nav app's page is <base>/plugin/ml_workspace.
const WORKSPACE_PAGE = new URL(/* @vite-ignore */ "../../plugin/ml_workspace", import.meta.url);

function workspaceUrl(route: Route): string {
  return WORKSPACE_PAGE.pathname + href(route);
}

async function findObjects(ids: TaskIds): Promise<InWorkspace[]> {
  const query: Record<string, string> = { dag_id: ids.dagId ?? "" };
  if (ids.runId) query.run_id = ids.runId;
  if (ids.taskId) query.task_id = ids.taskId;
  // An unmapped task's page has no map index; a mapped task's summary page neither (all of them).
  if (ids.mapIndex !== undefined && ids.mapIndex !== "") query.map_index = ids.mapIndex;
  const workspaces = await listAll<Workspace>("workspaces");
  const found = await Promise.all(
    workspaces.map(async ({ name }) => ({
      workspace: name, ...(await api<Found>(`workspaces/${enc(name)}/airflow-objects`, { query })),
    })),
  );
  return found.filter((w) => w.runs.length + w.models.length + w.images.length + w.deployments.length > 0);
}

export function TaskObjects(ids: TaskIds) {
  const found = useData(() => findObjects(ids), [ids.dagId, ids.runId, ids.taskId, ids.mapIndex]);
  const what = ids.taskId ? `task ${ids.taskId}` : `DAG run ${ids.runId ?? ""}`;
  if (!ids.dagId) return <p className="aml-error" role="alert">Airflow gave no DAG id to this view.</p>;
  return (
    <div data-testid="task-objects">
      <Show loaded={found}>
        {(workspaces) =>
          workspaces.length === 0 ? (
            <p className="aml-muted">The {what} created nothing in the ML workspaces you can read.</p>
          ) : (
            <>
              {workspaces.map((w) => (
                <WorkspaceObjects key={w.workspace} found={w} />
              ))}
            </>
          )
        }
      </Show>
    </div>
  );
}

function WorkspaceObjects({ found }: { found: InWorkspace }) {
  const workspace = found.workspace;
  return (
    <section data-workspace={workspace}>
      <h2>
        Workspace <a href={workspaceUrl({ page: "experiments", workspace })}>{workspace}</a>
      </h2>
      {found.runs.length > 0 && (
        <table className="aml-table" data-testid="task-runs">
          <thead><tr><th>Run</th><th>Experiment</th><th>Status</th><th>Task</th><th>Created</th></tr></thead>
          <tbody>
            {found.runs.map((run) => (
              <tr key={run.run_id} data-run={run.run_id}>
                <td><a href={workspaceUrl({ page: "run", workspace, runId: run.run_id })}>{runName(run)}</a></td>
                <td>{run.experiment}</td>
                <td><Status status={run.status} /></td>
                <td>{taskOf(run.properties)}</td>
                <td>{formatTime(run.created_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {found.models.length > 0 && (
        <table className="aml-table" data-testid="task-models">
          <thead><tr><th>Model version</th><th>Task</th><th>Registered</th></tr></thead>
          <tbody>
            {found.models.map((m) => (
              <tr key={`${m.name}:${m.version}`} data-model={`${m.name}:${m.version}`}>
                <td>
                  <a href={workspaceUrl({ page: "model", workspace, name: m.name, version: String(m.version) })}>
                    {m.name}:{m.version}
                  </a>
                </td>
                <td>{taskOf(m.tags)}</td>
                <td>{formatTime(m.created_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {found.images.length > 0 && (
        <table className="aml-table" data-testid="task-images">
          <thead><tr><th>Image</th><th>Status</th><th>Task</th><th>Created</th></tr></thead>
          <tbody>
            {found.images.map((i) => (
              <tr key={`${i.name}:${i.version}`} data-image={`${i.name}:${i.version}`}>
                <td><a href={workspaceUrl({ page: "images", workspace })}>{i.name}:{i.version}</a></td>
                <td>{i.status}</td>
                <td>{taskOf(i.tags)}</td>
                <td>{formatTime(i.created_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {found.deployments.length > 0 && (
        <table className="aml-table" data-testid="task-deployments">
          <thead><tr><th>Deployment</th><th>State</th><th>Image</th><th>Task</th></tr></thead>
          <tbody>
            {found.deployments.map((d) => (
              <tr key={d.name} data-deployment={d.name}>
                <td><a href={workspaceUrl({ page: "deployment", workspace, name: d.name })}>{d.name}</a></td>
                <td>{d.state}</td>
                <td>{d.image_id}</td>
                <td>{taskOf(d.tags)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** The task (and map index, when mapped) that made an object: on a DAG run's tab, which task. */
function taskOf(marks: Record<string, string> | undefined): string {
  const task = marks?.["airflow.task_id"] ?? "";
  const index = marks?.["airflow.map_index"];
  return index && index !== "-1" ? `${task} [${index}]` : task;
}
