import platform

import pytest
import torch

from rrdnet_cli import runtime


def test_allocator_tuning_applies_on_glibc_and_is_idempotent():
    first = runtime.tune_allocator()
    assert runtime.tune_allocator() is first
    is_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert first is is_glibc


@pytest.mark.parametrize(
    "avx512_bf16, amx, expected",
    [(True, False, True), (False, True, True), (False, False, False)],
)
def test_cpu_bf16_only_where_native(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert runtime.bf16_is_fast(torch.device("cpu")) is expected


def test_no_bf16_without_onednn_or_on_other_devices(monkeypatch):
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert runtime.bf16_is_fast(torch.device("cpu")) is False
    assert runtime.bf16_is_fast(torch.device("meta")) is False


@pytest.mark.parametrize("major, expected", [(7, False), (8, True), (9, True)])
def test_cuda_bf16_from_compute_capability_8(monkeypatch, major, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, 0))
    assert runtime.bf16_is_fast(torch.device("cuda")) is expected
