// Hash routes (#/workspaces/demo/...): they work under /ui/ standalone and inside Airflow's
// /plugin/ml_workspace page alike, without touching the host's own router.
import { useEffect, useState } from "react";

export type Route =
  | { page: "workspaces" }
  | { page: "experiments"; workspace: string }
  | { page: "runs"; workspace: string; experiment: string }
  | { page: "run"; workspace: string; runId: string }
  | { page: "models"; workspace: string };

export function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] !== "workspaces" || parts.length < 2) return { page: "workspaces" };
  const workspace = parts[1];
  if (parts[2] === "experiments" && parts[3]) return { page: "runs", workspace, experiment: parts[3] };
  if (parts[2] === "runs" && parts[3]) return { page: "run", workspace, runId: parts[3] };
  if (parts[2] === "models") return { page: "models", workspace };
  return { page: "experiments", workspace };
}

export function href(route: Route): string {
  const e = encodeURIComponent;
  switch (route.page) {
    case "workspaces":
      return "#/";
    case "experiments":
      return `#/workspaces/${e(route.workspace)}`;
    case "runs":
      return `#/workspaces/${e(route.workspace)}/experiments/${e(route.experiment)}`;
    case "run":
      return `#/workspaces/${e(route.workspace)}/runs/${e(route.runId)}`;
    case "models":
      return `#/workspaces/${e(route.workspace)}/models`;
  }
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const changed = () => setRoute(parseRoute(location.hash));
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return route;
}
