"""Assistant-mask encoding of a synthetic SFT set: turnspec vs transformers' return_assistant_tokens_mask.

transformers can only mask templates that carry `{% generation %}`; turnspec masks every template, with the tag
where present and with its universal method (prefix rendering) elsewhere. No template in ../shared/corpus has the
tag, so the tagged case uses a synthetic ChatML template with it (as SmolLM3-style templates do). Per template:
- synthetic ChatML with the tag: transformers, turnspec via the tag, and turnspec's universal method forced, on the
  same conversations; the masks are checked equal to transformers' first.
- SmolLM2 (no tag): transformers cannot give a mask; turnspec's universal mask is timed against transformers'
  plain render+tokenize, the least a mask costs there.
Each figure is the median of several passes over the set. Run: python -m bench.bench_mask [--n 10000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from bench.common import SHARED, table, write_result

# Synthetic: ChatML with {% generation %} around what the assistant writes, its end-of-turn token included.
SYNTHETIC_CHATML_WITH_GENERATION = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

WORDS = ("the model answers every question about rivers, stars and numbers with care while users ask for "
         "recipes code poems and short summaries of long documents in plain words").split()


def synthetic_sft_set(n: int, seed: int = 0) -> list[list[dict[str, str]]]:
    """`n` conversations: an optional system prompt, then 1-4 user/assistant exchanges of 3-40 random words."""
    rnd = random.Random(seed)

    def text() -> str:
        return " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(3, 40)))

    out = []
    for _ in range(n):
        chat = [{"role": "system", "content": text()}] if rnd.random() < 0.5 else []
        for _ in range(rnd.randint(1, 4)):
            chat += [{"role": "user", "content": text()}, {"role": "assistant", "content": text()}]
        out.append(chat)
    return out


def passes(fn, chats, repeats: int) -> float:
    """Median seconds per conversation over `repeats` passes of `fn` over `chats`."""
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for chat in chats:
            fn(chat)
        samples.append((time.perf_counter() - t0) / len(chats))
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="assistant-mask encoding benchmark")
    parser.add_argument("--n", type=int, default=10_000, help="conversations in the synthetic SFT set")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import transformers

    import turnspec

    folder = SHARED / "models" / "smollm2-135m-instruct"
    tagged = SYNTHETIC_CHATML_WITH_GENERATION
    chats = synthetic_sft_set(args.n)
    rows, results = [], {}

    # The tagged template on the SmolLM2 tokenizer (the mask logic is what is timed).
    hf = transformers.AutoTokenizer.from_pretrained(str(folder))
    ts = turnspec.from_template(tagged, name="synthetic-chatml-generation", special_tokens={"eos_token": "<|im_end|>"},
                                tokenizer=turnspec.load(folder).vocab.tokenizer)

    def hf_mask(chat):
        return hf.apply_chat_template(chat, chat_template=tagged, tokenize=True, return_dict=True,
                                      return_assistant_tokens_mask=True)["assistant_masks"]

    def ts_tag(chat):
        return ts.encode(chat, assistant_mask=True).assistant_mask

    def ts_universal(chat):  # naming the template explicitly makes turnspec skip the tag and use its universal method
        return ts.encode(chat, assistant_mask=True, chat_template=tagged).assistant_mask

    mismatches = sum(hf_mask(c) != ts_tag(c) for c in chats[:200])
    universal_mismatches = sum(hf_mask(c) != ts_universal(c) for c in chats[:200])
    t_hf = passes(hf_mask, chats, args.repeats)
    t_tag = passes(ts_tag, chats, args.repeats)
    t_uni = passes(ts_universal, chats, args.repeats)
    results["synthetic_chatml_generation"] = {"transformers_us": t_hf * 1e6, "turnspec_tag_us": t_tag * 1e6, "turnspec_universal_us": t_uni * 1e6,
                        "tag_speedup": t_hf / t_tag, "universal_speedup": t_hf / t_uni, "mask_mismatches_first_200": mismatches,
                        "universal_mask_mismatches_first_200": universal_mismatches}
    rows.append(["synthetic ChatML + {% generation %}", "transformers mask", f"{t_hf * 1e6:.0f}", "1.00x"])
    rows.append(["", "turnspec, tag", f"{t_tag * 1e6:.0f}", f"{t_hf / t_tag:.2f}x"])
    rows.append(["", "turnspec, universal", f"{t_uni * 1e6:.0f}", f"{t_hf / t_uni:.2f}x"])

    smol = turnspec.load(folder)
    t_plain = passes(lambda c: hf.apply_chat_template(c, tokenize=True, return_dict=False), chats, args.repeats)
    t_smol = passes(lambda c: smol.encode(c, assistant_mask=True).assistant_mask, chats, args.repeats)
    results["smollm2"] = {"transformers_render_tokenize_us": t_plain * 1e6, "turnspec_universal_us": t_smol * 1e6,
                          "ratio_vs_plain_encode": t_plain / t_smol}
    rows.append(["SmolLM2 (no tag)", "transformers, no mask possible", f"{t_plain * 1e6:.0f}", "1.00x"])
    rows.append(["", "turnspec, universal mask", f"{t_smol * 1e6:.0f}", f"{t_plain / t_smol:.2f}x"])

    print(f"{args.n} synthetic conversations, median of {args.repeats} passes; masks equal to transformers' on the first "
          f"200: tag {200 - mismatches}/200, universal {200 - universal_mismatches}/200")
    print(table(rows, ["template", "method", "µs/conversation", "vs transformers"]))
    path = write_result("mask", {"conversations": args.n, "repeats": args.repeats, **results})
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
