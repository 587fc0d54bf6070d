#!/usr/bin/env python3
"""Golden log-probabilities for the InternLM3 decoder (plain Llama semantics, Hugging Face numerics).

Computes, in float32 on the CPU, the log_softmax of the logits of an HF-layout InternLM3 checkpoint for
  - "sequence": one full forward (no cache) over a fixed multi-turn chat that is longer than
    max_position_embeddings, so every position runs under dynamic NTK RoPE;
  - "greedy": a fixed short chat prefilled in one forward, then 64 greedy tokens decoded one at a time with
    a KV cache (no stop on eos), crossing max_position_embeddings mid-way; cached keys keep the rotation
    they were given, as HF's dynamic NTK rotary embedding does.
Written from /work/shared/MODEL.md (and knowledge of HF's Llama / dynamic NTK code) only; it shares no code
with the Go engine. Needs only torch, numpy and sentencepiece (safetensors is parsed by hand).

Run:  /usr/bin/python3 tools/golden_logits.py CHECKPOINT_DIR OUT_DIR
Writes OUT_DIR/golden.json (messages, token ids, greedy tokens), OUT_DIR/sequence_logprobs.f32
([len(ids)][vocab] little-endian float32) and OUT_DIR/greedy_logprobs.f32 ([64][vocab]).
"""
import argparse, json, math, os, struct, sys
import numpy as np
import sentencepiece
import torch
import torch.nn.functional as F

GREEDY_TOKENS = 64
CHECK_TOL = 1e-4


def load_safetensors(path):
    """name -> float32 tensor. Layout: u64 LE header length, JSON header, data (offsets relative to it)."""
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    n = struct.unpack("<Q", raw[:8].tobytes())[0]
    header, base, out = json.loads(raw[8:8 + n].tobytes()), 8 + n, {}
    for name, info in header.items():
        if name == "__metadata__" or name.endswith("rotary_emb.inv_freq"):
            continue
        start, end = info["data_offsets"]
        b = raw[base + start: base + end]
        if info["dtype"] == "BF16":  # bf16 is the upper half of an f32
            a = (b.view("<u2").astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] in ("F16", "F32"):
            a = b.view("<f2" if info["dtype"] == "F16" else "<f4").astype(np.float32)
        else:
            sys.exit(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        out[name] = torch.from_numpy(a.reshape(info["shape"]).copy())
    return out


def load_weights(ckpt):
    index = os.path.join(ckpt, "model.safetensors.index.json")
    wmap = json.load(open(index))["weight_map"] if os.path.exists(index) else {}
    files = sorted(set(wmap.values())) or ["model.safetensors"]
    w = {}
    for f in files:
        w.update(load_safetensors(os.path.join(ckpt, f)))
    missing = [n for n in wmap if n not in w and not n.endswith("rotary_emb.inv_freq")]
    if missing:
        sys.exit(f"index names tensors missing from the shards: {missing[:5]}")
    return w


class InternLM3:
    def __init__(self, cfg, w):
        self.cfg, self.w = cfg, w
        self.heads, self.kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        self.head_dim = cfg.get("head_dim") or cfg["hidden_size"] // self.heads
        self.max_pos, self.theta, self.eps = cfg["max_position_embeddings"], cfg["rope_theta"], cfg["rms_norm_eps"]
        rs = cfg.get("rope_scaling") or {}
        kind = rs.get("rope_type", rs.get("type"))
        if kind not in (None, "default", "dynamic"):
            sys.exit(f"rope_scaling type {kind!r} is not implemented")
        self.ntk_factor = rs["factor"] if kind == "dynamic" else None
        # a switch that says "bias" must be matched by tensors; biases present anyway are added too
        need = (["q_proj", "k_proj", "v_proj"] if cfg.get("qkv_bias") else []) + (["o_proj"] if cfg.get("bias") else [])
        for i in range(cfg["num_hidden_layers"]):
            for p in need:
                if f"model.layers.{i}.self_attn.{p}.bias" not in w:
                    sys.exit(f"config asks for a bias but model.layers.{i}.self_attn.{p}.bias is missing")

    def linear(self, x, name):
        return F.linear(x, self.w[name + ".weight"], self.w.get(name + ".bias"))

    def rmsnorm(self, x, name):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.w[name + ".weight"]

    def inv_freq(self, L):
        """HF dynamic NTK: the base grows with L = max position + 1 of this forward, in float32 like HF."""
        dim, base = self.head_dim, self.theta
        if self.ntk_factor is not None and L > self.max_pos:
            seq_len, f = torch.tensor(L), self.ntk_factor  # int64 tensor, as torch.max(position_ids) + 1 in HF
            base = base * ((f * seq_len / self.max_pos) - (f - 1)) ** (dim / (dim - 2))
        return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))

    @staticmethod
    def rope(x, cos, sin):  # rotate_half: dim i pairs with i + head_dim/2
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat((-x2, x1), dim=-1) * sin

    def forward(self, ids, cache):
        """ids: new tokens at positions len(cache)...; cache: list of per-layer (k, v) [kv_heads, T, head_dim], updated."""
        start, T, hd = (cache[0][0].shape[1] if cache else 0), len(ids), self.head_dim
        pos = torch.arange(start, start + T)
        freqs = pos.float()[:, None] * self.inv_freq(start + T)[None, :]  # [T, hd/2]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        mask = torch.full((T, start + T), float("-inf")).triu(start + 1)  # query at start+i sees keys <= start+i
        x = self.w["model.embed_tokens.weight"][torch.tensor(ids)]  # [T, hidden]
        for i in range(self.cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            h = self.rmsnorm(x, p + "input_layernorm")
            q = self.linear(h, p + "self_attn.q_proj").view(T, self.heads, hd).transpose(0, 1)
            k = self.linear(h, p + "self_attn.k_proj").view(T, self.kv_heads, hd).transpose(0, 1)
            v = self.linear(h, p + "self_attn.v_proj").view(T, self.kv_heads, hd).transpose(0, 1)
            q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
            if len(cache) > i:
                k, v = torch.cat((cache[i][0], k), dim=1), torch.cat((cache[i][1], v), dim=1)
                cache[i] = (k, v)
            else:
                cache.append((k, v))
            group = self.heads // self.kv_heads  # GQA: query head h uses kv head h // group
            k, v = k.repeat_interleave(group, dim=0), v.repeat_interleave(group, dim=0)
            scores = torch.matmul(q, k.transpose(1, 2)) * hd ** -0.5 + mask  # [heads, T, start+T]
            att = torch.matmul(F.softmax(scores, dim=-1, dtype=torch.float32), v)
            x = x + self.linear(att.transpose(0, 1).reshape(T, self.heads * hd), p + "self_attn.o_proj")
            h = self.rmsnorm(x, p + "post_attention_layernorm")
            x = x + self.linear(F.silu(self.linear(h, p + "mlp.gate_proj")) * self.linear(h, p + "mlp.up_proj"),
                                p + "mlp.down_proj")
        return self.linear(self.rmsnorm(x, "model.norm"), "lm_head")  # [T, vocab]


def chat_ids(sp, special, messages, add_generation_prompt):
    """The chat template as HF tokenizes it: specials as single ids, the text between them through SentencePiece."""
    ids = [special["<s>"]]
    for m in messages:
        ids += [special["<|im_start|>"]] + sp.encode(m["role"] + "\n" + m["content"]) + [special["<|im_end|>"]]
        ids += sp.encode("\n")
    if add_generation_prompt:
        ids += [special["<|im_start|>"]] + sp.encode("assistant\n")
    return ids


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint"), ap.add_argument("out")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    cfg = json.load(open(os.path.join(a.checkpoint, "config.json")))
    sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(a.checkpoint, "tokenizer.model"))
    added = json.load(open(os.path.join(a.checkpoint, "tokenizer_config.json")))["added_tokens_decoder"]
    special = {t["content"]: int(i) for i, t in added.items()}
    model = InternLM3(cfg, load_weights(a.checkpoint))
    V, max_pos = model.w["lm_head.weight"].shape[0], model.max_pos
    assert V == cfg["vocab_size"], f"lm_head has {V} rows, config says vocab_size {cfg['vocab_size']}"

    seq_msgs = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Write a haiku about the sea, then translate it into 中文."},
                {"role": "assistant", "content": "The sea breathes slowly; 海は静か。"},
                {"role": "user", "content": "Thanks! Now explain RoPE in one sentence."}]
    greedy_msgs = [{"role": "system", "content": "You are a helpful assistant. Answer in the language the user "
                                              "writes in."},
                   {"role": "user", "content": "Hello! 你好, what is 2+2? Please also tell me what 17 times 3 is."}]
    seq, prompt = chat_ids(sp, special, seq_msgs, True), chat_ids(sp, special, greedy_msgs, True)
    last = len(prompt) + GREEDY_TOKENS - 1  # sequence length seen by the last greedy forward
    print(f"vocab {V}, max_position_embeddings {max_pos}, sequence {len(seq)} tokens, "
          f"greedy prompt {len(prompt)} tokens (last forward sees {last}: "
          f"{'crosses' if last > max_pos else 'does NOT cross'} max_pos)")
    if len(seq) <= max_pos:
        sys.exit(f"sequence has {len(seq)} tokens: it must exceed max_position_embeddings {max_pos} to exercise NTK")
    if len(prompt) >= max_pos:
        sys.exit(f"greedy prompt has {len(prompt)} tokens: it must stay below max_position_embeddings {max_pos}")
    if last <= max_pos:
        sys.exit(f"greedy decoding never passes max_position_embeddings {max_pos}: "
                 f"its NTK switch-over would not be covered")

    seq_lp = F.log_softmax(model.forward(seq, []), dim=-1)

    # (a) below max_pos, one-token-at-a-time decoding with the cache must equal the full forward
    n = min(len(seq), max_pos)
    full, cache = model.forward(seq[:n], []), []
    step = torch.cat([model.forward([t], cache) for t in seq[:n]])
    diff = (full - step).abs().max().item()
    print(f"check (a) cached vs full forward over {n} tokens: max |logit diff| {diff:.3g}")
    assert diff < CHECK_TOL, "KV-cache decoding disagrees with the full forward"

    cache, tokens, greedy_lp = [], [], []
    logits = model.forward(prompt, cache)[-1]  # step 0: prefill the whole prompt in one forward
    for i in range(GREEDY_TOKENS):
        greedy_lp.append(F.log_softmax(logits, dim=-1))
        tokens.append(int(torch.argmax(logits)))  # first (lowest) id on ties
        if i + 1 < GREEDY_TOKENS:
            logits = model.forward([tokens[-1]], cache)[-1]
    greedy_lp = torch.stack(greedy_lp)
    print("greedy tokens:", tokens)

    # (b) every row is a distribution
    for name, lp in (("sequence", seq_lp), ("greedy", greedy_lp)):
        err = (lp.exp().sum(-1) - 1).abs().max().item()
        print(f"check (b) {name}: max |sum(exp(logprobs)) - 1| {err:.3g}")
        assert err < CHECK_TOL and torch.isfinite(lp).all(), f"{name} log-probabilities are not normalised"

    os.makedirs(a.out, exist_ok=True)
    seq_lp.numpy().astype("<f4").tofile(os.path.join(a.out, "sequence_logprobs.f32"))
    greedy_lp.numpy().astype("<f4").tofile(os.path.join(a.out, "greedy_logprobs.f32"))
    golden = {"made_by": "tools/golden_logits.py " + " ".join(sys.argv[1:]) +
                         f" (float32 CPU, torch {torch.__version__}, numpy {np.__version__})",
              "vocab_size": V,
              "sequence": {"messages": seq_msgs, "add_generation_prompt": True, "ids": seq},
              "greedy": {"messages": greedy_msgs, "prompt_ids": prompt, "tokens": tokens}}
    with open(os.path.join(a.out, "golden.json"), "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, indent=1)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
