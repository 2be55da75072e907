"""A small third-party builder plugin (like docs/plugins.md's, with the running-parity task) for the CLI tests."""
import numpy as np

from hrm_data.builder import Builder, Group, Info, Option, Puzzle


class Parity(Builder):
    name = "parity"
    description = "Bit strings; the label marks the running parity."
    default_out = "data/parity"
    options = (
        Option("train_groups", 1000, "Groups in the train split."),
        Option("test_groups", 100, "Groups in the test split."),
        Option("length", 16, "Bits per example."),
        Option("seed", 0, "Random seed."),
    )

    def info(self, o):
        return Info(vocab_size=3, seq_len=o["length"], pad_id=0, ignore_label_id=0,
                    token_names=["pad", "zero", "one"], palette=["#000000", "#dddddd", "#3366ff"])

    def count(self, split, o):
        return o[f"{split}_groups"]

    def groups(self, split, o):
        rng = np.random.default_rng([o["seed"], split == "test"])
        for i in range(o[f"{split}_groups"]):
            bits = rng.integers(0, 2, (1, o["length"]))
            yield Group([Puzzle("parity", bits + 1, np.cumsum(bits, 1) % 2 + 1)], key=f"{split}-{i}")
