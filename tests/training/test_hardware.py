"""Precision choice: explicit requests pass through, `auto` decides by AMX or by a timing."""

from __future__ import annotations

import pytest

from runtime import cpu
from training import hardware


def test_an_explicit_precision_is_taken_as_asked():
    assert hardware.choose_precision("float32") == ("float32", "asked for")
    assert hardware.choose_precision("mixed_bfloat16")[0] == "mixed_bfloat16"


def test_an_unknown_precision_lists_the_choices():
    with pytest.raises(ValueError, match="auto, float32, mixed_bfloat16"):
        hardware.choose_precision("float16")


def test_auto_without_amx_times_both_precisions_and_picks_the_faster(monkeypatch):
    # cpu_info is faked because one machine cannot be both an AMX and a non-AMX CPU; the
    # timings below are real first, then fixed, to test the choice both ways.
    monkeypatch.setattr(cpu, "cpu_info", lambda: {"model": "x", "cores": 2, "flags": []})
    timings = hardware.time_conv_step()
    assert set(timings) == {"float32", "mixed_bfloat16"} and min(timings.values()) > 0
    # The decision itself, on fixed timings (a real pair could flip between the two calls).
    monkeypatch.setattr(hardware, "time_conv_step", lambda: {"float32": 2.0, "mixed_bfloat16": 1.0})
    precision, why = hardware.choose_precision("auto")
    assert precision == "mixed_bfloat16" and "float32 2000 ms" in why
    monkeypatch.setattr(hardware, "time_conv_step", lambda: {"float32": 1.0, "mixed_bfloat16": 3.0})
    assert hardware.choose_precision("auto")[0] == "float32"


def test_auto_with_amx_takes_bfloat16_without_timing(monkeypatch):
    monkeypatch.setattr(cpu, "cpu_info", lambda: {"model": "x", "cores": 2, "flags": ["amx_tile"]})
    monkeypatch.setattr(hardware, "time_conv_step", lambda: pytest.fail("timed on an AMX CPU"))
    assert hardware.choose_precision("auto") == ("mixed_bfloat16", "auto: the CPU has AMX")


def test_the_filter_gradient_form_follows_the_precision_and_the_cpu(monkeypatch):
    """Nine matmuls only where they were measured faster: bfloat16 on AMX, no GPU. cpu_info is
    faked, as above: one machine is not both kinds."""
    import tensorflow as tf

    assert hardware.choose_filter_grad("kernel", "mixed_bfloat16") == ("kernel", "asked for")
    assert hardware.choose_filter_grad("matmuls", "float32") == ("matmuls", "asked for")
    with pytest.raises(ValueError, match="auto, kernel, matmuls"):
        hardware.choose_filter_grad("im2col", "float32")
    with pytest.raises(ValueError, match="auto, kernel, matmuls"):
        hardware.choose_filter_grad("im2col", "mixed_bfloat16", "vgg")
    amx = {"model": "x", "cores": 2, "flags": ["amx_tile"]}
    monkeypatch.setattr(cpu, "cpu_info", lambda: amx)
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    assert hardware.choose_filter_grad("auto", "mixed_bfloat16")[0] == "matmuls"
    assert hardware.choose_filter_grad("auto", "float32")[0] == "kernel"
    assert hardware.choose_filter_grad("matmuls", "mixed_bfloat16", "vgg")[0] == "kernel"
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["a GPU"])
    assert hardware.choose_filter_grad("auto", "mixed_bfloat16") == (
        "kernel",
        "auto: a GPU is visible",
    )
    monkeypatch.setattr(cpu, "cpu_info", lambda: {**amx, "flags": ["avx512_bf16"]})
    assert hardware.choose_filter_grad("auto", "mixed_bfloat16")[0] == "kernel"


def test_a_timing_lasts_its_minimum_seconds_however_few_the_calls(monkeypatch):
    """bench.train's ceiling kernels are timed for 5 s each: a 1 s timing read low."""
    clock = [0.0]  # a fake clock each call moves 1/64 s on (exact in binary): no real timing
    monkeypatch.setattr(hardware.time, "perf_counter", lambda: clock[0])
    calls = []

    def call():
        calls.append(1)
        clock[0] += 1 / 64

    seconds = hardware.seconds_per_call(call, 2, min_seconds=0.25)
    assert len(calls) == 1 + 16  # the warm-up, then calls until 0.25 s had passed
    assert seconds == 1 / 64  # per call, not the total
    calls.clear()
    hardware.seconds_per_call(lambda: calls.append(1), 3)
    assert len(calls) == 1 + 3
