#!/usr/bin/env python3
"""Image-token counts of llama.cpp's llama-mtmd-cli on tests/fixtures/tiny-smolvlm/, beside transformers' (issue 13:
"SmolVLM: llama-mtmd-cli on the same files gives the same image-token count"). Run by hand, not in CI:

    /root/venv-ref/bin/python scripts/smolvlm_mtmd_token_counts.py

Needs llama-mtmd-cli and llama-tokenize from scripts/build-llamacpp.sh (this script does not build them) and the
fixtures of scripts/make_family_fixtures.py. For each image size it writes the LCG image of
tests/fixtures/README.md as a PNG (lossless: llama.cpp reads exactly the bytes transformers gets) and runs

    llama-mtmd-cli -m model.gguf --mmproj mmproj.gguf --image IMG.png -p "What is in the image?" -n 1 --temp 0 -t 2 -v

From its log it takes the tile grid (`grid size: C x R (N tiles) + overview`), the image embedding positions (the
`n_tokens_batch` of every `decoding image batch`), the prompt it rendered (`formatted_chat.prompt:`) and the
prompt tokens it evaluated (`prompt eval time = ... / N tokens`). The placeholder length is that total minus
llama-tokenize's count of the text around the media marker (each side tokenized on its own, as mtmd does).
Transformers' side: Idefics3Processor (the fixture's settings) on the same image with the same user text, the
number of `<image>` ids and the placeholder length (the ids from the first to the last <fake_token_around_image>).

Writes tests/fixtures/tiny-smolvlm/mtmd_token_counts.json and prints a table.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import make_family_fixtures as fam
from llamacpp_goldens import write_json

FIX = fam.FIXTURES / "tiny-smolvlm"
SIZES = [(1000, 250), (512, 512), (640, 480), (1000, 271), (250, 1000), (1920, 1080), (64, 48), (777, 1333), (4000, 300)]
USER_TEXT = "What is in the image?"
MARKER = "<__media__>"


def run_mtmd(png: Path) -> dict:
    """One run; repeated (up to 3 times) when a log line is missing: llama.cpp's logger writes from a worker thread
    and once lost the last lines at exit here."""
    for _ in range(3):
        out = run_mtmd_once(png)
        if out["grid"] and out["prompt"] is not None and out["prompt_tokens"] is not None:
            return out
    return out


def run_mtmd_once(png: Path) -> dict:
    exe = fam.LLAMACPP_BIN / "llama-mtmd-cli"
    cmd = [str(exe), "-m", str(FIX / "model.gguf"), "--mmproj", str(FIX / "mmproj.gguf"), "--image", str(png),
           "-p", USER_TEXT, "-n", "1", "--temp", "0", "-t", "2", "-v"]
    res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, check=True)
    log = res.stderr.decode("utf-8", "replace") + res.stdout.decode("utf-8", "replace")
    grid = re.search(r"grid size: (\d+) x (\d+) \((\d+) tiles\) \+ overview", log)
    batches = [int(n) for n in re.findall(r"decoding image batch \d+/\d+, n_tokens_batch = (\d+)", log)]
    # log lines start with a timestamp and a level letter ("0.00.877.377 D "); the prompt itself spans lines
    prompt = re.search(r"formatted_chat\.prompt: (.*?)\n(?=\d+\.\d+\.\d+\.\d+ [A-Z] )", log, re.S)
    evals = re.findall(r"prompt eval time =\s*[\d.]+ ms /\s*(\d+) tokens", log)
    return {
        "grid": [int(grid.group(1)), int(grid.group(2))] if grid else None,
        "image_positions": sum(batches),
        "image_batches": batches,
        "prompt": prompt.group(1) if prompt else None,
        "prompt_tokens": int(evals[-1]) if evals else None,
        "log": log,
    }


def main() -> None:
    import torch

    torch.set_num_threads(1)
    for tool in ("llama-mtmd-cli", "llama-tokenize"):
        if not (fam.LLAMACPP_BIN / tool).is_file():
            sys.exit(f"{fam.LLAMACPP_BIN / tool} missing: run scripts/build-llamacpp.sh")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = fam.build_smolvlm_tokenizer(Path(tmp) / "tok")
        processor = fam.smolvlm_processor(tokenizer)
        image_id = tokenizer.convert_tokens_to_ids("<image>")
        fake_id = tokenizer.convert_tokens_to_ids("<fake_token_around_image>")
        messages = [fam.user(fam.img_part(), fam.txt(USER_TEXT))]
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        for w, h in SIZES[: int(sys.argv[1])] if len(sys.argv) > 1 else SIZES:
            img = fam.lcg_image(w, h)
            png = Path(tmp) / f"{w}x{h}.png"
            img.save(png)
            enc = processor(text=[text], images=[[img]], return_tensors="pt")
            ids = [int(t) for t in enc["input_ids"][0]]
            fakes = [i for i, t in enumerate(ids) if t == fake_id]
            layout = fam.smolvlm_layout(processor.image_processor, [img], {})[0]
            hf = {
                "grid": layout["grid"],
                "views": layout["views"],
                "image_tokens": sum(1 for t in ids if t == image_id),
                "placeholder_tokens": fakes[-1] - fakes[0] + 1,
                "prompt_tokens": len(ids),
            }
            lc = run_mtmd(png)
            placeholder = None
            if lc["prompt"] is not None and lc["prompt_tokens"] is not None and MARKER in lc["prompt"]:
                before, after = lc["prompt"].split(MARKER, 1)
                n_text = len(fam.llama_tokenize(FIX / "model.gguf", before) or []) if before else 0
                n_text += len(fam.llama_tokenize(FIX / "model.gguf", after) or []) if after else 0
                placeholder = lc["prompt_tokens"] - n_text
            row = {
                "image": fam.image_desc(w, h),
                "transformers": hf,
                "llamacpp": {
                    "grid": lc["grid"],
                    "views": (lc["grid"][0] * lc["grid"][1] + 1) if lc["grid"] else None,
                    "image_tokens": lc["image_positions"],
                    "placeholder_tokens": placeholder,
                    "prompt_tokens": lc["prompt_tokens"],
                    "prompt": lc["prompt"],
                },
            }
            row["same_image_tokens"] = hf["image_tokens"] == lc["image_positions"]
            row["same_placeholder_tokens"] = placeholder == hf["placeholder_tokens"]
            row["same_grid"] = lc["grid"] == hf["grid"]
            rows.append(row)
            print(f"{w:5d}x{h:<5d} grid HF {hf['grid']} llama.cpp {lc['grid']}  image tokens HF {hf['image_tokens']:5d} "
                  f"llama.cpp {lc['image_positions']:5d}  placeholder HF {hf['placeholder_tokens']:5d} "
                  f"llama.cpp {placeholder}  prompt HF {hf['prompt_tokens']} llama.cpp {lc['prompt_tokens']}",
                  flush=True)
    doc = {
        "made_by": "scripts/smolvlm_mtmd_token_counts.py",
        "command": f"llama-mtmd-cli -m model.gguf --mmproj mmproj.gguf --image IMG.png -p \"{USER_TEXT}\" -n 1 --temp 0 "
        "-t 2 -v (llama.cpp of the llama-cpp-python 0.3.36 sdist)",
        "transformers": "Idefics3Processor + Idefics3ImageProcessorPil with the fixture's settings, messages = user "
        f"[image, text {USER_TEXT!r}], add_generation_prompt",
        "fields": {
            "grid": "[cols, rows] of 512 tiles (transformers [0, 0] = not split)",
            "image_tokens": "image embedding positions: transformers' count of <image> ids; llama.cpp's sum of "
            "n_tokens_batch over its image batches",
            "placeholder_tokens": "all tokens standing for the image (fake/row/global tokens, newlines, <image>s): "
            "transformers from the first to the last <fake_token_around_image>; llama.cpp its evaluated prompt tokens "
            "minus llama-tokenize's tokens of the text before and after the media marker",
            "prompt_tokens": "whole prompt (they differ by the text: llama.cpp renders the user content as one text "
            "part '<__media__>What is...', so its template writes 'User: ' with a space)",
        },
        "cases": rows,
        "all_image_tokens_equal": all(r["same_image_tokens"] for r in rows),
        "all_placeholders_equal": all(r["same_placeholder_tokens"] for r in rows),
        "all_grids_equal": all(r["same_grid"] for r in rows),
    }
    write_json(FIX / "mtmd_token_counts.json", doc)


if __name__ == "__main__":
    main()
