"""kr8s (PyPI `kr8s`) against Meridian.

Run by crates/cli/tests/kubectl.rs with KUBECONFIG written by `meridian kubeconfig` for a
server over TLS (its generated CA inline as certificate-authority-data) with the examples
applied. The server's version (kr8s' first call), then workloads: as a class made with
`new_class`, listed in one project and in all of them, and by their discovered name
`workloads.meridian.dev`, read by name. Prints ALL OK at the end; any failure raises.
"""

import os

import kr8s
from kr8s.objects import new_class


def main():
    api = kr8s.api(kubeconfig=os.environ["KUBECONFIG"])

    version = api.version()
    assert version.get("gitVersion"), version

    Workload = new_class(
        kind="Workload", version="meridian.dev/v1", namespaced=True, plural="workloads"
    )
    finance = list(api.get(Workload, namespace="finance"))
    names = sorted(w.name for w in finance)
    assert "payroll-api" in names, names
    assert all(w.namespace == "finance" for w in finance), names

    everywhere = list(api.get(Workload, namespace=kr8s.ALL))
    namespaces = {w.namespace for w in everywhere}
    assert len(everywhere) > len(finance) and "finance" in namespaces, namespaces

    # By the name discovery gives it, as `kubectl get workloads.meridian.dev` would.
    found = list(api.get("workloads.meridian.dev", "payroll-api", namespace="finance"))
    assert len(found) == 1, found
    assert found[0].raw["spec"]["type"] == "service", found[0].raw
    assert found[0].raw["metadata"]["namespace"] == "finance", found[0].raw

    print("ALL OK")


if __name__ == "__main__":
    main()
