"""Random trees of mixed shapes for the tree tests: random, chains,
stars and balanced trees, as parent arrays (1-based heads, 0 = root)."""


def random_parents(rng, size, max_arity, shape):
    """A parent array of ``size`` words; no word has more than
    ``max_arity`` children."""
    parents = [0]
    arity = [0]
    for word in range(1, size):
        if shape == "chain":
            parent = word - 1 if arity[word - 1] < max_arity else 0
        elif shape == "star":
            parent = next(p for p in range(word) if arity[p] < max_arity)
        elif shape == "balanced":
            parent = (word - 1) // max_arity
        else:
            parent = int(rng.choice([p for p in range(word)
                                     if arity[p] < max_arity]))
        parents.append(parent + 1)
        arity[parent] += 1
        arity.append(0)
    # Shuffle the word order so that the root is not always word 1.
    order = rng.permutation(size)
    new_index = {old: new for new, old in enumerate(order)}
    shuffled = [0] * size
    for old, head in enumerate(parents):
        shuffled[new_index[old]] = 0 if head == 0 else new_index[head - 1] + 1
    return shuffled

def random_trees(rng, count, max_arity, max_size=30):
    """``count`` trees (``kerasrnn.trees.Tree``) cycling through the four
    shapes, sizes 1..max_size."""
    from kerasrnn.trees import from_parents

    shapes = ("random", "chain", "star", "balanced")
    return [
        from_parents(random_parents(rng, int(rng.integers(1, max_size + 1)),
                                    max_arity, shapes[i % 4]))
        for i in range(count)
    ]
