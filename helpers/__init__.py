"""Helpers for 'Deep Learning Performance Optimization: From Theory to Practice'.

One concern per module; learners are welcome to read them:
- hardware: device choice and the hardware report
- precision / gpu: autocast and GradScaler the current way; GPU-only copies and their overlap, TF32, CUDA graphs
- compile_timing: forget what this process compiled, to time torch.compile's first call cold and warm
- hardware_checks: chapter 3's exercise checks
- measure / rounds: latency (torch.utils.benchmark), interleaved rounds, per-call percentiles, throughput,
  comparison tables, per-layer times
- claims: speed-ups with a 95% interval over paired rounds, and the verdict on a claimed threshold
- memory: peak memory of a block of work
- cost: parameters, FLOPs, serialized size
- phases: time the phases of a training step
- data / models / training: the digits data, small models, plain loops
- images / loading: the digits as JPEG files on disk, Datasets, DataLoader measurements
- ledger: the course's results ledger (measured results and claims)
- threads: spinning processes that keep cores busy, for oversubscription experiments
- layers / pruning / zoo: depthwise separable conv, channel pruning, torchvision architectures
- roofline / folds: a layer on the roofline; accuracy over cross-validation folds
- plots / widgets / checks / source: charts, live controls, exercise checks, showing helper code
- distill / quantize / compression_plots / compression_checks: chapter 6's distillation and int8
- launch / job_common / job_ddp / job_allreduce / job_fsdp / job_resume: chapter 5's torchrun jobs
- comm_model / sharding_memory / distributed_plots: the all-reduce cost model and the memory arithmetic
- profiling / trace_plot / onnx_runtime / tensorrt_engine / tensorrt_names / tools_checks: chapter 7's profiler
  tables and trace picture, ONNX Runtime sessions, the TensorRT path and its check against TensorRT's bindings
- capstone / capstone_plots / decision_guide / class_report: chapter 8's waterfall and accuracy budget, the
  course's ledger chart, the decision guide written from the ledger, and the workshop's class report

Imports are lazy: `from helpers import measure_latency` loads only the module that defines it, so a
distributed job that imports helpers.job_ddp does not pay for plotting, images or torchvision.
"""

from __future__ import annotations

import importlib

_MODULE_EXPORTS = {
    "chapter": ("setup_chapter",),
    "claims": ("Claim", "Ratio", "claims_table", "make_claim", "paired_ratio", "report_claim", "timing_ratio",),
    "checks": ("check_choice", "check_function", "check_number",),
    "cost": ("count_flops", "count_parameters", "model_cost", "serialized_size_bytes",),
    "data": (
        "DigitsSplit", "PerSampleDigits", "digits_folds", "hold_out", "load_digits_split", "tensor_loader",
        "upsample",
    ),
    "compile_timing": ("forget_compiled_code",),
    "gpu": (
        "compare_copy_compute_overlap", "compare_host_to_device", "compare_tf32_matmul", "copy_beside_compute",
        "cuda_graph_replay", "launch_versus_completion_ms", "pin_memory_cost",
    ),
    "hardware_checks": ("check_activation_bytes_prediction", "check_break_even", "check_loss_scale", "exercise_mlp",),
    "hardware": ("HardwareReport", "hardware_report", "pick_device",),
    "images": (
        "BatchedCache", "DecodedCache", "ObjectListCache", "RecordArrays", "RecordList", "cache_root", "decode_all",
        "decode_stacked", "evict_from_page_cache", "file_index", "image_folder", "read_bytes",
        "time_cold_and_warm_reads", "time_reads_interleaved", "write_digit_images", "write_shard",
    ),
    "layers": ("DepthwiseSeparableConv", "same_padding", "separable_cost_ratio",),
    "ledger": ("chapters_missing", "ledger_path", "ledger_table", "load_claims", "load_ledger", "make_entry", "record_chapter",),
    "measure": (
        "Percentiles", "Timing", "compare_variants", "latency_percentiles", "measure_interleaved", "measure_latency",
        "measure_percentiles", "synchronize", "synchronized_clock", "throughput", "time_layers",
        "time_layers_interleaved", "timing_table",
    ),
    "loading": (
        "LoaderTiming", "WorkerPids", "check_pipeline_choice", "check_throughput_prediction", "child_pids",
        "loader_ratio", "loader_table", "make_loader", "make_train_step", "measure_loader", "measure_loaders",
        "measure_training", "new_child_processes", "normalize_batch", "prefetched_batches", "start_method",
        "train_images_per_s", "training_throughput", "worker_private_memory_bytes",
    ),
    "memory": ("release_freed_memory", "track_peak_memory",),
    "models": ("small_cnn",),
    "roofline": ("conv_min_bytes", "depthwise_intensity", "measure_roofs",),
    "precision": (
        "PRECISIONS", "amp_train_step", "autocast_mode", "check_precision", "explain_precision", "fp32_math",
        "inference_latency", "make_grad_scaler", "output_error", "precision_costs", "precision_mode",
        "precision_point", "precision_sweep", "precision_workload", "relative_error", "saved_activation_bytes",
        "train_step_latency", "training_copy",
    ),
    "phases": ("PhaseTimes", "compare_step_phases", "time_step_phases",),
    "plots": ("pareto_front", "plot_breakdown", "plot_comparison", "plot_roofline", "plot_sweep", "plot_tradeoff",),
    "folds": ("compare_folds", "fold_table", "wilson_interval",),
    "pruning": ("filter_importance", "l1_filter_ranking", "per_conv_ratios", "prune_channels",),
    "source": ("show_source",),
    "training": ("evaluate_accuracy", "train_epochs",),
    "widgets": ("live_control",),
    "zoo": ("ARCHITECTURES", "build_architecture", "published_gflops", "published_top1",),
}
_EXPORTS = {name: module for module, names in _MODULE_EXPORTS.items() for name in names}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    """Load the module that defines `name` on first use (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'helpers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
