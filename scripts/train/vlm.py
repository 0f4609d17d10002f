"""The edgevl demo model in PyTorch, computing exactly what edgevl computes from the exported files.

* Views: spec section 2 with Pillow (global view first, then tiles row-major), from the project's
  tiling reference (scripts/tiling_reference.py) and Pillow pipeline (scripts/pil_reference.py).
* Vision: transformers' `SiglipVisionModel` (384, patch 14: 27x27 patches; pre-LN blocks, tanh
  GELU, post-LN), the 2x2 merge of spec 2b, the lfm2 projector (LayerNorm eps 1e-5, Linear, tanh
  GELU, Linear), as scripts/make_tiny_vision_fixtures.py (edgevl matches that to 1e-6).
* LLM: SmolLM2-135M-Instruct, the Q4_1 GGUF dequantised by transformers, frozen, run by a small
  LLaMA forward here (checked against transformers by `check_edgevl.py`) that takes a boolean
  attention mask and position ids, so several questions can share one image prefix.
* Prompts: as edgevl (crates/edgevl-runtime/src/session/images.rs): the chat template rendered
  with the user text "<__media__>" + question, split at the marker, each piece tokenised alone
  (SmolLM2 adds no BOS), the image's (1 + tiles) x 196 rows in the marker's place.
"""

import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
import tiling_reference as tr  # noqa: E402
from pil_reference import pipeline_views  # noqa: E402

CACHE = os.environ.get("EDGEVL_CACHE", os.path.expanduser("~/.cache/edgevl"))
TRAIN_CACHE = os.path.join(CACHE, "train")


def cache_path(path):
    """A checkpoint path as the training scripts take it: absolute, or relative to the train cache."""
    return path if os.path.isabs(path) else os.path.join(TRAIN_CACHE, path)
LLM_GGUF = os.path.join(CACHE, "SmolLM2-135M-Instruct.Q4_1.gguf")
MARKER = "<__media__>"
TILE, PATCH, GRID = 384, 14, 27
VIT = dict(hidden=192, ff=768, layers=6, heads=3, eps=1e-6)
LLM_DIM = 576


# ---------------------------------------------------------------- views
def plan(w, h, strategy="relaxed", max_tiles=9, alpha=0.1):
    """spec 2's plan: [cols, rows, cw, ch, rw, rh, ox, oy, global, tokens]."""
    if strategy == "relaxed":
        return tr.relaxed(w, h, max_tiles, alpha)
    if strategy == "llava-next":
        return tr.llava_next(w, h, max_tiles)
    if strategy == "internvl":
        return tr.internvl(w, h, max_tiles)
    raise ValueError(strategy)


def views(img, strategy="relaxed", max_tiles=9):
    """[n, 3, 384, 384] float32 normalised (mean 0.5, std 0.5), global view first."""
    p = plan(img.width, img.height, strategy, max_tiles)
    arr = np.stack([np.asarray(v, dtype=np.float32) for v in pipeline_views(img.convert("RGB"), p)])
    arr = (arr / np.float32(255.0) - np.float32(0.5)) / np.float32(0.5)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))


# ---------------------------------------------------------------- vision
def merge_2x2(x):
    """[n, 729, d] -> [n, 196, 4d] (spec 2b: pad bottom/right with zeros, row-major tokens)."""
    n, _, d = x.shape
    g = x.reshape(n, GRID, GRID, d)
    g = F.pad(g, (0, 0, 0, 1, 0, 1))
    m = (GRID + 1) // 2
    g = g.reshape(n, m, 2, m, 2, d).permute(0, 1, 3, 2, 4, 5)
    return g.reshape(n, m * m, 4 * d)


class Projector(torch.nn.Module):
    """LayerNorm, Linear, tanh GELU, Linear; the hidden width is the output width unless given."""

    def __init__(self, width, out, hidden=None):
        super().__init__()
        hidden = hidden or out
        self.norm = torch.nn.LayerNorm(4 * width, eps=1e-5)
        self.fc1 = torch.nn.Linear(4 * width, hidden)
        self.fc2 = torch.nn.Linear(hidden, out)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(self.norm(x)), approximate="tanh"))


class Vision(torch.nn.Module):
    """SigLIP tower + 2x2 merge + projector: [n, 3, 384, 384] -> [n * 196, 576]."""

    def __init__(self, attn="sdpa", proj_hidden=None):
        super().__init__()
        from transformers import SiglipVisionConfig, SiglipVisionModel
        cfg = SiglipVisionConfig(
            hidden_size=VIT["hidden"], intermediate_size=VIT["ff"], num_hidden_layers=VIT["layers"],
            num_attention_heads=VIT["heads"], image_size=TILE, patch_size=PATCH, hidden_act="gelu_pytorch_tanh",
            layer_norm_eps=VIT["eps"], vision_use_head=False, attn_implementation=attn)
        self.vit = SiglipVisionModel(cfg)
        self.proj = Projector(VIT["hidden"], LLM_DIM, proj_hidden)

    def tower(self):
        return getattr(self.vit, "vision_model", self.vit)

    def features(self, pixels):
        """[n, 729, hidden] after the post-LayerNorm."""
        return self.vit(pixel_values=pixels).last_hidden_state

    def forward(self, pixels):
        return self.proj(merge_2x2(self.features(pixels))).reshape(-1, LLM_DIM)


# ---------------------------------------------------------------- LLM
class Llama(torch.nn.Module):
    """SmolLM2's LLaMA decoder from transformers' state dict; frozen; positions and a boolean
    mask given, or a KV cache for decoding."""

    def __init__(self, sd, cfg):
        super().__init__()
        self.n_layer = cfg["num_hidden_layers"]
        self.n_head, self.n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        self.dim = cfg["hidden_size"]
        self.hd = self.dim // self.n_head
        self.eps = cfg["rms_norm_eps"]
        self.theta = cfg.get("rope_theta") or cfg["rope_parameters"]["rope_theta"]
        self.w = torch.nn.ParameterDict()
        for k, v in sd.items():
            self.w[k.replace(".", "__")] = torch.nn.Parameter(v, requires_grad=False)

    def p(self, name):
        return self.w[name.replace(".", "__")]

    def embed(self, ids):
        return F.embedding(torch.as_tensor(ids, dtype=torch.long), self.p("model.embed_tokens.weight"))

    def norm(self, x, name):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.p(name).float() * xf).to(x.dtype)

    def rope(self, pos, dtype):
        inv = 1.0 / (self.theta ** (torch.arange(0, self.hd, 2, dtype=torch.float32) / self.hd))
        f = pos.float()[:, None] * inv[None]
        emb = torch.cat([f, f], -1)
        return emb.cos().to(dtype), emb.sin().to(dtype)

    @staticmethod
    def rot(x, cos, sin):
        h = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., h:], x[..., :h]], -1) * sin

    def forward(self, x, pos, mask=None, cache=None):
        """x [T, d] (one sequence), pos [T]; mask [T, S] bool (True = may attend) over the cache's
        S - T earlier positions and these; cache: list of (k, v) per layer, extended in place.
        Returns the final-normed hidden states [T, d]."""
        t = x.shape[0]
        cos, sin = self.rope(pos, x.dtype)
        for i in range(self.n_layer):
            pre = f"model.layers.{i}."
            h = self.norm(x, pre + "input_layernorm.weight")
            q = F.linear(h, self.p(pre + "self_attn.q_proj.weight")).view(t, self.n_head, self.hd).transpose(0, 1)
            k = F.linear(h, self.p(pre + "self_attn.k_proj.weight")).view(t, self.n_kv, self.hd).transpose(0, 1)
            v = F.linear(h, self.p(pre + "self_attn.v_proj.weight")).view(t, self.n_kv, self.hd).transpose(0, 1)
            q, k = self.rot(q, cos, sin), self.rot(k, cos, sin)
            if cache is not None:
                if len(cache) > i:
                    k = torch.cat([cache[i][0], k], 1)
                    v = torch.cat([cache[i][1], v], 1)
                    cache[i] = (k, v)
                else:
                    cache.append((k, v))
            rep = self.n_head // self.n_kv
            k2, v2 = k.repeat_interleave(rep, 0), v.repeat_interleave(rep, 0)
            if mask is None:
                s = k.shape[1]
                mask_i = torch.ones(t, s, dtype=torch.bool).tril(s - t)
            else:
                mask_i = mask
            a = F.scaled_dot_product_attention(q[None], k2[None], v2[None], attn_mask=mask_i[None, None])[0]
            a = a.transpose(0, 1).reshape(t, self.dim)
            x = x + F.linear(a, self.p(pre + "self_attn.o_proj.weight"))
            h = self.norm(x, pre + "post_attention_layernorm.weight")
            g = F.linear(h, self.p(pre + "mlp.gate_proj.weight"))
            u = F.linear(h, self.p(pre + "mlp.up_proj.weight"))
            x = x + F.linear(F.silu(g) * u, self.p(pre + "mlp.down_proj.weight"))
        return self.norm(x, "model.norm.weight")

    def logits(self, h):
        return F.linear(h, self.p("model.embed_tokens.weight").to(h.dtype)).float()


def load_llm(dtype=torch.float32):
    """SmolLM2 Q4_1 dequantised (cached as safetensors after the first, slow, GGUF load)."""
    import json
    from safetensors.torch import load_file, save_file
    os.makedirs(TRAIN_CACHE, exist_ok=True)
    st, cj = os.path.join(TRAIN_CACHE, "smollm2_q4_1_dequant.safetensors"), os.path.join(TRAIN_CACHE, "smollm2_cfg")
    if not (os.path.exists(st) and os.path.exists(os.path.join(cj, "config.json"))):
        from transformers import AutoModelForCausalLM
        m = AutoModelForCausalLM.from_pretrained(CACHE, gguf_file=os.path.basename(LLM_GGUF), dtype=torch.float32)
        sd = {k: v.contiguous() for k, v in m.state_dict().items() if k != "lm_head.weight"}
        save_file(sd, st + ".part")
        os.replace(st + ".part", st)
        m.config.save_pretrained(cj)
    cfg = json.load(open(os.path.join(cj, "config.json")))
    sd = {k: v.to(dtype) for k, v in load_file(st).items()}
    return Llama(sd, cfg).eval()


# ---------------------------------------------------------------- prompts
class Prompter:
    """Token ids as edgevl makes them for one user question about one image."""

    def __init__(self):
        from transformers import AutoTokenizer
        self.tok = AutoTokenizer.from_pretrained(CACHE, gguf_file=os.path.basename(LLM_GGUF))
        self.eos = self.tok.convert_tokens_to_ids("<|im_end|>")
        # edgevl's end-of-generation set for SmolLM2 (edgevl-tokenizer's collect_eog).
        self.stop = {self.eos, self.tok.convert_tokens_to_ids("<|endoftext|>")}
        self._cache = {}

    def encode(self, text):
        if text not in self._cache:
            self._cache[text] = self.tok(text, add_special_tokens=False)["input_ids"]
        return self._cache[text]

    def pieces(self, question, image=True):
        """(ids before the image, ids after it) for `question`; without an image, all ids are in
        the first list (edgevl renders the text alone)."""
        content = (MARKER + question) if image else question
        text = self.tok.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                            add_generation_prompt=True)
        if not image:
            return self.encode(text), []
        before, after = text.split(MARKER)
        return self.encode(before), self.encode(after)

    def answer_ids(self, answer):
        return self.encode(answer) + [self.eos]


# ---------------------------------------------------------------- the multi-question sequence
def build_sequence(llm, prompter, image_rows, qas, with_answers=True):
    """One sequence: prefix ids, image rows, then for each question a branch (question ids and,
    when `with_answers`, answer ids + <|im_end|>) that sees the prefix, the image and itself only,
    at the positions it would have alone. Returns (x, pos, mask, targets) where targets lists,
    per question, (row indices whose next-token logits are scored, target ids)."""
    pre = None
    parts, pos, spans = [], [], []
    for qa in qas:
        before, after = prompter.pieces(qa["question"])
        if pre is None:
            pre = before
            parts.append(llm.embed(before).to(image_rows.dtype))
            parts.append(image_rows)
            n0 = len(before) + image_rows.shape[0]
            pos.append(torch.arange(n0))
            cur = n0
        elif before != pre:
            raise ValueError("questions render different prefixes")
        ids = after + (prompter.answer_ids(qa["answer"]) if with_answers else [])
        parts.append(llm.embed(ids).to(image_rows.dtype))
        pos.append(torch.arange(n0, n0 + len(ids)))
        spans.append((cur, len(ids), len(after)))
        cur += len(ids)
    x = torch.cat(parts)
    total = x.shape[0]
    mask = torch.zeros(total, total, dtype=torch.bool)
    mask[:, :n0] = True
    mask[:n0, :n0] = torch.ones(n0, n0, dtype=torch.bool).tril()
    targets = []
    for (start, length, n_after), qa in zip(spans, qas):
        mask[start:start + length, start:start + length] = torch.ones(length, length, dtype=torch.bool).tril()
        if with_answers:
            ans = prompter.answer_ids(qa["answer"])
            rows = list(range(start + n_after - 1, start + n_after - 1 + len(ans)))
            targets.append((rows, ans))
    return x, torch.cat(pos), mask, targets


def qa_loss(llm, prompter, image_rows, qas, per_question=False):
    """Cross entropy of the answer tokens and <|im_end|>: over all of them (`per_question` False),
    or the mean of each question's own mean, so a one-word answer weighs as much as a long one.
    Also returns, per question, whether its first answer token is the argmax (the word that
    carries the answer; <|im_end|> is learnt at once and hides a stalled run in token accuracy)."""
    x, pos, mask, targets = build_sequence(llm, prompter, image_rows, qas)
    h = llm(x, pos, mask)
    rows = torch.tensor([r for rs, _ in targets for r in rs])
    ids = torch.tensor([i for _, ans in targets for i in ans])
    logits = llm.logits(h[rows])
    ce = F.cross_entropy(logits, ids, reduction="none")
    hit = logits.argmax(-1) == ids
    firsts, at, per_q = [], 0, []
    for _, ans in targets:
        firsts.append(bool(hit[at]))
        per_q.append(ce[at:at + len(ans)].mean())
        at += len(ans)
    loss = torch.stack(per_q).mean() if per_question else ce.mean()
    return loss, hit.float().mean().item(), firsts


@torch.no_grad()
def greedy_answers(llm, prompter, image_rows, questions, max_new=12):
    """edgevl's `--temp 0` answers to each question about one image (None rows: no image)."""
    outs = []
    prefix_cache, n0, pre = None, 0, None
    for q in questions:
        before, after = prompter.pieces(q, image=image_rows is not None)
        if image_rows is not None:
            if prefix_cache is None or before != pre:
                prefix_cache, pre = [], before
                x = torch.cat([llm.embed(before), image_rows])
                n0 = x.shape[0]
                llm(x, torch.arange(n0), cache=prefix_cache)
            cache = list(prefix_cache)
            ids, start = after, n0
        else:
            cache, ids, start = [], before, 0
        out = []
        x = llm.embed(ids)
        pos = torch.arange(start, start + len(ids))
        for _ in range(max_new):
            h = llm(x, pos, cache=cache)
            nxt = int(llm.logits(h[-1:]).argmax(-1))
            if nxt in prompter.stop:
                break
            out.append(nxt)
            x = llm.embed([nxt])
            pos = pos[-1:] + 1
        outs.append(prompter.tok.decode(out, skip_special_tokens=True))
    return outs
