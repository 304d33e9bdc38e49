"""proxy.config: environment variables -> ProxyConfig."""

from __future__ import annotations

import re

import pytest

from proxy.config import ProxyConfig


def test_defaults_match_design() -> None:
    config = ProxyConfig.from_env({})
    assert config.grpc_address == "127.0.0.1:8500"
    assert config.rest_url == "http://127.0.0.1:8501"
    assert (config.model_name, config.top_k, config.protocol) == ("cifar10", 3, "grpc")
    assert config.default_version is None and config.default_label is None


def test_the_proxy_and_the_served_graph_refuse_the_same_images() -> None:
    """Both doors (the proxy's upload, serving_default's bytes) share one pixel limit."""
    from export.config import MAX_PIXELS, MODEL_NAME

    assert ProxyConfig().max_pixels == MAX_PIXELS
    assert ProxyConfig().model_name == MODEL_NAME


def test_every_variable_is_read() -> None:
    config = ProxyConfig.from_env(
        {
            "MODEL_SERVER_GRPC": "tfs:9000",
            "MODEL_SERVER_REST": "http://tfs:9001/",
            "PROXY_PROTOCOL": "REST",
            "MODEL_NAME": "other",
            "MODEL_VERSION": "4",
            "MODEL_LABELS": "stable, blue ,",
            "MODEL_SERVER_TIMEOUT_S": "2.5",
            "MAX_UPLOAD_BYTES": "1000",
            "MAX_PIXELS": "2000",
            "MAX_IMAGES": "3",
            "TOP_K": "5",
        }
    )
    assert config == ProxyConfig(
        grpc_address="tfs:9000",
        rest_url="http://tfs:9001",
        protocol="rest",
        model_name="other",
        default_version=4,
        known_labels=("stable", "blue"),
        timeout_s=2.5,
        max_upload_bytes=1000,
        max_pixels=2000,
        max_images=3,
        top_k=5,
    )
    assert ProxyConfig.from_env({"MODEL_LABEL": "canary"}).default_label == "canary"


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"PROXY_PROTOCOL": "carrier-pigeon"}, "PROXY_PROTOCOL must be one of"),
        ({"MODEL_VERSION": "1", "MODEL_LABEL": "stable"}, "MODEL_VERSION or MODEL_LABEL, not both"),
        ({"TOP_K": "11"}, "TOP_K must be between 1 and 10"),
        ({"MODEL_VERSION": "one"}, "MODEL_VERSION must be a whole number of at least 0, not 'one'"),
        ({"MODEL_VERSION": "-3"}, "MODEL_VERSION must be a whole number of at least 0, not '-3'"),
        ({"MAX_IMAGES": "2.5"}, "MAX_IMAGES must be a whole number of at least 1, not '2.5'"),
        ({"MAX_IMAGES": "0"}, "MAX_IMAGES must be a whole number of at least 1, not '0'"),
        ({"MAX_UPLOAD_BYTES": "-1"}, "MAX_UPLOAD_BYTES must be a whole number of at least 1"),
        ({"MODEL_SERVER_TIMEOUT_S": "5s"}, "MODEL_SERVER_TIMEOUT_S must be a number of at least"),
        ({"MODEL_SERVER_TIMEOUT_S": "0"}, "MODEL_SERVER_TIMEOUT_S must be a number of at least"),
        ({"MODEL_SERVER_TIMEOUT_S": "nan"}, "MODEL_SERVER_TIMEOUT_S must be a number of at least"),
        ({"TOP_K": "0"}, "TOP_K must be a whole number of at least 1, not '0'"),
    ],
)
def test_bad_settings_fail_at_start_naming_the_variable(env: dict, said: str) -> None:
    with pytest.raises(ValueError, match=re.escape(said)):
        ProxyConfig.from_env(env)
