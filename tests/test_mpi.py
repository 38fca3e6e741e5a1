#!/usr/bin/env python3
"""`mpirun -np R eigenformer train` against the single process (OpenMPI, on this one machine).

usage: test_mpi.py PROGRAM MPIRUN

- R = 2 ends with a model.safetensors byte-identical to the single process's, and the same
  losses; R = 4 within 1e-6 relative (four shards are summed in another order).
- SIGTERM to mpirun: rank 0 saves a checkpoint; `--resume` with the same R continues
  bit-identical; with another R it is refused.
"""
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np

PROGRAM, MPIRUN = sys.argv[1], sys.argv[2]
del sys.argv[1:3]
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was "
        "the age of foolishness, it was the epoch of belief, it was the epoch of incredulity.\n")
ARGS = ["--arch", "llama", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--embd", "32",
        "--ctx", "32", "--batch", "8", "--grad-accum", "2", "--eval-every", "20", "--lr", "1e-2",
        "--seed", "5", "--threads", "1"]


def train(data, out, ranks, steps, *extra, wait=True):
    cmd = [PROGRAM, "train", "--data", data, "--out", out, *ARGS, "--steps", str(steps), *extra]
    if ranks > 0:
        cmd = [MPIRUN, "--oversubscribe", "-np", str(ranks), *cmd]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env=ENV)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV)


def weights(out):
    with open(os.path.join(out, "model.safetensors"), "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    return np.frombuffer(data[8 + n:], dtype="<f4"), data


def train_losses(out):
    with open(os.path.join(out, "log.csv")) as f:
        return [row.split(",")[1] for row in f.readlines()[1:] if row.split(",")[1]]


class Mpi(unittest.TestCase):
    STEPS = 12  # rounding differences grow with every step: R = 4 is compared early

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.data = os.path.join(cls.tmp.name, "text.txt")
        with open(cls.data, "w") as f:
            f.write(TEXT * 30)
        cls.single = os.path.join(cls.tmp.name, "single")
        start = time.time()
        r = train(cls.data, cls.single, 0, cls.STEPS)
        cls.seconds = time.time() - start
        assert r.returncode == 0, r.stderr

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_two_ranks_are_bit_identical_and_four_within_rounding(self):
        single, single_bytes = weights(self.single)
        for ranks in (2, 4):
            out = os.path.join(self.tmp.name, f"ranks{ranks}")
            r = train(self.data, out, ranks, self.STEPS)
            self.assertEqual(r.returncode, 0, r.stderr)
            got, got_bytes = weights(out)
            if ranks == 2:
                self.assertTrue(got_bytes == single_bytes, "2 ranks differ from 1 process")
                self.assertEqual(train_losses(out), train_losses(self.single))
            else:
                err = np.abs(got - single).max() / np.abs(single).max()
                self.assertLess(err, 1e-6)
                self.assertGreater(err, 0)  # another summation order, not the same run twice
            self.assertIn(f"{ranks} rank(s)", r.stderr)

    def test_sigterm_saves_and_the_same_ranks_resume_bit_identical(self):
        out = os.path.join(self.tmp.name, "stopped")
        steps = 3000  # long enough to be stopped in the middle
        full = os.path.join(self.tmp.name, "full400")
        r = train(self.data, full, 0, steps)
        self.assertEqual(r.returncode, 0, r.stderr)
        p = train(self.data, out, 2, steps, "--resume", out, wait=False)
        log = os.path.join(out, "log.csv")
        deadline = time.time() + 120
        while time.time() < deadline and p.poll() is None:  # until rank 0 has logged step 3
            if os.path.exists(log) and any(line.startswith("3,") for line in open(log)):
                break
            time.sleep(0.005)
        p.send_signal(signal.SIGTERM)
        err = p.communicate(timeout=120)[1]
        self.assertNotEqual(p.returncode, 0, err)
        saved = os.listdir(os.path.join(out, "checkpoints"))
        self.assertEqual(len(saved), 1, err)
        r = train(self.data, out, 4, steps, "--resume", out)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("same mpirun -np", r.stderr)
        r = train(self.data, out, 2, steps, "--resume", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("resumed from", r.stderr)
        self.assertTrue(weights(out)[1] == weights(full)[1])

    def test_a_batch_that_does_not_split_is_one_error(self):
        r = subprocess.run([MPIRUN, "--oversubscribe", "-np", "3", PROGRAM, "train", "--data",
                            self.data, "--out", os.path.join(self.tmp.name, "x"), *ARGS,
                            "--steps", "2"], capture_output=True, text=True, timeout=120, env=ENV)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("does not split evenly over 3 ranks", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
