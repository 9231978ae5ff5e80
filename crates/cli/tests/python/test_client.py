"""The official Kubernetes Python client (PyPI `kubernetes`) against Meridian.

Run by crates/cli/tests/kubectl.rs with KUBECONFIG pointing at a fresh server (written by
`meridian kubeconfig`). CustomObjectsApi: create, get, list with a label selector, merge
patch, delete, and a watch that sees ADDED, MODIFIED and DELETED and resumes from a
resourceVersion. Prints ALL OK at the end; any failure raises.
"""

import threading

from kubernetes import client, config, watch

GROUP, VERSION, PLURAL, NS = "meridian.dev", "v1", "workloads", "finance"


def workload(name, labels):
    return {
        "apiVersion": "meridian.dev/v1",
        "kind": "Workload",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "type": "job",
            "replicas": 1,
            "task": {
                "driver": "exec",
                "command": ["/bin/true"],
                "resources": {"cpu": "100m", "memory": "64Mi"},
            },
        },
    }


def main():
    config.load_kube_config()
    api = client.CustomObjectsApi()

    # A watch started first, from the list's resourceVersion.
    listed = api.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)
    start_rv = listed["metadata"]["resourceVersion"]
    events = []
    done = threading.Event()

    def watcher():
        w = watch.Watch()
        for event in w.stream(
            api.list_namespaced_custom_object,
            GROUP,
            VERSION,
            NS,
            PLURAL,
            resource_version=start_rv,
            timeout_seconds=60,
        ):
            name = event["object"]["metadata"]["name"]
            if name == "py-one":
                events.append(
                    (
                        event["type"],
                        event["object"]["metadata"]["resourceVersion"],
                        event["object"]["spec"]["replicas"],
                    )
                )
            if event["type"] == "DELETED" and name == "py-one":
                w.stop()
        done.set()

    t = threading.Thread(target=watcher, daemon=True)
    t.start()

    created = api.create_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, workload("py-one", {"app": "py", "tier": "batch"})
    )
    assert created["metadata"]["uid"], created
    api.create_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, workload("py-two", {"app": "other"})
    )

    got = api.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "py-one")
    assert got["spec"]["replicas"] == 1, got

    selected = api.list_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, label_selector="app=py"
    )
    names = [i["metadata"]["name"] for i in selected["items"]]
    assert names == ["py-one"], names

    patched = api.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "py-one", {"spec": {"replicas": 2}}
    )
    assert patched["spec"]["replicas"] == 2, patched
    assert patched["metadata"]["labels"]["tier"] == "batch", patched

    # An error is a Status the client turns into an ApiException with the code.
    try:
        api.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "missing")
        raise AssertionError("a missing object must be 404")
    except client.exceptions.ApiException as e:
        assert e.status == 404, e

    api.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "py-one")
    api.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "py-two")

    assert done.wait(60), f"the watch did not see the deletion: {events}"
    # The scheduler may write the workload's status in between (it cannot be placed: no
    # nodes): those MODIFIED events leave the spec as it was. The spec's changes are
    # exactly the create, the patch and the delete.
    changes = [
        e[0]
        for i, e in enumerate(events)
        if e[0] != "MODIFIED" or e[2] != events[i - 1][2]
    ]
    assert changes == ["ADDED", "MODIFIED", "DELETED"], events

    # Resuming from the resourceVersion of the ADDED event replays what came after it.
    resumed = []
    w = watch.Watch()
    for event in w.stream(
        api.list_namespaced_custom_object,
        GROUP,
        VERSION,
        NS,
        PLURAL,
        resource_version=events[0][1],
        timeout_seconds=10,
    ):
        if event["object"]["metadata"]["name"] == "py-one":
            resumed.append(event["type"])
        if event["type"] == "DELETED" and event["object"]["metadata"]["name"] == "py-one":
            w.stop()
    assert resumed == [e[0] for e in events[1:]], (resumed, events)

    # Namespaces are projects.
    namespaces = [n.metadata.name for n in client.CoreV1Api().list_namespace().items]
    assert "finance" in namespaces, namespaces
    print("ALL OK")


if __name__ == "__main__":
    main()
