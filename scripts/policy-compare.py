#!/usr/bin/env python3
"""Evaluates the policy benchmark's corpus with rego-cpp (PyPI `regopy`), Microsoft's C++
Rego implementation, and compares with the figures Meridian's benchmark recorded for
the same policies and objects.

Usage: policy-compare.py CORPUS.json   (written by `cargo bench -p policy --bench
throughput -- --corpus CORPUS.json`; scripts/bench-policy runs both).

Each policy gets its own interpreter holding Meridian's prelude, its data and the
module, built once into a bundle (rego-cpp's prepared form); each object's input is
converted once (`regopy.Input`) and evaluated against every policy that targets its
kind, exactly as Meridian's audit does. Prints one JSON object.
"""

import json
import sys
import time

import regopy


def build(policy, prelude, data):
    rego = regopy.Interpreter()
    rego.add_module(prelude["path"], prelude["source"])
    d = dict(data)
    if policy.get("parameters") is not None:
        d["parameters"] = policy["parameters"]
    rego.add_data(d)
    rego.add_module(policy["name"] + ".rego", policy["module"])
    entrypoints = [r[len("data."):].replace(".", "/") for r in policy["rules"]]
    bundle = rego.build(None, entrypoints)
    return rego, bundle, entrypoints


def matches(policy, kind, namespace):
    kinds = policy.get("kinds")
    if kinds is not None and kind not in kinds:
        return False
    projects = policy.get("projects") or []
    return not projects or namespace in projects


def context(fleet, obj):
    ctx = {"sites": fleet["sites"]}
    meta = obj.get("metadata", {})
    ns = meta.get("namespace")
    if ns is not None and ns in fleet["projects"]:
        ctx["project"] = fleet["projects"][ns]
    if obj.get("kind") == "Allocation":
        spec = obj.get("spec", {})
        site = spec.get("site") or fleet["nodeSites"].get(spec.get("node", ""))
        if site in fleet["sites"]:
            ctx["targetSite"] = fleet["sites"][site]
    return ctx


def count(output):
    """Violations in one entrypoint's output (a set of messages or objects)."""
    if not output.ok():
        raise RuntimeError(str(output))
    value = json.loads(str(output))
    exprs = value.get("expressions") or []
    if not exprs:
        return 0
    v = exprs[0]
    if isinstance(v, (list, dict)):
        return len(v)
    return 1 if v is True else 0


def main():
    corpus = json.load(open(sys.argv[1]))
    policies = corpus["policies"]
    compiled = [build(p, corpus["prelude"], corpus["data"]) for p in policies]
    fleet = corpus["fleet"]
    evaluations = 0
    violations = 0
    start = time.perf_counter()
    for obj in corpus["objects"]:
        kind = obj.get("kind")
        ns = obj.get("metadata", {}).get("namespace")
        todo = [i for i, p in enumerate(policies) if matches(p, kind, ns)]
        if not todo:
            continue
        value = regopy.Input(
            {"operation": "AUDIT", "object": obj, "context": context(fleet, obj)}
        )
        for i in todo:
            rego, bundle, entrypoints = compiled[i]
            rego.set_input(value)
            evaluations += 1
            for e in entrypoints:
                violations += count(rego.query_bundle_entrypoint(bundle, e))
    seconds = time.perf_counter() - start
    rust = corpus["rust"]
    print(
        json.dumps(
            {
                "objects": len(corpus["objects"]),
                "policies": len(policies),
                "regopy": {
                    "version": regopy.build_info() if hasattr(regopy, "build_info") else None,
                    "evaluations": evaluations,
                    "violations": violations,
                    "seconds": round(seconds, 3),
                    "evaluationsPerSecond": round(evaluations / seconds),
                    "microsecondsPerEvaluation": round(seconds * 1e6 / max(evaluations, 1), 1),
                },
                "meridian": rust,
                "speedup": round(
                    rust["evaluationsPerSecond"] / (evaluations / seconds), 1
                ),
                "sameEvaluations": evaluations == rust["evaluations"],
                "sameViolations": violations == rust["violations"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
