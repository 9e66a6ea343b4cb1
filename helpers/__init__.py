"""Helpers for 'Deep Learning Performance Optimization: From Theory to Practice'.

One concern per module; learners are welcome to read them:
- hardware: device choice and the hardware report
- precision / gpu: autocast and GradScaler the current way; GPU-only copies, TF32, CUDA graphs
- measure: latency (torch.utils.benchmark), throughput, comparison tables, per-layer times
- memory: peak memory of a block of work
- cost: parameters, FLOPs, serialized size
- phases: time the phases of a training step
- data / models / training: the digits data, small models, plain loops
- images / loading: the digits as JPEG files on disk, Datasets, DataLoader measurements
- ledger: the course's results ledger
- layers / pruning / zoo: depthwise separable conv, channel pruning, torchvision architectures
- plots / widgets / checks / source: charts, live controls, exercise checks, showing helper code
"""

from .chapter import setup_chapter
from .checks import check_function, check_number
from .cost import count_flops, count_parameters, model_cost, serialized_size_bytes
from .data import DigitsSplit, PerSampleDigits, load_digits_split, tensor_loader, upsample
from .gpu import compare_host_to_device, compare_tf32_matmul, cuda_graph_replay, launch_versus_completion_ms
from .hardware import HardwareReport, hardware_report, pick_device
from .images import DecodedCache, ObjectListCache, cache_root, decode_all, image_folder, write_digit_images
from .layers import DepthwiseSeparableConv, same_padding, separable_cost_ratio
from .ledger import ledger_path, ledger_table, load_ledger, make_entry, record_chapter
from .measure import Timing, compare_variants, measure_interleaved, measure_latency, throughput, time_layers
from .loading import (
    LoaderTiming, child_pids, compare_loaders, make_loader, measure_loader, new_child_processes, normalize_batch,
    training_throughput, worker_private_memory_bytes,
)
from .memory import track_peak_memory
from .models import small_cnn
from .precision import (
    PRECISIONS, amp_train_step, check_precision, explain_precision, make_grad_scaler, precision_mode, precision_point,
    precision_workload, saved_activation_bytes,
)
from .phases import PhaseTimes, compare_step_phases, time_step_phases
from .plots import pareto_front, plot_breakdown, plot_comparison, plot_roofline, plot_sweep, plot_tradeoff
from .pruning import l1_filter_ranking, prune_channels
from .source import show_source
from .training import evaluate_accuracy, train_epochs
from .widgets import live_control
from .zoo import ARCHITECTURES, build_architecture, published_top1

__all__ = [
    "ARCHITECTURES", "DepthwiseSeparableConv", "build_architecture", "l1_filter_ranking", "pareto_front",
    "plot_tradeoff", "prune_channels", "published_top1", "same_padding", "separable_cost_ratio", "show_source",
    "DigitsSplit", "HardwareReport", "PerSampleDigits", "PhaseTimes", "Timing",
    "check_function", "check_number", "compare_step_phases", "compare_variants", "count_flops", "count_parameters",
    "evaluate_accuracy", "hardware_report", "ledger_path", "ledger_table", "live_control",
    "load_digits_split", "load_ledger", "make_entry", "measure_interleaved", "measure_latency", "model_cost",
    "pick_device", "plot_breakdown", "plot_comparison", "plot_roofline", "plot_sweep",
    "record_chapter", "serialized_size_bytes", "setup_chapter", "small_cnn", "tensor_loader",
    "PRECISIONS", "amp_train_step", "check_precision", "compare_host_to_device", "compare_tf32_matmul",
    "cuda_graph_replay", "explain_precision", "launch_versus_completion_ms", "make_grad_scaler", "precision_mode",
    "precision_point", "precision_workload", "saved_activation_bytes",
    "DecodedCache", "LoaderTiming", "ObjectListCache", "cache_root", "child_pids", "compare_loaders", "decode_all",
    "image_folder", "make_loader", "measure_loader", "new_child_processes", "normalize_batch", "training_throughput",
    "worker_private_memory_bytes", "write_digit_images",
    "throughput", "time_layers", "time_step_phases", "track_peak_memory", "train_epochs", "upsample",
]
