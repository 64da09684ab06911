"""Show, Attend and Tell on a COCO-format caption set: overfit the
training images, report BLEU on them and on the held-out ones, draw the
attention.

    python examples/captioning_coco.py --data ../shared/data/captions \\
        --epochs 150 --out /tmp/caption_coco

``--data`` holds ``annotations/captions_{train,val}2017.json``,
``train2017/`` and ``val2017/`` (the COCO layout; COCO-mini there has 80
training and 79 validation images with 5 captions each -- an
overfit-a-batch set, its BLEU not comparable to published COCO or
Flickr8k figures). Decoded images are cached under ``--cache``.
"""

import argparse
import json
import pathlib
import time

from kerasrnn.diagnostics import caption_attention as seeing
from kerasrnn.models import caption_data
from kerasrnn.models import default_optimizer
from kerasrnn.models import text
from kerasrnn.models.captioning import ImageCaptioner
from kerasrnn.models.captioning import conv_encoder


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True,
                        help="folder with annotations/, train2017/, "
                        "val2017/")
    parser.add_argument("--size", type=int, default=64,
                        help="images are resized to size × size")
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--regularization", type=float, default=0.1)
    parser.add_argument("--max-length", type=int, default=32,
                        help="longer captions are cut (EOS kept)")
    parser.add_argument("--cache", default=None,
                        help="cache folder of the decoded images (default "
                        "$KERASRNN_CACHE or ~/.cache/kerasrnn/captions)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="/tmp/caption_coco")
    args = parser.parse_args()
    data = pathlib.Path(args.data)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size = (args.size, args.size)

    start = time.time()
    splits = {
        split: caption_data.coco_captions(
            data / "annotations" / f"captions_{split}2017.json",
            data / f"{split}2017", size=size, cache_dir=args.cache)
        for split in ("train", "val")
    }
    load_seconds = time.time() - start
    train, val = splits["train"], splits["val"]
    tokenizer = text.Tokenizer("word")
    tokenizer.adapt([c for texts in train.captions for c in texts])
    images, targets = caption_data.caption_pairs(train, tokenizer,
                                                 args.max_length)
    print(f"{len(train)} training images ({len(images)} captions), "
          f"{len(val)} validation; vocabulary {tokenizer.vocabulary_size}; "
          f"loaded in {load_seconds:.1f} s")
    model = ImageCaptioner(
        conv_encoder((*size, 3), filters=(32, 64, 128),
                     pools=(True, True, True)),
        tokenizer.vocabulary_size, tokenizer.bos_id, tokenizer.eos_id,
        embedding_dim=128, units=args.units,
        attention_regularization=args.regularization,
        max_target_length=args.max_length, seed=args.seed,
        tokenizer=tokenizer,
    )
    model.compile(optimizer=default_optimizer(args.learning_rate))
    start = time.time()
    model.fit(images, targets, batch_size=args.batch_size,
              epochs=args.epochs, verbose=2, shuffle=True)
    figures = {"train_seconds": round(time.time() - start, 1),
               "epochs": args.epochs, "image_size": args.size,
               "vocabulary": tokenizer.vocabulary_size}
    for name, split in (("train", train), ("val", val)):
        for method, options in (("greedy", {}), ("beam", {"beam_width": 3})):
            start = time.time()
            scores = caption_data.evaluate_captions(model, split, method,
                                                    **options)
            figures[f"{name}_{method}"] = {
                **{k: round(v, 4) for k, v in scores.items()
                   if k != "captions"},
                "seconds": round(time.time() - start, 1)}
            if method == "greedy":
                figures[f"{name}_examples"] = [
                    {"image": split.names[i], "caption": scores["captions"][i],
                     "references": split.captions[i][:2]}
                    for i in range(3)]
                _draw(model, split, scores["captions"], out, name)
    print(json.dumps(figures, indent=1))
    model.save(out / "captioner.keras")
    (out / "figures.json").write_text(json.dumps(figures, indent=1))


def _draw(model, split, captions, out, name, count=3):
    rows = seeing.caption_attention(model, split.images[:count],
                                    captions[:count])
    for index, (words, maps) in enumerate(rows):
        seeing.plot_caption_attention(
            split.images[index], words, maps,
            out / f"attention_{name}_{split.names[index]}.png",
            columns=6, title=captions[index])


if __name__ == "__main__":
    main()
