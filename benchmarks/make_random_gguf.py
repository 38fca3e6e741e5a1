#!/usr/bin/env python3
"""Writes a llama-architecture GGUF file with random weights at a real model's shape, for
side-by-side speed runs against llama.cpp (benchmarks/compare_llamacpp.sh). Uses llama.cpp's own
gguf-py as a tool (its source directory is an argument; nothing of it is part of eigenformer).

  /usr/bin/python3 benchmarks/make_random_gguf.py --gguf-py LLAMA_CPP/gguf-py \\
      --shape smollm2-135m --type f32 --out /tmp/smollm2-135m-f32.gguf

The shapes are the ones `eigenformer bench --shape` uses. The vocabulary is a placeholder
SentencePiece-style list (byte tokens + filler) so llama.cpp's loader accepts the file; speed
does not depend on what the tokens spell."""
import argparse
import sys

import numpy as np

SHAPES = {  # layers, hidden, intermediate, heads, kv heads, vocab, context, rope theta, tied
    "smollm2-135m": (30, 576, 1536, 9, 3, 49152, 8192, 100000.0, True),
    "smollm2-360m": (32, 960, 2560, 15, 5, 49152, 8192, 100000.0, True),
    "tinyllama-1.1b": (22, 2048, 5632, 32, 4, 32000, 2048, 10000.0, False),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--gguf-py", required=True)
    p.add_argument("--shape", default="smollm2-135m", choices=sorted(SHAPES))
    p.add_argument("--type", default="f32", choices=["f32", "f16", "bf16"])
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    sys.path.insert(0, a.gguf_py)
    import gguf

    layers, hidden, inter, heads, kv_heads, vocab, ctx, theta, tied = SHAPES[a.shape]
    head_dim = hidden // heads
    rng = np.random.default_rng(a.seed)
    w = gguf.GGUFWriter(a.out, "llama")
    w.add_name(a.shape + " (random)")
    w.add_context_length(ctx)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(inter)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(theta)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "bf16": gguf.LlamaFileType.MOSTLY_BF16}[a.type]
    w.add_file_type(file_type)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"t{i}" for i in range(vocab - len(tokens))]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * (vocab - 259)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * vocab)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def tensor(name, shape, norm=False):
        # GGUF lists dimensions innermost first; numpy arrays are [out, in] as in PyTorch.
        x = np.ones(shape, np.float32) if norm else rng.standard_normal(shape, np.float32) * 0.02
        if a.type == "f16" and not norm and len(shape) == 2:
            w.add_tensor(name, x.astype(np.float16))
        elif a.type == "bf16" and not norm and len(shape) == 2:
            bits = (x.view(np.uint32) + 0x7FFF + ((x.view(np.uint32) >> 16) & 1)) >> 16
            w.add_tensor(name, bits.astype(np.uint16), raw_dtype=gguf.GGMLQuantizationType.BF16)
        else:
            w.add_tensor(name, x)

    tensor("token_embd.weight", (vocab, hidden))
    for i in range(layers):
        tensor(f"blk.{i}.attn_norm.weight", (hidden,), norm=True)
        tensor(f"blk.{i}.attn_q.weight", (heads * head_dim, hidden))
        tensor(f"blk.{i}.attn_k.weight", (kv_heads * head_dim, hidden))
        tensor(f"blk.{i}.attn_v.weight", (kv_heads * head_dim, hidden))
        tensor(f"blk.{i}.attn_output.weight", (hidden, heads * head_dim))
        tensor(f"blk.{i}.ffn_norm.weight", (hidden,), norm=True)
        tensor(f"blk.{i}.ffn_gate.weight", (inter, hidden))
        tensor(f"blk.{i}.ffn_up.weight", (inter, hidden))
        tensor(f"blk.{i}.ffn_down.weight", (hidden, inter))
    tensor("output_norm.weight", (hidden,), norm=True)
    if not tied:
        tensor("output.weight", (vocab, hidden))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
