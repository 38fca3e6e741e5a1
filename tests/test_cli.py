#!/usr/bin/env python3
"""End-to-end tests of `eigenformer logits`: usage: test_cli.py PROGRAM FIXTURES_DIR."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

PROGRAM, FIXTURES = sys.argv[1], sys.argv[2]
del sys.argv[1:3]
TINY = os.path.join(FIXTURES, "tiny_f32")


def run(*args):
    return subprocess.run([PROGRAM, *args], capture_output=True, text=True, timeout=60)


def expected(name, case):
    with open(os.path.join(FIXTURES, name, "expected.json")) as f:
        c = json.load(f)["cases"][case]
    return c["tokens"], np.array(c["logits"])


class Logits(unittest.TestCase):
    def check_npy(self, precision, dtype, tolerance):
        for name in ("tiny_f32", "tiny_bf16_prefixed", "tiny_f16"):
            tokens, want = expected(name, 1)
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, "logits.npy")
                r = run("logits", "--model", os.path.join(FIXTURES, name),
                        "--tokens", " ".join(map(str, tokens)), "--out", out,
                        "--precision", precision)
                self.assertEqual(r.returncode, 0, r.stderr)
                got = np.load(out)
            self.assertEqual(got.dtype, dtype)
            self.assertEqual(got.shape, want.shape)
            err = np.abs(got - want).max() / np.abs(want).max()
            self.assertLess(err, tolerance, name)

    def test_npy_float32(self):
        self.check_npy("f32", np.float32, 1e-5)

    def test_npy_float64(self):
        self.check_npy("f64", np.float64, 1e-10)

    def test_top5_without_out(self):
        tokens, want = expected("tiny_f32", 1)
        r = run("logits", "--model", TINY, "--tokens", ",".join(map(str, tokens)))
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.strip().splitlines()[1:]
        ids = [int(line.split()[0]) for line in lines]
        values = [float(line.split()[1]) for line in lines]
        self.assertEqual(ids, list(np.argsort(-want[-1])[:5]))
        np.testing.assert_allclose(values, np.sort(want[-1])[::-1][:5], rtol=1e-5, atol=1e-5)


class BadInput(unittest.TestCase):
    def assert_fails(self, args, message):
        r = run(*args)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn(message, r.stderr)
        self.assertTrue(r.stderr.startswith("eigenformer: error: "), r.stderr)

    def test_missing_directory(self):
        self.assert_fails(["logits", "--model", "/nonexistent", "--tokens", "1"],
                          "model directory '/nonexistent' does not exist")

    def test_directory_without_weights(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.assert_fails(["logits", "--model", tmp, "--tokens", "1"], "has no config.json")

    def test_non_numeric_id(self):
        self.assert_fails(["logits", "--model", TINY, "--tokens", "1 two 3"],
                          "token id 'two' is not a non-negative integer")
        self.assert_fails(["logits", "--model", TINY, "--tokens", "1 -2"],
                          "token id '-2' is out of range")
        self.assert_fails(["logits", "--model", TINY, "--tokens", "99999999999999999999"],
                          "is out of range")
        self.assert_fails(["logits", "--model", TINY, "--tokens", "  "], "--tokens is empty")

    def test_id_outside_vocabulary(self):
        self.assert_fails(["logits", "--model", TINY, "--tokens", "1 101"],
                          "token id 101 at position 1 is outside the vocabulary [0, 101)")

    def test_too_many_tokens(self):
        self.assert_fails(["logits", "--model", TINY, "--tokens", " ".join(["1"] * 30)],
                          "30 tokens exceed the model's context of 24 by 6")

    def test_unknown_precision(self):
        self.assert_fails(["logits", "--model", TINY, "--tokens", "1", "--precision", "f16"],
                          "--precision")

    def test_missing_option_and_subcommand(self):
        self.assert_fails(["logits", "--tokens", "1"], "--model is required")
        self.assert_fails([], "subcommand")

    def test_corrupt_checkpoint(self):
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(TINY, "config.json")) as f:
                config = f.read()
            with open(os.path.join(tmp, "config.json"), "w") as f:
                f.write(config)
            with open(os.path.join(TINY, "model.safetensors"), "rb") as f:
                data = f.read()
            with open(os.path.join(tmp, "model.safetensors"), "wb") as f:
                f.write(data[: len(data) // 2])
            self.assert_fails(["logits", "--model", tmp, "--tokens", "1"], "model.safetensors: ")


if __name__ == "__main__":
    unittest.main(verbosity=2)
