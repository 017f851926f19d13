"""generation: gpt's key/value cache speed-up at context 256, and beam search (width 5) vs greedy.

The model is the Shakespeare char GPT of ``experiments/shakespeare_char_gpt.yaml`` (max_len 256),
briefly trained through lmbench's real loop so that its greedy text never hits EOS (EOS is never
a target in text) and every decode runs the full length. Decoding starts from a 1-token prompt and
generates 256 tokens, so the context grows to 256. Timings alternate A and B (``common.interleaved``);
the result is the median per-pair ratio. Targets (issue 5): cache >= 5x faster than recomputing the
context each step; beam 5 <= 6x the time of greedy.
"""

from __future__ import annotations

import common

CACHE_TARGET, BEAM_TARGET = 5.0, 6.0


def main() -> None:
    args = common.parse_args(__doc__)
    common.setup(args)
    import torch

    from lmbench.data import prepare_data
    from lmbench.generate import beam_search, decode, settings

    n_new = 32 if args.smoke else 256
    spec = common.bench_spec("model.config.max_len=256", "train.eval_interval=1000000000",
                             "train.checkpoint_interval=1000000000")
    data = prepare_data(spec.data)
    trainer = common.make_trainer(spec, data)
    common.say("training the model briefly (real loop)")
    common.run_more(trainer, 20 if args.smoke else 150)
    model = trainer.model.eval()
    prompt = torch.tensor([[data.tokenizer.encode("\n")[0]]])  # (1, 1)
    greedy, beam = settings(max_tokens=n_new), settings(strategy="beam", beams=5, max_tokens=n_new)
    out = {}

    def run(name, fn):
        def go():
            out[name] = fn()
        return lambda: common.timed(go)

    pairs = 1 if args.smoke else 5
    nocache, cache = common.interleaved(pairs, run("nocache", lambda: decode(model, prompt, greedy, use_cache=False)),
                                        run("cache", lambda: decode(model, prompt, greedy)), "no-cache/cache")
    beams, greedy_t = common.interleaved(pairs, run("beam", lambda: beam_search(model, prompt, beam)[0]),
                                         run("greedy", lambda: decode(model, prompt, greedy)), "beam5/greedy")
    batch = prompt.expand(8, 1)  # 8 prompts at once, as the BLEU evaluation decodes them
    nocache8, cache8 = common.interleaved(pairs, lambda: common.timed(lambda: decode(model, batch, greedy, use_cache=False)),
                                          lambda: common.timed(lambda: decode(model, batch, greedy)), "batch 8")
    speedup, beam_ratio = common.ratio_stats(nocache, cache), common.ratio_stats(beams, greedy_t)
    speedup8 = common.ratio_stats(nocache8, cache8)
    same = torch.equal(out["cache"], out["nocache"])
    length = out["cache"].shape[1]
    passed = speedup["median"] >= CACHE_TARGET and beam_ratio["median"] <= BEAM_TARGET and same
    common.emit(common.result(
        "generation", value=speedup["median"], unit="x", target=f"cache >= {CACHE_TARGET}x; beam 5 <= {BEAM_TARGET}x greedy",
        passed=passed,
        summary=f"KV cache {speedup['median']:.1f}x faster than recomputing ({length} tokens, context up to {length}: "
                f"{1e3 * min(cache) / length:.2f} vs {1e3 * min(nocache) / length:.2f} ms/token; batch of 8: "
                f"{speedup8['median']:.1f}x); beam 5 "
                f"{beam_ratio['median']:.2f}x greedy; cached == uncached output: {same}",
        details={"cache_speedup": speedup, "cache_speedup_batch8": speedup8, "beam5_over_greedy": beam_ratio, "cache_s": cache, "nocache_s": nocache,
                 "beam_s": beams, "greedy_s": greedy_t, "generated_tokens": length, "identical": same,
                 "model": {"arch": model.arch, **{k: getattr(model.config, k) for k in ("d_model", "n_layers", "n_heads",
                                                                                        "max_len")}},
                 "torch_threads": torch.get_num_threads()},
        smoke=args.smoke,
    ))


if __name__ == "__main__":
    main()
