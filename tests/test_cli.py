"""The ``kerasrnn`` command end to end on built-in data and small files,
in this process (``kerasrnn.cli.main``): training, resuming, scoring,
generating, exporting and timing, and every input mistake as one line on
stderr with exit status 2 and nothing written."""

import importlib
import json
import pathlib
import tomllib


from kerasrnn import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMALL = ["--units", "16", "--embedding-dim", "8", "--verbose", "0"]


def kerasrnn(capsys, *argv):
    """``(exit status, stdout, stderr)`` of ``kerasrnn ARGV``."""
    status = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_console_script_entry_points_at_main():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    module, _, name = project["project"]["scripts"]["kerasrnn"].partition(
        ":")
    assert getattr(importlib.import_module(module), name) is cli.main


def test_classifier_trains_resumes_scores_exports_and_times(tmp_path,
                                                            capsys):
    out = tmp_path / "run"
    status, stdout, stderr = kerasrnn(
        capsys, "train", "classifier", "--data", "builtin", "--out", out,
        "--epochs", 3, *SMALL)
    assert status == 0, stderr
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "done" and run["epochs_trained"] == 3
    assert run["metrics"]["accuracy"] > 0.9        # measured 0.98
    assert (out / "curve.png").stat().st_size > 1000
    # A finished run trains on with a larger --epochs, and only then.
    status, _, stderr = kerasrnn(capsys, "train", "classifier", "--data",
                                 "builtin", "--out", out, "--resume",
                                 "--epochs", 3, *SMALL)
    assert status == 2 and "raise --epochs" in stderr
    status, _, stderr = kerasrnn(capsys, "train", "classifier", "--data",
                                 "builtin", "--out", out, "--resume",
                                 "--epochs", 5, *SMALL)
    assert status == 0, stderr
    history = json.loads((out / "history.json").read_text())
    assert [record["epoch"] for record in history] == [1, 2, 3, 4, 5]
    status, stdout, _ = kerasrnn(capsys, "evaluate", out, "--data",
                                 "builtin")
    assert status == 0 and json.loads(stdout)["accuracy"] > 0.95
    status, stdout, _ = kerasrnn(capsys, "generate", out,
                                 "the film was superb and lovely",
                                 "a dull and dreadful plot")
    assert status == 0
    assert [line.split("\t")[0] for line in stdout.splitlines()] == [
        "pos", "neg"]
    status, stdout, stderr = kerasrnn(capsys, "export", out)
    assert status == 0, stderr
    assert (out / "onnx" / "manifest.json").exists()
    status, stdout, _ = kerasrnn(capsys, "bench", out, "--repeats", 2)
    assert status == 0 and json.loads(stdout)["examples_per_second"] > 0


def test_language_model_resumes_from_its_checkpoint(tmp_path, capsys):
    out = tmp_path / "lm"
    common = ["train", "lm", "--data", "builtin", "--out", out,
              "--batch-size", 8, "--num-steps", 20, "--tokenizer", "char",
              "--max-examples", 300, *SMALL]
    assert kerasrnn(capsys, *common, "--epochs", 2)[0] == 0
    status, _, stderr = kerasrnn(capsys, *common, "--epochs", 3,
                                 "--resume")
    assert status == 0, stderr
    history = json.loads((out / "history.json").read_text())
    assert [record["epoch"] for record in history] == [1, 2, 3]
    assert history[2]["loss"] < history[0]["loss"]
    status, stdout, _ = kerasrnn(capsys, "generate", out, "the ",
                                 "--method", "greedy", "--max-length", 5)
    assert status == 0 and stdout.startswith("the ")


def test_tagger_reads_conllu(tmp_path, capsys):
    lines = ["# sent_id = 1", "1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_"]
    words = [("do", "AUX"), ("n't", "PART"), ("go", "VERB"), (".", "PUNCT")]
    for index, (word, tag) in enumerate(words, 1):
        lines.append(f"{index}\t{word}\t{word}\t{tag}\t_\t_\t_\t_\t_\t_")
    conllu = tmp_path / "tiny.conllu"
    conllu.write_text(("\n".join(lines) + "\n\n") * 40)
    out = tmp_path / "tagger"
    status, _, stderr = kerasrnn(capsys, "train", "tagger", "--data",
                                 conllu, "--out", out, "--epochs", 8,
                                 "--learning-rate", 0.02, *SMALL)
    assert status == 0, stderr
    run = json.loads((out / "run.json").read_text())
    assert run["assets"]["tags"] == ["", "AUX", "PART", "PUNCT", "VERB"]
    assert run["metrics"]["accuracy"] == 1.0
    status, stdout, _ = kerasrnn(capsys, "generate", out, "do n't go .")
    assert stdout.strip() == "do/AUX n't/PART go/VERB ./PUNCT"


def test_seq2seq_reads_tatoeba_columns_and_holds_out_whole_sources(
        tmp_path, capsys):
    from kerasrnn.training.data import builtin

    pairs = builtin("seq2seq", 150)
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("".join(f"{source}\t{target}\tCC-BY 2.0 (France)\n"
                           for source, target in pairs))
    out = tmp_path / "nmt"
    status, stdout, stderr = kerasrnn(
        capsys, "train", "seq2seq", "--data", tsv, "--out", out,
        "--epochs", 2, "--attention", "none",
        "--sampling-schedule", "linear", *SMALL)
    assert status == 0, stderr
    run = json.loads((out / "run.json").read_text())
    assert run["examples"]["train"] + run["examples"]["validation"] == 150
    train, validation = cli._split("seq2seq", pairs, 0.2, seed=0)
    assert len(train) + len(validation) == 150 and validation
    assert not {s for s, _ in train} & {s for s, _ in validation}
    assert {"bleu", "token_accuracy", "perplexity"} <= set(run["metrics"])
    history = json.loads((out / "history.json").read_text())
    assert history[1]["sampling_probability"] > 0
    status, stdout, _ = kerasrnn(capsys, "generate", out, "one two")
    assert status == 0 and len(stdout.splitlines()) == 1


def bad_inputs(tmp):
    """``(argv, words the error must name)`` for each mistake."""
    short = tmp / "short.tsv"
    short.write_text("hello\tbonjour\tCC-BY\nno tab here\n")
    empty = tmp / "empty.txt"
    empty.write_text("\n \n")
    conllu = tmp / "bad.conllu"
    conllu.write_text("1\tword\tNOUN\n")
    config = tmp / "config.json"
    config.write_text('{"units": 8, "colour": "red"}')
    taken = tmp / "taken"
    taken.mkdir()
    (taken / "run.json").write_text(
        '{"task": "seq2seq", "status": "training"}')
    other = tmp / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    out = ["--out", tmp / "new"]
    return [
        (["train", "seq2seq", "--data", tmp / "missing.tsv", *out],
         ["missing.tsv", "no such file"]),
        (["train", "seq2seq", "--data", short, *out],
         ["short.tsv:2", "2 tab-separated columns", "found 1"]),
        (["train", "lm", "--data", empty, *out], ["empty.txt", "no text"]),
        (["train", "tagger", "--data", conllu, *out],
         ["bad.conllu:1", "10 tab-separated columns", "found 3"]),
        (["train", "lm", "--data", "builtin", "--cell", "cnn", *out],
         ["--cell", "'cnn'"]),
        (["train", "poem", "--data", "builtin", *out], ["'poem'"]),
        (["train", "lm", "--data", "builtin", "--units", "-4", *out],
         ["units", "-4"]),
        (["train", "lm", "--data", "builtin", "--wings", "2", *out],
         ["--wings"]),
        (["train", "lm", "--data", "builtin", "--config", config, *out],
         ["config.json", "'colour'"]),
        (["train", "seq2seq", "--data", "builtin", "--columns", "2", *out],
         ["--columns", "'2'"]),
        (["train", "lm", "--data", "builtin", "--out", taken],
         ["taken", "seq2seq run", "--resume"]),
        (["train", "lm", "--data", "builtin", "--out", taken, "--resume"],
         ["taken", "seq2seq run, not lm"]),
        (["train", "lm", "--data", "builtin", "--out", other],
         ["other", "not empty"]),
        (["evaluate", other, "--data", "builtin"], ["other", "run.json"]),
        (["export", other], ["other", "run.json"]),
        (["serve", other, "--port", "0"], ["other", "manifest.json"]),
        (["generate", taken, "hi"], ["taken", "still training"]),
    ]


def test_every_mistake_is_one_line_exit_2_nothing_written(tmp_path,
                                                          capsys):
    for argv, words in bad_inputs(tmp_path):
        status, stdout, stderr = kerasrnn(capsys, *argv)
        assert status == 2, (argv, stderr)
        assert len(stderr.strip().splitlines()) == 1, (argv, stderr)
        for word in words:
            assert word in stderr, (argv, word, stderr)
        assert not (tmp_path / "new").exists(), argv
    assert sorted(p.name for p in (tmp_path / "taken").iterdir()) == [
        "run.json"]
