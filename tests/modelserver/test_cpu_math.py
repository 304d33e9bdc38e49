"""The served model's oneDNN math mode: bfloat16 on AMX CPUs, strict elsewhere, the user's own
setting always kept; and the server logs the mode it runs with."""

from __future__ import annotations

from pathlib import Path

import pytest
from modelserver_harness import MODEL

from modelserver.cpu_math import FPMATH_ENV, choose_fpmath


def test_amx_gets_bfloat16_math_for_the_process_and_its_children():
    environ: dict[str, str] = {}
    mode, why = choose_fpmath(environ, ["amx_tile", "avx512f"])
    assert (mode, environ) == ("BF16", {FPMATH_ENV: "BF16"})
    assert "STRICT turns it off" in why


def test_without_amx_the_math_stays_strict_and_nothing_is_set():
    environ: dict[str, str] = {}
    assert choose_fpmath(environ, ["avx512_bf16", "avx512f"])[0] == "STRICT"
    assert environ == {}


@pytest.mark.parametrize("flags", [["amx_tile"], []])
def test_a_mode_the_user_set_is_kept(flags):
    environ = {FPMATH_ENV: "STRICT"}
    assert choose_fpmath(environ, flags) == ("STRICT", f"{FPMATH_ENV} set")
    assert environ == {FPMATH_ENV: "STRICT"}


def test_the_server_logs_its_math_mode(start_server, model_base_v1, monkeypatch):
    # The mode this machine should get, from /proc/cpuinfo read here (not through the
    # server's own cpu_info, which would agree with the server whatever it dropped).
    monkeypatch.delenv(FPMATH_ENV, raising=False)
    flags = next(
        line.split(":", 1)[1].split()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("flags")
    )
    expected = "BF16" if "amx_tile" in flags else "STRICT"
    server = start_server(f"--model_name={MODEL}", f"--model_base_path={model_base_v1}")
    assert f"oneDNN float32 math: {expected} (" in server.log()


def test_the_server_keeps_the_mode_from_its_environment(start_server, model_base_v1, monkeypatch):
    monkeypatch.setenv(FPMATH_ENV, "STRICT")
    server = start_server(f"--model_name={MODEL}", f"--model_base_path={model_base_v1}")
    assert f"oneDNN float32 math: STRICT ({FPMATH_ENV} set)" in server.log()
