"""Tests of helpers/appA_language_model/: the decoder and its caches, generation, the corpus, training, token
costs, attention, the decode step in each format, batching schedules, exercises and charts."""

from __future__ import annotations

import math

import pytest
import torch
from matplotlib.figure import Figure

from helpers.core.roofs import Roofs

from helpers.appA_language_model.attention import (
    attention_by_hand, attention_fused, attention_inputs, operators_and_peak, score_matrix_bytes,
)
from helpers.appA_language_model.batching import (
    continuous_batches, request_lengths, static_batches, step_time_at,
)
from helpers.appA_language_model.corpus import (
    HELD_OUT_EVERY, MODULES, docstring_corpus, module_docstrings, random_windows, text_of, tokens_of,
)
from helpers.appA_language_model.decode_step import WEIGHT_FORMATS, decode_call, decoder_in_format, matmul_ms_profiled
from helpers.appA_language_model.exercises import check_cached_tokens, check_ridge_batch, check_step_prediction
from helpers.appA_language_model.generate import (
    generate_cached, generate_recomputing, generation_clock, generation_report, token_times_s,
)
from helpers.appA_language_model.kv_profile import positions_per_step
from helpers.appA_language_model.model import DecoderConfig, KVCache, causal_mask, decoder
from helpers.appA_language_model.plots import plot_attention, plot_batching, plot_decode_against_bytes, plot_token_times
from helpers.appA_language_model.token_costs import (
    SERVED_MODELS, ServedModel, decode_cost, matrix_weights, prefill_cost,
)
from helpers.appA_language_model.training import (
    Recipe, agreement, bits_per_byte, paired_loss_change, learning_rate_at, recipe_key, train_decoder, trained_decoder,
    validation_loss, validation_windows,
)

TINY = DecoderConfig(context=32, width=32, layers=2, heads=2)


@pytest.fixture(scope="module")
def tiny():
    return decoder(TINY)


@pytest.fixture(scope="module")
def corpus():
    return docstring_corpus()


def test_config_rejects_a_width_that_heads_do_not_divide():
    with pytest.raises(ValueError, match="multiple of heads"):
        DecoderConfig(width=30, heads=4)


def test_cached_logits_equal_the_full_pass(tiny):
    tokens = torch.randint(0, 256, (2, 12))
    full = tiny(tokens)
    cache = KVCache(TINY, 2)
    with torch.no_grad():
        prefix = tiny(tokens[:, :8], cache)
        steps = [tiny(tokens[:, i:i + 1], cache) for i in range(8, 12)]
    assert cache.length == 12
    assert torch.allclose(prefix, full[:, :8], atol=1e-5)
    assert torch.allclose(torch.cat(steps, dim=1), full[:, 8:], atol=1e-5)


def test_a_chunk_after_a_cached_prefix_sees_only_its_past(tiny):
    tokens = torch.randint(0, 256, (1, 10))
    cache = KVCache(TINY, 1)
    with torch.no_grad():
        tiny(tokens[:, :6], cache)
        chunk = tiny(tokens[:, 6:], cache)
    assert torch.allclose(chunk, tiny(tokens)[:, 6:], atol=1e-5)


def test_static_decode_step_equals_the_dynamic_one(tiny):
    tokens = torch.randint(0, 256, (1, 9))
    dynamic, static = KVCache(TINY, 1), KVCache(TINY, 1)
    with torch.no_grad():
        tiny(tokens[:, :8], dynamic)
        tiny(tokens[:, :8], static)
        expected = tiny(tokens[:, 8:], dynamic)
        got = tiny.decode_at(tokens[:, 8:], static, torch.tensor([8]))
    assert torch.allclose(got, expected, atol=1e-5)


def test_the_cache_and_the_context_refuse_to_overflow(tiny):
    cache = KVCache(TINY, 1)
    with pytest.raises(ValueError, match="sees 32 positions"):
        tiny(torch.zeros(1, 33, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="holds 32 positions"):
        cache.store(0, torch.zeros(1, 2, 33, 16), torch.zeros(1, 2, 33, 16))


def test_causal_mask_lets_a_chunk_see_the_cache_and_its_own_past():
    assert causal_mask(1, 5, torch.device("cpu")) is None
    mask = causal_mask(2, 5, torch.device("cpu"))
    assert mask.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]


def test_both_generators_agree_and_the_profile_counts_positions(tiny):
    prompt = torch.randint(0, 256, (1, 5))
    assert torch.equal(generate_recomputing(tiny, prompt, 6), generate_cached(tiny, prompt, 6))
    assert positions_per_step(tiny, lambda: generate_recomputing(tiny, prompt, 4)) == [5, 6, 7, 8]
    assert positions_per_step(tiny, lambda: generate_cached(tiny, prompt, 4)) == [5, 1, 1, 1]


def test_generation_checks_its_prompt(tiny):
    with pytest.raises(ValueError, match="exceeds the context"):
        generate_cached(tiny, torch.zeros(1, 30, dtype=torch.long), 5)
    with pytest.raises(ValueError, match="token ids"):
        generate_cached(tiny, torch.zeros(1, 3), 2)


def test_token_clock_has_one_time_per_token(tiny):
    times = token_times_s(generate_cached, tiny, torch.zeros(1, 4, dtype=torch.long), 5, repeats=2)
    assert times.shape == (5,) and (times > 0).all()
    clock = generation_clock(times)
    assert clock.tokens_per_s == pytest.approx(1e3 / clock.per_token_ms)
    with pytest.raises(ValueError, match="at least two"):
        generation_clock(times[:1])


def test_generation_report_names_its_settings_and_refuses_an_unknown_precision(tiny):
    line = generation_report({"fp32": tiny}, prompt_tokens=4, batch=2, precision="fp32", cached=False, new_tokens=3)
    assert line.startswith("fp32, no cache, prompt 4, batch 2:") and "tokens/s" in line
    with pytest.raises(ValueError, match="precision must be one of"):
        generation_report({"fp32": tiny}, prompt_tokens=4, batch=1, precision="int2", cached=True)


def test_corpus_holds_out_whole_modules(corpus):
    assert len(corpus.validation_modules) == len(MODULES) // HELD_OUT_EVERY
    assert not set(corpus.train_modules) & set(corpus.validation_modules)
    assert corpus.train.dtype == torch.uint8 and len(corpus.train) > 3 * len(corpus.validation) > 0
    assert "shallow" in module_docstrings("copy")


def test_tokens_round_trip_and_windows_shift_by_one():
    assert text_of(tokens_of("héllo")) == "héllo"
    data = torch.arange(100, dtype=torch.uint8)
    inputs, targets = random_windows(data, 3, 10, torch.Generator().manual_seed(0))
    assert inputs.shape == targets.shape == (3, 10) and torch.equal(inputs[:, 1:], targets[:, :-1])
    with pytest.raises(ValueError, match="fewer than a window"):
        random_windows(data, 1, 100, torch.Generator())


def test_training_lowers_the_loss_and_the_cache_returns_the_same_weights(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    recipe = Recipe(steps=30, batch=4, length=32, learning_rate=3e-3)
    model, losses, cached = trained_decoder(TINY, corpus, recipe)
    again, same_losses, cached_again = trained_decoder(TINY, corpus, recipe)
    assert (cached, cached_again) == (False, True) and same_losses == losses
    assert sum(losses[-5:]) / 5 < losses[0] - 1
    assert validation_loss(again, corpus.validation, length=32, windows=8) == pytest.approx(
        validation_loss(model, corpus.validation, length=32, windows=8))
    assert recipe_key(TINY, corpus, recipe) != recipe_key(TINY, corpus, Recipe(steps=31))


def test_learning_rate_warms_up_then_decays_to_a_tenth():
    recipe = Recipe(steps=100, learning_rate=1.0)
    assert learning_rate_at(0, recipe) == pytest.approx(0.2)
    assert learning_rate_at(5, recipe) == pytest.approx(1.0)
    assert learning_rate_at(100, recipe) == pytest.approx(0.1)


def test_quality_units():
    assert bits_per_byte(math.log(256)) == pytest.approx(8)
    with pytest.raises(ValueError):
        Recipe(steps=0)


def test_token_costs_put_decode_left_of_any_ridge_and_prefill_right():
    config = DecoderConfig(width=1024, layers=4, heads=16)
    assert matrix_weights(config) == 4 * 12 * 1024**2 + 256 * 1024
    decode = decode_cost(config, position=0)
    assert decode.flop_per_byte == pytest.approx(0.5, rel=0.01)
    assert prefill_cost(config, prompt=192).flop_per_byte > 90
    assert decode_cost(config, position=0, batch=8).flops == 8 * decode.flops


def test_decode_bytes_add_each_sequence_s_cache_to_the_weights():
    llama3 = SERVED_MODELS[1]
    assert llama3.decode_step_bytes(batch=1, context=0) == 16e9
    assert llama3.decode_step_bytes(batch=4, context=1000) == 16e9 + 4 * 1000 * 128 * 1024
    assert llama3.decode_tokens_per_s_bound(batch=1, context=0, bandwidth_tbps=3.2) == pytest.approx(200)


def test_kv_arithmetic_matches_the_published_shapes():
    llama3 = next(m for m in SERVED_MODELS if m.name.startswith("Llama 3.1 8B"))
    assert llama3.kv_bytes_per_token() == 128 * 1024
    assert llama3.kv_bytes_per_token(1) == 64 * 1024
    assert next(m for m in SERVED_MODELS if "70B" in m.name).tokens_that_fit(80) == 0
    assert ServedModel("x", 1.0, 2, 4, 4, 8).tokens_that_fit(3.0) == int(1e9 // (2 * 4 * 8 * 2 * 2))


def test_attention_by_hand_equals_sdpa_and_allocates_the_score_matrix():
    q, k, v = attention_inputs(128, heads=2, head_dim=16)
    assert torch.allclose(attention_by_hand(q, k, v), attention_fused(q, k, v), atol=1e-5)
    _, by_hand_mb = operators_and_peak(attention_by_hand, q, k, v)
    operators, fused_mb = operators_and_peak(attention_fused, q, k, v)
    assert by_hand_mb >= score_matrix_bytes(128, heads=2) / 1e6
    assert fused_mb < by_hand_mb
    assert any("attention" in name for name in operators)


def test_decoder_formats_store_fewer_bytes_and_keep_the_head_tied(tiny):
    wide = decoder(DecoderConfig(context=32, width=128, layers=1, heads=2))
    int8 = decoder_in_format(wide, "int8 weight-only")
    assert int8.head.weight is int8.embed.weight and int8.head.weight.dtype == torch.bfloat16
    assert decoder_in_format(wide, "bf16").blocks[0].mlp[0].weight.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="weight_format"):
        decoder_in_format(wide, "int3")
    assert set(WEIGHT_FORMATS) == {"fp32", "bf16", "int8 weight-only", "int4 weight-only"}


def test_decode_call_runs_one_step_at_its_position(tiny):
    run = decode_call(tiny, batch=3, position=5)
    assert run().shape == (3, 1, 256)
    wide = decoder_in_format(decoder(DecoderConfig(context=16, width=128, layers=1, heads=2)), "bf16")
    compiled = decode_call(wide, batch=1, position=4, path="compiled, frozen")
    products = matmul_ms_profiled({"eager": run, "compiled": compiled}, repeats=2)
    assert products.name == "matrix products, profiled (ms)"
    assert products["eager"] > 0 and products["compiled"] > 0  # aten::mm and mkldnn::_linear_pointwise are found
    with pytest.raises(ValueError, match="path"):
        decode_call(tiny, batch=1, position=5, path="jit")


def test_step_time_is_interpolated_and_bounded():
    assert step_time_at({1: 10.0, 5: 30.0}, 3) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="outside them"):
        step_time_at({1: 10.0, 4: 12.0}, 8)


def test_continuous_batching_takes_fewer_steps_than_static():
    flat = {1: 1.0, 16: 1.0}
    lengths = [10, 1, 1, 1, 10, 1, 1, 1]
    static, continuous = static_batches(lengths, 4, flat), continuous_batches(lengths, 4, flat)
    assert static.steps == 20  # two batches, each as long as its 10-token request
    assert continuous.steps == 11  # the second long request takes a freed slot at step 2
    assert continuous.total_ms == 11.0 and static.total_ms == 20.0
    assert continuous.tokens_per_s > static.tokens_per_s
    assert static.first_token_ms == (1.0,) * 4 + (11.0,) * 4  # the second batch waits for the first to end
    assert continuous.first_token_ms == (1.0,) * 4 + (2.0,) * 3 + (3.0,)
    assert continuous.first_token_percentile_ms(100) == 3.0 and static.latency_percentile_ms(100) == 20.0
    assert len(request_lengths(50)) == 50 and min(request_lengths(50)) >= 8


def test_exercise_checks_compare_with_the_computed_values(capsys):
    roofs = Roofs(gflops=100.0, read_gbps=10.0, in_place_gbps=10.0, new_output_gbps=10.0, footprint_bytes=1)
    config = DecoderConfig(width=64, layers=1, heads=1)
    expected_ms = 2 * matrix_weights(config) / 1e10 * 1e3
    assert check_step_prediction("E1", expected_ms, config=config, roofs=roofs).passed
    assert not check_step_prediction("E1", 2 * expected_ms, config=config, roofs=roofs).passed
    model = SERVED_MODELS[1]
    assert check_cached_tokens("E2", model.tokens_that_fit(80, bytes_per_value=1), model, gpu_gb=80,
                               bytes_per_value=1).passed
    assert check_ridge_batch("E3", 10.0, compute_gflops=50.0, roofs=roofs, bytes_per_weight=4).passed
    assert not check_ridge_batch("E3", ..., compute_gflops=50.0, roofs=roofs, bytes_per_weight=4).passed
    assert "not answered" in capsys.readouterr().out


def test_plots_draw_and_refuse_empty_inputs():
    assert isinstance(plot_token_times({"a": [2.0, 1.0, 1.0]}, prompt=4, hardware="cpu"), Figure)
    assert isinstance(plot_decode_against_bytes([1, 2], [1.0, 2.0], read_gbps=10, cache_mb=1.0, hardware="cpu"),
                      Figure)
    assert isinstance(plot_attention([4, 8], {"a": [1, 2]}, {"a": [1, 4]}, hardware="cpu"), Figure)
    assert isinstance(plot_batching([1, 4], [1.0, 1.5], hardware="cpu"), Figure)
    with pytest.raises(ValueError):
        plot_batching([], [], hardware="cpu")
    with pytest.raises(ValueError):
        plot_token_times({}, prompt=1, hardware="cpu")


def test_agreement_is_one_with_itself_and_windows_repeat(corpus):
    model = decoder(TINY)
    assert agreement(model, model, corpus.validation, length=16, windows=4) == 1.0
    assert paired_loss_change(model, model, corpus.validation, length=16, windows=4) == (0.0, 0.0, 0.0)
    other = decoder(TINY, seed=1)
    change, low, high = paired_loss_change(other, model, corpus.validation, length=16, windows=8)
    assert low <= change <= high and low < high
    first = validation_windows(corpus.validation, length=16, windows=4)
    assert first.shape == (4, 17) and torch.equal(first, validation_windows(corpus.validation, length=16, windows=4))
    with pytest.raises(ValueError, match="too few"):
        validation_windows(corpus.validation[:10], length=16, windows=4)
