"""bench.step_profile: op events are sorted into kinds, and a real traced step finds them."""

from __future__ import annotations

import pytest

from bench.step_profile import op_kind, profile
from tests.conftest import CIFAR_TAR


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ("grad/block2_conv1_1/Conv2DBackpropFilter:_MklNativeConv2DBackpropFilter", "conv"),
        ("fast_1/block1_act1_1/Gelu/Erfc:Erfc", "GELU"),
        ("CpuExecutable::ExecuteAsyncOnStream", "GELU"),  # training's XLA-fused GELU
        ("fast_1/block1_bn1_1/FusedBatchNormV3:_MklFusedBatchNormV3", "BatchNorm"),
        ("matmul_89:_MklMatMul", "matmul (Muon, head)"),
        ("gradient_tape/fast_1/Cast/Cast:Cast", "cast"),
        ("gradient_tape/block2_pool_1/MaxPool2d/MaxPoolGrad:_MklNativeMaxPoolGrad", "pooling"),
        ("MirrorPad:MirrorPad", "other"),
        ("ExecutorState::Process", None),
    ],
)  # fmt: skip
def test_op_events_are_sorted_into_kinds(event, kind):
    assert op_kind(event) == kind


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ("MirrorPad:MirrorPad", "other: MirrorPad"),
        ("gradient_tape/fast_1/Cast/Cast:Cast", "cast: gradient_tape/fast_1/Cast/Cast"),
        ("fast_1/block1_bn1_1/FusedBatchNormV3:_MklFusedBatchNormV3", "BatchNorm"),
    ],
)  # fmt: skip
def test_by_op_splits_only_the_catch_all_kinds(event, kind):
    assert op_kind(event, by_op=True) == kind


def test_a_traced_step_of_the_tiny_recipe_finds_its_kernels():
    if not CIFAR_TAR.exists():
        pytest.skip(f"{CIFAR_TAR} is absent")
    result = profile("tiny", "float32", str(CIFAR_TAR), steps=1, timed=1)
    assert result["step_ms"] > 0
    for kind in ("conv", "GELU", "BatchNorm"):
        assert result["ops"].get(kind, 0) > 0, result["ops"]
