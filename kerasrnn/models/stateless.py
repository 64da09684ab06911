"""Model code as pure functions of the variables' values, for JAX's
transformations (``jax.jit``, ``jax.value_and_grad``), the way
``Model.stateless_call`` runs a model's ``call``: the variables are read
as given values inside a ``keras.StatelessScope``, and what the code
assigned (seed generators' states, metrics, optimizer slots) comes back
as new values instead of being written.
"""

import keras


def run_stateless(groups, function, *arguments):
    """``(function(*arguments), new values per group)``.

    ``groups`` is a list of ``(variables, values)``: inside ``function``
    each variable reads as its value. For each group, the values the
    variables hold when ``function`` returns (the given ones where it
    assigned nothing).
    """
    mapping = [pair for variables, values in groups
               for pair in zip(variables, values, strict=True)]
    with keras.StatelessScope(state_mapping=mapping) as scope:
        result = function(*arguments)
    return result, [current_values(scope, variables)
                    for variables, _ in groups]


def current_values(scope, variables):
    """The values a ``StatelessScope`` holds for ``variables``."""
    values = []
    for variable in variables:
        value = scope.get_current_value(variable)
        values.append(variable.value if value is None else value)
    return values


def model_function(model, function):
    """``pure(trainable_values, other_values, *arguments) -> (result,
    other_values')``: ``function(*arguments)`` of ``model`` as a pure
    function (``other``: the non-trainable variables, the dropout seeds'
    states among them)."""
    def pure(trainable_values, other_values, *arguments):
        result, (_, others) = run_stateless(
            [(model.trainable_variables, trainable_values),
             (model.non_trainable_variables, other_values)],
            function, *arguments)
        return result, others

    return pure
