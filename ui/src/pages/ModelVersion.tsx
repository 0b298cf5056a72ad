import { useState } from "react";
import { api, enc, myRole, searchAll, type Deployment, type Image, type Model } from "../api";
import { Chips, Link, Show, WorkspaceTabs } from "../components";
import { formatTime } from "../format";
import { principal } from "../principal";
import { useData } from "../useData";

type Lineage = { model: Model; images: Image[]; deployments: Deployment[]; role: string | null };

async function loadLineage(workspace: string, name: string, version: string): Promise<Lineage> {
  const ws = `workspaces/${enc(workspace)}`;
  const id = `${name}:${version}`;
  const [model, images, role] = await Promise.all([
    api<Model>(`${ws}/models/${enc(name)}`, { query: { version } }),
    searchAll<Image>(`${ws}/images:search`, { model: id }),
    myRole(workspace, principal()),
  ]);
  // Deployments serving (or rolling out) any of those image versions.
  const found = await Promise.all(images.map((image) =>
    searchAll<Deployment>(`${ws}/deployments:search`, { image: `${image.name}:${image.version}` })));
  const deployments = [...new Map(found.flat().map((d) => [d.name, d])).values()];
  return { model, images, deployments, role };
}

/** A model version and its lineage: the run it came from -> the version -> the images that
 * package it -> the deployments serving those images. */
export function ModelVersionPage({ workspace, name, version }: { workspace: string; name: string; version: string }) {
  const lineage = useData(() => loadLineage(workspace, name, version), [workspace, name, version]);
  const [refusal, setRefusal] = useState<string | null>(null);
  const [deleted, setDeleted] = useState(false);
  const remove = async () => {
    setRefusal(null);
    try {
      await api(`workspaces/${enc(workspace)}/models/${enc(name)}/versions/${enc(version)}`, { method: "DELETE" });
      setDeleted(true);
    } catch (error) {
      setRefusal((error as Error).message); // the service's reason, e.g. the images that use it
    }
  };
  return (
    <>
      <div className="aml-crumbs">
        <Link to={{ page: "workspaces" }}>Workspaces</Link>
        <Link to={{ page: "models", workspace }}>{workspace}</Link>
        <span>{name}:{version}</span>
      </div>
      <h1>{name} version {version}</h1>
      <WorkspaceTabs workspace={workspace} active="models" />
      {deleted ? <p data-testid="deleted">Version {version} of {name} was deleted.</p> : (
        <Show loaded={lineage}>
          {({ model, images, deployments, role }) => (
            <>
              <dl className="aml-kv" data-testid="model-metadata">
                <dt>Registered by</dt><dd>{model.created_by}</dd>
                <dt>Registered</dt><dd>{formatTime(model.created_at)}</dd>
                <dt>Description</dt><dd>{model.description || <span className="aml-muted">none</span>}</dd>
                <dt>Tags</dt><dd><Chips values={model.tags} /></dd>
              </dl>
              <h2>Lineage</h2>
              <ol className="aml-lineage" data-testid="lineage">
                <li data-testid="lineage-run">Run: {model.run_id
                  ? <Link to={{ page: "run", workspace, runId: model.run_id }}>{model.run_id}</Link>
                  : <span className="aml-muted">registered from a file</span>}</li>
                <li>Model: <strong>{name}:{version}</strong></li>
                <li data-testid="lineage-images">Images: {images.length === 0 ? <span className="aml-muted">none</span> :
                  images.map((image) => (
                    <span key={`${image.name}:${image.version}`} className="aml-chip">
                      <Link to={{ page: "images", workspace }}>{image.name}:{image.version}</Link> {image.status}
                    </span>
                  ))}</li>
                <li data-testid="lineage-deployments">Deployments: {deployments.length === 0 ? <span className="aml-muted">none</span> :
                  deployments.map((deployment) => (
                    <span key={deployment.name} className="aml-chip">
                      <Link to={{ page: "deployment", workspace, name: deployment.name }}>{deployment.name}</Link> {deployment.state}
                    </span>
                  ))}</li>
              </ol>
              {(role === "Owner" || role === "Contributor") && (
                <p><button className="aml-button aml-danger" data-testid="delete-version" onClick={() => void remove()}>Delete version</button></p>
              )}
              {refusal && <p className="aml-error" role="alert" data-testid="delete-refused">{refusal}</p>}
            </>
          )}
        </Show>
      )}
    </>
  );
}
