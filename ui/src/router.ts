// Hash routes (#/workspaces/demo/...): they work under /ui/ standalone and inside Airflow's
// /plugin/ml_workspace page alike, without touching the host's own router.
import { useEffect, useState } from "react";

export type Route =
  | { page: "workspaces" }
  | { page: "experiments"; workspace: string }
  | { page: "runs"; workspace: string; experiment: string }
  | { page: "run"; workspace: string; runId: string }
  | { page: "compare"; workspace: string; runIds: string[] }
  | { page: "models"; workspace: string }
  | { page: "model"; workspace: string; name: string; version: string }
  | { page: "images"; workspace: string }
  | { page: "deployments"; workspace: string }
  | { page: "deployment"; workspace: string; name: string }
  | { page: "activities"; workspace: string };

export function parseRoute(hash: string): Route {
  const [path, search = ""] = hash.replace(/^#\/?/, "").split("?", 2);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] !== "workspaces" || parts.length < 2) return { page: "workspaces" };
  const workspace = parts[1];
  if (parts[2] === "experiments" && parts[3]) return { page: "runs", workspace, experiment: parts[3] };
  if (parts[2] === "runs" && parts[3]) return { page: "run", workspace, runId: parts[3] };
  if (parts[2] === "compare") {
    const runs = new URLSearchParams(search).get("runs") ?? "";
    return { page: "compare", workspace, runIds: runs.split(",").filter(Boolean) };
  }
  if (parts[2] === "models" && parts[3] && parts[4]) return { page: "model", workspace, name: parts[3], version: parts[4] };
  if (parts[2] === "models") return { page: "models", workspace };
  if (parts[2] === "images") return { page: "images", workspace };
  if (parts[2] === "deployments" && parts[3]) return { page: "deployment", workspace, name: parts[3] };
  if (parts[2] === "deployments") return { page: "deployments", workspace };
  if (parts[2] === "activities") return { page: "activities", workspace };
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
    case "compare":
      return `#/workspaces/${e(route.workspace)}/compare?runs=${route.runIds.map(e).join(",")}`;
    case "models":
      return `#/workspaces/${e(route.workspace)}/models`;
    case "model":
      return `#/workspaces/${e(route.workspace)}/models/${e(route.name)}/${e(route.version)}`;
    case "images":
      return `#/workspaces/${e(route.workspace)}/images`;
    case "deployments":
      return `#/workspaces/${e(route.workspace)}/deployments`;
    case "deployment":
      return `#/workspaces/${e(route.workspace)}/deployments/${e(route.name)}`;
    case "activities":
      return `#/workspaces/${e(route.workspace)}/activities`;
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
