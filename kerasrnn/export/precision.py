"""Mixed- and reduced-precision models exported as float32.

Under ``mixed_float16`` (or ``mixed_bfloat16``) a Keras model keeps its
variables in float32 and computes in float16; the ONNX graph is written in
float32 from those same variables. ``float32_twin`` builds that model: the
same architecture with every float dtype policy set to ``"float32"`` and
the same weights (cast to float32 where a pure ``float16`` policy stored
them in float16). The export is checked against the twin, to the usual
float32 tolerance; the manifest records the source policy and how far the
twin's outputs lie from the reduced-precision model's own.
"""

import keras

FLOAT_POLICIES = {"float16", "bfloat16", "mixed_float16", "mixed_bfloat16"}


def source_policies(model):
    """The dtype policy names of ``model``'s layers other than float32
    (sorted; empty for a float32 model)."""
    names = set()
    for layer in model._flatten_layers(include_self=True):
        policy = getattr(layer, "dtype_policy", None)
        if policy is not None and policy.name in FLOAT_POLICIES:
            names.add(policy.name)
    return sorted(names)


def float32_twin(model):
    """``model`` itself if it computes in float32, else its float32 twin
    (see the module doc)."""
    if not source_policies(model):
        return model
    config = _to_float32(keras.saving.serialize_keras_object(model))
    twin = keras.saving.deserialize_keras_object(config)
    twin.set_weights([w.astype("float32") for w in model.get_weights()])
    return twin


def _to_float32(config):
    if isinstance(config, list):
        return [_to_float32(item) for item in config]
    if not isinstance(config, dict):
        return config
    result = {}
    for key, value in config.items():
        if key == "dtype" and _is_float_policy(value):
            result[key] = "float32"
        else:
            result[key] = _to_float32(value)
    return result


def _is_float_policy(value):
    if isinstance(value, str):
        return value in FLOAT_POLICIES
    if isinstance(value, dict) and "Policy" in str(value.get("class_name")):
        return value.get("config", {}).get("name") in FLOAT_POLICIES
    return False
