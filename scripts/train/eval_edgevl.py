#!/usr/bin/env python3
"""Held-out evaluation of the demo model through edgevl itself (docs/training.md).

    /root/venv-ref/bin/python scripts/train/eval_edgevl.py --mmproj models/edgevl-demo/mmproj-q8_0.gguf \\
        [--per-task 500] [--strategy relaxed --max-tiles 9] [--baseline] [--torch answers.json] -o result.json

The held-out questions are the first `--per-task` questions of each task's `test` split (all the
questions of an image, image by image). Each is answered greedily (`temperature 0`, at most
`--max-new` tokens) by `edgevl serve` (one process; the KV cache keeps the shared prefix of the
questions about one image, which is what `edgevl run --temp 0` computes again from scratch;
`--check-run K` re-asks the first K questions with `edgevl run` and requires equal answers).
`--baseline` also asks every question with no image (the text-only baseline). Scores are exact
matches after `vqa_data.normalise`; the majority answer of each question type on the training
split is reported too (what a model that ignores the image could score at best per type).
With `--torch FILE` (answers of the PyTorch model, `answer_torch.py`) the share of equal
answers is reported.
"""

import argparse
import base64
import signal
import collections
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vqa_data as data  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CACHE = os.environ.get("EDGEVL_CACHE", os.path.expanduser("~/.cache/edgevl"))


def heldout(per_task, split="test"):
    """[(task, index, image, [qa...])] covering at least `per_task` questions a task."""
    out = []
    for task in data.TASKS:
        n, i = 0, 0
        while n < per_task:
            img, qs, _ = data.sample(split, task, i)
            qs = qs[:per_task - n]
            out.append((task, i, img, qs))
            n += len(qs)
            i += 1
    return out


def majority(n_images=400):
    """The most frequent training answer of each question type."""
    counts = collections.defaultdict(collections.Counter)
    for task in data.TASKS:
        for i in range(n_images):
            for q in data.sample("train", task, i)[1]:
                counts[q["type"]][data.normalise(q["answer"])] += 1
    return {t: c.most_common(1)[0][0] for t, c in counts.items()}


class Server:
    def __init__(self, edgevl, model, mmproj, strategy, max_tiles, log, threads):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        cmd = [edgevl, "serve", "-m", model, "--port", str(self.port), "--host", "127.0.0.1", "-t", str(threads)]
        if mmproj:
            cmd += ["--mmproj", mmproj, "--strategy", strategy, "--max-tiles", str(max_tiles)]
        self.proc = subprocess.Popen(cmd, stderr=open(log, "a"), stdout=subprocess.DEVNULL)
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2)
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"edgevl serve exited; see {log}")
                time.sleep(0.5)
        raise RuntimeError("edgevl serve did not come up")

    def ask(self, question, png_b64, max_new):
        content = [{"type": "text", "text": question}]
        if png_b64 is not None:
            content.insert(0, {"type": "image_url", "image_url": {"url": "data:image/png;base64," + png_b64}})
        body = {"messages": [{"role": "user", "content": content}], "temperature": 0, "max_tokens": max_new}
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/v1/chat/completions",
                                     data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=3600) as r:
            return json.load(r)["choices"][0]["message"]["content"]

    def close(self):
        self.proc.terminate()
        self.proc.wait()


def png_b64(img):
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def ask_all(a):
    """Every held-out question through `edgevl serve` (and the `edgevl run` spot checks)."""
    items = heldout(a.per_task)
    log = a.out + ".serve.log"
    rows = []
    t0 = time.time()
    srv = Server(a.edgevl, a.model, a.mmproj, a.strategy, a.max_tiles, log, a.threads)
    earlier = {}
    if a.baseline_from:
        earlier = {(r["task"], r["index"], r["question"]): r["text_only"] for r in json.load(open(a.baseline_from))["rows"]}
    try:
        for task, i, img, qs in items:
            b64 = png_b64(img)
            for q in qs:
                r = {"task": task, "index": i, "size": list(img.size), "type": q["type"], "question": q["question"],
                     "answer": q["answer"]}
                if a.mmproj:
                    r["edgevl"] = srv.ask(q["question"], b64, a.max_new)
                if (task, i, q["question"]) in earlier:
                    r["text_only"] = earlier[(task, i, q["question"])]
                elif a.baseline or not a.mmproj:
                    r["text_only"] = srv.ask(q["question"], None, a.max_new)
                rows.append(r)
            print(f"{len(rows)} questions, {time.time() - t0:.0f} s", file=sys.stderr, end="\r")
    finally:
        srv.close()
    run_checks = []
    tmp = a.out + ".check.png"
    for (task, i, img, qs) in (items[:a.check_run] if a.mmproj else []):
        img.save(tmp)
        out = subprocess.check_output(
            [a.edgevl, "run", "-m", a.model, "--mmproj", a.mmproj, "--image", tmp, "-p", qs[0]["question"], "--temp",
             "0", "-n", str(a.max_new), "-t", str(a.threads), "--strategy", a.strategy, "--max-tiles", str(a.max_tiles)],
            stderr=subprocess.DEVNULL).decode()
        served = next(r["edgevl"] for r in rows if r["task"] == task and r["index"] == i)
        run_checks.append({"question": qs[0]["question"], "run": out.strip(), "serve": served.strip()})
    if os.path.exists(tmp):
        os.remove(tmp)
    return rows, run_checks, round(time.time() - t0, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mmproj", help="the vision model (without it only the text-only baseline is asked)")
    ap.add_argument("--model", default=os.path.join(CACHE, "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--edgevl", default=os.path.join(ROOT, "target", "release", "edgevl"))
    ap.add_argument("--per-task", type=int, default=500)
    ap.add_argument("--strategy", default="relaxed")
    ap.add_argument("--max-tiles", type=int, default=9)
    ap.add_argument("--max-new", type=int, default=12)
    ap.add_argument("--baseline", action="store_true", help="also ask every question with no image")
    ap.add_argument("--baseline-from", help="take the text-only answers from an earlier result file")
    ap.add_argument("--torch", help="the PyTorch model's answers (answer_torch.py) to compare with")
    ap.add_argument("--check-run", type=int, default=3, help="questions re-asked with `edgevl run` (0: none)")
    ap.add_argument("--threads", type=int, default=1, help="edgevl's threads (-t)")
    ap.add_argument("--rescore", help="ask nothing: score the answers of an earlier result file again (e.g. with --torch)")
    ap.add_argument("-o", "--out", required=True)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so a stopped evaluation stops its server too
    if a.rescore:
        earlier_result = json.load(open(a.rescore))
        rows, run_checks = earlier_result["rows"], earlier_result["summary"]["run_checks"]
        seconds = earlier_result["summary"]["seconds"]
    else:
        rows, run_checks, seconds = ask_all(a)
    maj = majority()
    summary = {"mmproj": a.mmproj, "strategy": a.strategy, "max_tiles": a.max_tiles, "per_task": a.per_task,
               "seconds": seconds, "run_equals_serve": all(c["run"] == c["serve"] for c in run_checks),
               "run_checks": run_checks, "tasks": {}}
    torch_ans = None
    if a.torch:
        tj = json.load(open(a.torch))
        torch_ans = {(r["task"], r["index"], r["question"]): r["torch"] for r in tj["rows"]}
    for task in data.TASKS + ("all",):
        rs = [r for r in rows if task in ("all", r["task"])]
        ok = lambda key, rs=rs: sum(data.normalise(r[key]) == data.normalise(r["answer"]) for r in rs) / len(rs)
        loose = lambda key: sum(data.lenient(r[key], r["answer"], r["type"]) for r in rs) / len(rs)
        s = {"questions": len(rs),
             "majority_answer": sum(maj.get(r["type"]) == data.normalise(r["answer"]) for r in rs) / len(rs)}
        if a.mmproj:
            s["accuracy"] = ok("edgevl")
            s["accuracy_lenient"] = loose("edgevl")
            s["by_type"] = {t: round(ok("edgevl", [r for r in rs if r["type"] == t]), 3)
                            for t in sorted({r["type"] for r in rs})}
        if all("text_only" in r for r in rs):
            s["text_only"] = ok("text_only")
            s["text_only_lenient"] = loose("text_only")
            s["text_only_by_type"] = {t: round(ok("text_only", [r for r in rs if r["type"] == t]), 3)
                                      for t in sorted({r["type"] for r in rs})}
        if torch_ans is not None:
            pairs = [(r["edgevl"].strip(), torch_ans.get((r["task"], r["index"], r["question"]))) for r in rs]
            pairs = [(e, t) for e, t in pairs if t is not None]
            s["equal_to_torch"] = sum(e == t.strip() for e, t in pairs) / max(1, len(pairs))
            s["compared_to_torch"] = len(pairs)
        summary["tasks"][task] = s
    json.dump({"summary": summary, "rows": rows}, open(a.out, "w"), indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
