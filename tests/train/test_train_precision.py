"""``--precision`` (vitkit.train.precision): which dtype autocast trains in, and the one warning line for bf16 on a
CPU that would emulate it (9x slower than fp32 on this project's AVX2 machine)."""

from __future__ import annotations

import torch

from vitkit.cpuinfo import cpu_flags
from vitkit.train.precision import amp_dtype, emulated_bf16_warning

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_is_bf16_on_a_gpu_and_fp32_on_a_cpu_and_bf16_is_bf16_anywhere():
    assert amp_dtype("auto", CUDA) is torch.bfloat16 and amp_dtype("auto", CPU) is None
    assert amp_dtype("bf16", CPU) is torch.bfloat16 and amp_dtype("fp32", CUDA) is None


def test_bf16_on_a_cpu_without_native_bf16_warns_once_and_nowhere_else():
    avx2 = {"fpu", "sse2", "avx2", "fma"}
    line = emulated_bf16_warning("bf16", CPU, avx2)
    assert line.startswith("warning: --precision bf16") and "--precision fp32" in line and "\n" not in line
    assert emulated_bf16_warning("bf16", CPU, avx2 | {"avx512f", "avx512_bf16"}) is None
    assert emulated_bf16_warning("bf16", CPU, avx2 | {"amx_bf16"}) is None
    assert emulated_bf16_warning("auto", CPU, avx2) is None  # fp32: nothing emulated
    assert emulated_bf16_warning("bf16", CUDA, avx2) is None  # a GPU computes bf16 itself
    assert emulated_bf16_warning("bf16", CPU, None) is None  # flags unknown (not Linux): no guess


def test_the_flags_and_model_are_read_from_cpuinfo_and_unknown_without_it(tmp_path):
    from vitkit.cpuinfo import cpu_model

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel\t\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512_bf16\n"
                    "vmx flags\t: ept\n\nprocessor\t: 1\n"
                    "model name\t: other\n")
    assert cpu_flags(info) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_model(info) == "AMD EPYC"  # the first CPU's, by its whole key (not "model")
    assert cpu_flags(tmp_path / "missing") is None and cpu_model(tmp_path / "missing") is None
