import { searchAll, enc, type Image } from "../api";
import { Chips, Link, Show, WorkspaceTabs } from "../components";
import { formatTime } from "../format";
import { useData } from "../useData";

/** A model id "name:version" as a link to that version's lineage. */
export function ModelLink({ workspace, id }: { workspace: string; id: string }) {
  const [name, version] = id.split(":");
  return <Link to={{ page: "model", workspace, name, version }}>{id}</Link>;
}

export function ImagesPage({ workspace }: { workspace: string }) {
  const images = useData(() => searchAll<Image>(`workspaces/${enc(workspace)}/images:search`), [workspace]);
  return (
    <>
      <div className="aml-crumbs"><Link to={{ page: "workspaces" }}>Workspaces</Link><span>{workspace}</span></div>
      <h1>{workspace}</h1>
      <WorkspaceTabs workspace={workspace} active="images" />
      <Show loaded={images}>
        {(items) =>
          items.length === 0 ? (
            <p className="aml-muted">No image built yet.</p>
          ) : (
            <table className="aml-table" data-testid="images">
              <thead>
                <tr><th>Image</th><th>Status</th><th>Builder</th><th>Models</th><th>Tags</th><th>Built by</th><th>Updated</th><th>Build log</th></tr>
              </thead>
              <tbody>
                {items.map((image) => (
                  <tr key={`${image.name}:${image.version}`} id={`image-${image.name}-${image.version}`} data-image={`${image.name}:${image.version}`}>
                    <td><strong>{image.name}</strong>:{image.version}</td>
                    <td>
                      <span className={`aml-status ${image.status}`}>{image.status}</span>
                      {image.error && <div className="aml-error">{image.error}</div>}
                    </td>
                    <td>{image.builder}</td>
                    <td>{image.model_ids.map((id) => <div key={id}><ModelLink workspace={workspace} id={id} /></div>)}</td>
                    <td><Chips values={image.tags} /></td>
                    <td>{image.created_by}</td>
                    <td>{formatTime(image.updated_at)}</td>
                    <td>
                      {image.build_log_tail ? (
                        <details data-testid="build-log">
                          <summary>last lines</summary>
                          <pre className="aml-log">{image.build_log_tail}</pre>
                        </details>
                      ) : <span className="aml-muted">none</span>}
                    </td>
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
