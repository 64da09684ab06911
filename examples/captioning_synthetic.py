"""Show, Attend and Tell on rendered scenes: train, caption held-out
scenes, check where the attention looks, draw it, export and compare.

    python examples/captioning_synthetic.py --export --out /tmp/caption_syn

Prints exact match and BLEU-1..4 of greedy and beam captions on scenes
rendered with another seed, the attention mass on the object each shape
word names (against uniform attention), and writes heat-map PNGs, the
``.keras`` model and (``--export``) the ONNX export with its parity.
"""

import argparse
import json
import pathlib
import time

import numpy as np

from kerasrnn.diagnostics import caption_attention as seeing
from kerasrnn.models import ScheduledSampling
from kerasrnn.models import caption_data
from kerasrnn.models import text
from kerasrnn.models.captioning import ImageCaptioner
from kerasrnn.models.captioning import conv_encoder


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--attention", default="bahdanau",
                        help="bahdanau, luong_general or none (Show and "
                        "Tell)")
    parser.add_argument("--regularization", type=float, default=0.1,
                        help="λ of the doubly stochastic regulariser (the "
                        "model's default is Xu et al.'s 1.0)")
    parser.add_argument("--sampling", type=float, default=0.0,
                        help="final scheduled-sampling probability")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="/tmp/caption_synthetic")
    parser.add_argument("--export", action="store_true")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    attention = None if args.attention == "none" else args.attention

    train = caption_data.synthetic_captions(args.train, seed=args.seed)
    test = caption_data.synthetic_captions(args.test, seed=args.seed + 1000)
    tokenizer = text.Tokenizer("word")
    tokenizer.adapt([c for texts in train.captions for c in texts])
    images, targets = caption_data.caption_pairs(train, tokenizer)
    model = ImageCaptioner(
        conv_encoder(train.images.shape[1:]), tokenizer.vocabulary_size,
        tokenizer.bos_id, tokenizer.eos_id, units=args.units,
        attention=attention, attention_regularization=args.regularization,
        max_target_length=16, seed=args.seed, tokenizer=tokenizer,
    )
    model.compile()
    callbacks = []
    if args.sampling:
        # ε falls linearly from 1 to 1 - sampling over the epochs.
        callbacks.append(ScheduledSampling(
            "linear", k=1.0, c=args.sampling / args.epochs,
            epsilon=1.0 - args.sampling, unit="epoch"))
    start = time.time()
    model.fit(images, targets, batch_size=args.batch_size,
              epochs=args.epochs, verbose=2, shuffle=True,
              callbacks=callbacks)
    train_seconds = time.time() - start
    figures = {"train_seconds": round(train_seconds, 1),
               "train_pairs": len(images), "epochs": args.epochs}
    for method, options in (("greedy", {}), ("beam", {"beam_width": 3})):
        start = time.time()
        scores = caption_data.evaluate_captions(model, test, method,
                                                **options)
        figures[method] = {k: round(v, 4) for k, v in scores.items()
                           if k != "captions"}
        figures[method]["seconds"] = round(time.time() - start, 1)
        if method == "greedy":
            captions = scores["captions"]
    print(json.dumps(figures, indent=1))
    for index in range(3):
        print(f"{test.names[index]}: {captions[index]!r}  references "
              f"{test.captions[index]}")
    if attention is not None:
        figures["attention"] = _attention(model, test, captions, out)
    model.save(out / "captioner.keras")
    if args.export:
        from kerasrnn.export.captioning import export_captioner

        manifest = export_captioner(model, out / "export")
        figures["parity"] = manifest["parity"]
        print("export parity:", json.dumps(manifest["parity"]))
    (out / "figures.json").write_text(json.dumps(figures, indent=1))


def _attention(model, test, captions, out, drawn=4):
    """Attention mass on named objects over the test set; PNGs of the
    first ``drawn`` scenes of two objects."""
    rows = seeing.caption_attention(model, test.images, captions)
    found = []
    pictures = []
    for index, (words, maps) in enumerate(rows):
        hits = seeing.object_attention(words, maps, test.objects[index],
                                       test.images.shape[1:3])
        found += hits
        if len(test.objects[index]) == 2 and len(pictures) < drawn:
            path = out / f"attention_{test.names[index]}.png"
            seeing.plot_caption_attention(test.images[index], words, maps,
                                          path, title=captions[index])
            pictures.append({"png": str(path), "caption": captions[index],
                             "objects": hits})
    def mean(key):
        return round(float(np.mean([f[key] for f in found])), 3)

    summary = {
        "phrases": len(found),
        "mass_on_named_object_colour_step": mean("colour_step"),
        "mass_on_named_object_shape_step": mean("shape_step"),
        "mass_of_uniform_attention": mean("chance"),
        "pictures": pictures,
    }
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
