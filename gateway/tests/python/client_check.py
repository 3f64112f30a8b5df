"""The official Python Kubernetes client against drover's gateway.

Usage: client_check.py KUBECONFIG

Prints one line per check and exits non-zero on the first failure (the traceback says
where). Run by gateway/tests/python_client.rs against a fresh cluster; the `kubernetes`
package is pinned and installed by scripts/setup.
"""

import json
import sys

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

NS = "default"
# A failure guard for the watch, in seconds; never a timing assertion.
WATCH_GUARD_S = 60


def check(what, cond, detail=""):
    if not cond:
        print(f"FAIL {what} {detail}", flush=True)
        sys.exit(1)
    print(f"ok   {what}", flush=True)


def pod(name, labels):
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
    )


def api_error(call):
    """The ApiException `call` raises, or a failed check."""
    try:
        call()
    except ApiException as e:
        return e
    check("call raises ApiException", False, repr(call))


def main():
    config.load_kube_config(config_file=sys.argv[1])
    v1 = client.CoreV1Api()

    names = {ns.metadata.name for ns in v1.list_namespace().items}
    check("list namespaces has default and kube-system", {"default", "kube-system"} <= names, names)

    cm = v1.create_namespaced_config_map(
        NS,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-config"), data={"k": "v"}),
    )
    check("create configmap", cm.metadata.uid and cm.data == {"k": "v"}, cm)
    check("read configmap", v1.read_namespaced_config_map("py-config", NS).data["k"] == "v")

    created = v1.create_namespaced_pod(NS, pod("py-web", {"suite": "py", "app": "web"}))
    check("create pod", created.metadata.uid and created.metadata.resource_version, created.metadata)
    v1.create_namespaced_pod(NS, pod("py-other", {"suite": "other"}))

    listed = v1.list_namespaced_pod(NS, label_selector="suite=py")
    check(
        "list pods with label selector",
        [p.metadata.name for p in listed.items] == ["py-web"],
        [p.metadata.name for p in listed.items],
    )

    patched = v1.patch_namespaced_pod("py-web", NS, {"metadata": {"labels": {"patched": "yes"}}})
    check(
        "patch pod labels",
        patched.metadata.labels == {"suite": "py", "app": "web", "patched": "yes"},
        patched.metadata.labels,
    )

    # The watch starts at the resourceVersion of a list taken before py-late exists, so
    # py-late's creation is after the watch's start however the two requests interleave.
    since = v1.list_namespaced_pod(NS, label_selector="suite=py").metadata.resource_version
    v1.create_namespaced_pod(NS, pod("py-late", {"suite": "py"}))
    w = watch.Watch()
    seen = []
    for event in w.stream(
        v1.list_namespaced_pod,
        namespace=NS,
        label_selector="suite=py",
        resource_version=since,
        timeout_seconds=WATCH_GUARD_S,
    ):
        seen.append((event["type"], event["object"].metadata.name))
        if seen[-1] == ("ADDED", "py-late"):
            w.stop()
    check("watch sees ADDED for a pod created after it started", ("ADDED", "py-late") in seen, seen)

    for name in ("py-web", "py-other", "py-late"):
        v1.delete_namespaced_pod(name, NS)
    v1.delete_namespaced_config_map("py-config", NS)
    left = [p.metadata.name for p in v1.list_namespaced_pod(NS).items]
    check("delete pods", not {"py-web", "py-other", "py-late"} & set(left), left)

    e = api_error(lambda: v1.read_namespaced_pod("py-web", NS))
    body = json.loads(e.body)
    check("read deleted pod is a 404 ApiException", e.status == 404 and body["reason"] == "NotFound", e)

    e = api_error(lambda: v1.create_namespaced_pod(NS, pod("Not-Valid", {})))
    body = json.loads(e.body)
    causes = body.get("details", {}).get("causes", [])
    check("invalid pod is a 422 ApiException", e.status == 422 and body["reason"] == "Invalid", e)
    check(
        "422 names metadata.name in its causes",
        any(c.get("field") == "metadata.name" for c in causes),
        causes,
    )

    print("all checks passed", flush=True)


if __name__ == "__main__":
    main()
