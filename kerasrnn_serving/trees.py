"""``TreePredictor``: runs an exported tree classifier (written by
``kerasrnn.export.trees.to_onnx_tree``) with onnxruntime, from PTB-bracketed
trees or parent arrays, without TensorFlow or Keras.

    predictor = TreePredictor("artifacts/sst_tree")
    predictor.predict(["(3 (2 The) (3 (2 film) (3 works)))",
                       {"parents": [2, 0, 2], "tokens": ["dogs", "chase",
                                                         "cats"]}])
    # -> [{"label": 3, "probabilities": [...], "node_labels": [...]}, ...]

A bracketed tree's labels are read but not used (SST's format puts one at
every node). ``node_labels`` are in the tree's node order (pre-order; for a
parent array, ``positions`` maps nodes back to words, and ``word_labels``
gives them in word order). Malformed trees are refused with
``TreeFormatError`` naming the tree and what is wrong.

The tree format is ``kerasrnn/trees/encoding.py`` itself (NumPy only),
loaded from its file so that ``kerasrnn/__init__`` (which imports Keras)
does not run; both packages ship in the one ``kerasrnn`` distribution.
"""

import importlib.util
import json
import pathlib

import numpy as np
import onnxruntime

MANIFEST_FORMAT = "kerasrnn-tree-onnx"
_ENCODING_FILE = (pathlib.Path(__file__).resolve().parents[1] / "kerasrnn"
                  / "trees" / "encoding.py")


def _load_encoding():
    spec = importlib.util.spec_from_file_location(
        "kerasrnn_serving._tree_encoding", _ENCODING_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


encoding = _load_encoding()
TreeFormatError = encoding.TreeFormatError


class TreePredictor:
    """An exported tree classifier and its onnxruntime session.

    Args:
        directory: the export directory (``model.onnx``, ``manifest.json``).
        providers: onnxruntime execution providers (default CPU).

    Attributes:
        manifest: the manifest (a dict).
        vocabulary: the model's word ids (``encoding.Vocabulary``).
    """

    def __init__(self, directory, providers=None):
        directory = pathlib.Path(directory)
        path = directory / "manifest.json"
        if not path.exists():
            raise FileNotFoundError(
                f"No manifest.json in {directory}: export the model with "
                "kerasrnn.export.trees.to_onnx_tree(model, directory, "
                "vocabulary)."
            )
        self.manifest = json.loads(path.read_text())
        if self.manifest.get("format") != MANIFEST_FORMAT:
            raise ValueError(
                f"{path} is not a tree classifier manifest (format "
                f"{self.manifest.get('format')!r}; expected "
                f"{MANIFEST_FORMAT!r})."
            )
        key = self.manifest["vocabulary_key"]
        if key not in (None, "glove_key"):
            raise ValueError(f"{path}: unknown vocabulary_key {key!r}.")
        self.vocabulary = encoding.Vocabulary(
            self.manifest["vocabulary"],
            key=encoding.glove_key if key == "glove_key" else None)
        self.session = onnxruntime.InferenceSession(
            str(directory / "model.onnx"),
            providers=providers or ["CPUExecutionProvider"])

    def parse(self, item, index=0):
        """One request item as a ``Tree``: a bracketed string, or a dict
        ``{"parents": [...], "tokens": [...]}`` (1-based heads, 0 = root)."""
        where = f"tree {index}"
        if isinstance(item, str):
            return encoding.parse_bracketed(item, where=where)
        if isinstance(item, dict) and set(item) == {"parents", "tokens"}:
            return encoding.from_parents(item["parents"], item["tokens"],
                                         where=where)
        raise TreeFormatError(
            f"{where}: expected a bracketed tree (a string) or "
            "{'parents': [...], 'tokens': [...]}; received "
            f"{type(item).__name__}"
            + (f" with keys {sorted(item)}" if isinstance(item, dict)
               else "") + "."
        )

    def predict_arrays(self, inputs):
        """The graph's outputs for ``encode``'s arrays: ``{"nodes": (B, N,
        C), "root": (B, C)}`` logits."""
        feed = {name: np.asarray(inputs[name], np.int64)
                for name in self.manifest["inputs"]}
        nodes, root = self.session.run(self.manifest["outputs"], feed)
        return {"nodes": nodes, "root": root}

    def predict(self, items):
        """Labels and root probabilities for a list of trees (see the
        module docstring)."""
        trees = [self.parse(item, i) for i, item in enumerate(items)]
        if not trees:
            raise ValueError("`items` is empty; expected at least one tree.")
        inputs, _ = encoding.encode(
            trees, self.vocabulary,
            max_children=self._slots(trees))
        logits = self.predict_arrays(inputs)
        root = logits["root"] - logits["root"].max(-1, keepdims=True)
        probabilities = np.exp(root) / np.exp(root).sum(-1, keepdims=True)
        results = []
        for b, tree in enumerate(trees):
            node_labels = logits["nodes"][b, :tree.size].argmax(-1).tolist()
            result = {"label": int(probabilities[b].argmax()),
                      "probabilities": probabilities[b].tolist(),
                      "node_labels": node_labels}
            if tree.positions is not None:
                words = [0] * tree.size
                for node, position in enumerate(tree.positions):
                    words[position] = node_labels[node]
                result["word_labels"] = words
            results.append(result)
        return results

    def _slots(self, trees):
        positions = self.manifest["max_children"]
        widest = max(len(k) for t in trees for k in t.children)
        if positions is not None and widest > positions:
            raise TreeFormatError(
                f"A tree has a node with {widest} children; this model's "
                f"cell has {positions} child positions (expected at most "
                f"{positions} children per node)."
            )
        return positions if positions is not None else max(widest, 1)
