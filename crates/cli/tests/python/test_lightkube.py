"""lightkube (PyPI `lightkube`) against Meridian.

Run by crates/cli/tests/kubectl.rs with KUBECONFIG written by `meridian kubeconfig` for a
server over TLS (its generated CA inline as certificate-authority-data) with the examples
applied. A generic resource for meridian.dev/v1 Workload: listed in one project and in all
of them, and read by name. Prints ALL OK at the end; any failure raises.
"""

import os

from lightkube import ALL_NS, Client, KubeConfig
from lightkube.generic_resource import create_namespaced_resource

Workload = create_namespaced_resource("meridian.dev", "v1", "Workload", "workloads")


def main():
    client = Client(config=KubeConfig.from_file(os.environ["KUBECONFIG"]))

    finance = list(client.list(Workload, namespace="finance"))
    names = sorted(w.metadata.name for w in finance)
    assert "payroll-api" in names, names
    assert all(w.metadata.namespace == "finance" for w in finance), names

    everywhere = list(client.list(Workload, namespace=ALL_NS))
    namespaces = {w.metadata.namespace for w in everywhere}
    assert len(everywhere) > len(finance) and "finance" in namespaces, namespaces

    payroll = client.get(Workload, "payroll-api", namespace="finance")
    assert payroll.metadata.name == "payroll-api", payroll
    assert payroll["spec"]["type"] == "service", payroll["spec"]

    print("ALL OK")


if __name__ == "__main__":
    main()
