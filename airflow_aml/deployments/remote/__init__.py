"""Remote deployment targets: the replicas run on a Kubernetes cluster or in Azure Container
Instances, which supervise them; the SDK applies the objects and follows their status.

::

    base.py           RemoteTarget (validate / apply / status / delete / update_keys / logs), RemoteSpec
    kubernetes.py     Deployment, Service, HPA and Secret through the provider's KubernetesHook
    k8s_manifests.py  those objects, built with the kubernetes client's models
    aci.py            a container group through the provider's AzureContainerInstanceHook
    lifecycle.py      what Deployment does with a remote target (create, update, sync, delete)
"""
