"""Where `turnspec encode`'s time goes beyond the tokenizer, per conversation (issue 17's performance section).

Same data and model as bench_encode (SmolLM2, synthetic SFT set, tokenizer thread pool off). Each part is timed
alone over the whole set, the parts taking turns pass after pass (a busy shared machine slows them alike), in CPU
time of the process (`time.process_time`: waiting for a core is not counted). The last two rows show the
largest cost that no Python function accounts for: the tokenizer runs slower when a render runs between two of
its calls than in a loop of its own (its tables are evicted from the CPU caches), and not when a batch is rendered
first and tokenized in one call.
Run: python -m bench.bench_encode_parts [--n 2000] [--repeats 7]
"""

from __future__ import annotations

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from bench.bench_mask import synthetic_sft_set  # noqa: E402
from bench.common import SHARED, table, write_result  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="where encode's time goes")
    parser.add_argument("--n", type=int, default=2000, help="conversations")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=64, help="rows rendered before one tokenizer call")
    args = parser.parse_args(argv)

    from turnspec.encoding import spans_to_mask, universal_spans
    from turnspec.training import ChatEncoder

    encoder = ChatEncoder(str(SHARED / "models" / "smollm2-135m-instruct"))
    spec, vocab = encoder.spec, encoder.spec.vocab
    tokenizer = vocab.tokenizer
    chats = synthetic_sft_set(args.n, seed=1)
    texts = [spec.render(c) for c in chats]
    tokenized = [vocab.encode_with_offsets(t) for t in texts]
    spans = [universal_spans(spec, c, t, {})[0] for c, t in zip(chats, texts)]
    encodings = [spec.encode(c) for c in chats]

    def over(fn, items):
        def run():
            for x in items:
                fn(x)  # results dropped at once, as the tokenizer's are in the floor
        return run

    def batched():
        for i in range(0, len(chats), args.batch):
            tokenizer.encode_batch_fast([spec.render(c) for c in chats[i:i + args.batch]], add_special_tokens=False)

    parts = {
        "tokenizer alone, tokenizer.encode (the floor)": over(lambda t: tokenizer.encode(t, add_special_tokens=False),
                                                              texts),
        "turnspec's tokenizer call (vocab.encode_with_offsets)": over(vocab.encode_with_offsets, texts),
        "render": over(spec.render, chats),
        "mask spans (universal_spans)": over(lambda ct: universal_spans(spec, ct[0], ct[1], {}),
                                             list(zip(chats, texts))),
        "spans to token mask": over(lambda s: spans_to_mask(s[0], s[1][1], len(s[1][0])), list(zip(spans, tokenized))),
        "labels from the mask": over(lambda e: [t if m else -100 for t, m in zip(e.ids, e.assistant_mask)], encodings),
        "spec.encode": over(spec.encode, chats),
        "ChatEncoder.encode_row (what bench_encode times)": over(lambda c: encoder.encode_row({"messages": c}), chats),
        "render + tokenize, one row at a time": over(lambda c: vocab.encode_with_offsets(spec.render(c)), chats),
        f"render {args.batch} rows, then tokenize them in one call": batched,
    }
    samples: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(args.repeats):
        for name, fn in parts.items():
            t0 = time.process_time()
            fn()
            samples[name].append((time.process_time() - t0) / len(chats) * 1e6)
    us = {name: statistics.median(s) for name, s in samples.items()}
    floor = us["tokenizer alone, tokenizer.encode (the floor)"]
    rows = [[name, f"{v:,.1f}", f"{v / floor:.2f}"] for name, v in us.items()]
    print(f"{args.n} conversations, SmolLM2; CPU µs per conversation, medians of {args.repeats} passes")
    print(table(rows, ["part", "µs/conversation", "x floor"]))
    row = us["ChatEncoder.encode_row (what bench_encode times)"]
    print(f"encode_row runs at {floor / row:.0%} of the tokenizer-alone rate")
    result = {"conversations": args.n, "repeats": args.repeats, "cpu_us_per_conversation": us,
              "encode_row_share_of_floor_rate": floor / row}
    print(f"wrote {write_result('encode_parts', result)}")
    return result


if __name__ == "__main__":
    main()
