"""Queries a running Triton server with ``tritonclient`` (HTTP, and gRPC
streaming for decoupled models): the client half of
``tests/test_export_triton.py``'s real-server test, run with the Python
that has ``tritonclient`` (the one ``nvidia-pytriton`` comes with).

Reads a JSON job on stdin::

    {"http": "127.0.0.1:PORT", "grpc": "127.0.0.1:PORT",
     "queries": [{"id", "model", "inputs": [{"name", "datatype", "shape",
                  "data"}], "parameters"?}],      # sent all at once
     "streams": [{"id", "model", "text", "parameters"?}],
     "stats": [model names]}

and writes ``{"results": {id: {output: nested lists}}, "errors": {id:
message}, "streams": {id: [{output: value}, ...]}, "stats": {model:
{"inferences", "executions"}}}`` (``stats``: what the queries added) as
JSON on stdout.
"""

import json
import queue
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

DTYPES = {"FP32": np.float32, "INT32": np.int32, "INT64": np.int64,
          "BOOL": np.bool_, "BYTES": np.object_}


def inputs_of(module, specs):
    inputs = []
    for spec in specs:
        data = np.array(spec["data"], dtype=DTYPES[spec["datatype"]])
        if spec["datatype"] == "BYTES":
            data = np.array([s.encode("utf-8") for s in data.reshape(-1)],
                            dtype=np.object_)
        tensor = module.InferInput(spec["name"], spec["shape"],
                                   spec["datatype"])
        tensor.set_data_from_numpy(data.reshape(spec["shape"]))
        inputs.append(tensor)
    return inputs


def plain(array):
    if array.dtype == np.object_:
        return [plain(a) for a in array] if array.ndim > 1 else [
            v.decode("utf-8") for v in array]
    return array.tolist()


def send(client, spec):
    """An asynchronous HTTP request (the client's connection pool sends
    them concurrently)."""
    return client.async_infer(spec["model"], inputs_of(httpclient,
                                                        spec["inputs"]),
                              parameters=spec.get("parameters"))


def outputs_of(result):
    outputs = result.get_response()["outputs"]
    return {o["name"]: plain(result.as_numpy(o["name"])) for o in outputs}


def stats(client, names):
    figures = {}
    for name in names:
        model = client.get_inference_statistics(name)["model_stats"][0]
        figures[name] = {"inferences": int(model["inference_count"]),
                         "executions": int(model["execution_count"])}
    return figures


def stream(url, spec):
    responses = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: responses.put(
        (result, error)))
    try:
        inputs = inputs_of(grpcclient, [{
            "name": "TEXT", "datatype": "BYTES", "shape": [1],
            "data": [spec["text"]]}])
        client.async_stream_infer(spec["model"], inputs,
                                  parameters=spec.get("parameters"))
        events = []
        while True:
            result, error = responses.get(timeout=60)
            if error is not None:
                events.append({"error": str(error)})
                break
            names = [o.name for o in result.get_response().outputs]
            event = {name: plain(result.as_numpy(name)) for name in names}
            events.append(event)
            if "RESULTS" in event:
                break
        return events
    finally:
        client.stop_stream()
        client.close()


def main():
    job = json.load(sys.stdin)
    client = httpclient.InferenceServerClient(job["http"], concurrency=16,
                                              network_timeout=120)
    before = stats(client, job.get("stats", []))
    results, errors = {}, {}
    pending = {spec["id"]: send(client, spec)
               for spec in job.get("queries", [])}
    for key, request in pending.items():
        try:
            results[key] = outputs_of(request.get_result())
        except InferenceServerException as error:
            errors[key] = error.message()
    after = stats(client, job.get("stats", []))
    streams = {spec["id"]: stream(job["grpc"], spec)
               for spec in job.get("streams", [])}
    json.dump({
        "results": results, "errors": errors, "streams": streams,
        "stats": {name: {key: after[name][key] - before[name][key]
                         for key in after[name]} for name in after},
    }, sys.stdout)


if __name__ == "__main__":
    main()
