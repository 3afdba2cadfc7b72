"""Talk to a running clarity-host with Triton's own HTTP client (tritonclient[http]).

Usage: python tritonclient_check.py HOST:PORT MODEL < pairs.json
Reads a JSON list of [question, context], prints a JSON object with what the client saw.
"""
import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

url, model = sys.argv[1], sys.argv[2]
pairs = json.load(sys.stdin)
client = httpclient.InferenceServerClient(url=url)
seen = {
    "live": client.is_server_live(),
    "ready": client.is_server_ready(),
    "model_ready": client.is_model_ready(model),
    "server": client.get_server_metadata(),
    "metadata": client.get_model_metadata(model),
}


def infer(binary):
    """Infer with JSON tensors, or with the client's defaults (the binary extension)."""
    inputs = []
    for index, name in enumerate(["question", "context"]):
        data = np.array([p[index].encode("utf-8") for p in pairs], dtype=np.object_)
        tensor = httpclient.InferInput(name, [len(pairs)], "BYTES")
        if binary:
            tensor.set_data_from_numpy(data)
        else:
            tensor.set_data_from_numpy(data, binary_data=False)
        inputs.append(tensor)
    if binary:
        # No outputs named: the client asks for all of them in binary.
        result = client.infer(model, inputs, request_id="triton-2")
    else:
        outputs = [
            httpclient.InferRequestedOutput(n, binary_data=False) for n in ["scores", "label"]
        ]
        result = client.infer(model, inputs, outputs=outputs, request_id="triton-1")
    labels = [b.decode("utf-8") if isinstance(b, bytes) else b for b in result.as_numpy("label")]
    return {
        "scores": result.as_numpy("scores").astype(float).tolist(),
        "label": labels,
        "id": result.get_response()["id"],
    }


seen["json"] = infer(binary=False)
seen["binary"] = infer(binary=True)
try:
    client.get_model_metadata("no-such-model")
    seen["unknown_model_error"] = None
except InferenceServerException as e:
    seen["unknown_model_error"] = {"status": e.status(), "message": e.message()}
print(json.dumps(seen))
