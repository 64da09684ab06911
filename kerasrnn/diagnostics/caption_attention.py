"""Where a captioner looks: attention over the image per generated word.

* ``plot_caption_attention``: a PNG grid -- the image, then for each word
  the image under its attention map (upsampled from the h×w grid).
* ``object_attention``: for captions of synthetic scenes
  (``kerasrnn.models.caption_data.synthetic_captions``), the attention
  mass that the steps writing "colour shape" put on the grid cells
  covered by the object(s) named, against the share of the grid those
  cells are (what uniform attention would give).
"""

import numpy as np

from kerasrnn.models.caption_data import SHAPES


def caption_attention(model, images, captions, batch_size=64):
    """``(words, maps)`` per image for ``captions`` (text, e.g. the
    model's own): ``maps (len(words) + 1, h, w)``, row k the attention of
    the step that wrote word k (the last row: the end token)."""
    tokenizer = model.target_tokenizer
    ids = tokenizer.encode(list(captions), bos_eos=True)
    lengths = ids.row_lengths().numpy()
    ids = ids.to_tensor(default_value=model.pad_id).numpy()
    results = []
    for start in range(0, len(ids), batch_size):
        rows = slice(start, start + batch_size)
        maps = model.attention_maps(images[rows], ids[rows])
        for row, weights, length in zip(ids[rows], maps, lengths[rows]):
            words = tokenizer.decode(row[None, 1:])[0].split()
            results.append((words, weights[:length - 1]))
    return results


def plot_caption_attention(image, words, maps, path, columns=5, title=None):
    """Writes the image and, per word, the image with that step's
    attention ``maps[k] (h, w)`` over it (bilinear upsampling, the map's
    own colour scale) to the PNG ``path``; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    words = list(words) + ["<end>"]
    maps = np.asarray(maps)
    if len(maps) != len(words):
        raise ValueError(
            f"{len(words) - 1} words (+ the end token) need as many maps. "
            f"Received: {len(maps)} maps"
        )
    panels = len(words) + 1
    rows = -(-panels // columns)
    figure, axes = plt.subplots(rows, columns,
                                figsize=(2.2 * columns, 2.4 * rows))
    axes = np.atleast_1d(axes).ravel()
    height, width = image.shape[:2]
    extent = (0, width, height, 0)
    axes[0].imshow(image, extent=extent)
    axes[0].set_title("image")
    for axis, word, weights in zip(axes[1:], words, maps):
        axis.imshow(image, extent=extent)
        axis.imshow(weights, cmap="inferno", alpha=0.6, extent=extent,
                    interpolation="bilinear")
        axis.set_title(f"{word} ({weights.max():.2f})")
    for axis in axes:
        axis.axis("off")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def object_cells(box, image_size, grid):
    """Boolean ``grid`` mask of the cells that ``box`` (pixels: top,
    left, bottom, right; bottom/right exclusive) overlaps."""
    rows, cols = grid
    cell_h, cell_w = image_size[0] / rows, image_size[1] / cols
    top, left, bottom, right = box
    mask = np.zeros(grid, bool)
    mask[int(top // cell_h):int(np.ceil(bottom / cell_h)),
         int(left // cell_w):int(np.ceil(right / cell_w))] = True
    return mask


def object_attention(words, maps, objects, image_size):
    """For each "colour shape" phrase of a synthetic caption that names
    objects of the scene: ``{"phrase", "colour_step", "shape_step",
    "chance"}`` -- the attention mass that the steps writing the colour
    and the shape word put on the named objects' cells, and those cells'
    share of the grid (the mass of uniform attention)."""
    grid = maps.shape[1:]
    found = []
    for step, word in enumerate(words):
        shape = word[:-1] if word.endswith("s") else word
        if shape not in SHAPES or step == 0:
            continue
        named = [item for item in objects if item["shape"] == shape
                 and item["colour"] == words[step - 1]]
        if not named:
            continue
        cells = np.zeros(grid, bool)
        for item in named:
            cells |= object_cells(item["box"], image_size, grid)
        found.append({"phrase": f"{words[step - 1]} {word}",
                      "colour_step": float(maps[step - 1][cells].sum()),
                      "shape_step": float(maps[step][cells].sum()),
                      "chance": float(cells.mean())})
    return found
