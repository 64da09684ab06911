"""Training speed of the PTB small config: kerasrnn against PyTorch.

Both train the same model (embedding 10,000 x 200, 2 x 200 LSTM, softmax
over 10,000 words) with truncated BPTT over 20 streams of 20 steps, SGD
lr 1.0 with global-norm clipping at 5, loss summed over time and averaged
over the batch, for the same windows of a token stream; kerasrnn runs with
and without ``jit_compile``. Runs alternate (kerasrnn, kerasrnn-xla,
PyTorch, kerasrnn, ...) so all see the same machine load; the median tokens
per second of each is reported.

    python benchmarks/lm_speed.py --data ../shared/data/ptb --windows 200
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

from kerasrnn.models.language_model import LanguageModel
from kerasrnn.models.lm_data import Vocabulary
from kerasrnn.models.lm_data import read_tokens
from kerasrnn.models.lm_data import stream_windows
from kerasrnn.models.lm_training import TBPTTTrainer

BATCH, STEPS, UNITS, LAYERS = 20, 20, 200, 2


def token_stream(data, windows):
    """The first ``windows`` windows' worth of PTB train (or random ids)."""
    count = windows * BATCH * STEPS + BATCH
    if data is None:
        return np.random.default_rng(0).integers(0, 10_000, count), 10_000
    tokens = read_tokens(os.path.join(data, "ptb.train.txt"), "word")
    vocabulary = Vocabulary.build(tokens, "word")
    return vocabulary.encode(tokens[:count])[0], vocabulary.size


def kerasrnn_runner(ids, vocabulary_size, jit_compile=False):
    model = LanguageModel(vocabulary_size, UNITS, UNITS, LAYERS,
                          init_scale=0.1)
    model(np.zeros((1, 1), "int32"))
    trainer = TBPTTTrainer(model, BATCH, STEPS, 1.0, 5.0,
                           jit_compile=jit_compile)
    trainer.train_epoch(ids[:BATCH * (2 * STEPS + 1)], verbose=0)  # trace

    def run():
        return trainer.train_epoch(ids, verbose=0)["tokens_per_second"]

    return run


def torch_runner(ids, vocabulary_size):
    import torch

    torch.manual_seed(0)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(vocabulary_size, UNITS)
            self.lstm = torch.nn.LSTM(UNITS, UNITS, LAYERS, batch_first=True)
            self.softmax = torch.nn.Linear(UNITS, vocabulary_size)
            for parameter in self.parameters():
                torch.nn.init.uniform_(parameter, -0.1, 0.1)

        def forward(self, x, state):
            output, state = self.lstm(self.embedding(x), state)
            return self.softmax(output), state

    model = Model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    inputs, labels = stream_windows(ids, BATCH, STEPS)
    inputs = torch.from_numpy(inputs.astype("int64"))
    labels = torch.from_numpy(labels.astype("int64"))

    def run():
        state = None
        start = time.perf_counter()
        for x, y in zip(inputs, labels):
            logits, state = model(x, state)
            state = tuple(s.detach() for s in state)
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, vocabulary_size), y.reshape(-1)
            ) * STEPS
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
        return inputs.numel() / (time.perf_counter() - start)

    return run, torch.__version__


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="PTB folder; omitted: random ids")
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", help="write the figures as JSON here")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    keras.utils.set_random_seed(0)
    ids, vocabulary_size = token_stream(args.data, args.windows)
    runs = {"kerasrnn": kerasrnn_runner(ids, vocabulary_size),
            "kerasrnn-xla": kerasrnn_runner(ids, vocabulary_size, True)}
    runs["pytorch"], torch_version = torch_runner(ids, vocabulary_size)
    speeds = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            speeds[name].append(run())
            print(f"{name:12s} {speeds[name][-1]:8.0f} tokens/s", flush=True)
    summary = {
        name: statistics.median(values) for name, values in speeds.items()
    }
    summary.update(windows=args.windows, repeats=args.repeats,
                   torch_threads=args.threads, torch=torch_version,
                   cpus=os.cpu_count(), load_average=os.getloadavg())
    print(json.dumps(summary, indent=2))
    if args.results:
        with open(args.results, "w", encoding="utf-8") as handle:
            json.dump({"summary": summary, "speeds": speeds}, handle,
                      indent=2)


if __name__ == "__main__":
    main()
