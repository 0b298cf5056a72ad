// Every data call goes to the service's /api/v1 with the user's credentials: inside Airflow the
// browser sends Airflow's `_token` cookie (same origin); standalone, a personal access token kept
// in sessionStorage (asked for once per browser tab) travels as a bearer token.

// The API sits next to the bundle's folder: /ui/aml-ui.js -> /api/v1, /aml/ui/aml-ui.js -> /aml/api/v1.
export const API_BASE = new URL(/* @vite-ignore */ "../api/v1/", import.meta.url);
const TOKEN_KEY = "airflow-aml-token";

export function storedToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(token: string | null): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export async function api<T>(path: string, init: { method?: string; body?: unknown; query?: Record<string, string> } = {}): Promise<T> {
  // "./" first: a bare "runs:latest-scalar-metrics" would parse as a URL of scheme "runs:".
  const url = new URL("./" + path.replace(/^\//, ""), API_BASE);
  for (const [key, value] of Object.entries(init.query ?? {})) url.searchParams.set(key, value);
  const headers: Record<string, string> = { Accept: "application/json" };
  const token = storedToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (init.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method: init.method ?? "GET",
    headers,
    credentials: "same-origin",
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  const data = parseJson(await response.text()) as { error?: { code?: string; message?: string } } | null;
  if (!response.ok) {
    const error = data?.error ?? {};
    throw new ApiError(response.status, error.code ?? "HTTPError", error.message ?? response.statusText);
  }
  return data as T;
}

/** The service writes NaN and Infinity as Python's json does (metric values may be NaN), which
 * JSON.parse refuses: on that refusal, those bare values (never quoted ones) are read as null. */
function parseJson(text: string): unknown {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    try {
      return JSON.parse(text.replace(/([:[,]\s*)-?(?:NaN|Infinity)(?=\s*[,\]}])/g, "$1null"));
    } catch {
      return null;
    }
  }
}

export type Page<T> = { items: T[]; next_cursor: string | null };

/** Every item of a paginated listing (the service pages with ?cursor=). */
export async function listAll<T>(path: string): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | null = null;
  do {
    const page: Page<T> = await api<Page<T>>(path, { query: cursor ? { cursor } : {} });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

// The records, as the service serialises airflow_aml.entities.
export type Workspace = { name: string; description: string; created_by: string; created_at: string };
export type Experiment = { workspace: string; name: string; created_at: string };
export type RunStatus =
  | "Queued" | "Preparing" | "Running" | "Finalizing" | "CancelRequested" | "Completed" | "Failed" | "Canceled";
export const TERMINAL: ReadonlySet<RunStatus> = new Set(["Completed", "Failed", "Canceled"]);
export type Run = {
  run_id: string;
  workspace: string;
  experiment: string;
  parent_run_id: string | null;
  status: RunStatus;
  created_at: string;
  start_time: string | null;
  end_time: string | null;
  submitted_by: string;
  compute_target: string | null;
  display_name: string | null;
  error: string | null;
  tags: Record<string, string>;
  properties: Record<string, string>;
  params: Record<string, string>;
};
export type Metric = { name: string; value: number | null; step: number; timestamp: number; kind: "scalar" | "row" | "image" };
export type LogChunk = { seq: number; stream: string; text: string; timestamp: number };
export type Model = {
  workspace: string; name: string; version: number; created_at: string; created_by: string;
  description: string; run_id: string | null; tags: Record<string, string>;
};

export type MetricCondition = { metric: string; op: "<" | "<=" | ">" | ">=" | "==" | "!="; value: number };
export type RunQuery = {
  experiment?: string;
  parent_run_id?: string;
  top_level_only?: boolean;
  statuses?: RunStatus[];
  metric_conditions?: MetricCondition[];
  order_by_metric?: string | null;
  descending?: boolean;
  max_results?: number;
};

export async function searchRuns(workspace: string, query: RunQuery): Promise<Run[]> {
  const items: Run[] = [];
  let cursor: string | null = null;
  do {
    const page: Page<Run> = await api<Page<Run>>(`workspaces/${enc(workspace)}/runs:search`, {
      method: "POST", body: { query }, query: cursor ? { cursor } : {},
    });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

/** One page of a run search, read by the database (LIMIT/OFFSET behind the cursor). */
export function searchRunsPage(workspace: string, query: RunQuery, cursor: string | null, limit: number): Promise<Page<Run>> {
  return api<Page<Run>>(`workspaces/${enc(workspace)}/runs:search`, {
    method: "POST", body: { query }, query: { limit: String(limit), ...(cursor ? { cursor } : {}) },
  });
}

/** {run id: number of child runs}, one query for a page of parents. */
export function childCounts(workspace: string, runIds: string[]): Promise<Record<string, number>> {
  if (runIds.length === 0) return Promise.resolve({});
  return api(`workspaces/${enc(workspace)}/runs:child-counts`, { method: "POST", body: { run_ids: runIds } });
}

/** Each scalar metric of a run as arrays, at most ``maxPoints`` per metric (LTTB on the service);
 * ``total_points`` is what was logged. */
export type Series = { name: string; steps: number[]; values: (number | null)[]; total_points: number };
export async function metricSeries(runId: string, maxPoints: number): Promise<Series[]> {
  const answer = await api<{ series: Series[] }>(`runs/${enc(runId)}/metric-series`, { query: { max_points: String(maxPoints) } });
  return answer.series;
}

export function latestMetrics(runIds: string[]): Promise<Record<string, Record<string, number>>> {
  if (runIds.length === 0) return Promise.resolve({});
  return api("runs:latest-scalar-metrics", { method: "POST", body: { run_ids: runIds } });
}

export const enc = encodeURIComponent;

// Images, deployments and activities (issue 13's pages).
export type ImageStatus = "Building" | "Succeeded" | "Failed";
export type Image = {
  workspace: string; name: string; version: number; status: ImageStatus; builder: string; created_at: string;
  created_by: string; updated_at: string; model_ids: string[]; description: string; digest: string | null;
  location: string | null; error: string | null; build_log_path: string | null; build_log_tail: string;
  activity_id: string | null; tags: Record<string, string>;
};
export type Telemetry = {
  requests?: number; errors?: number; client_errors?: number; last_request_at?: number | null;
  latency_ms?: { p50: number; p95: number; p99: number; window: number };
  history?: { t: number; requests: number; errors: number; p50: number; p99: number }[];
};
export type Deployment = {
  workspace: string; name: string; target: string; state: string; image_id: string; serving_image_id: string | null;
  created_at: string; created_by: string; updated_at: string; scoring_uri: string | null; error: string | null;
  activity_id: string | null; config: Record<string, unknown>; tags: Record<string, string>;
  runtime: { replicas?: { port?: number; ready?: boolean; draining?: boolean; generation?: number }[]; telemetry?: Telemetry };
};
export type Activity = {
  activity_id: string; workspace: string; kind: string; target_id: string; status: string; progress: number;
  message: string; created_at: string; updated_at: string; ended_at: string | null; error: string | null;
};

/** Every page of a POST search (images:search, deployments:search, models:search). */
export async function searchAll<T>(path: string, body: Record<string, unknown> = {}): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | null = null;
  do {
    const page: Page<T> = await api<Page<T>>(path, { method: "POST", body, query: cursor ? { cursor } : {} });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

/** The caller's role on a workspace: the UI offers write buttons to Owners and Contributors only
 * (the service refuses the others anyway). */
export async function myRole(workspace: string, principal: string): Promise<string | null> {
  return api<string | null>(`workspaces/${enc(workspace)}/roles/${enc(principal)}`);
}

// A run's files and snapshot (issue 13's run page: Files and Snapshot sections).
export type RunFile = { name: string; path: string; size: number; modified: number };
export type RunFilePage = { datastore: string; items: RunFile[]; next_cursor: string | null };
export type SnapshotEntry = { name: string; size: number; compressed_size: number };
export type SnapshotEntries = { datastore: string; path: string; size: number; sha256: string; items: SnapshotEntry[] };

/** Download `path` (under /api/v1) as a file named `filename`. Fetched with the same credentials
 * as every call (a plain <a href> carries no bearer token standalone), then handed to the browser
 * as an object URL. */
export async function downloadFile(path: string, filename: string): Promise<void> {
  const url = new URL("./" + path.replace(/^\//, ""), API_BASE);
  const token = storedToken();
  const response = await fetch(url, {
    headers: token ? { Authorization: `Bearer ${token}` } : {}, credentials: "same-origin",
  });
  if (!response.ok) {
    const error = (await response.json().catch(() => null))?.error ?? {};
    throw new ApiError(response.status, error.code ?? "HTTPError", error.message ?? response.statusText);
  }
  const objectUrl = URL.createObjectURL(await response.blob());
  const anchor = document.createElement("a");
  anchor.href = objectUrl;
  anchor.download = filename;
  document.body.append(anchor);
  anchor.click();
  anchor.remove();
  setTimeout(() => URL.revokeObjectURL(objectUrl), 60_000);
}
