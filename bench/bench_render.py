"""Render and render+tokenize throughput: turnspec vs transformers' apply_chat_template, same templates and chats.

Run: python -m bench.bench_render
"""

from __future__ import annotations

import copy
import sys

from bench.common import REPO, SHARED, median_time, table, write_result

sys.path.insert(0, str(REPO / "tests"))


def main() -> dict:
    import transformers

    import turnspec
    from helpers.conversations import SHAPES
    from helpers.corpus_models import special_tokens_for, template_files, template_id

    tok_file = SHARED / "models" / "smollm2-135m-instruct" / "tokenizer.json"
    chats = [(m, k) for name, (m, k) in sorted(SHAPES.items())
             if m and not k.get("continue_final_message") and "python_function" not in name]
    rows, ratios, results = [], [], {}
    for path in template_files():
        if path.name == "chat_template.jinja":
            hf = transformers.AutoTokenizer.from_pretrained(str(path.parent))
            spec = turnspec.load(path.parent)
        else:
            hf = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tok_file), **special_tokens_for(path))
            spec = turnspec.from_template(path.read_text(), special_tokens=special_tokens_for(path))
        template = path.read_text()
        ok = []
        for m, k in chats:  # keep only the chats both accept
            try:
                hf.apply_chat_template(copy.deepcopy(m), chat_template=template, tokenize=False, add_generation_prompt=True, **k)
                spec.render(m, add_generation_prompt=True, **k)
                ok.append((m, k))
            except Exception:
                pass

        def run_hf():
            for m, k in ok:
                hf.apply_chat_template(m, chat_template=template, tokenize=False, add_generation_prompt=True, **k)

        def run_ts():
            for m, k in ok:
                spec.render(m, add_generation_prompt=True, **k)

        t_hf = median_time(run_hf, repeats=7) / max(len(ok), 1)
        t_ts = median_time(run_ts, repeats=7) / max(len(ok), 1)
        ratio = t_hf / t_ts
        ratios.append(ratio)
        name = template_id(path)
        results[name] = {"chats": len(ok), "hf_us": t_hf * 1e6, "turnspec_us": t_ts * 1e6, "speedup": ratio}
        rows.append([name[:44], len(ok), f"{t_hf * 1e6:.0f}", f"{t_ts * 1e6:.0f}", f"{ratio:.2f}x"])

    # render + tokenize on the real SmolLM2 folder
    folder = SHARED / "models" / "smollm2-135m-instruct"
    hf = transformers.AutoTokenizer.from_pretrained(str(folder))
    spec = turnspec.load(folder)
    m = SHAPES["multi_turn_system"][0]
    t_hf = median_time(lambda: hf.apply_chat_template(m, add_generation_prompt=True, tokenize=True, return_dict=False), number=50)
    t_ts = median_time(lambda: spec.encode(m, add_generation_prompt=True, assistant_mask=False), number=50)
    results["smollm2 render+tokenize"] = {"hf_us": t_hf * 1e6, "turnspec_us": t_ts * 1e6, "speedup": t_hf / t_ts}
    rows.append(["smollm2 render+tokenize", 1, f"{t_hf * 1e6:.0f}", f"{t_ts * 1e6:.0f}", f"{t_hf / t_ts:.2f}x"])

    import statistics

    summary = {"median_render_speedup": statistics.median(ratios), "min_render_speedup": min(ratios)}
    print(table(rows, ["template", "chats", "transformers µs/chat", "turnspec µs/chat", "speedup"]))
    print(f"median render speedup over {len(ratios)} templates: {summary['median_render_speedup']:.2f}x "
          f"(min {summary['min_render_speedup']:.2f}x)")
    path = write_result("render", {"templates": results, **summary})
    print(f"wrote {path}")
    return summary


if __name__ == "__main__":
    main()
