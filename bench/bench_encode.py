"""Training-data encoding: `turnspec encode` vs transformers' `apply_chat_template(return_assistant_tokens_mask=True)`.

transformers masks only templates that carry `{% generation %}`; no official template does. The reference is
therefore SmolLM2's real template with the tag added around what the assistant writes (the tagged copy the tests
check renders byte for byte like the original), and turnspec encodes with the real, untagged template: render +
tokenize + its universal mask. Same conversations, same tokenizer; the masks are checked equal first.

Per core: both run in one process with the tokenizer's thread pool off (RAYON_NUM_THREADS=1). Scaling:
`turnspec encode` on a JSON Lines file of the same conversations with 1..N processes (N = the core count),
end to end (JSON parsing, Parquet writing). Medians of several passes.
Run: python -m bench.bench_encode [--n 3000] [--repeats 5]
"""

from __future__ import annotations

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from bench.bench_mask import passes, synthetic_sft_set  # noqa: E402
from bench.common import SHARED, table, write_result  # noqa: E402

# SmolLM2's template, tagged (as in tests/test_mask_meaning.py): one expression replaced.
EXPRESSION = "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
TAGGED = ("{% if message['role'] == 'assistant' %}{{'<|im_start|>assistant\n'}}{% generation %}"
          "{{message['content'] + '<|im_end|>'}}{% endgeneration %}{{'\n'}}{% else %}" + EXPRESSION + "{% endif %}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="training-data encoding benchmark")
    parser.add_argument("--n", type=int, default=3000, help="conversations")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--file-n", type=int, default=20000,
                        help="conversations in the file encoded by `turnspec encode` (large enough that loading the "
                             "model in each process is not what is measured)")
    args = parser.parse_args(argv)

    import transformers

    from turnspec.encode_run import encode_file
    from turnspec.training import ChatEncoder

    folder = SHARED / "models" / "smollm2-135m-instruct"
    chats = synthetic_sft_set(args.n, seed=1)
    source = (folder / "chat_template.jinja").read_text()
    assert EXPRESSION in source, "SmolLM2's template changed: update the tagged copy"
    hf = transformers.AutoTokenizer.from_pretrained(str(folder))
    hf.chat_template = source.replace(EXPRESSION, TAGGED)
    encoder = ChatEncoder(str(folder))
    assert not encoder.spec.has_generation_tag

    def reference(chat):
        return hf.apply_chat_template(chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)

    def ours(chat):
        return encoder.encode_row({"messages": chat})

    same = 0
    for chat in chats[:200]:
        ref, row = reference(chat), ours(chat)
        same += ref["input_ids"] == row.input_ids and ref["assistant_masks"] == row.assistant_masks
    hf_s = passes(reference, chats, args.repeats)
    ts_s = passes(ours, chats, args.repeats)
    # the floor both share: the Rust tokenizer alone on the rendered text (no render, no mask)
    texts = {id(c): encoder.spec.render(c) for c in chats}
    tokenizer = encoder.spec.vocab.tokenizer
    tok_s = passes(lambda c: tokenizer.encode(texts[id(c)], add_special_tokens=False), chats, args.repeats)

    cores = os.cpu_count() or 1
    scaling: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "chats.jsonl"
        data.write_text("".join(json.dumps({"messages": c}) + "\n" for c in synthetic_sft_set(args.file_n, seed=2)))
        for procs in sorted({1, cores}):
            samples = []
            for _ in range(max(2, args.repeats // 2)):  # each run loads the model in every process, as the CLI does
                t0 = time.perf_counter()
                report = encode_file(data, Path(tmp) / "out.parquet", ChatEncoder(str(folder)), num_proc=procs)
                samples.append(report.rows_read / (time.perf_counter() - t0))
            scaling[procs] = statistics.median(samples)

    rows = [["transformers apply_chat_template, tagged copy", f"{1 / hf_s:,.0f}", "1.00x", "-"],
            ["turnspec encode (universal mask), in process", f"{1 / ts_s:,.0f}", f"{hf_s / ts_s:.2f}x", "-"],
            ["(floor) tokenizer alone on the rendered text", f"{1 / tok_s:,.0f}", f"{hf_s / tok_s:.2f}x", "-"]]
    for procs, rate in scaling.items():
        eff = rate / (procs * scaling[1])
        rows.append([f"turnspec encode file, {procs} process{'es' if procs > 1 else ''}", f"{rate:,.0f}",
                     f"{rate * hf_s / procs:.2f}x per core", f"{eff:.0%}"])
    print(f"{args.n} synthetic conversations (1-4 exchanges, half with a system prompt), SmolLM2 tokenizer; "
          f"masks equal to transformers' on {same}/200; medians of {args.repeats} passes")
    print(table(rows, ["what", "conversations/s", "vs transformers", "scaling efficiency"]))
    result = {
        "conversations": args.n, "repeats": args.repeats, "masks_equal_first_200": same,
        "transformers_conv_per_s": 1 / hf_s, "turnspec_conv_per_s": 1 / ts_s, "speedup_per_core": hf_s / ts_s,
        "tokenizer_alone_conv_per_s": 1 / tok_s, "tokenizer_share_of_turnspec": tok_s / ts_s, "file_rows": args.file_n,
        "encode_file_conv_per_s": {str(k): v for k, v in scaling.items()},
        "scaling_efficiency": {str(k): v / (k * scaling[1]) for k, v in scaling.items()},
    }
    print(f"wrote {write_result('encode', result)}")
    return result


if __name__ == "__main__":
    main()
