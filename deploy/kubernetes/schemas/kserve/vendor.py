#!/usr/bin/env python3
"""Regenerate the vendored KServe schemas from a KServe checkout.

    python3 vendor.py /path/to/kserve   # writes inferenceservice-v1beta1.json, servingruntime-v1alpha1.json

Each file is the `openAPIV3Schema` of one CRD version from `config/crd/full/` (what the API
server validates against), with the `description` texts removed (they are most of the
size). Of the InferenceService spec only `predictor` is kept: `transformer`, `explainer`
and `canary` become a schema that rejects any value ("not vendored"), so using one fails
validation until its schema is vendored too, instead of passing unchecked.
"""

import json
import sys
from pathlib import Path

import yaml

NOT_VENDORED = {"not": {}, "$comment": "not vendored: rerun vendor.py keeping this field"}


def strip_descriptions(node):
    if isinstance(node, dict):
        return {k: strip_descriptions(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [strip_descriptions(v) for v in node]
    return node


def version_schema(crd_file: Path, version: str) -> dict:
    crd = yaml.safe_load(crd_file.read_text())
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return strip_descriptions(v["schema"]["openAPIV3Schema"])
    raise SystemExit(f"{crd_file}: no version {version}")


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    crds = Path(sys.argv[1]) / "config/crd/full"
    here = Path(__file__).resolve().parent

    isvc = version_schema(crds / "serving.kserve.io_inferenceservices.yaml", "v1beta1")
    spec = isvc["properties"]["spec"]["properties"]
    for unused in ("transformer", "explainer", "canary"):
        if unused in spec:
            spec[unused] = NOT_VENDORED
    runtime = version_schema(crds / "serving.kserve.io_servingruntimes.yaml", "v1alpha1")

    for name, schema in [
        ("inferenceservice-v1beta1.json", isvc),
        ("servingruntime-v1alpha1.json", runtime),
    ]:
        (here / name).write_text(json.dumps(schema, separators=(",", ":"), sort_keys=True) + "\n")
        print(f"wrote {name}")


if __name__ == "__main__":
    main()
