"""The public API at the package root (``rrdnet_cli/__init__.py``): every name resolves, lazily."""

import subprocess
import sys

import pytest

import rrdnet_cli


def test_every_public_name_resolves_to_its_module_object():
    from rrdnet_cli import decomposition, jobs

    assert len(set(rrdnet_cli.__all__)) == len(rrdnet_cli.__all__)
    for name in rrdnet_cli.__all__:
        value = getattr(rrdnet_cli, name)
        assert value is not None, name
        assert name in dir(rrdnet_cli)
    assert rrdnet_cli.load_decomposition is decomposition.load
    assert rrdnet_cli.save_decomposition is decomposition.save
    assert rrdnet_cli.enhance_file is jobs.enhance_file and rrdnet_cli.run_job is jobs.run_job
    for name in (
        "enhance",
        "enhance_file",
        "run_batch",
        "plan_batch",
        "relight",
        "load_decomposition",
        "save_decomposition",
        "load_config",
        "Config",
        "Enhancement",
        "read_image",
        "write_like",
        "evaluate_folder",
        "RRDNet",
        "RRDNetError",
        "ConfigError",
        "InputError",
        "OutputError",
        "UsageError",
        "OptimisationError",
        "Interrupted",
    ):
        assert name in rrdnet_cli.__all__, name


def test_all_lists_the_exceptions_and_every_lazy_name_once():
    exceptions = {name for name in rrdnet_cli.__all__ if name.endswith("Error") or name == "Interrupted"}
    assert set(rrdnet_cli.__all__) == exceptions | set(rrdnet_cli._LAZY)
    assert all(issubclass(getattr(rrdnet_cli, name), BaseException) for name in exceptions)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'enhance_everything'"):
        rrdnet_cli.enhance_everything  # noqa: B018


def test_importing_the_package_imports_neither_torch_nor_the_submodules():
    code = (
        "import sys, rrdnet_cli\n"
        "heavy = [name for name in ('torch', 'numpy', 'PIL', 'click', 'rrdnet_cli.pipeline') if name in sys.modules]\n"
        "print(heavy)\n"
        "rrdnet_cli.load_config\n"
        "print('rrdnet_cli.config' in sys.modules, 'torch' in sys.modules)\n"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.splitlines() == ["[]", "True False"]
