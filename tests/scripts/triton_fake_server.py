"""A stand-in for Triton's Python backend, to run the ``model.py`` files
``kerasrnn.export.to_triton`` writes without a Triton server.

``FakeServer(repository)`` loads every Python-backend model of the
repository with a fake ``triton_python_backend_utils`` (the API the
templates use: ``Tensor``, ``InferenceRequest(...).exec()`` for BLS,
``InferenceResponse``, ``TritonError``, response senders for decoupled
models) and checks every request's shapes against the model's config as
Triton does: the batch axis first when ``max_batch_size > 0`` (at most
that many rows), rank and fixed sizes as ``dims``, ``reshape`` applied
before the model sees the tensor, required inputs present, and
dtypes. ``infer(model, inputs, parameters)`` answers as Triton would (a
list of responses for a decoupled model). The configs are read with
Triton's own ``ModelConfig`` schema (``triton_model_config``).
"""

import asyncio
import importlib.util
import json
import pathlib
import sys
import threading
import types

import numpy as np
from google.protobuf import json_format

import triton_model_config

TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
DTYPES = {"TYPE_FP32": np.float32, "TYPE_INT32": np.int32,
          "TYPE_INT64": np.int64, "TYPE_BOOL": np.bool_,
          "TYPE_STRING": np.object_}


class Tensor:
    def __init__(self, name, array):
        self._name = name
        self._array = np.asarray(array)

    def name(self):
        return self._name

    def as_numpy(self):
        return self._array


class TritonError:
    def __init__(self, message):
        self._message = message

    def message(self):
        return self._message


class TritonModelException(Exception):
    pass


class InferenceResponse:
    def __init__(self, output_tensors=None, error=None):
        self._outputs = list(output_tensors or [])
        self._error = error

    def has_error(self):
        return self._error is not None

    def error(self):
        return self._error

    def output_tensors(self):
        return self._outputs


class ResponseSender:
    def __init__(self):
        self.responses = []
        self.closed = False

    def send(self, response=None, flags=0):
        if self.closed:
            raise RuntimeError("A response was sent after the final flag.")
        if response is not None:
            self.responses.append(response)
        if flags & TRITONSERVER_RESPONSE_COMPLETE_FINAL:
            self.closed = True

    def is_cancelled(self):
        return False


class Request:
    """A request as a model's ``execute`` receives it."""

    def __init__(self, tensors, parameters=None, sender=None):
        self._tensors = {tensor.name(): tensor for tensor in tensors}
        self._parameters = json.dumps(parameters or {})
        self._sender = sender

    def parameters(self):
        return self._parameters

    def get_response_sender(self):
        return self._sender

    def is_cancelled(self):
        return False


def get_input_tensor_by_name(request, name):
    return request._tensors.get(name)


def get_output_tensor_by_name(response, name):
    for tensor in response.output_tensors():
        if tensor.name() == name:
            return tensor
    return None


def using_decoupled_model_transaction_policy(config):
    return bool(config.get("model_transaction_policy", {}).get("decoupled"))


class InferenceRequest:
    """A BLS request: ``exec()`` runs it on the fake server."""

    server = None

    def __init__(self, model_name, inputs, requested_output_names=(),
                 **options):
        self.model_name = model_name
        self.inputs = inputs
        self.requested = list(requested_output_names)

    def exec(self):
        try:
            response = self.server.run(self.model_name, self.inputs)
        except ValueError as error:
            return InferenceResponse(error=TritonError(str(error)))
        if response.has_error():
            return response
        return InferenceResponse([get_output_tensor_by_name(response, name)
                                  for name in self.requested])


def fake_pb_utils(server):
    module = types.ModuleType("triton_python_backend_utils")
    request = type("InferenceRequest", (InferenceRequest,),
                   {"server": server})
    for name, value in {
        "Tensor": Tensor, "TritonError": TritonError,
        "TritonModelException": TritonModelException,
        "InferenceResponse": InferenceResponse,
        "InferenceRequest": request,
        "get_input_tensor_by_name": get_input_tensor_by_name,
        "get_output_tensor_by_name": get_output_tensor_by_name,
        "using_decoupled_model_transaction_policy":
            using_decoupled_model_transaction_policy,
        "TRITONSERVER_RESPONSE_COMPLETE_FINAL":
            TRITONSERVER_RESPONSE_COMPLETE_FINAL,
    }.items():
        setattr(module, name, value)
    return module


class FakeServer:
    """The Python-backend models of ``repository``, loaded and served."""

    def __init__(self, repository, models=None):
        self.repository = pathlib.Path(repository)
        self.models, self.configs = {}, {}
        self.executions = {}
        self._lock = threading.Lock()
        utils = fake_pb_utils(self)
        directories = sorted(p.parent for p in
                             self.repository.glob("*/config.pbtxt"))
        for directory in directories:
            name = directory.name
            if models is not None and name not in models:
                continue
            message = triton_model_config.parse(
                (directory / "config.pbtxt").read_text())
            config = json_format.MessageToDict(
                message, preserving_proto_field_name=True)
            if config["backend"] != "python":
                continue
            self.configs[name] = config
            self.models[name] = _load(directory / "1" / "model.py", utils,
                                      name)
        for name, model in self.models.items():
            model.initialize({
                "model_config": json.dumps(self.configs[name]),
                "model_repository": str(self.repository / name),
                "model_version": "1", "model_instance_kind": "CPU",
                "model_instance_device_id": "0", "model_name": name,
            })

    def infer(self, model_name, inputs, parameters=None):
        """``inputs``: ``{name: array}`` (strings as str). A list of
        responses for a decoupled model, else one response."""
        tensors = [Tensor(name, _array(value)) for name, value in
                   inputs.items()]
        config = self.configs[model_name]
        if using_decoupled_model_transaction_policy(config):
            sender = ResponseSender()
            request = self._request(model_name, tensors, parameters, sender)
            result = self.models[model_name].execute([request])
            if asyncio.iscoroutine(result):
                result = asyncio.run(result)
            assert result is None and sender.closed
            return sender.responses
        return self.run(model_name, tensors, parameters)

    def infer_batch(self, model_name, batch):
        """Several requests in one ``execute`` (as the dynamic batcher
        sends them): ``batch`` is a list of ``(inputs, parameters)``."""
        requests = [self._request(model_name,
                                  [Tensor(n, _array(v))
                                   for n, v in inputs.items()], parameters)
                    for inputs, parameters in batch]
        return self._execute(model_name, requests)

    def run(self, model_name, tensors, parameters=None):
        return self._execute(model_name, [
            self._request(model_name, tensors, parameters)])[0]

    def _execute(self, model_name, requests):
        with self._lock:
            self.executions[model_name] = self.executions.get(
                model_name, 0) + 1
        result = self.models[model_name].execute(requests)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        responses = list(result)
        assert len(responses) == len(requests)
        config = self.configs[model_name]
        for response in responses:
            if not response.has_error():
                _check_outputs(config, response)
        return responses

    def _request(self, model_name, tensors, parameters, sender=None):
        """A request checked and reshaped as Triton does."""
        config = self.configs[model_name]
        batched = int(config.get("max_batch_size", 0)) > 0
        entries = {entry["name"]: entry for entry in config["input"]}
        given = {tensor.name(): tensor for tensor in tensors}
        rows = set()
        for name, entry in entries.items():
            if name not in given and not entry.get("optional"):
                raise ValueError(f"{model_name}: missing input '{name}'")
        checked = []
        for name, tensor in given.items():
            if name not in entries:
                raise ValueError(f"{model_name}: unexpected input '{name}'")
            entry = entries[name]
            array = tensor.as_numpy()
            dims = [int(d) for d in entry.get("dims", [])]
            shape = list(array.shape)
            if batched:
                rows.add(shape[0] if shape else None)
                shape = shape[1:]
            if len(shape) != len(dims) or any(
                d != -1 and d != s for d, s in zip(dims, shape)
            ):
                raise ValueError(
                    f"{model_name}: input '{name}' has shape "
                    f"{list(array.shape)}, the config says dims {dims}"
                    f"{' after the batch axis' if batched else ''}")
            expected = DTYPES[entry["data_type"]]
            if array.dtype.type is not expected and not (
                expected is np.object_ and array.dtype.kind in "OSU"
            ):
                raise ValueError(
                    f"{model_name}: input '{name}' is {array.dtype}, the "
                    f"config says {entry['data_type']}")
            if "reshape" in entry:
                target = [int(d) for d in entry["reshape"].get("shape", [])]
                lead = list(array.shape[:1]) if batched else []
                array = array.reshape(lead + target)
            checked.append(Tensor(name, array))
        if batched:
            if len(rows) > 1 or None in rows:
                raise ValueError(f"{model_name}: inputs with different "
                                 f"batch sizes {sorted(rows)}")
            count = rows.pop() if rows else 0
            if count > int(config["max_batch_size"]):
                raise ValueError(
                    f"{model_name}: {count} rows, more than max_batch_size "
                    f"{config['max_batch_size']}")
        return Request(checked, parameters, sender)


def _check_outputs(config, response):
    names = {entry["name"] for entry in config["output"]}
    for tensor in response.output_tensors():
        if tensor is not None and tensor.name() not in names:
            raise AssertionError(
                f"{config['name']}: output '{tensor.name()}' is not in its "
                "config")


def _array(value):
    if isinstance(value, np.ndarray) and value.dtype.kind != "U":
        return value
    array = np.asarray(value)
    if array.dtype.kind in "US":
        return np.vectorize(lambda s: s.encode("utf-8") if isinstance(
            s, str) else s, otypes=[object])(array)
    return array


def _load(path, utils, name):
    saved = sys.modules.get("triton_python_backend_utils")
    sys.modules["triton_python_backend_utils"] = utils
    try:
        spec = importlib.util.spec_from_file_location(
            f"triton_model_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            sys.modules.pop("triton_python_backend_utils", None)
        else:
            sys.modules["triton_python_backend_utils"] = saved
    return module.TritonPythonModel()
