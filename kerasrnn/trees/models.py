"""Tree task models: a classifier with a label at every node (SST) and the
Tai et al. similarity model over a pair of trees (SICK).

Both are functional ``keras.Model``s whose inputs are the arrays of
``kerasrnn.trees.encode`` (``tokens``, ``children``, ``levels``; for a pair
prefixed ``a_`` and ``b_``), so ``fit``, ``evaluate``, ``predict``,
``tf.data`` and ``.keras`` files work as for any Keras model.
"""

import keras
import numpy as np
from keras import ops

from kerasrnn.trees.layer import TreeRNN
from kerasrnn.validation import check_int


@keras.saving.register_keras_serializable(package="kerasrnn")
class WordEmbedding(keras.layers.Embedding):
    """``keras.layers.Embedding`` whose id 0 ("no word": inner constituency
    nodes, padding) gives a zero vector, not a trained row::

        x[n] = E[tokens[n]]  if tokens[n] > 0  else 0

    Arguments and call as ``keras.layers.Embedding``.
    """

    def call(self, inputs):
        vectors = super().call(inputs)
        has_word = ops.expand_dims(ops.greater(inputs, 0), -1)
        return ops.where(has_word, vectors, ops.zeros_like(vectors))


def _tree_inputs(prefix=""):
    return {
        "tokens": keras.Input((None,), dtype="int32",
                              name=f"{prefix}tokens"),
        "children": keras.Input((None, None), dtype="int32",
                                name=f"{prefix}children"),
        "levels": keras.Input((None,), dtype="int32", name=f"{prefix}levels"),
    }


def tree_classifier(vocabulary_size, cell, num_classes, embedding_dim=50,
                    dropout=0.0, output_dropout=0.0, name="tree_classifier"):
    """A tree classifier with a prediction at every node (Tai et al. 2015,
    §4.1)::

        x_n = E[tokens_n] (0 without a word)
        h   = TreeRNN(cell)(x, children, levels)
        logits_n = dropout(h_n) W + b        for every node n

    Outputs ``{"nodes": (B, N, C), "root": (B, C)}`` (logits). Train with
    the loss on every node and score the root::

        model.compile(
            optimizer,
            loss={"nodes": keras.losses.SparseCategoricalCrossentropy(
                from_logits=True, ignore_class=-1)},
            metrics={"root": ["accuracy"]})
        model.fit(inputs, {"nodes": labels, "root": labels[:, 0]})

    (``labels`` as ``encode`` gives them: -1 at padding and unlabelled
    nodes, which the loss ignores.)

    Args:
        vocabulary_size: ``len(vocabulary)``.
        cell: a tree cell.
        num_classes: C.
        embedding_dim: the word vectors' size.
        dropout: ``TreeRNN``'s input dropout.
        output_dropout: dropout on ``h`` before the classifier.
        name: the model's name.
    """
    inputs = _tree_inputs()
    x = WordEmbedding(vocabulary_size, embedding_dim,
                      name="embedding")(inputs["tokens"])
    nodes, roots = TreeRNN(cell, dropout=dropout, name="tree")(
        x, inputs["children"], inputs["levels"]
    )
    head = keras.layers.Dense(num_classes, name="classifier")
    if output_dropout:
        drop = keras.layers.Dropout(output_dropout, name="output_dropout")
        nodes, roots = drop(nodes), drop(roots)
    outputs = {"nodes": head(nodes), "root": head(roots)}
    return keras.Model(inputs, outputs, name=name)


@keras.saving.register_keras_serializable(package="kerasrnn")
class SimilarityHead(keras.layers.Layer):
    """Tai et al.'s similarity head (§4.2) over two sentence vectors::

        h_×  = h_L ⊙ h_R
        h_+  = |h_L − h_R|
        h_s  = σ(h_× W_× + h_+ W_+ + b_h)
        p̂    = softmax(h_s W_p + b_p)           over the scores 1..C
        ŷ    = Σ_j j · p̂_j

    Args:
        hidden_units: the size of ``h_s``.
        num_classes: C (5 for SICK's 1-5 scale).

    Call arguments:
        inputs: ``[h_L, h_R]``, each ``(B, H)``.

    Returns:
        ``(p̂ (B, C), ŷ (B,))``.
    """

    def __init__(self, hidden_units=50, num_classes=5, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = check_int("hidden_units", hidden_units)
        self.num_classes = check_int("num_classes", num_classes)

    def build(self, input_shape):
        units = input_shape[0][-1]
        self.w_product = self.add_weight(
            shape=(units, self.hidden_units), initializer="glorot_uniform",
            name="w_product")
        self.w_distance = self.add_weight(
            shape=(units, self.hidden_units), initializer="glorot_uniform",
            name="w_distance")
        self.b_hidden = self.add_weight(
            shape=(self.hidden_units,), initializer="zeros", name="b_hidden")
        self.w_output = self.add_weight(
            shape=(self.hidden_units, self.num_classes),
            initializer="glorot_uniform", name="w_output")
        self.b_output = self.add_weight(
            shape=(self.num_classes,), initializer="zeros", name="b_output")

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0]
        return (batch, self.num_classes), (batch,)

    def call(self, inputs):
        h_left, h_right = inputs
        hidden = ops.sigmoid(
            ops.matmul(h_left * h_right, self.w_product)
            + ops.matmul(ops.abs(h_left - h_right), self.w_distance)
            + self.b_hidden
        )
        p = ops.softmax(ops.matmul(hidden, self.w_output) + self.b_output)
        scores = ops.arange(1, self.num_classes + 1, dtype=p.dtype)
        return p, ops.sum(p * scores, axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_units": self.hidden_units,
                       "num_classes": self.num_classes})
        return config


def tree_similarity(vocabulary_size, cell, embedding_dim=300,
                    hidden_units=50, num_classes=5, dropout=0.0,
                    name="tree_similarity"):
    """The Tai et al. relatedness model: one ``TreeRNN`` over both trees
    (shared weights), the roots into ``SimilarityHead``.

    Inputs ``a_tokens, a_children, a_levels, b_tokens, b_children,
    b_levels``; outputs ``{"distribution": p̂ (B, C), "score": ŷ (B,)}``.
    Train on the sparse target distribution::

        model.compile(optimizer, loss={"distribution": "kl_divergence"},
                      metrics={"score": ["mse"]})
        model.fit(inputs, {"distribution": similarity_distribution(y),
                           "score": y})

    Args:
        vocabulary_size: ``len(vocabulary)``.
        cell: a tree cell (Tai et al.: ``ChildSumTreeLSTMCell(150)``).
        embedding_dim: the word vectors' size.
        hidden_units, num_classes: as in ``SimilarityHead``.
        dropout: ``TreeRNN``'s input dropout.
        name: the model's name.
    """
    left, right = _tree_inputs("a_"), _tree_inputs("b_")
    embedding = WordEmbedding(vocabulary_size, embedding_dim,
                              name="embedding")
    tree = TreeRNN(cell, dropout=dropout, name="tree")
    roots = []
    for side in (left, right):
        _, root = tree(embedding(side["tokens"]), side["children"],
                       side["levels"])
        roots.append(root)
    p, score = SimilarityHead(hidden_units, num_classes, name="similarity")(
        roots
    )
    inputs = {f"a_{k}": v for k, v in left.items()}
    inputs.update({f"b_{k}": v for k, v in right.items()})
    return keras.Model(inputs, {"distribution": p, "score": score},
                       name=name)


def similarity_distribution(scores, num_classes=5):
    """Tai et al.'s sparse target ``p`` with ``Σ_j j·p_j = y``, for scores
    ``y`` in ``[1, C]``::

        p_j = y − ⌊y⌋          for j = ⌊y⌋ + 1
        p_j = ⌊y⌋ − y + 1      for j = ⌊y⌋
        p_j = 0                otherwise

    Returns float32 ``(B, C)``.

    Raises:
        ValueError: a score outside ``[1, num_classes]``.
    """
    scores = np.asarray(scores, dtype="float64")
    if scores.ndim != 1 or np.any(scores < 1) or np.any(
        scores > num_classes
    ):
        raise ValueError(
            f"`scores` must be a 1-D array in [1, {num_classes}]. Received: "
            f"shape={scores.shape}, range=[{scores.min()}, {scores.max()}]"
        )
    floor = np.minimum(np.floor(scores), num_classes - 1)
    p = np.zeros((len(scores), num_classes))
    rows = np.arange(len(scores))
    p[rows, floor.astype(int) - 1] = floor - scores + 1
    p[rows, floor.astype(int)] = scores - floor
    return p.astype("float32")
