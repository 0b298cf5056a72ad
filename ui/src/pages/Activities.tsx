import { useEffect, useState } from "react";
import { enc, listAll, type Activity } from "../api";
import { Link, Show, WorkspaceTabs } from "../components";
import { formatTime } from "../format";
import type { Loaded } from "../useData";

const POLL_MS = 1500;
const ENDED = new Set(["Succeeded", "Failed", "Canceled"]);

/** Running ones first, then by their last change, newest first. */
export function ordered(activities: Activity[]): Activity[] {
  return [...activities].sort((a, b) =>
    Number(ENDED.has(a.status)) - Number(ENDED.has(b.status)) || b.updated_at.localeCompare(a.updated_at));
}

/** The workspace's activities, polled while any has not ended (one list request per poll, however
 * many run: cheaper here than an event stream per activity). */
function useActivities(workspace: string): Loaded<Activity[]> {
  const [state, setState] = useState<Loaded<Activity[]>>({ loading: true });
  useEffect(() => {
    let stopped = false;
    let timer: number | undefined;
    const poll = async () => {
      let again = true;
      try {
        const items = await listAll<Activity>(`workspaces/${enc(workspace)}/activities`);
        if (stopped) return;
        setState({ data: ordered(items), loading: false });
        again = items.some((activity) => !ENDED.has(activity.status));
      } catch (error) {
        if (!stopped) setState({ error: error as Error, loading: false });
        again = false;
      }
      if (!stopped && again) timer = window.setTimeout(poll, POLL_MS);
    };
    void poll();
    return () => {
      stopped = true;
      window.clearTimeout(timer);
    };
  }, [workspace]);
  return state;
}

function Target({ workspace, activity }: { workspace: string; activity: Activity }) {
  if (activity.kind === "run") return <Link to={{ page: "run", workspace, runId: activity.target_id }}>{activity.target_id.slice(0, 8)}</Link>;
  if (activity.kind.startsWith("deployment")) return <Link to={{ page: "deployment", workspace, name: activity.target_id }}>{activity.target_id}</Link>;
  if (activity.kind === "image_build") return <Link to={{ page: "images", workspace }}>{activity.target_id}</Link>;
  return <>{activity.target_id}</>;
}

export function ActivitiesPage({ workspace }: { workspace: string }) {
  const activities = useActivities(workspace);
  return (
    <>
      <div className="aml-crumbs"><Link to={{ page: "workspaces" }}>Workspaces</Link><span>{workspace}</span></div>
      <h1>{workspace}</h1>
      <WorkspaceTabs workspace={workspace} active="activities" />
      <Show loaded={activities}>
        {(items) => items.length === 0 ? <p className="aml-muted">No activity yet.</p> : (
          <table className="aml-table" data-testid="activities">
            <thead><tr><th>Kind</th><th>Target</th><th>Status</th><th>Progress</th><th>Message</th><th>Updated</th></tr></thead>
            <tbody>
              {items.map((activity) => (
                <tr key={activity.activity_id} data-activity={activity.activity_id} data-status={activity.status}>
                  <td>{activity.kind}</td>
                  <td><Target workspace={workspace} activity={activity} /></td>
                  <td><span className={`aml-status ${activity.status}`}>{activity.status}</span></td>
                  <td>
                    <progress max={1} value={activity.progress} data-testid="progress" data-progress={activity.progress} />{" "}
                    {Math.round(activity.progress * 100)}%
                  </td>
                  <td>{activity.error ? <span className="aml-error">{activity.error}</span> : activity.message}</td>
                  <td>{formatTime(activity.updated_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Show>
    </>
  );
}
