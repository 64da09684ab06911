"""The cell registry: every cell type described once.

A cell file registers its class with ``@register_cell(...)``; everything
else that needs to know which cells exist or how a cell is laid out asks
this registry: the weight layouts (``kerasrnn.weights``), the ONNX writer
(``kerasrnn.export.recurrent``), the models' ``cell=`` argument, the
diagnostics and the tests' parameter lists. Adding a cell is one cell file
and its registration (see ``kerasrnn/cells/indrnn_cell.py``).

What a ``CellSpec`` holds, besides the class (which itself states its
``gate_names`` and ``state_names``):

* ``name`` and ``aliases``: what ``cell=`` accepts (``"simple_rnn"``,
  ``"elman"``, ...);
* ``gate_orders``: the order of the gate blocks along the ``G*H`` axis per
  framework, written in Keras' gate names (PyTorch calls the LSTM's ``c``
  ``g`` and the GRU's ``h`` ``n``). A framework missing here cannot hold
  the cell;
* ``onnx_operator``: the native ONNX node that runs it (``"RNN"``,
  ``"LSTM"``, ``"GRU"``), or None;
* ``recurrent``: ``"dense"`` (``recurrent_kernel (H, G*H)``) or
  ``"diagonal"`` (``recurrent_kernel (H,)``, ``u ⊙ h``: ONNX ``R =
  diag(u)``);
* ``peepholes``: for a cell with ``peephole_kernel (3H,)`` (ONNX ``P``),
  the order of its three blocks in Keras and in ONNX; else None;
* ``recurrent_bias``: the cell argument under which the bias has a second,
  recurrent row ``(2, G*H)`` (the GRU's ``reset_after``), or None;
* ``keras_layer`` / ``torch_module``: the Keras built-in layer and the
  ``torch.nn`` module with the same equations, or None;
* ``layer_class``: the kerasrnn sequence layer (``kerasrnn.LSTM``...), set
  when that layer class is defined.
"""

import dataclasses

FRAMEWORKS = ("keras", "torch", "onnx")
RECURRENT_KINDS = ("dense", "diagonal")

_SPECS = {}
_NAMES = {}


@dataclasses.dataclass
class CellSpec:
    name: str
    cell_class: type
    aliases: tuple = ()
    gate_orders: dict = dataclasses.field(default_factory=dict)
    onnx_operator: str = None
    recurrent: str = "dense"
    peepholes: dict = None
    recurrent_bias: str = None
    keras_layer: str = None
    torch_module: str = None
    layer_class: type = None

    @property
    def gate_names(self):
        """The Keras gate names, in Keras' order (``("i", "f", "c", "o")``)."""
        return tuple(self.cell_class.gate_names)

    @property
    def gate_count(self):
        """G, the number of gate blocks along the ``G*H`` axis."""
        return len(self.gate_names)

    @property
    def state_names(self):
        """The states, in ``state_size`` order (``("h", "c")``)."""
        return tuple(self.cell_class.state_names)

    def permutation(self, framework):
        """Block ``j`` of ``framework``'s layout is block ``permutation[j]``
        of Keras' layout; a ValueError when ``framework`` cannot hold the
        cell."""
        order = self.gate_orders.get(framework)
        if order is None:
            raise ValueError(
                f"The {self.name} cell has no {framework} layout (it has "
                f"{sorted(self.gate_orders)})."
            )
        return tuple(self.gate_names.index(gate) for gate in order)


def register_cell(name, aliases=(), **facts):
    """Class decorator: registers a cell class under ``name``.

    ``facts`` are ``CellSpec`` fields (``gate_orders`` without ``"keras"``,
    which is the class's ``gate_names``). The class must define
    ``gate_names`` and ``state_names``."""

    def register(cell_class):
        for attribute in ("gate_names", "state_names"):
            if not getattr(cell_class, attribute, None):
                raise TypeError(
                    f"{cell_class.__name__} must define `{attribute}` to be "
                    "registered."
                )
        orders = {"keras": tuple(cell_class.gate_names),
                  **facts.pop("gate_orders", {})}
        for framework, order in orders.items():
            if framework not in FRAMEWORKS or sorted(order) != sorted(
                cell_class.gate_names
            ):
                raise ValueError(
                    f"Gate order {framework}={order} of {name} must be a "
                    f"framework in {FRAMEWORKS} and a permutation of "
                    f"{cell_class.gate_names}."
                )
        spec = CellSpec(name, cell_class, tuple(aliases), orders, **facts)
        if spec.recurrent not in RECURRENT_KINDS:
            raise ValueError(
                f"`recurrent` must be one of {RECURRENT_KINDS}. Received: "
                f"recurrent={spec.recurrent!r}"
            )
        for key in (name, *aliases):
            owner = _NAMES.get(key)
            if owner is not None and owner != name:
                raise ValueError(
                    f"Cell name {key!r} is already registered for {owner}."
                )
            _NAMES[key] = name
        _SPECS[name] = spec
        cell_class.registered_name = name
        return cell_class

    return register


def cell_names():
    """The registered cell names (canonical, in registration order)."""
    return tuple(_SPECS)


def cell_spec(cell):
    """The ``CellSpec`` of a registered name or alias, a cell class or a
    cell object; a ValueError naming the registered cells otherwise.

    A subclass of a registered cell is not that cell (it may compute other
    equations): only the exact class matches."""
    if isinstance(cell, str):
        name = _NAMES.get(cell)
        if name is None:
            raise ValueError(
                f"Unknown cell {cell!r}. Registered cells: "
                f"{_describe_names()}."
            )
        return _SPECS[name]
    cell_class = cell if isinstance(cell, type) else type(cell)
    name = getattr(cell_class, "__dict__", {}).get("registered_name")
    if name is None or _SPECS[name].cell_class is not cell_class:
        raise ValueError(
            f"{cell_class.__name__} is not a registered kerasrnn cell. "
            f"Registered cells: {_describe_names()} (register one with "
            "kerasrnn.cells.register_cell)."
        )
    return _SPECS[name]


def is_registered(cell):
    """Whether ``cell`` (a name, class or object) is a registered cell."""
    try:
        cell_spec(cell)
    except ValueError:
        return False
    return True


def _describe_names():
    return ", ".join(
        name + (f" (also {', '.join(spec.aliases)})" if spec.aliases else "")
        for name, spec in _SPECS.items()
    )


def resolve_cell(cell):
    """What a model's ``cell=`` argument means: ``(spec, arguments)``.

    ``cell`` is a registered name or alias (``"lstm"``, ``"elman"``), a
    registered cell class, a cell object, or a serialized cell object (as
    ``get_config`` stores one). A cell object is a template: the model's
    cells take its configuration (activations, initializers, dropout...)
    except its name, units, dtype and seed, which the model sets; those
    arguments take precedence over the model's own initializer
    arguments."""
    import keras

    if isinstance(cell, dict):
        cell = keras.saving.deserialize_keras_object(cell)
    if not is_registered(cell):
        raise ValueError(
            "`cell` must be one of the registered cells "
            f"({_describe_names()}), a registered cell class or a cell "
            f"object of one. Received: cell={cell!r}"
        )
    spec = cell_spec(cell)
    if isinstance(cell, (str, type)):
        return spec, {}
    arguments = dict(cell.get_config())
    for key in ("name", "units", "dtype", "trainable", "seed"):
        arguments.pop(key, None)
    return spec, arguments


def serialize_cell(cell):
    """A model's ``cell=`` argument as its ``get_config`` stores it: the
    canonical name for a name or class, the serialized object for a
    template cell."""
    import keras

    if isinstance(cell, dict):
        return cell
    if isinstance(cell, (str, type)):
        return cell_spec(cell).name
    return keras.saving.serialize_keras_object(cell)


def sequence_layer(spec):
    """The kerasrnn sequence layer of a cell (``kerasrnn.LSTM``...), or a
    ValueError when the cell has none."""
    if spec.layer_class is None:
        raise ValueError(
            f"The {spec.name} cell has no kerasrnn sequence layer (a "
            "StackedRecurrent subclass with cell_class="
            f"{spec.cell_class.__name__})."
        )
    return spec.layer_class
