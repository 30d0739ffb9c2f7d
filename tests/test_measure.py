"""Measurement: energy counters and codecarbon, GPU telemetry, peak FLOPs and MFU, memory, hardware, the meter.

No GPU here: NVML-backed code is exercised through its absent path, and its arithmetic through pynvml functions
replaced by fixed readings (NVML is the dependency, not the thing under test).
"""

from __future__ import annotations

import json
import math
import types
import os
import socket
import time
from pathlib import Path

import numpy as np
import pynvml
import pytest
import torch

from bench.errors import BenchError
from bench.measure.energy import (
    CodecarbonFigure,
    CodecarbonRun,
    NvmlCounter,
    RaplCounter,
    carbon_intensity,
    energy_report,
)
from bench.measure.hardware import (
    NvmlUnavailable,
    gpu_driver,
    hardware_info,
    isa_problem,
    matches_class,
    nvml_handles,
    package_versions,
    usable_cores,
)
from bench.measure.memory import PeakMemory, RssSampler
from bench.measure.meter import Meter
from bench.measure.peak import mfu, peak_dtype, peak_flops, table_lookup
from bench.measure.polling import Poller
from bench.measure.telemetry import GpuSampler
from bench.results.schema import MemoryReport, PeakFlops
from bench.spec.hardware_classes import sku_of_device

CPU = torch.device("cpu")
MB = 1 << 20


def _nvml_present() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


no_nvml = pytest.mark.skipif(_nvml_present(), reason="this machine has NVML; the test covers its absence")


# --- the meter ---------------------------------------------------------------------------------------------------


def test_cpu_meter_reports_everything_and_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    meter = Meter(device=CPU, hardware_class=f"cpu-{torch.get_num_threads()}")
    meter.start()
    with meter.phase("train"):
        torch.randn(256, 256) @ torch.randn(256, 256)
    report = meter.stop(tokens=1000, train_seconds=0.5, flops_per_token=6e6, precision="fp32")

    assert capfd.readouterr() == ("", "")
    assert report.telemetry.available is False and report.telemetry.reason
    assert report.energy.train.method in ("rapl", "codecarbon")
    assert report.energy.train.joules is not None and report.energy.train.joules > 0
    assert report.energy.co2_region == "USA" and report.energy.co2_kg is not None
    assert report.energy.codecarbon_kwh is not None and "codecarbon" in report.energy.codecarbon_method
    assert report.memory.peak_device_bytes is None and report.memory.peak_host_rss_bytes > 10 * MB
    assert report.hardware.matches_class and report.hardware.gpus == []
    assert report.peak.source == "calibration" and report.peak.dtype == "fp32"
    assert report.mfu == pytest.approx(6e6 * 1000 / 0.5 / report.peak.flops_per_s)
    fields = report.as_result_fields()
    assert fields["compute"].train_flops == 6e9 and fields["compute"].mfu == report.mfu
    assert set(fields) == {"energy", "telemetry", "memory", "hardware", "compute"}


def test_phases_accumulate_and_nest() -> None:
    meter = Meter(device=CPU, hardware_class="cpu-2")
    meter.start()
    for _ in range(3):
        with meter.phase("train"):
            time.sleep(0.05)
    with meter.phase("train"):
        time.sleep(0.05)
        with meter.phase("eval"):  # the harness evaluates from inside training: the train phase pauses
            time.sleep(0.1)
        time.sleep(0.05)
    with meter.phase("eval"):
        time.sleep(0.05)
    report = meter.stop(tokens=0, train_seconds=0.25, flops_per_token=0.0, precision="fp32")

    train, evaluation = report.phase_seconds["train"], report.phase_seconds["eval"]
    assert 0.25 <= train < 0.25 + 0.05
    assert 0.15 <= evaluation < 0.15 + 0.05
    assert report.mfu is None and report.compute is None and report.energy.joules_per_token is None
    assert report.energy.eval is not None
    if report.energy.train.method == "codecarbon":  # one estimate shared out by time
        assert report.energy.eval.joules / report.energy.train.joules == pytest.approx(evaluation / train)


def test_meter_rejects_misuse() -> None:
    with pytest.raises(BenchError, match="'XYZ'"):
        Meter(device=CPU, hardware_class="cpu-2", country="XYZ")
    meter = Meter(device=CPU, hardware_class="cpu-2")
    with pytest.raises(RuntimeError, match="before Meter.start"), meter.phase("train"):
        pass
    meter.start()
    with pytest.raises(ValueError, match="unknown phase"), meter.phase("warmup"):
        pass
    with meter.phase("train"), pytest.raises(RuntimeError, match="inside phase 'train'"):
        meter.stop(tokens=1, train_seconds=1.0, flops_per_token=None, precision="fp32")
    meter.stop(tokens=1, train_seconds=1.0, flops_per_token=None, precision="fp32")


def test_phase_switch_is_cheap() -> None:
    meter = Meter(device=CPU, hardware_class="cpu-2")
    meter.start()
    n = 2000
    began = time.perf_counter()
    for _ in range(n):
        with meter.phase("train"):
            pass
    per_switch = (time.perf_counter() - began) / n
    meter.stop(tokens=0, train_seconds=0.0, flops_per_token=None, precision="fp32")
    assert per_switch < 1e-3  # measured ~10 us here; an eval every few minutes makes either negligible


# --- energy ------------------------------------------------------------------------------------------------------


def _zone(root: Path, name: str, label: str, energy: int, span: int = 1000) -> Path:
    zone = root / name
    zone.mkdir()
    (zone / "name").write_text(f"{label}\n")
    (zone / "energy_uj").write_text(f"{energy}\n")
    (zone / "max_energy_range_uj").write_text(f"{span}\n")
    return zone


def test_rapl_counts_packages_only_and_unwraps(tmp_path: Path) -> None:
    package = _zone(tmp_path, "intel-rapl:0", "package-0", 900)
    _zone(tmp_path, "intel-rapl:0:0", "core", 5)
    _zone(tmp_path, "intel-rapl:1", "psys", 7)
    _zone(tmp_path, "intel-rapl-mmio:0", "package-0", 9)
    counter = RaplCounter.open(tmp_path, poll_s=3600)
    assert counter is not None and counter.method == "rapl"
    try:
        assert counter.read() == [0.0]
        (package / "energy_uj").write_text("950\n")
        assert counter.read() == pytest.approx([50e-6])
        (package / "energy_uj").write_text("100\n")  # wrapped at 1000: 50 to the top, 100 after
        assert counter.read() == pytest.approx([200e-6])
    finally:
        counter.close()


def test_rapl_poll_catches_repeated_wraps(tmp_path: Path) -> None:
    package = _zone(tmp_path, "intel-rapl:0", "package-0", 900)
    counter = RaplCounter.open(tmp_path, poll_s=0.01)
    assert counter is not None
    try:
        for value in ("100", "900", "50"):  # 200 (wrap), 800, 150 (wrap): 1150 uJ, two wraps
            (tmp_path / "next").write_text(value)
            os.replace(tmp_path / "next", package / "energy_uj")  # atomic, as a sysfs read is
            time.sleep(0.3)  # the poll thread reads meanwhile
        assert counter.read() == pytest.approx([1150e-6])
    finally:
        counter.close()


def test_rapl_absent_or_unreadable(tmp_path: Path) -> None:
    assert RaplCounter.open(tmp_path) is None
    (tmp_path / "intel-rapl:0").mkdir()
    (tmp_path / "intel-rapl:0" / "name").write_text("package-0\n")  # no energy_uj, as when it is root-only
    assert RaplCounter.open(tmp_path) is None


def test_nvml_counter_differences(monkeypatch: pytest.MonkeyPatch) -> None:
    readings = {"gpu0": 5_000, "gpu1": 7_000}  # millijoules since driver load
    monkeypatch.setattr(pynvml, "nvmlDeviceGetTotalEnergyConsumption", lambda handle: readings[handle])
    counter = NvmlCounter.open(["gpu0", "gpu1"])
    assert counter is not None
    readings.update(gpu0=6_500, gpu1=7_250)
    assert counter.read() == pytest.approx([1.5, 0.25])


def test_nvml_counter_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    def unsupported(handle: object) -> int:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    monkeypatch.setattr(pynvml, "nvmlDeviceGetTotalEnergyConsumption", unsupported)
    assert NvmlCounter.open(["gpu0"]) is None


def test_codecarbon_offline_and_silent(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[object] = []

    def no_network(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    run = CodecarbonRun("USA", gpu_indices=[])
    run.start()
    time.sleep(0.2)
    figure = run.stop()
    assert capfd.readouterr() == ("", "")
    assert attempts == []
    assert figure is not None and figure.joules > 0 and figure.seconds > 0
    assert figure.description.startswith("codecarbon ") and "process mode" in figure.description


def test_energy_report_arithmetic() -> None:
    intensity = carbon_intensity("USA")
    figure = CodecarbonFigure(joules=100.0, seconds=10.0, description="codecarbon x")
    shared = energy_report(
        method=None,
        phase_joules={},
        phase_seconds={"train": 6.0, "eval": 2.0},
        codecarbon=figure,
        tokens=1000,
        country="USA",
    )
    assert shared.train.method == "codecarbon" and shared.train.joules == pytest.approx(60.0)
    assert shared.eval is not None and shared.eval.joules == pytest.approx(20.0)
    assert shared.kwh == pytest.approx(60 / 3.6e6) and shared.joules_per_token == pytest.approx(0.06)
    assert shared.co2_kg == pytest.approx(60 / 3.6e6 * intensity / 1000)
    assert shared.codecarbon_kwh == pytest.approx(100 / 3.6e6) and shared.codecarbon_method == "codecarbon x"

    measured = energy_report(
        method="nvml-counter",
        phase_joules={"train": [30.0, 50.0]},
        phase_seconds={"train": 6.0},
        codecarbon=figure,
        tokens=10,
        country="FRA",
    )
    assert measured.train.joules == 80.0 and measured.train.per_device_joules == [30.0, 50.0]
    assert measured.eval is None and measured.co2_region == "FRA" and measured.joules_per_token == 8.0

    nothing = energy_report(
        method=None, phase_joules={}, phase_seconds={"train": 1.0}, codecarbon=None, tokens=5, country="USA"
    )
    assert nothing.train.method == "unavailable" and nothing.train.joules is None
    assert nothing.kwh is None and nothing.co2_kg is None and nothing.joules_per_token is None


def test_carbon_intensity_rejects_unknown_country() -> None:
    assert 0 < carbon_intensity("FRA") < carbon_intensity("USA")
    with pytest.raises(BenchError, match="ISO code"):
        carbon_intensity("usa")


# --- GPU telemetry -----------------------------------------------------------------------------------------------


@no_nvml
def test_nvml_absent_is_a_reason_not_a_crash(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(NvmlUnavailable, match="NVML"):
        nvml_handles([torch.device("cuda", 0)])
    assert gpu_driver() is None
    assert capfd.readouterr() == ("", "")


class _Reading:
    def __init__(self, **fields: float) -> None:
        self.__dict__.update(fields)


def test_gpu_sampler_summarises(monkeypatch: pytest.MonkeyPatch) -> None:
    util = {"gpu0": 50, "gpu1": 70}
    used = {"gpu0": 1 << 30, "gpu1": 2 << 30}

    def no_power(handle: object) -> int:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    monkeypatch.setattr(pynvml, "nvmlDeviceGetUtilizationRates", lambda h: _Reading(gpu=util[h], memory=0))
    monkeypatch.setattr(pynvml, "nvmlDeviceGetMemoryInfo", lambda h: _Reading(used=used[h]))
    monkeypatch.setattr(pynvml, "nvmlDeviceGetPowerUsage", no_power)
    sampler = GpuSampler(["gpu0", "gpu1"], interval_s=0.01)
    sampler.start()
    time.sleep(0.2)
    telemetry = sampler.stop()
    assert telemetry.available and telemetry.samples >= 1 and telemetry.interval_s == 0.01
    assert telemetry.mean_utilization_pct == 60.0 and telemetry.max_memory_used_bytes == 3 << 30
    assert telemetry.mean_power_w is None and telemetry.max_power_w is None  # unsupported metric left out

    monkeypatch.setattr(pynvml, "nvmlDeviceGetPowerUsage", lambda h: 250_000)  # milliwatts
    sampler = GpuSampler(["gpu0"], interval_s=0.01)
    sampler.start()
    time.sleep(0.1)
    assert sampler.stop().mean_power_w == 250.0


# --- peak FLOPs and MFU ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "dtype", "tflops"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16", 989.5),
        ("NVIDIA H100 80GB HBM3", "tf32", 494.5),
        ("NVIDIA H100 PCIe", "bf16", 756.5),
        ("NVIDIA H100 NVL", "bf16", 835.5),
        ("NVIDIA H200", "bf16", 989.5),
        ("NVIDIA GH200 480GB", "bf16", 989.5),
        ("NVIDIA A100-SXM4-80GB", "bf16", 312.0),
        ("NVIDIA A100-PCIE-40GB", "fp32", 19.5),
        ("NVIDIA L40S", "bf16", 362.05),
        ("NVIDIA L40", "bf16", 181.05),
        ("NVIDIA L4", "bf16", 121.0),
        ("NVIDIA A10", "bf16", 125.0),
        ("NVIDIA GeForce RTX 4090", "bf16", 165.2),
        ("Tesla V100-SXM2-16GB", "fp16", 125.0),
        ("Tesla T4", "fp32", 8.1),
        ("NVIDIA A10G", "bf16", None),  # no datasheet: calibrated
        ("Tesla V100-SXM2-16GB", "bf16", None),  # no bf16 hardware: calibrated
        ("NVIDIA A100-SXM4-40GB MIG 1g.5gb", "bf16", None),  # a slice, not the whole GPU
        ("NVIDIA GeForce RTX 4090 D", "bf16", None),
        ("NVIDIA B200", "bf16", None),
    ],
)
def test_peak_table(name: str, dtype: str, tflops: float | None) -> None:
    rate = table_lookup(name, dtype)
    assert (rate is None) if tflops is None else rate == pytest.approx(tflops * 1e12)


def test_peak_dtype_follows_precision() -> None:
    cuda = torch.device("cuda", 0)
    allowed = torch.backends.cuda.matmul.allow_tf32  # a torch setting, not an attribute monkeypatch can restore
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        assert peak_dtype(cuda, "fp32") == "tf32" and peak_dtype(CPU, "fp32") == "fp32"
        assert peak_dtype(cuda, "bf16") == "bf16"
        torch.backends.cuda.matmul.allow_tf32 = False
        assert peak_dtype(cuda, "fp32") == "fp32"
    finally:
        torch.backends.cuda.matmul.allow_tf32 = allowed
    with pytest.raises(ValueError, match="precision"):
        peak_dtype(CPU, "int8")  # type: ignore[arg-type]


def test_cpu_peak_is_a_real_calibration() -> None:
    peak = peak_flops(CPU, "fp32")
    assert peak.source == "calibration" and peak.dtype == "fp32" and peak.device_name
    assert math.isfinite(peak.flops_per_s) and peak.flops_per_s > 1e8
    assert peak.measured_at is not None and peak.threads == torch.get_num_threads() and peak.idle is not None


class _Probe:
    """Stands in for ContentionProbe: reports the machine as busy or idle, as the test says."""

    others = 0.0

    def __init__(self, cores: int) -> None: ...

    def start(self) -> None: ...

    def stop(self):
        return types.SimpleNamespace(others=_Probe.others)


def test_the_cpu_peak_is_measured_once_per_machine_when_idle(tmp_path, monkeypatch) -> None:
    import bench.measure.peak as peak_module

    rates = iter([50e9, 80e9, 90e9, 70e9])
    measured = []
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(peak_module, "ContentionProbe", _Probe)
    monkeypatch.setattr(peak_module, "_measure_rate", lambda *args: measured.append(args) or next(rates))

    _Probe.others = 0.9  # busy: kept only until an idle measurement replaces it
    assert peak_module.machine_peak(CPU, "fp32").flops_per_s == 50e9
    _Probe.others = 0.0
    first = peak_module.machine_peak(CPU, "fp32")
    assert first.flops_per_s == 80e9 and first.idle and len(measured) == 2
    assert peak_module.machine_peak(CPU, "fp32") == first and len(measured) == 2  # reused from the file
    saved = json.loads((tmp_path / peak_module.CALIBRATION_FILE).read_text())
    assert [entry["flops_per_s"] for entry in saved.values()] == [80e9]
    assert peak_module.machine_peak(CPU, "fp32", remeasure=True).flops_per_s == 90e9  # bench calibrate
    assert peak_flops(CPU, "fp32").flops_per_s == 90e9 and len(measured) == 3


def test_mfu_arithmetic() -> None:
    peak = PeakFlops(flops_per_s=1e14, dtype="bf16", source="table", device_name="x")
    assert mfu(6e9, 1_000_000, 100.0, peak) == pytest.approx(0.6)
    assert mfu(6e9, 1_000_000, 100.0, peak, devices=2) == pytest.approx(0.3)
    assert mfu(6e9, 0, 100.0, peak) is None
    assert mfu(0.0, 1000, 100.0, peak) is None
    assert mfu(6e9, 1000, 0.0, peak) is None


# --- memory ------------------------------------------------------------------------------------------------------


def test_host_peak_is_per_trial() -> None:
    first = PeakMemory(CPU)
    first.start()
    block = np.ones(200 * MB // 8)
    del block
    big = first.stop().peak_host_rss_bytes
    second = PeakMemory(CPU)
    second.start()
    small = second.stop().peak_host_rss_bytes
    assert big - small > 150 * MB  # the second trial does not inherit the first one's peak


def test_the_train_phase_peak_leaves_out_the_harness_evaluations() -> None:
    """The overall peak includes what the harness does inside and after training (evaluations, the causality probe,
    the snapshot of the model); the train phase's own peak does not."""
    meter = Meter(device=CPU, hardware_class="cpu-2")
    meter.start()
    with meter.phase("train"):
        kept = np.ones(50 * MB // 8)  # the recipe's own memory: counted in the train phase
        with meter.phase("eval"):  # an evaluation from inside training
            block = np.ones(300 * MB // 8)
            del block
        del kept
    after = np.ones(300 * MB // 8)  # the snapshot, the causality probe: after the train phase
    del after
    memory = meter.stop(tokens=0, train_seconds=0.0, flops_per_token=None, precision="fp32").memory
    assert memory.train_peak_device_bytes is None and memory.peak_device_bytes is None  # the CPU
    assert memory.peak_host_rss_bytes - memory.train_peak_host_rss_bytes > 200 * MB
    assert memory.train_peak_host_rss_bytes > 40 * MB


def test_device_peaks_are_split_by_phase(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA (faked: the allocator's peak counter) the same bookkeeping splits the device peak."""
    allocated = {"now": 1000, "peak": 1000}

    def reset(device: torch.device) -> None:
        allocated["peak"] = allocated["now"]

    def use(nbytes: int) -> None:
        allocated["peak"] = max(allocated["peak"], allocated["now"] + nbytes)

    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: allocated["peak"])
    memory = PeakMemory(torch.device("cuda", 0))
    memory.start()
    use(5000)
    memory.mark(None)  # set-up, the first evaluation: before training
    use(3000)
    memory.mark("train")
    use(8000)
    memory.mark("eval")
    use(2000)
    memory.mark("train")
    report = memory.stop()
    assert report.train_peak_device_bytes == 4000 and report.peak_device_bytes == 9000


def test_results_without_train_peaks_keep_loading_and_their_shape() -> None:
    old = MemoryReport.model_validate({"peak_device_bytes": None, "peak_host_rss_bytes": 123})
    assert old.train_peak_host_rss_bytes is None and old.train_peak_device_bytes is None
    assert old.model_dump(mode="json") == {"peak_device_bytes": None, "peak_host_rss_bytes": 123}


def test_rss_sampler_fallback() -> None:
    sampler = RssSampler(interval_s=0.02)
    baseline = sampler.peak
    block = np.ones(200 * MB // 8)
    time.sleep(0.2)
    del block
    assert sampler.stop() - baseline > 150 * MB


def test_poller_samples_until_stopped_or_until_a_sample_says_false() -> None:
    calls: list[int] = []
    poller = Poller(lambda: calls.append(1), interval_s=0.01, name="test-poller")
    poller.start()
    time.sleep(0.2)
    poller.stop()
    seen = len(calls)
    time.sleep(0.05)
    assert seen >= 3 and len(calls) == seen  # nothing runs after stop()

    ended: list[int] = []
    early = Poller(lambda: ended.append(1) or len(ended) < 2, interval_s=0.01, name="test-poller")
    early.start()
    time.sleep(0.2)
    assert len(ended) == 2  # the second sample returned False and ended the thread
    early.stop()


# --- hardware ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device_name", "sku"),
    [
        ("NVIDIA H100 80GB HBM3", "H100-SXM"),
        ("NVIDIA H100 PCIe", "H100-PCIe"),
        ("NVIDIA H100 NVL", "H100-NVL"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA H200 NVL", "H200-NVL"),
        ("NVIDIA GH200 480GB", "GH200"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA GeForce RTX 4090", "RTX4090"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA A10G", None),  # no datasheet
        ("NVIDIA H100", None),  # not a name any H100 part reports: no SKU is guessed
        ("NVIDIA A100-SXM4-40GB MIG 1g.5gb", None),  # a slice, not the whole GPU
    ],
)
def test_a_device_name_is_one_sku(device_name: str, sku: str | None) -> None:
    found = sku_of_device(device_name)
    assert (found.name if found is not None else None) == sku


def test_hardware_class_rules() -> None:
    sxm, pcie, h200 = "NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H200"
    assert matches_class("cpu-2", [], cpu_threads=2, cores=2)
    assert matches_class("cpu-2", [], cpu_threads=2, cores=64)  # a big machine with torch held to 2 threads
    assert not matches_class("cpu-2", [], cpu_threads=8, cores=64)
    assert not matches_class("cpu-4", [], cpu_threads=4, cores=2)  # more threads than cores
    assert not matches_class("cpu-2", [sxm], cpu_threads=2, cores=2)
    assert matches_class("1xH100-SXM", [sxm], cpu_threads=16, cores=16)
    assert not matches_class("1xH100-SXM", [pcie], cpu_threads=16, cores=16)  # the slower part is another class
    assert matches_class("1xH100-PCIe", [pcie], cpu_threads=16, cores=16)
    assert matches_class("1xH200", [h200], cpu_threads=16, cores=16)
    assert not matches_class("1xH200", [sxm], cpu_threads=16, cores=16)
    assert matches_class("8xH100-SXM", [sxm] * 8, cpu_threads=1, cores=1)
    assert not matches_class("8xH100-SXM", [sxm] * 4, cpu_threads=1, cores=1)
    assert not matches_class("8xH100-SXM", [sxm] * 7 + [pcie], cpu_threads=1, cores=1)
    assert not matches_class("1xH100-SXM", [], cpu_threads=2, cores=2)
    assert not matches_class("1xA100", [sxm], cpu_threads=2, cores=2)
    with pytest.raises(BenchError, match="budget.hardware"):
        matches_class("H100", [sxm], cpu_threads=1, cores=1)
    with pytest.raises(BenchError, match="did you mean '1xH100-SXM'"):
        matches_class("1xH100", [sxm], cpu_threads=1, cores=1)  # a result's class from before SKUs


def test_a_host_with_native_bf16_is_not_of_a_calibrated_cpu_class_and_says_why(monkeypatch) -> None:
    """Muon's bf16 orthogonalisation ran 43x slower per product on the reference host (no bf16 instructions) than
    fp32, and the fp32 probe cannot see it: a host with bf16 instructions is ranked apart, with the reason."""
    import bench.measure.hardware as hardware

    threads = torch.get_num_threads()
    fits = usable_cores() >= threads
    identity = {"cpu_vendor": "GenuineIntel", "cpu_family": 6, "cpu_model_number": 143, "cpu_stepping": 8,
                "cpu_flags": ["avx2", "avx512_bf16", "amx_bf16", "amx_tile"]}
    monkeypatch.setattr(hardware, "cpu_identity", lambda: identity)
    info = hardware_info(CPU, f"cpu-{threads}", speed_index=1.0)
    assert not info.matches_class and "amx_bf16, avx512_bf16" in info.mismatch
    assert info.cpu_flags == identity["cpu_flags"]
    assert hardware_info(CPU, f"cpu-{threads}").matches_class == fits  # host seconds claim no equivalence
    slow = hardware_info(CPU, f"cpu-{threads}", speed_index=0.3).mismatch
    assert "0.30x" in slow and "amx_bf16" in slow  # both reasons, in one line

    monkeypatch.setattr(hardware, "cpu_identity", lambda: {**identity, "cpu_flags": ["avx2", "avx512f", "fma"]})
    info = hardware_info(CPU, f"cpu-{threads}", speed_index=1.0)
    assert info.matches_class == fits and info.mismatch is None
    assert isa_problem("1xH100-SXM", ["amx_bf16"]) is None  # a GPU class is its SKU


def test_hardware_info_and_versions() -> None:
    threads = torch.get_num_threads()
    info = hardware_info(CPU, f"cpu-{threads}")
    assert info.cpu_model and info.cpu_cores == usable_cores() and info.memory_bytes > 0
    assert info.gpus == [] and info.torch == torch.__version__ and len(info.hostname_hash) == 16
    assert info.matches_class == (usable_cores() >= threads)
    assert not hardware_info(CPU, "1xH100-SXM").matches_class
    versions = package_versions()
    assert {"python", "torch", "pretrain-bench", "numpy", "pydantic", "codecarbon"} <= set(versions)
    assert versions["torch"] == torch.__version__.split("+")[0] or versions["torch"] == torch.__version__
