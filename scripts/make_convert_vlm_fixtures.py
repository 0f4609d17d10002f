#!/usr/bin/env python3
"""Tiny vision-language checkpoints for `edgevl convert`, and what llama.cpp and transformers make of them (issue 15).

Run by hand with the reference venv (torch, transformers 5.x, tokenizers, Pillow, numpy), not in CI:

    /root/venv-ref/bin/python scripts/make_convert_vlm_fixtures.py

It writes

  tests/fixtures/hf/tiny-internvl/   InternVLChatModel in OpenGVLab's original layout, and
  tests/fixtures/hf/tiny-smolvlm/    Idefics3ForConditionalGeneration as transformers saves it (the hub's SmolVLM
                                     form): the very models of scripts/make_family_fixtures.py (its builders, its
                                     seeds; checked below: llama.cpp's F32 mmproj of each holds the tensor bytes of
                                     tests/fixtures/tiny-*/mmproj.gguf);
  tests/fixtures/convert/tiny-{internvl,smolvlm}-{f32,q8_0}.json
                                     goldens (scripts/convert_goldens.py) of the language model: llama.cpp's
                                     convert_hf_to_gguf.py --outtype f32, and llama-quantize Q8_0 of that file;
  tests/fixtures/convert/tiny-{internvl,smolvlm}-mmproj-{f32,q8_0}.json
                                     of the vision tower + projector: convert_hf_to_gguf.py --mmproj --outtype f32 and
                                     --outtype q8_0;
  tests/fixtures/hf/tiny-edgevl/     this project's own layout (docs/checkpoint-format.md): transformers'
                                     SiglipVisionModel (384 px, patch 14, width 32, 2 layers), the projector
                                     (LayerNorm, Linear, tanh GELU, Linear) after the 2x2 merge, a LlamaForCausalLM of
                                     width 64 with SmolVLM's tiny tokenizer; llama.cpp has no converter for it;
  tests/fixtures/edgevl-roundtrip/   transformers' outputs for it (reference.json indexes the .bin files): the
                                     projected embeddings of an image tiled as edgevl tiles it (spec 2, Pillow, by
                                     scripts/train/vlm.py's views()), and the LLM on a raw prompt with that image at
                                     its marker: logits at every position and the greedy continuation.

The converter runs as scripts/make_family_fixtures.py runs it (a child process, only the pre-tokenizer hash check
patched: the tiny tokenizers are trained here, llama.cpp's table does not know them; edgevl is told the same name
with --pre-tokenizer). Every weight comes from a seeded torch.Generator; a re-run writes the same files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "train"))
import make_family_fixtures as fam  # noqa: E402

FIXTURES = fam.FIXTURES
HF = FIXTURES / "hf"
GOLDENS = FIXTURES / "convert"
ROUNDTRIP = FIXTURES / "edgevl-roundtrip"
QUANTIZE = fam.LLAMACPP_BIN / "llama-quantize"

# This project's layout at toy scale: the demo model's structure (scripts/train/vlm.py) narrower.
EV_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=384,
                 patch_size=14, layer_norm_eps=1e-6)
EV_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=2048, rms_norm_eps=1e-5)
EV_ROPE_THETA = 10000.0
EV_PROJ_EPS = 1e-5
EV_IMAGE = (500, 300)  # LCG image (make_family_fixtures.IMAGE_RECIPE)
EV_MAX_TILES = 4
EV_PROMPT = "Look at <__media__> and say what it is."
EV_MARKER = "<__media__>"
EV_GREEDY = 8
EV_LOGITS_TAIL = 64
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def log(msg: str) -> None:
    print(f"make_convert_vlm_fixtures: {msg}", file=sys.stderr, flush=True)


def goldens(hf_dir: Path, stem: str, pre: str) -> None:
    """llama.cpp's files of hf_dir (LLM f32 + Q8_0, mmproj f32 + q8_0) dumped as goldens named stem-*."""
    env = dict(os.environ, PYTHONPATH=str(fam.LLAMACPP_SRC / "gguf-py"))
    dump = [sys.executable, str(HERE / "convert_goldens.py")]
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        fam.convert(hf_dir, t / "f32.gguf", pre, "", mmproj=False)
        subprocess.run([str(QUANTIZE), str(t / "f32.gguf"), str(t / "q8_0.gguf"), "Q8_0"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for outtype in ("f32", "q8_0"):
            fam.convert(hf_dir, t / f"mmproj-{outtype}.gguf", pre, "", mmproj=True, outtype=outtype)
        for name in ("f32", "q8_0", "mmproj-f32", "mmproj-q8_0"):
            subprocess.run(dump + [str(t / f"{name}.gguf"), str(GOLDENS / f"{stem}-{name}.json")], check=True, env=env)
        same_as_family_fixture(t / "mmproj-f32.gguf", FIXTURES / stem / "mmproj.gguf")


def same_as_family_fixture(ours: Path, theirs: Path) -> None:
    """The checkpoint is the family fixture's model: every tensor of the two F32 mmproj files has the same bytes."""
    sys.path.insert(0, str(fam.LLAMACPP_SRC / "gguf-py"))
    import gguf  # noqa: E402

    a = {t.name: t.data.tobytes() for t in gguf.GGUFReader(str(ours)).tensors}
    b = {t.name: t.data.tobytes() for t in gguf.GGUFReader(str(theirs)).tensors}
    assert a == b, f"{ours.name} differs from {theirs}"
    log(f"{theirs.parent.name}: llama.cpp's F32 mmproj of the checkpoint = the family fixture's ({len(a)} tensors)")


def fresh(d: Path) -> Path:
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def make_internvl() -> None:
    dst = fresh(HF / "tiny-internvl")
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = Path(tmp) / "tokenizer"
        tokenizer = fam.build_internvl_tokenizer(tok_dir)
        model = fam.build_internvl(tokenizer)
        fam.save_internvl_original(model, tokenizer, tok_dir, dst)
    goldens(dst, "tiny-internvl", "qwen2")


def make_smolvlm() -> None:
    dst = fresh(HF / "tiny-smolvlm")
    tokenizer = fam.build_smolvlm_tokenizer(dst)
    model = fam.build_smolvlm(tokenizer)
    fam.save_smolvlm_hf(model, dst)
    goldens(dst, "tiny-smolvlm", "smollm")


# --------------------------------------------------------------------------------------------- this project's layout


def build_edgevl(tokenizer):
    """SiglipVisionModel + projector + LlamaForCausalLM under the checkpoint names of docs/checkpoint-format.md."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, SiglipVisionConfig, SiglipVisionModel

    class Projector(torch.nn.Module):
        def __init__(self, width: int, out: int):
            super().__init__()
            self.layer_norm = torch.nn.LayerNorm(4 * width, eps=EV_PROJ_EPS)
            self.linear_1 = torch.nn.Linear(4 * width, out)
            self.linear_2 = torch.nn.Linear(out, out)

        def forward(self, x):
            return self.linear_2(torch.nn.functional.gelu(self.linear_1(self.layer_norm(x)), approximate="tanh"))

    class EdgeVl(torch.nn.Module):
        def __init__(self):
            super().__init__()
            vc = SiglipVisionConfig(hidden_act="gelu_pytorch_tanh", num_channels=3, vision_use_head=False,
                                    attn_implementation="eager", **EV_VISION)
            tc = LlamaConfig(vocab_size=fam.SMOL_VOCAB, tie_word_embeddings=True, attention_bias=False, mlp_bias=False,
                             hidden_act="silu", rope_parameters={"rope_type": "default", "rope_theta": EV_ROPE_THETA},
                             bos_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
                             eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                             attn_implementation="eager", **EV_TEXT)
            self.vision_tower = SiglipVisionModel(vc)
            self.multi_modal_projector = Projector(vc.hidden_size, tc.hidden_size)
            self.language_model = LlamaForCausalLM(tc)
            self.vc, self.tc = vc, tc

    torch.manual_seed(0)
    model = EdgeVl()
    fam.randomise(model, seed=1503, text_prefixes=("language_model.",), text_scale=0.5)
    model.eval()
    assert model.language_model.lm_head.weight.data_ptr() == model.language_model.model.embed_tokens.weight.data_ptr()
    return model


def tower_name(key: str) -> str:
    """The checkpoint name of a state-dict key: the tower as SigLIP's hub files (and llama.cpp's tensor map) name it,
    `vision_tower.vision_model.*` (transformers 5's SiglipVisionModel drops the `vision_model.` level)."""
    tower, full = "vision_tower.", "vision_tower.vision_model."
    return key if not key.startswith(tower) or key.startswith(full) else full + key[len(tower):]


def edgevl_config(model) -> dict:
    vc, tc = model.vc, model.tc
    return {
        "architectures": ["EdgeVlForConditionalGeneration"],
        "model_type": "edgevl",
        "downsample_factor": 2,
        "projector_hidden_act": "gelu_pytorch_tanh",
        "projector_layer_norm_eps": EV_PROJ_EPS,
        "tie_word_embeddings": True,
        "text_config": {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": tc.vocab_size,
            "hidden_size": tc.hidden_size, "intermediate_size": tc.intermediate_size,
            "num_hidden_layers": tc.num_hidden_layers, "num_attention_heads": tc.num_attention_heads,
            "num_key_value_heads": tc.num_key_value_heads, "max_position_embeddings": tc.max_position_embeddings,
            "rms_norm_eps": tc.rms_norm_eps, "rope_theta": EV_ROPE_THETA, "tie_word_embeddings": True,
            "hidden_act": "silu", "bos_token_id": tc.bos_token_id, "eos_token_id": tc.eos_token_id,
        },
        "vision_config": {
            "model_type": "siglip_vision_model", "hidden_size": vc.hidden_size,
            "intermediate_size": vc.intermediate_size, "num_hidden_layers": vc.num_hidden_layers,
            "num_attention_heads": vc.num_attention_heads, "image_size": vc.image_size, "patch_size": vc.patch_size,
            "layer_norm_eps": vc.layer_norm_eps, "hidden_act": "gelu_pytorch_tanh", "num_channels": 3,
        },
    }


def make_edgevl() -> None:
    import torch
    from safetensors.torch import save_file

    import vlm  # scripts/train/vlm.py: edgevl's views (spec 2 with Pillow) and the 2x2 merge

    dst = fresh(HF / "tiny-edgevl")
    tokenizer = fam.build_smolvlm_tokenizer(dst)
    cfg_path = dst / "tokenizer_config.json"
    tcfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    tcfg["chat_template"] = CHATML
    cfg_path.write_text(json.dumps(tcfg, indent=2, sort_keys=True), encoding="utf-8")
    model = build_edgevl(tokenizer)
    sd = {tower_name(k): v.detach().contiguous() for k, v in model.state_dict().items()
          if k != "language_model.lm_head.weight"}
    save_file(sd, str(dst / "model.safetensors"), metadata={"format": "pt"})
    (dst / "config.json").write_text(json.dumps(edgevl_config(model), indent=2, sort_keys=True))
    (dst / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "size": {"height": 384, "width": 384},
                    "resample": 3}, indent=2, sort_keys=True))

    out = fresh(ROUNDTRIP)
    w, h = EV_IMAGE
    img = fam.lcg_image(w, h)
    plan = vlm.plan(w, h, "relaxed", EV_MAX_TILES)
    pixels = vlm.views(img, "relaxed", EV_MAX_TILES)
    with torch.no_grad():
        feats = model.vision_tower(pixel_values=pixels).last_hidden_state
        proj = model.multi_modal_projector(vlm.merge_2x2(feats)).reshape(-1, model.tc.hidden_size)
        before, after = EV_PROMPT.split(EV_MARKER)
        ids_a = tokenizer(before, add_special_tokens=False)["input_ids"]
        ids_b = tokenizer(after, add_special_tokens=False)["input_ids"]
        emb = model.language_model.get_input_embeddings()
        x = torch.cat([emb(torch.tensor(ids_a)), proj, emb(torch.tensor(ids_b))])[None]
        logits = model.language_model(inputs_embeds=x).logits[0]
        gen = model.language_model.generate(inputs_embeds=x, attention_mask=torch.ones(x.shape[:2], dtype=torch.long),
                                            do_sample=False, max_new_tokens=EV_GREEDY, output_logits=True,
                                            return_dict_in_generate=True, eos_token_id=None, pad_token_id=0)
    new = [int(t) for t in gen.sequences[0][-EV_GREEDY:]]
    steps = torch.cat([s.float() for s in gen.logits]).numpy()
    assert steps.argmax(axis=1).tolist() == new
    reference = {
        "made_by": "scripts/make_convert_vlm_fixtures.py",
        "producer": f"transformers {__import__('transformers').__version__}, torch {torch.__version__}, float32, eager "
        "attention; SiglipVisionModel, the 2x2 merge and projector of scripts/train/vlm.py, LlamaForCausalLM",
        "checkpoint": "tests/fixtures/hf/tiny-edgevl",
        "pre_tokenizer": "smollm",
        "image": fam.image_desc(w, h),
        "image_recipe": fam.IMAGE_RECIPE,
        "strategy": "relaxed", "max_tiles": EV_MAX_TILES, "alpha": 0.1,
        "plan": dict(zip(["cols", "rows", "canvas_w", "canvas_h", "resize_w", "resize_h", "offset_x", "offset_y",
                          "global_view", "tokens"], plan)),
        "views": int(pixels.shape[0]),
        "projected": fam.write_bin(out, "image.proj.bin", proj.numpy()),
        "projected_note": "views global first, then tiles row-major (spec 2); 196 rows each",
        "prompt": EV_PROMPT,
        "prompt_note": "raw (no chat template, no BOS: add_bos_token is false); each side of the marker tokenised "
        "alone without special tokens, the image's rows at the marker",
        "ids_before": ids_a, "ids_after": ids_b,
        "n_positions": int(logits.shape[0]),
        "logits_tail": fam.write_bin(out, "prompt.logits_tail.bin", logits[-EV_LOGITS_TAIL:].numpy()),
        "logits_tail_note": f"logits at the last {EV_LOGITS_TAIL} positions (image rows and the text after it)",
        "argmax": [int(a) for a in logits.argmax(dim=1)],
        "top1_top2_margin": fam.margins(logits.numpy()),
        "generated_ids": new,
        "generated_margins": fam.margins(steps),
        "generated_text": tokenizer.decode(new, skip_special_tokens=False, clean_up_tokenization_spaces=False),
    }
    fam.write_json(out / "reference.json", reference)
    log(f"tiny-edgevl: {reference['views']} views, {len(logits)} positions, generated {new} "
        f"(smallest margin {min(reference['generated_margins']):.4f})")


def main() -> None:
    import torch

    if not QUANTIZE.is_file():
        sys.exit(f"make_convert_vlm_fixtures: {QUANTIZE} missing; run scripts/build-llamacpp.sh")
    torch.set_num_threads(1)
    make_internvl()
    make_smolvlm()
    make_edgevl()


if __name__ == "__main__":
    main()
