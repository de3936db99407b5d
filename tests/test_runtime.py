import platform

import pytest
import torch
from click.testing import CliRunner

from rrdnet_cli import RRDNet, UsageError, enhance, load_config, runtime
from rrdnet_cli.cli import main
from rrdnet_cli.pipeline import seeded_network

from helpers import PAPER_FAST, dark_tensor, write_dark


def test_devices_resolve_and_cuda_never_falls_back_to_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.resolve_device("auto") == runtime.resolve_device("cpu") == torch.device("cpu")
    for name, needle in [
        ("cuda", "CUDA is not available"),
        ("cuda:1", "CUDA is not available"),
        ("gpu", "expected auto, cpu"),
    ]:
        with pytest.raises(UsageError, match=f"device '{name}': {needle}"):
            runtime.resolve_device(name)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert runtime.resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(UsageError, match="only 1 CUDA device"):
        runtime.resolve_device("cuda:1")


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
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert runtime.bf16_is_fast(torch.device("cpu")) is expected


@pytest.mark.parametrize(
    "cap, expected",
    [
        (None, True),
        ("ALL", True),
        ("avx512_core_bf16", True),
        ("AVX512_CORE_AMX", True),
        ("AVX2", False),
        ("avx512_core_vnni", False),
        ("AVX512_CORE", False),
    ],
)
def test_a_onednn_cap_below_bf16_means_fp32(monkeypatch, cap, expected):
    # How an AVX2 CPU is emulated on a newer one: its bf16 instructions are then out of reach.
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if cap is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert runtime.bf16_is_fast(torch.device("cpu")) is expected
    assert runtime.onednn_may_use_bf16({"DNNL_MAX_CPU_ISA": cap or "ALL"}) is expected


def test_no_bf16_without_onednn_or_on_other_devices(monkeypatch):
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert runtime.bf16_is_fast(torch.device("cpu")) is False
    assert runtime.bf16_is_fast(torch.device("meta")) is False


@pytest.mark.parametrize("major, expected", [(7, False), (8, True), (9, True)])
def test_cuda_bf16_from_compute_capability_8(monkeypatch, major, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, 0))
    assert runtime.bf16_is_fast(torch.device("cuda")) is expected


# ------------------------------------------------------------------ no process-wide side effects


@pytest.mark.parametrize("preset", ["default", "paper"])
def test_enhance_leaves_the_caller_rng_state_alone(preset):
    config = load_config(preset, iterations=2, device="cpu")
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    expected_next = torch.rand(3)
    torch.set_rng_state(before)
    enhance(dark_tensor(24, 32), config)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(torch.rand(3), expected_next)


def test_the_seeded_weights_are_those_of_the_global_seed():
    torch.manual_seed(5)
    expected = RRDNet().state_dict()
    weights = seeded_network(5).state_dict()
    assert all(torch.equal(weights[key], expected[key]) for key in expected)


@pytest.fixture
def mallopt_calls(monkeypatch):
    calls = []
    monkeypatch.setattr(runtime, "_mallopt", lambda parameter, value: calls.append((parameter, value)) or 1)
    monkeypatch.setattr(runtime, "_allocator_tuned", None)
    monkeypatch.setattr(runtime.platform, "system", lambda: "Linux")
    monkeypatch.setattr(runtime.platform, "libc_ver", lambda: ("glibc", "2.35"))
    return calls


def test_enhance_never_tunes_the_allocator(mallopt_calls, tiny_config):
    enhance(dark_tensor(), tiny_config)
    assert mallopt_calls == []


def test_the_commands_that_fit_tune_the_allocator_at_their_start(mallopt_calls, tmp_path):
    shown = CliRunner().invoke(main, ["config", "show"])
    assert shown.exit_code == 0 and mallopt_calls == []  # nothing to fit: torch is not even imported
    source = write_dark(tmp_path / "dark.png", 24, 24)
    result = CliRunner().invoke(main, ["enhance", str(source), "-o", str(tmp_path / "out"), *PAPER_FAST])
    assert result.exit_code == 0
    # No trimming, mmap only for blocks over 32 MiB, one arena for every thread.
    assert mallopt_calls == [
        (runtime._M_TRIM_THRESHOLD, 2**31 - 1),
        (runtime._M_MMAP_THRESHOLD, 32 << 20),
        (runtime._M_ARENA_MAX, 1),
    ]


def test_memory_format_follows_what_the_cpu_runs_fast(monkeypatch):
    import torch

    from rrdnet_cli import runtime

    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert runtime.preferred_memory_format(cpu, bf16=False) == torch.contiguous_format
    assert runtime.preferred_memory_format(cpu, bf16=True) == torch.channels_last
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512_BF16")
    assert runtime.preferred_memory_format(cpu, bf16=False) == torch.channels_last


def test_a_fit_on_either_layout_gives_nearly_the_same_result(monkeypatch):
    import torch

    from rrdnet_cli import enhance, load_config

    from helpers import dark_tensor

    config = load_config("default", iterations=3, device="cpu", precision="fp32", optimisation_side=32)
    results = {}
    for capability in ("AVX2", "AVX512"):
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda capability=capability: capability)
        results[capability] = enhance(dark_tensor(), config).result
    assert torch.allclose(results["AVX2"], results["AVX512"], atol=1e-4)
