// The run page's Files (outputs/, logs/ ... of the run's folder) and Snapshot (the zip of the
// source directory, as a tree) sections.
import { useMemo, useState } from "react";
import {
  ApiError, api, downloadFile, enc, type RunFile, type RunFilePage, type SnapshotEntries,
  type SnapshotEntry,
} from "../api";
import { useData } from "../useData";

function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

const segments = (path: string) => path.split("/").map(enc).join("/");
const objectPath = (workspace: string, datastore: string, path: string) =>
  `workspaces/${enc(workspace)}/datastores/${enc(datastore)}/objects/${segments(path)}`;
const baseName = (path: string) => path.split("/").pop() ?? path;

async function runFiles(runId: string): Promise<{ datastore: string; items: RunFile[] }> {
  const items: RunFile[] = [];
  let cursor: string | null = null;
  let datastore = "";
  do {
    const page: RunFilePage = await api<RunFilePage>(`runs/${enc(runId)}/files`, { query: cursor ? { cursor } : {} });
    datastore = page.datastore;
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return { datastore, items };
}

/** The snapshot's entries, or null when the run has none (404). */
async function snapshotEntries(runId: string): Promise<SnapshotEntries | null> {
  try {
    return await api<SnapshotEntries>(`runs/${enc(runId)}/snapshot/entries`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

function DownloadButton({ path, filename, label }: { path: string; filename: string; label: string }) {
  const [error, setError] = useState<string | null>(null);
  return (
    <>
      <button type="button" className="aml-link-button" aria-label={`download ${label}`}
        onClick={() => downloadFile(path, filename).then(() => setError(null), (e: Error) => setError(e.message))}>
        {label}
      </button>
      {error && <span role="alert" className="aml-error"> {error}</span>}
    </>
  );
}

export function RunFilesSection({ workspace, runId }: { workspace: string; runId: string }) {
  const files = useData(() => runFiles(runId), [runId]);
  return (
    <>
      <h2>Files</h2>
      {files.error && <p role="alert" className="aml-error">{files.error.message}</p>}
      {files.data && files.data.items.length === 0 && <p className="aml-muted">No file.</p>}
      {files.data && files.data.items.length > 0 && (
        <table className="aml-table" data-testid="run-files">
          <thead><tr><th>File</th><th>Size</th><th>Modified</th></tr></thead>
          <tbody>
            {files.data.items.map((file) => (
              <tr key={file.name} data-file={file.name}>
                <td><DownloadButton path={objectPath(workspace, files.data!.datastore, file.path)}
                  filename={baseName(file.name)} label={file.name} /></td>
                <td className="num">{size(file.size)}</td>
                <td>{new Date(file.modified * 1000).toLocaleString()}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}

type Folder = { name: string; path: string; folders: Map<string, Folder>; files: SnapshotEntry[] };

export function treeOf(entries: SnapshotEntry[]): Folder {
  const root: Folder = { name: "", path: "", folders: new Map(), files: [] };
  for (const entry of entries) {
    const parts = entry.name.split("/");
    let folder = root;
    for (const part of parts.slice(0, -1)) {
      let next = folder.folders.get(part);
      if (!next) {
        next = { name: part, path: folder.path + part + "/", folders: new Map(), files: [] };
        folder.folders.set(part, next);
      }
      folder = next;
    }
    folder.files.push(entry);
  }
  return root;
}

function FolderView({ folder, runId, open }: { folder: Folder; runId: string; open: boolean }) {
  const [expanded, setExpanded] = useState(open);
  const body = (
    <ul className="aml-tree">
      {[...folder.folders.values()].sort((a, b) => a.name.localeCompare(b.name)).map((child) => (
        <FolderView key={child.path} folder={child} runId={runId} open={false} />
      ))}
      {folder.files.map((file) => (
        <li key={file.name} data-entry={file.name}>
          <DownloadButton path={`runs/${enc(runId)}/snapshot/entries/${segments(file.name)}`}
            filename={baseName(file.name)} label={baseName(file.name)} />
          <span className="aml-muted"> {size(file.size)}</span>
        </li>
      ))}
    </ul>
  );
  if (!folder.name) return body;
  return (
    <li data-folder={folder.path}>
      <button type="button" className="aml-link-button" aria-expanded={expanded} onClick={() => setExpanded(!expanded)}>
        {expanded ? "▾" : "▸"} {folder.name}/
      </button>
      {expanded && body}
    </li>
  );
}

export function SnapshotSection({ workspace, runId }: { workspace: string; runId: string }) {
  const snapshot = useData(() => snapshotEntries(runId), [runId]);
  const tree = useMemo(() => treeOf(snapshot.data?.items ?? []), [snapshot.data]);
  return (
    <>
      <h2>Snapshot</h2>
      {snapshot.error && <p role="alert" className="aml-error">{snapshot.error.message}</p>}
      {snapshot.data === null && <p className="aml-muted">No snapshot.</p>}
      {snapshot.data && (
        <div data-testid="snapshot">
          <p>
            <DownloadButton path={objectPath(workspace, snapshot.data.datastore, snapshot.data.path)}
              filename={`${runId}-snapshot.zip`} label="snapshot.zip" />
            <span className="aml-muted"> {size(snapshot.data.size)}, {snapshot.data.items.length} files,
              SHA-256 {snapshot.data.sha256.slice(0, 12)}…</span>
          </p>
          <FolderView folder={tree} runId={runId} open />
        </div>
      )}
    </>
  );
}
